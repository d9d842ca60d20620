"""Where someone speaks: Silero VAD (v6, the ONNX file faster-whisper ships) run as a stream.

Audio is fed a block at a time, at any sample rate (resampled to 16 kHz as one stream); the
model sees 32 ms windows, each with the last 4 ms of the one before, and its recurrent state is
carried from batch to batch, so a file of any length costs the memory of one batch
(``BATCH`` windows, about 30 s) and gives the probabilities faster-whisper's
``get_speech_timestamps`` computes for the whole file at once. The speech regions come from
those probabilities by the same rule (its default options: threshold 0.5, 2 s of silence ends
a region, 0.4 s of padding each side).

A :class:`SpeechFinder` is picklable (decode workers receive it): the ONNX session is made in
the process that first feeds it.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

RATE = 16_000
WINDOW = 512  # samples the model judges at a time (32 ms)
CONTEXT = 64  # samples of the window before, given with each window
BATCH = 1024  # windows a model call takes (33 s of audio)


class VadUnavailable(RuntimeError):
    """faster-whisper (which ships the model) or ONNX Runtime is not installed."""


def model_path() -> Path:
    """The Silero VAD ONNX file inside the faster-whisper package (found without importing it).

    Raises:
        VadUnavailable: faster-whisper is not installed, or lacks the file.
    """
    spec = importlib.util.find_spec("faster_whisper")
    if spec is None or not spec.submodule_search_locations:
        raise VadUnavailable("finding speech needs faster-whisper: pip install faster-whisper")
    path = Path(next(iter(spec.submodule_search_locations))) / "assets" / "silero_vad_v6.onnx"
    if not path.is_file():
        raise VadUnavailable(f"no voice-activity model at {path}")
    return path


@dataclass
class SpeechFinder:
    """Finds the stretches of speech in audio fed to it (see the module docstring)."""

    threshold: float = 0.5
    min_silence_seconds: float = 2.0
    pad_seconds: float = 0.4
    _session: Any = field(default=None, repr=False, compare=False)

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "_session"} | {"_session": None}

    def session(self) -> Any:
        if self._session is None:
            import onnxruntime

            opts = onnxruntime.SessionOptions()
            opts.inter_op_num_threads = opts.intra_op_num_threads = 1
            opts.enable_cpu_mem_arena = False
            opts.log_severity_level = 4
            self._session = onnxruntime.InferenceSession(
                str(model_path()), providers=["CPUExecutionProvider"], sess_options=opts
            )
        return self._session

    def listen(self, rate: int = RATE) -> Listening:
        """A stream to :meth:`Listening.feed` with audio at ``rate``."""
        return Listening(self, rate)

    def regions(self, samples: np.ndarray, rate: int = RATE) -> list[tuple[float, float]]:
        """The speech in ``samples`` (mono), as ``(start, end)`` seconds."""
        stream = self.listen(rate)
        stream.feed(samples)
        return stream.finish()


class Listening:
    """One stream of audio being judged: :meth:`feed` blocks in order, then :meth:`finish`."""

    def __init__(self, finder: SpeechFinder, rate: int) -> None:
        self.finder = finder
        self.resampler = None
        if rate != RATE:
            import soxr

            self.resampler = soxr.ResampleStream(rate, RATE, 1, dtype="float32", quality="HQ")
        self.held = np.zeros(0, np.float32)  # samples not yet a whole window
        self.context = np.zeros(CONTEXT, np.float32)
        self.state = np.zeros((2, 1, 1, 128), np.float32)
        self.probabilities: list[np.ndarray] = []
        self.samples = 0  # at 16 kHz, fed so far

    def feed(self, samples: np.ndarray, last: bool = False) -> None:
        """More audio, mono float32 at the stream's rate."""
        samples = np.asarray(samples, np.float32).reshape(-1)
        if self.resampler is not None:
            samples = self.resampler.resample_chunk(samples, last=last)
        self.samples += len(samples)
        held = np.concatenate([self.held, samples]) if len(self.held) else samples
        whole = len(held) // WINDOW * WINDOW
        self.held = held[whole:].copy()
        for a in range(0, whole, BATCH * WINDOW):
            self._judge(held[a : min(a + BATCH * WINDOW, whole)])

    def _judge(self, block: np.ndarray) -> None:
        windows = block.reshape(-1, WINDOW)
        before = np.concatenate([self.context[None], windows[:-1, -CONTEXT:]])
        self.context = windows[-1, -CONTEXT:].copy()
        out, h, c = self.finder.session().run(
            None, {"input": np.concatenate([before, windows], 1), "h": self.state[0], "c": self.state[1]}
        )
        self.state = np.stack([h, c])
        self.probabilities.append(np.asarray(out, np.float32).reshape(-1))

    def finish(self) -> list[tuple[float, float]]:
        """The speech regions of everything fed, in seconds."""
        if self.resampler is not None:
            self.feed(np.zeros(0, np.float32), last=True)
        if len(self.held):
            self._judge(np.pad(self.held, (0, WINDOW - len(self.held))))
            self.held = np.zeros(0, np.float32)
        probs = np.concatenate(self.probabilities) if self.probabilities else np.zeros(0, np.float32)
        found = speech_regions(probs, self.samples, self.finder)
        return [(a / RATE, b / RATE) for a, b in found]


def speech_regions(probs: np.ndarray, total: int, finder: SpeechFinder) -> list[tuple[int, int]]:
    """Regions ``(start, end)`` in samples from the windows' speech probabilities: a region
    starts at a window at or above the threshold and ends where the probability stayed below
    the threshold less 0.15 for ``min_silence_seconds``; then each is padded, halving the gap
    when two would overlap (faster-whisper's rule, without a longest region)."""
    on, off = finder.threshold, max(finder.threshold - 0.15, 0.01)
    silence, pad = finder.min_silence_seconds * RATE, int(finder.pad_seconds * RATE)
    found: list[list[int]] = []
    start, quiet_from, speaking = 0, 0, False
    for i, p in enumerate(probs.tolist()):
        at = WINDOW * i
        if p >= on:
            quiet_from = 0
            if not speaking:
                speaking, start = True, at
            continue
        if p < off and speaking:
            quiet_from = quiet_from or at
            if at - quiet_from >= silence:
                if quiet_from > start:
                    found.append([start, quiet_from])
                speaking, quiet_from = False, 0
    if speaking and total > start:
        found.append([start, total])
    for i, region in enumerate(found):
        if i == 0:
            region[0] = max(0, region[0] - pad)
        if i + 1 < len(found):
            gap = found[i + 1][0] - region[1]
            if gap < 2 * pad:
                region[1] += gap // 2
                found[i + 1][0] = max(0, found[i + 1][0] - gap // 2)
            else:
                region[1] = min(total, region[1] + pad)
                found[i + 1][0] = max(0, found[i + 1][0] - pad)
        else:
            region[1] = min(total, region[1] + pad)
    return [(a, b) for a, b in found]
