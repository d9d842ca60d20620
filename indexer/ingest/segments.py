"""Moments of long audio (and of a video's soundtrack): every window of a file, and every
stretch of sound between pauses, embedded on its own.

A decode worker runs :class:`SegmentingAudio` in place of the model's audio preprocessor: it
returns what the preprocessor returns (the file's own windows, so the file-level vector keeps
its definition) and, for audio longer than one window, writes the log-mel of every window at
``hop_seconds`` (half a window: any sound up to half a window long lies whole in one) to a
scratch file, streaming, and names it in the result's metadata. The
indexing process then reads that file memory-mapped a batch at a time, so neither process ever
holds a long recording whole.

Given a ``listen``er (a speech finder, from the run's transcriber), it also hears the samples it
decodes for where someone speaks, and names the regions in the metadata (``SPEECH_KEY``): the
transcription after needs not decode a file twice, nor at all one without speech.
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
SPEECH_KEY = "speech"  # the metadata entry of where speech was heard, [(start, end) seconds] (not a column)
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
    dtype: str = "float32"  # uint8 for a video's frames (crops, normalised when embedded)

    def features(self) -> np.ndarray:
        """``[count, *shape]``, memory-mapped (read a slice at a time)."""
        return np.memmap(self.file, dtype=self.dtype, mode="r", shape=(self.count, *self.shape))

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
        self.dtype = "float32"
        self._done = False

    def __enter__(self) -> ScratchWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self._out.close()
        if not self._done:
            os.unlink(self.path)

    def write(self, inputs: np.ndarray, times: list[tuple[float, float]]) -> None:
        """A batch of segment inputs ``[b, *shape]`` (float32, or uint8 pixels) and their (start,
        end) seconds."""
        inputs = np.ascontiguousarray(inputs if inputs.dtype == np.uint8 else inputs.astype(np.float32, copy=False))
        self.shape, self.dtype = tuple(inputs.shape[1:]), str(inputs.dtype)
        self._out.write(inputs.tobytes())
        for start, end in times:
            self.starts.append(round(start, 3))
            self.ends.append(round(end, 3))

    def finish(self, truncated: bool = False) -> Segments:
        self._out.flush()
        self._done = True
        return Segments(
            self.path,
            len(self.starts),
            self.shape or (0,),
            self.starts,
            self.ends,
            truncated,
            self.modality,
            self.dtype,
        )


def segment_limit_reached(source: Any, limit: int, last: float, what: str = "moments") -> None:
    log.warning("%s: more than %d segments; the %s after %.0f s are not indexed", source, limit, what, last)


class Utterances:
    """Stretches of sound between pauses, found in a stream fed in order: each one no longer than
    a window becomes a segment of its own (padded with silence, as a short file is), besides the
    regular windows. A phrase spoken between pauses is then matched alone, not mixed with its
    neighbours' words in a window that straddles them.

    A pause is at least ``PAUSE`` seconds of 50 ms frames quieter than a tenth of the loudest
    frame of the stretch so far (and than ``FLOOR``); in steady noise there are none, and the
    windows alone stand.
    """

    FRAME = 0.05  # seconds
    PAUSE = 0.3  # seconds of quiet that end a stretch
    MIN = 0.4  # seconds: shorter stretches (clicks) are no moment of their own
    FLOOR = 0.003  # RMS: anything quieter is quiet (-50 dBFS)
    MARGIN = 0.1  # seconds kept on each side of a stretch

    def __init__(self, rate: int, longest: float) -> None:
        self.rate = rate
        self.frame = max(1, int(round(self.FRAME * rate)))
        self.longest = int(longest * rate)
        self.margin = int(self.MARGIN * rate)
        self.pending = np.zeros(0, np.float32)  # samples not yet cut into frames
        self.at = 0  # stream position of pending[0]
        self.history = np.zeros(0, np.float32)  # the last MARGIN of samples before a stretch starts
        self.current: list[np.ndarray] = []  # the stretch so far (None: too long, dropped)
        self.start = 0
        self.length = 0
        self.quiet = 0  # samples of quiet at the stretch's end
        self.peak = 0.0
        self.too_long = False

    def feed(self, samples: np.ndarray) -> list[tuple[float, float, np.ndarray]]:
        """Samples following the last ones fed; returns the stretches that ended in them, as
        (start, end, samples)."""
        out = []
        self.pending = np.concatenate([self.pending, samples])
        usable = len(self.pending) // self.frame * self.frame
        for a in range(0, usable, self.frame):
            frame = self.pending[a : a + self.frame]
            done = self._frame(frame, self.at + a)
            if done is not None:
                out.append(done)
        self.pending = self.pending[usable:]
        self.at += usable
        return out

    def finish(self) -> list[tuple[float, float, np.ndarray]]:
        """The stretch the stream ended in, if any."""
        done = self._close()
        return [done] if done is not None else []

    def _frame(self, frame: np.ndarray, at: int) -> tuple[float, float, np.ndarray] | None:
        rms = float(np.sqrt(np.mean(np.square(frame))))
        loud = rms > max(self.FLOOR, 0.1 * self.peak)
        if not self.current and not self.too_long:
            if not loud:
                self.history = np.concatenate([self.history, frame])[-self.margin :] if self.margin else self.history
                return None
            self.current, self.start, self.length = [self.history], at - len(self.history), len(self.history)
            self.peak, self.quiet = rms, 0
        if self.too_long:  # a stretch past a window: wait for its pause, keep nothing
            self.quiet = 0 if loud else self.quiet + len(frame)
            if self.quiet >= self.PAUSE * self.rate:
                self.too_long, self.peak, self.history = False, 0.0, frame[-self.margin :]
            return None
        self.peak = max(self.peak, rms)
        self.current.append(frame)
        self.length += len(frame)
        self.quiet = 0 if loud else self.quiet + len(frame)
        if self.quiet >= self.PAUSE * self.rate:
            return self._close()
        if self.length - self.quiet > self.longest:
            self.current, self.too_long = [], True
        return None

    def _close(self) -> tuple[float, float, np.ndarray] | None:
        if not self.current:
            return None
        wave = np.concatenate(self.current)
        keep = len(wave) - max(0, self.quiet - self.margin)  # the trailing quiet, less a margin
        wave = wave[:keep]
        start = self.start
        self.current, self.length, self.quiet, self.peak = [], 0, 0, 0.0
        self.history = np.zeros(0, np.float32)
        sound = len(wave) - 2 * self.margin
        if sound < self.MIN * self.rate or len(wave) > self.longest:
            return None
        return start / self.rate, (start + len(wave)) / self.rate, wave


class Hearing:
    """A speech finder's stream that never fails a file's decode: a finder that breaks (no
    model, an ONNX Runtime error) is logged, and the file is indexed without its regions (its
    speech is looked for again when it is transcribed)."""

    def __init__(self, source: str | os.PathLike, finder: Any, rate: int) -> None:
        self.source = source
        self.stream = None
        try:
            self.stream = finder.listen(rate)
        except (OSError, ValueError, RuntimeError, ImportError) as exc:
            self.fail(exc)

    def fail(self, exc: Exception) -> None:
        log.warning("%s: speech not looked for while decoding: %s", self.source, exc)
        self.stream = None

    def feed(self, samples: np.ndarray) -> None:
        if self.stream is not None:
            try:
                self.stream.feed(samples)
            except (OSError, ValueError, RuntimeError, ImportError) as exc:
                self.fail(exc)

    def finish(self) -> list[tuple[float, float]] | None:
        """The regions heard, in seconds; None if the finder failed."""
        if self.stream is None:
            return None
        try:
            return self.stream.finish()
        except (OSError, ValueError, RuntimeError, ImportError) as exc:
            self.fail(exc)
            return None


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
    utterances: bool = True  # also a segment for each stretch of sound between pauses (see Utterances)
    batch: int = 8  # windows a log-mel call takes: ~3 MB of intermediate arrays each
    listen: Any = None  # a speech finder (``listen(rate)``: a stream to ``feed``, then ``finish``), or None

    def __getattr__(self, name: str) -> Any:  # sample_rate, window_seconds, ...: the model's own
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def process(self, source: str | os.PathLike) -> tuple[np.ndarray, dict]:
        features, meta = self.inner.process(source)
        if meta.get("duration", 0.0) <= self.inner.window_seconds:
            if self.listen is not None:  # one window is the whole file: its vector is its only moment
                meta[SPEECH_KEY] = self._hear_whole(source, meta["duration"])
            return features, meta
        hearing = Hearing(source, self.listen, self.inner.sample_rate) if self.listen is not None else None
        try:
            segments = self.write(source, hearing=hearing)
        except (OSError, ValueError, EOFError) as exc:  # a full scratch disk, a stream that breaks
            log.warning("%s: indexed whole, without its moments: %s", source, exc)
            return features, meta
        meta[SEGMENTS_KEY] = [segments]
        if hearing is not None and not segments.truncated:  # else heard in part: found again later
            meta[SPEECH_KEY] = hearing.finish()
        return features, meta

    def _hear_whole(self, source: str | os.PathLike, duration: float) -> list[tuple[float, float]] | None:
        """Where speech is in a file of one window (decoded again: a short file is cheap)."""
        hearing = Hearing(source, self.listen, self.inner.sample_rate)
        try:
            hearing.feed(self.inner.load_windows(source)[0][: int(round(duration * self.inner.sample_rate))])
        except (OSError, ValueError) as exc:
            hearing.fail(exc)
        return hearing.finish()

    def write(self, source: str | os.PathLike, keep_silent: bool = True, hearing: Any = None) -> Segments:
        """Log-mel of every window of ``source`` (and of every stretch between pauses, see
        :class:`Utterances`) into a scratch file, a batch at a time; each sample decoded is also
        fed, once, to ``hearing`` (a :class:`Hearing`).

        Silent windows are skipped (nothing to find there, and every silent window looks alike);
        a file all silence keeps its first window when ``keep_silent``, else has no segments."""
        with ScratchWriter(self.scratch, "audio") as out:
            pending: list[tuple[float, float, np.ndarray]] = []

            def flush() -> None:
                if pending:
                    mels = self.inner.log_mel(np.stack([w for _, _, w in pending]))
                    out.write(mels, [(a, b) for a, b, _ in pending])
                    pending.clear()

            window = self.inner.window_seconds
            hop = self.hop_seconds or window / 2
            n = int(round(window * self.inner.sample_rate))
            fresh = n - int(round(hop * self.inner.sample_rate))  # a window's samples the last one lacked
            stretches = Utterances(self.inner.sample_rate, window) if self.utterances else None
            first = None
            count = 0
            truncated = False
            windows = self.inner.segment_windows(source, hop)
            for k, (start, end, samples) in enumerate(windows):
                found = [(start, end, samples)]
                new = samples if k == 0 else samples[fresh:]
                if hearing is not None:  # the new samples; of the last window, padded, what the file holds
                    hearing.feed(samples[n - len(new) : int(round((end - start) * self.inner.sample_rate))])
                if stretches is not None:
                    found += [(a, b, self.inner.fit(w)) for a, b, w in stretches.feed(new)]
                for a, b, w in found:
                    if float(np.sqrt(np.mean(np.square(w)))) < SILENCE_RMS:
                        first = first or (a, b, w)
                        continue
                    if count == self.max_segments:
                        truncated = True
                        break
                    count += 1
                    pending.append((a, b, w))
                    if len(pending) >= self.batch:
                        flush()
                if truncated:
                    segment_limit_reached(source, self.max_segments, start)
                    break
            if stretches is not None and not truncated:
                for a, b, w in stretches.finish():
                    if count < self.max_segments:
                        count += 1
                        pending.append((a, b, self.inner.fit(w)))
            if not count and first is not None and keep_silent:
                pending.append(first)
            flush()
            return out.finish(truncated)


@dataclass(frozen=True)
class EncodedSegments:
    """A file's segments of one modality, embedded: their times and vectors."""

    modality: str
    starts: list[float]
    ends: list[float]
    vectors: np.ndarray  # [count, dim] float32
    truncated: bool = False


def encode_inputs(encoder: Any, modality: str, inputs: np.ndarray) -> np.ndarray:
    """Vectors of a batch of segment inputs: a video's frames (uint8 crops, normalised here), or
    log-mel windows."""
    if modality == "image":
        return encoder.encode_image(encoder.preprocess_image.normalize(inputs))
    return encoder.encode_audio_features([inputs[i : i + 1] for i in range(len(inputs))])


def encode_segments(encoder: Any, segments: Segments, batch: int, stop: Any = lambda: False) -> EncodedSegments | None:
    """``segments``' vectors, ``batch`` inputs at a time from their scratch file (removed after);
    None when ``stop()`` turns true between two batches."""
    try:
        features = segments.features() if segments.count else None
        parts = []
        for a in range(0, segments.count, batch):
            if stop():
                return None
            parts.append(encode_inputs(encoder, segments.modality, features[a : min(a + batch, segments.count)]))
        dim = parts[0].shape[1] if parts else 0
        vectors = np.concatenate(parts) if parts else np.zeros((0, dim), np.float32)
        return EncodedSegments(
            segments.modality, list(segments.starts), list(segments.ends), vectors, segments.truncated
        )
    finally:
        segments.discard()
