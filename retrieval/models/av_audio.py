"""Audio that libsndfile cannot read (AAC in .m4a/.aac, and later a video's soundtrack), decoded
with PyAV (FFmpeg inside the wheel) behind the part of soundfile's ``SoundFile`` that
:class:`retrieval.models.audio.AudioPreprocessor` uses: ``samplerate``, ``channels``, ``frames``,
``seek`` and ``read``.

Reading is forward, a decoded frame at a time (memory: one frame plus what a read asks for).
A far seek (more than ``FAR`` seconds ahead, or backwards) asks the container to seek, lands
``PREROLL`` seconds early and decodes forward to the exact sample, so that codecs whose frames
overlap (AAC's MDCT) give the same samples as decoding from the start.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

# Read through PyAV (a video's soundtrack too); everything else through libsndfile.
AV_EXTENSIONS = ("m4a", "aac", "mp4", "m4v", "mov", "mkv", "webm", "avi")
FAR = 10.0  # seconds: a seek further ahead than this asks the container
PREROLL = 1.0  # seconds decoded and dropped before a sought position


class AvAudio:
    """The first audio stream of a file, as mono-or-more float32 frames (see the module docstring)."""

    def __init__(self, source: str | os.PathLike | Any, error: type[Exception]) -> None:
        import av

        self._error = error
        try:
            self._container = av.open(source if not isinstance(source, os.PathLike) else os.fspath(source))
        except (av.FFmpegError, OSError, ValueError) as exc:
            raise error(f"cannot decode audio: {scrub_reprs(str(exc))}") from exc
        streams = self._container.streams.audio
        if not streams:
            self._container.close()
            raise error("the file holds no audio stream")
        self._stream = streams[0]
        ctx = self._stream.codec_context
        self.samplerate = int(self._stream.rate or ctx.sample_rate or 0)
        self.channels = int(ctx.channels or 0)
        if self._stream.duration is not None:
            seconds = float(self._stream.duration * self._stream.time_base)
        else:
            seconds = (self._container.duration or 0) / 1e6
        self.frames = int(round(seconds * self.samplerate))
        self._restart(0)

    # --- the SoundFile subset ----------------------------------------------------------------
    def __enter__(self) -> AvAudio:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._container.close()

    def seek(self, frame: int) -> int:
        if frame < self._pos or frame - self._pos > FAR * self.samplerate:
            self._restart(frame)
        self._skip(frame - self._pos)
        return self._pos

    def read(self, frames: int, dtype: str = "float32", always_2d: bool = True) -> np.ndarray:
        out = self._take(frames)
        return out if always_2d else out[:, 0]

    # --- decoding ---------------------------------------------------------------------------
    def _restart(self, frame: int) -> None:
        import av

        self._pending: list[np.ndarray] = []
        self._buffered = 0
        if frame > 0:
            target = max(0.0, frame / self.samplerate - PREROLL)
            try:
                self._container.seek(int(target / self._stream.time_base), stream=self._stream, backward=True)
            except av.FFmpegError as exc:
                raise self._error(f"cannot seek in the audio stream: {scrub_reprs(str(exc))}") from exc
        elif hasattr(self, "_frames"):  # back to the start of a stream already read
            self._container.seek(0, stream=self._stream, backward=True)
        self._frames = self._container.decode(self._stream)
        self._pos = None  # known from the first decoded frame's timestamp
        self._resampler = av.AudioResampler(format="fltp", rate=self.samplerate)
        self._ended = False
        self._fill(1)

    def _fill(self, wanted: int) -> None:
        """Decode until ``wanted`` samples are buffered (or the stream ends)."""
        import av

        while self._buffered < wanted and not self._ended:
            try:
                frame = next(self._frames)
            except StopIteration:
                self._ended = True
                break
            except av.FFmpegError as exc:  # a damaged stream: what decoded so far stands
                self._ended = True
                self._broken = str(exc)
                break
            if self._pos is None:
                start = frame.pts * frame.time_base if frame.pts is not None and frame.time_base else 0
                self._pos = int(round(float(start) * self.samplerate))
            for out in self._resampler.resample(frame):
                samples = out.to_ndarray().astype(np.float32, copy=False)  # [channels, n]
                self._pending.append(samples.T)
                self._buffered += samples.shape[1]
        if self._pos is None:
            self._pos = 0

    def _take(self, n: int) -> np.ndarray:
        self._fill(n)
        if not self._pending:
            return np.zeros((0, max(self.channels, 1)), np.float32)
        data = np.concatenate(self._pending)
        out, rest = data[:n], data[n:]
        self._pending = [rest] if len(rest) else []
        self._buffered = len(rest)
        self._pos += len(out)
        return out

    def _skip(self, n: int) -> None:
        while n > 0:
            got = self._take(min(n, 1 << 16))
            if not len(got):
                return
            n -= len(got)


def scrub_reprs(message: str) -> str:
    """``message`` without Python object reprs (``<_io.BytesIO object at 0x7f...>``), which say
    nothing to a user and show memory addresses: each becomes "the data"."""
    import re

    return re.sub(r"<[\w.]+ object at 0x[0-9a-fA-F]+>", "the data", message)
