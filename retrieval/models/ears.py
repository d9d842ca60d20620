"""An audio tower on Whisper's ears (``audio_cfg.arch == "whisper-head"``), torch-free.

Per 5 s window: Whisper tiny.en's encoder states (:mod:`retrieval.models.whisper_audio`),
summarised (their mean and maximum over time) -> a trained MLP head into the text space. With
``audio_cfg.fusion.tower > 0`` the window's vector is ``normalize(w_head * head + w_tower *
tower)``: the head's unit vector fused with the unit vector of the packaged scratch tower the
model's ``towers_from`` names, each reading its own mels of the same window (the front end
stacks them: the tower's bands first, Whisper's 80 after). A clip's vector is the mean of its
windows' (:class:`~retrieval.models.encoder.Encoder`), so the window contract of moments holds.
How the head was trained and the weight chosen: ``benchmarks/backbone_audio.py``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .audio import LOG_FLOOR, AudioPreprocessor
from .encoder import l2_normalize
from .heads import MlpHead
from .spec import WEIGHTS_DIR, file_sha256
from .whisper_audio import N_MELS, WhisperBackbone, front_end

ARCH = "whisper-head"


@dataclass(frozen=True)
class StackedPreprocessor(AudioPreprocessor):
    """Whisper's 80 mel bands of each window under ``tower_mels`` bands for a scratch tower
    (``[W, tower_mels + 80, frames]``); with ``tower_mels == 0``, Whisper's alone."""

    tower_mels: int = 0

    def log_mel(self, windows: np.ndarray) -> np.ndarray:
        spectra = self.power(windows)  # one STFT for both: they differ in bands and floor only
        own = AudioPreprocessor.mels_of(self, *spectra)
        if not self.tower_mels:
            return own
        fields = {k: v for k, v in vars(self).items() if k != "tower_mels"}
        scratch = AudioPreprocessor(**{**fields, "n_mels": self.tower_mels, "floor": LOG_FLOOR})
        return np.concatenate([scratch.mels_of(*spectra), own], axis=1)


class WhisperHead:
    """Whisper's encoder and the trained head of an ``audio_cfg`` (see the module docstring)."""

    def __init__(self, audio_cfg: dict, tower_cfg: dict | None, threads: int | None = None) -> None:
        from safetensors.numpy import load_file

        self.head_file = WEIGHTS_DIR / audio_cfg["head"]
        tensors = load_file(str(self.head_file))
        self.head = MlpHead(tensors)  # [N, 768] window summaries -> unit vectors [N, D]
        fusion = audio_cfg.get("fusion", {"head": 1.0, "tower": 0.0})
        self.fusion = (float(fusion["head"]), float(fusion["tower"]))
        if self.fusion[1] and not tower_cfg:
            raise ValueError("audio_cfg.fusion gives the scratch tower a weight, but no tower_audio_cfg names it")
        self.backbone = WhisperBackbone(threads=threads)
        tower_mels = int(tower_cfg["n_mels"]) if tower_cfg and self.fusion[1] else 0
        self.preprocess = StackedPreprocessor(**vars(front_end(audio_cfg)), tower_mels=tower_mels)

    def fingerprint(self) -> str:
        """sha256 of the head's and the encoder's bytes."""
        digest = hashlib.sha256(file_sha256(self.head_file).encode())
        digest.update(self.backbone.fingerprint.encode())
        return digest.hexdigest()

    def forward(self, mels: np.ndarray, tower: Callable[[np.ndarray], np.ndarray] | None) -> np.ndarray:
        """Stacked mel windows ``[B, tower_mels + 80, F]`` -> ``[B, D]``."""
        split = self.preprocess.tower_mels
        if mels.ndim != 3 or mels.shape[1] != split + N_MELS:
            bands = split + N_MELS
            raise ValueError(f"expected mel windows [B, {bands}, frames] (this model's front end), got {mels.shape}")
        vecs = self.head(self.backbone.summaries(mels[:, split:]))
        w_head, w_tower = self.fusion
        if not split or tower is None:
            return vecs
        return w_head * vecs + w_tower * l2_normalize(tower(np.ascontiguousarray(mels[:, :split])))
