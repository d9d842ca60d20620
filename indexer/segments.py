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
    """The segments of one file: their times and their log-mel features, in a scratch file."""

    file: str
    count: int
    shape: tuple[int, int]  # one window's log-mel: (n_mels, frames)
    starts: list[float]
    ends: list[float]
    truncated: bool = False  # stopped at the limit of segments per file

    def features(self) -> np.ndarray:
        """``[count, n_mels, frames]`` float32, memory-mapped (read a slice at a time)."""
        return np.memmap(self.file, dtype=np.float32, mode="r", shape=(self.count, *self.shape))

    def discard(self) -> None:
        try:
            os.unlink(self.file)
        except FileNotFoundError:
            pass


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
            meta[SEGMENTS_KEY] = self.write(source)
        except (OSError, ValueError, EOFError) as exc:  # a full scratch disk, a stream that breaks
            log.warning("%s: indexed whole, without its moments: %s", source, exc)
        return features, meta

    def write(self, source: str | os.PathLike) -> Segments:
        """Log-mel of every window of ``source`` into a scratch file, a batch at a time."""
        os.makedirs(self.scratch, exist_ok=True)
        fd, path = tempfile.mkstemp(prefix="segments-", suffix=".f32", dir=self.scratch)
        starts: list[float] = []
        ends: list[float] = []
        shape: tuple[int, int] | None = None
        truncated = False
        try:
            with os.fdopen(fd, "wb") as out:
                pending: list[np.ndarray] = []

                def flush() -> None:
                    nonlocal shape
                    if pending:
                        mels = self.inner.log_mel(np.stack(pending)).astype(np.float32, copy=False)
                        shape = mels.shape[1:]
                        out.write(np.ascontiguousarray(mels).tobytes())
                        pending.clear()

                hop = self.hop_seconds or self.inner.window_seconds / 2
                first = None
                for start, end, window in self.inner.segment_windows(source, hop):
                    if float(np.sqrt(np.mean(np.square(window)))) < SILENCE_RMS:
                        # Silence: nothing to find there, and every silent window looks alike. A
                        # file all silence keeps its first window, so it still has its moments.
                        first = first or (start, end, window)
                        continue
                    if len(starts) == self.max_segments:
                        truncated = True
                        log.warning(
                            "%s: more than %d segments; the moments after %.0f s are not indexed",
                            source,
                            self.max_segments,
                            starts[-1],
                        )
                        break
                    starts.append(round(start, 3))
                    ends.append(round(end, 3))
                    pending.append(window)
                    if len(pending) == self.batch:
                        flush()
                if not starts and first is not None:
                    starts.append(round(first[0], 3))
                    ends.append(round(first[1], 3))
                    pending.append(first[2])
                flush()
        except BaseException:
            os.unlink(path)
            raise
        return Segments(path, len(starts), tuple(shape or (0, 0)), starts, ends, truncated)
