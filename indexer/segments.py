"""Moments of long audio: every window of a file, embedded on its own (issue 21, in progress).

A decode worker runs :class:`SegmentingAudio` in place of the model's audio preprocessor: it
returns what the preprocessor returns (the file's own windows, so the file-level vector keeps
its definition) and, for audio longer than one window, writes the log-mel of every window at
``hop_seconds`` (half a window: any sound up to half a window long lies whole in one) to a
scratch file, streaming, and names it in the result's metadata. The
indexing process then reads that file memory-mapped a batch at a time, so neither process ever
holds a long recording whole.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass
from typing import Any

import numpy as np

log = logging.getLogger(__name__)
SEGMENTS_KEY = "segments"  # the metadata entry naming a file's segments (not an Item column)
SILENCE_RMS = 1e-4  # a window quieter than this (-80 dBFS) is no moment


@dataclass(frozen=True)
class Segments:
    """The segments of one file of one modality: their times and their model inputs (log-mel
    windows, or a video's frame pixels), in a scratch file."""

    file: str
    count: int
    shape: tuple[int, ...]  # one segment's input: (n_mels, frames) of audio, (3, S, S) of a frame
    starts: list[float]
    ends: list[float]
    truncated: bool = False  # stopped at the limit of segments per file
    modality: str = "audio"

    def features(self) -> np.ndarray:
        """``[count, *shape]`` float32, memory-mapped (read a slice at a time)."""
        return np.memmap(self.file, dtype=np.float32, mode="r", shape=(self.count, *self.shape))

    def discard(self) -> None:
        try:
            os.unlink(self.file)
        except FileNotFoundError:
            pass


class ScratchWriter:
    """Model inputs of one file's segments appended to a scratch file as they are made (never
    all in memory), with their times; :meth:`finish` names them as :class:`Segments`. Used as a
    context manager: an error, or no :meth:`finish`, removes the file."""

    def __init__(self, scratch: str, modality: str) -> None:
        os.makedirs(scratch, exist_ok=True)
        fd, self.path = tempfile.mkstemp(prefix=f"{modality}-segments-", suffix=".f32", dir=scratch)
        self._out = os.fdopen(fd, "wb")
        self.modality = modality
        self.starts: list[float] = []
        self.ends: list[float] = []
        self.shape: tuple[int, ...] | None = None
        self._done = False

    def __enter__(self) -> ScratchWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self._out.close()
        if not self._done:
            os.unlink(self.path)

    def write(self, inputs: np.ndarray, times: list[tuple[float, float]]) -> None:
        """A batch of segment inputs ``[b, *shape]`` and their (start, end) seconds."""
        inputs = np.ascontiguousarray(inputs, dtype=np.float32)
        self.shape = tuple(inputs.shape[1:])
        self._out.write(inputs.tobytes())
        for start, end in times:
            self.starts.append(round(start, 3))
            self.ends.append(round(end, 3))

    def finish(self, truncated: bool = False) -> Segments:
        self._out.flush()
        self._done = True
        return Segments(
            self.path, len(self.starts), self.shape or (0,), self.starts, self.ends, truncated, self.modality
        )


def segment_limit_reached(source: Any, limit: int, last: float, what: str = "moments") -> None:
    log.warning("%s: more than %d segments; the %s after %.0f s are not indexed", source, limit, what, last)


@dataclass(frozen=True)
class SegmentingAudio:
    """An audio preprocessor for decode workers that also writes a long file's segments.

    Picklable (workers receive it). ``inner`` is the model's preprocessor, with ``process``,
    ``segment_windows``, ``log_mel`` and ``window_seconds``.
    """

    inner: Any
    scratch: str
    hop_seconds: float | None = None  # default: half a window (2.5 s for 5 s windows)
    max_segments: int = 20_000
    batch: int = 8  # windows a log-mel call takes: ~3 MB of intermediate arrays each

    def __getattr__(self, name: str) -> Any:  # sample_rate, window_seconds, ...: the model's own
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def process(self, source: str | os.PathLike) -> tuple[np.ndarray, dict]:
        features, meta = self.inner.process(source)
        if meta.get("duration", 0.0) <= self.inner.window_seconds:
            return features, meta  # one window is the whole file: its vector is its only moment
        try:
            meta[SEGMENTS_KEY] = [self.write(source)]
        except (OSError, ValueError, EOFError) as exc:  # a full scratch disk, a stream that breaks
            log.warning("%s: indexed whole, without its moments: %s", source, exc)
        return features, meta

    def write(self, source: str | os.PathLike, keep_silent: bool = True) -> Segments:
        """Log-mel of every window of ``source`` into a scratch file, a batch at a time.

        Silent windows are skipped (nothing to find there, and every silent window looks alike);
        a file all silence keeps its first window when ``keep_silent``, else has no segments."""
        with ScratchWriter(self.scratch, "audio") as out:
            pending: list[tuple[float, float, np.ndarray]] = []

            def flush() -> None:
                if pending:
                    mels = self.inner.log_mel(np.stack([w for _, _, w in pending]))
                    out.write(mels, [(a, b) for a, b, _ in pending])
                    pending.clear()

            hop = self.hop_seconds or self.inner.window_seconds / 2
            first = None
            count = 0
            truncated = False
            for start, end, window in self.inner.segment_windows(source, hop):
                if float(np.sqrt(np.mean(np.square(window)))) < SILENCE_RMS:
                    first = first or (start, end, window)
                    continue
                if count == self.max_segments:
                    truncated = True
                    segment_limit_reached(source, self.max_segments, start)
                    break
                count += 1
                pending.append((start, end, window))
                if len(pending) == self.batch:
                    flush()
            if not count and first is not None and keep_silent:
                pending.append(first)
            flush()
            return out.finish(truncated)
