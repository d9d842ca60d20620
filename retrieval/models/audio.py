"""Audio front-end: decode, down-mix, resample and log-mel, with numpy only (no torch).

The pipeline is deterministic: a file always yields the same windows and so the same vector.
Long audio is cut into fixed windows (at most ``max_windows`` of them, spread evenly over the
file and read by seeking, so a two-hour file is never loaded whole); short audio is padded.
"""

from __future__ import annotations

import io
import logging
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Union

import numpy as np

from .av_audio import AV_EXTENSIONS, AvAudio, scrub_reprs

log = logging.getLogger(__name__)

AudioSource = Union[str, os.PathLike, bytes, "tuple[np.ndarray, int]"]


class AudioDecodeError(ValueError):
    """Raised when an audio file cannot be decoded into samples."""


def hz_to_mel(freq: np.ndarray | float) -> np.ndarray:
    """Slaney-style mel scale (linear below 1 kHz, logarithmic above), as in librosa."""
    freq = np.asarray(freq, dtype=np.float64)
    f_sp = 200.0 / 3
    mels = freq / f_sp
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = math.log(6.4) / 27.0
    return np.where(freq >= min_log_hz, min_log_mel + np.log(np.maximum(freq, 1e-10) / min_log_hz) / logstep, mels)


def mel_to_hz(mels: np.ndarray | float) -> np.ndarray:
    """Inverse of :func:`hz_to_mel`."""
    mels = np.asarray(mels, dtype=np.float64)
    f_sp = 200.0 / 3
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = math.log(6.4) / 27.0
    return np.where(mels >= min_log_mel, min_log_hz * np.exp(logstep * (mels - min_log_mel)), f_sp * mels)


@lru_cache(maxsize=4)
def _hann(n: int) -> np.ndarray:
    return np.hanning(n + 1)[:-1].astype(np.float32)  # periodic Hann


@lru_cache(maxsize=16)
def mel_filterbank(
    sample_rate: int, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: float | None = None
) -> np.ndarray:
    """Triangular, Slaney-normalised mel filters, shape ``[n_mels, n_fft // 2 + 1]`` (float32)."""
    fmax = sample_rate / 2 if fmax is None else fmax
    fft_freqs = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    mel_points = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    lower, centre, upper = mel_points[:-2, None], mel_points[1:-1, None], mel_points[2:, None]
    rising = (fft_freqs[None, :] - lower) / (centre - lower)
    falling = (upper - fft_freqs[None, :]) / (upper - centre)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights *= 2.0 / (upper - lower)  # equal area per filter (Slaney)
    weights = weights.astype(np.float32)
    weights.setflags(write=False)
    return weights


def resample(wave: np.ndarray, rate: int, target_rate: int) -> np.ndarray:
    """Band-limited (anti-aliased) resampling with soxr's high-quality filter."""
    if rate == target_rate or wave.size == 0:
        return wave.astype(np.float32, copy=False)
    import soxr

    return soxr.resample(wave.astype(np.float32, copy=False), rate, target_rate, quality="HQ").astype(np.float32)


def to_mono(wave: np.ndarray) -> np.ndarray:
    """Average the channels of a ``[frames, channels]`` array; a 1-D array is returned as is."""
    wave = np.asarray(wave, dtype=np.float32)
    return wave.mean(axis=1) if wave.ndim == 2 else wave


@dataclass(frozen=True)
class AudioInfo:
    """What the header of an audio file says."""

    sample_rate: int
    frames: int
    channels: int

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0


def _open(source: str | os.PathLike | bytes):
    import soundfile as sf

    if not isinstance(source, bytes) and os.fspath(source).rsplit(".", 1)[-1].lower() in AV_EXTENSIONS:
        return AvAudio(source, AudioDecodeError)  # AAC: FFmpeg through PyAV
    try:
        return sf.SoundFile(io.BytesIO(source) if isinstance(source, bytes) else os.fspath(source))
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        if not isinstance(source, bytes) and not os.access(source, os.R_OK):
            # libsndfile says "System error." for a file it may not read: say what it is
            if not os.path.lexists(source):
                raise FileNotFoundError(source) from None
            raise PermissionError(f"permission denied: {os.fspath(source)}") from None
        if isinstance(source, bytes):  # an upload has no name to tell AAC by: FFmpeg tries it
            try:
                return AvAudio(io.BytesIO(source), AudioDecodeError)
            except AudioDecodeError:
                pass
        raise AudioDecodeError(f"cannot decode audio: {_open_failure(source, exc)}") from exc


# libsndfile's words for a file whose header it does not recognise (an MP3 it cannot sync to
# reports a missing file, though the file is there).
_UNRECOGNISED = ("Format not recognised", "File does not exist or is not a regular file")


def _open_failure(source: str | os.PathLike | bytes, exc: Exception) -> str:
    """Why libsndfile could not open ``source``, in words a user can act on: what the file is
    not (by its extension), never a wrong "does not exist" nor a Python object's repr."""
    reason = str(getattr(exc, "error_string", "") or exc).strip()
    if reason.startswith(_UNRECOGNISED):
        if isinstance(source, bytes):
            return "not audio in a format libsndfile or FFmpeg knows (unrecognised or damaged header)"
        if os.path.isfile(source):
            ext = os.fspath(source).rsplit(".", 1)[-1].upper() if "." in os.path.basename(source) else ""
            if ext:
                article = "an" if ext[0] in "AEFHILMNORSX" else "a"  # said as letters: an MP3, a WAV
                return f"not {article} {ext} file libsndfile can read (unrecognised or damaged header)"
            return "not audio in a format libsndfile knows (unrecognised or damaged header)"
    return scrub_reprs(reason)


def audio_info(source: str | os.PathLike | bytes) -> AudioInfo:
    """Read an audio file's header (rate, length, channels) without decoding the samples."""
    with _open(source) as f:
        return AudioInfo(sample_rate=int(f.samplerate), frames=int(f.frames), channels=int(f.channels))


LOG_FLOOR = 1e-6  # the scratch towers' floor on a band's power, before the log
MAX_CHANNELS = 64
MAX_RATE = 768_000
MAX_WINDOW_BYTES = 256 << 20  # one window of float32 samples, all channels, before the down-mix


def check_header(rate: int, channels: int, window_seconds: float) -> None:
    """Refuse a header whose numbers would make one window absurdly large (a damaged or hostile
    file), before any sample is read.

    Raises:
        AudioDecodeError: a rate or channel count out of range, or a window past 256 MiB.
    """
    if rate <= 0:
        raise AudioDecodeError("audio header gives a sample rate of 0")
    if rate > MAX_RATE:
        raise AudioDecodeError(
            f"audio header gives a sample rate of {rate} Hz (at most {MAX_RATE} is read): damaged header?"
        )
    if channels <= 0 or channels > MAX_CHANNELS:
        raise AudioDecodeError(
            f"audio header gives {channels} channels (1 to {MAX_CHANNELS} are read): damaged header?"
        )
    if math.ceil(window_seconds * rate) * channels * 4 > MAX_WINDOW_BYTES:
        raise AudioDecodeError(
            f"audio header gives {channels} channels at {rate} Hz: one {window_seconds:g} s window would "
            f"take more than {MAX_WINDOW_BYTES >> 20} MiB"
        )


@dataclass(frozen=True)
class AudioPreprocessor:
    """Turns audio into log-mel windows ``[W, n_mels, frames]`` for an audio tower.

    Picklable and free of torch, so decode workers can run it. Call it with a path, the
    bytes of a file, or a ``(waveform, sample_rate)`` pair.
    """

    sample_rate: int = 16000
    n_fft: int = 400
    hop_length: int = 160
    n_mels: int = 64
    window_seconds: float = 5.0
    max_windows: int = 16
    fmin: float = 0.0
    fmax: float | None = None
    floor: float = LOG_FLOOR  # added to every band's power before the log (Whisper's front end: 1e-10)

    @classmethod
    def from_config(cls, audio_cfg: dict) -> "AudioPreprocessor":
        """The front-end a model config's ``audio_cfg`` section describes."""
        keys = ("sample_rate", "n_fft", "hop_length", "n_mels", "window_seconds", "max_windows", "fmin", "fmax")
        keys += ("floor",)
        return cls(**{k: audio_cfg[k] for k in keys if k in audio_cfg})

    @property
    def window_samples(self) -> int:
        return int(round(self.window_seconds * self.sample_rate))

    @property
    def frames_per_window(self) -> int:
        return self.window_samples // self.hop_length + 1

    def __call__(self, source: AudioSource) -> np.ndarray:
        return self.log_mel(self.load_windows(source))

    def process(self, source: AudioSource) -> tuple[np.ndarray, dict]:
        """Log-mel windows and what the indexer stores of the audio (duration, sample rate)."""
        if isinstance(source, tuple):
            wave, rate = source
            return self(source), {"duration": len(wave) / rate, "sample_rate": int(rate)}
        windows, rate, frames = self._read_windows(source)
        return self.log_mel(windows), {"duration": frames / rate, "sample_rate": rate}

    def load_windows(self, source: AudioSource) -> np.ndarray:
        """Decode ``source`` into ``[W, window_samples]`` float32 mono windows at the model rate."""
        if isinstance(source, tuple):
            wave, rate = source
            return self.split_windows(resample(to_mono(np.asarray(wave)), int(rate), self.sample_rate))
        return self._read_windows(source)[0]

    def _read_windows(self, source: str | os.PathLike | bytes) -> tuple[np.ndarray, int, int]:
        """Windows of a file, its native rate, and its length in frames: the header's, or where
        the stream really ends when it ends sooner than the header promises (a truncated MP3
        whose Xing header counts the whole file): what is there is decoded, with a warning."""
        with _open(source) as f:
            rate, frames = int(f.samplerate), int(f.frames)
            check_header(rate, int(f.channels), self.window_seconds)
            native_window = int(math.ceil(self.window_seconds * rate))
            windows: list[np.ndarray] = []
            end = 0
            for start in self._window_starts(frames, native_window):
                try:
                    f.seek(start)
                    chunk = f.read(native_window, dtype="float32", always_2d=True)
                except Exception as exc:  # libsndfile raises several types for broken streams
                    if not windows:
                        reason = scrub_reprs(str(exc))
                        raise AudioDecodeError(f"cannot decode audio at frame {start}: {reason}") from exc
                    chunk, broken = np.zeros((0, 1), np.float32), str(exc)
                else:
                    broken = ""
                if chunk.shape[0] == 0 and start > 0:
                    log.warning(
                        "%s: the audio stream ends near %.1f s, before the %.1f s its header "
                        "promises%s; using what is there",
                        source if not isinstance(source, bytes) else "audio",
                        end / rate,
                        frames / rate,
                        f" ({broken})" if broken else "",
                    )
                    frames = end
                    break
                windows.append(self.fit(resample(to_mono(chunk), rate, self.sample_rate)))
                end = start + chunk.shape[0]
        if not windows or frames == 0:
            raise AudioDecodeError("audio has no samples")
        return np.stack(windows), rate, frames

    def segment_windows(
        self, source: str | os.PathLike, hop_seconds: float, block_seconds: float = 60.0
    ) -> Iterator[tuple[float, float, np.ndarray]]:
        """Every window of a file at ``hop_seconds``, in order, as ``(start, end, samples)``: the
        times in seconds (``end`` is the file's end for the last, padded window) and the window's
        samples at the model rate. The moments of a long recording.

        The file is read once, front to back, in blocks of ``block_seconds``, resampled as one
        stream (no seams at block edges), so memory stays at a block and a window whatever the
        file's length. The last window is padded with silence. A stream that ends before its
        header says ends the segments there (as :meth:`process` does).
        """
        hop = int(round(hop_seconds * self.sample_rate))
        if hop <= 0:
            raise ValueError(f"hop of {hop_seconds} s is not positive")
        n = self.window_samples
        with _open(source) as f:
            rate = int(f.samplerate)
            check_header(rate, int(f.channels), self.window_seconds)
            stream = None
            if rate != self.sample_rate:
                import soxr

                stream = soxr.ResampleStream(rate, self.sample_rate, 1, dtype="float32", quality="HQ")
            buffer = np.zeros(0, np.float32)
            start = covered = 0  # sample indexes (model rate): buffer[0], and the end of the last window
            block = max(1, int(block_seconds * rate))
            ended = False
            read = 0  # native frames read so far
            while not ended:
                try:
                    chunk = f.read(block, dtype="float32", always_2d=True)
                except Exception as exc:  # libsndfile raises several types for broken streams
                    chunk = self._salvage(source, read, block, rate)
                    log.warning(
                        "%s: the audio stream breaks off near %.1f s (%s); its segments end there",
                        source,
                        (read + chunk.shape[0]) / rate,
                        exc,
                    )
                    chunk, ended = chunk, True
                else:
                    ended = chunk.shape[0] < block
                read += chunk.shape[0]
                mono = to_mono(chunk)
                if stream is not None:
                    mono = stream.resample_chunk(mono, last=ended)
                buffer = np.concatenate([buffer, mono.astype(np.float32, copy=False)])
                while True:
                    if buffer.shape[0] >= n:
                        yield start / self.sample_rate, (start + n) / self.sample_rate, buffer[:n].copy()
                        covered = start + n
                        buffer, start = buffer[hop:], start + hop
                        continue
                    # The tail, padded with silence: only when it holds samples no window held.
                    if ended and buffer.shape[0] and start + buffer.shape[0] > covered:
                        end = start + buffer.shape[0]
                        yield start / self.sample_rate, end / self.sample_rate, self.fit(buffer)
                    break

    @staticmethod
    def _salvage(source: str | os.PathLike, position: int, block: int, rate: int) -> np.ndarray:
        """What decodes of a block that failed to read whole: the file opened anew (a decoder
        that lost sync stays broken) and read a second at a time from ``position`` until the
        stream breaks again."""
        parts: list[np.ndarray] = []
        try:
            with _open(source) as f:
                f.seek(position)
                for _ in range(max(1, block // rate)):
                    part = f.read(rate, dtype="float32", always_2d=True)
                    if not len(part):
                        break
                    parts.append(part)
        except Exception:  # noqa: BLE001 - the break itself: keep what came before it
            pass
        return np.concatenate(parts) if parts else np.zeros((0, 1), np.float32)

    def _window_starts(self, frames: int, window: int) -> list[int]:
        count = max(1, math.ceil(frames / window))
        if count <= self.max_windows:
            return [i * window for i in range(count)]
        # Evenly spaced windows over the whole file, deterministic.
        last = frames - window
        return [int(round(i * last / (self.max_windows - 1))) for i in range(self.max_windows)]

    def fit(self, wave: np.ndarray) -> np.ndarray:
        """One window of samples: ``wave`` cut to a window, or padded with silence to one."""
        n = self.window_samples
        if wave.shape[0] >= n:
            return wave[:n]
        return np.pad(wave, (0, n - wave.shape[0]))

    def split_windows(self, wave: np.ndarray) -> np.ndarray:
        """Cut a mono waveform at the model rate into padded windows (evenly chosen if many)."""
        if wave.size == 0:
            raise AudioDecodeError("audio has no samples")
        starts = self._window_starts(wave.shape[0], self.window_samples)
        return np.stack([self.fit(wave[s : s + self.window_samples]) for s in starts])

    def log_mel(self, windows: np.ndarray) -> np.ndarray:
        """Log-mel spectrogram of each window: ``[W, samples] -> [W, n_mels, frames]`` float32.

        Frames that lie wholly in a window's trailing zero padding are not transformed: their
        power is exactly zero, so they get ``log(floor)`` directly (a short clip costs only its
        own length, not the full window's)."""
        return self.mels_of(*self.power(windows))

    def power(self, windows: np.ndarray) -> tuple[np.ndarray | None, np.ndarray, int]:
        """The short-time power spectra of ``[W, samples]`` windows, up to the last frame that
        touches a sample in any window (``[W, most, n_fft // 2 + 1]``, None if all are silent),
        each window's count of such frames, and the frames of a whole window: what
        :meth:`mels_of` takes (front ends of one STFT share it)."""
        windows = np.asarray(windows, dtype=np.float32)
        if windows.ndim == 1:
            windows = windows[None]
        pad = self.n_fft // 2
        n_frames = 1 + windows.shape[1] // self.hop_length  # frames of the centre-padded window
        nonzero = windows != 0
        valid = np.where(nonzero.any(axis=1), windows.shape[1] - np.argmax(nonzero[:, ::-1], axis=1), 0)
        active = np.minimum(n_frames, -(-(pad + valid) // self.hop_length))  # frames touching a sample, per window
        most = int(active.max()) if len(active) else 0
        if not most:
            return None, active, n_frames
        padded = np.pad(windows, ((0, 0), (pad, pad)), mode="constant")
        idx = np.arange(self.n_fft)[None, :] + self.hop_length * np.arange(most)[:, None]
        spec = np.fft.rfft(padded[:, idx] * _hann(self.n_fft), axis=-1)
        return spec.real**2 + spec.imag**2, active, n_frames

    def mels_of(self, power: np.ndarray | None, active: np.ndarray, n_frames: int) -> np.ndarray:
        """:meth:`power`'s spectra through this front end's mel bands and floor, logged:
        ``[W, n_mels, n_frames]`` float32."""
        silent = np.log(np.float32(self.floor))
        out = np.full((len(active), n_frames, self.n_mels), silent, dtype=np.float32)
        if power is not None:
            most = power.shape[1]
            fbank = mel_filterbank(self.sample_rate, self.n_fft, self.n_mels, self.fmin, self.fmax).T
            out[:, :most] = np.log(power @ fbank + self.floor)
            for w in np.flatnonzero(active < most):  # frames past a window's last sample stay log(floor)
                out[w, active[w] :] = silent
        return out.transpose(0, 2, 1).copy()
