"""An image tower on NanoDet's eyes (``image_cfg.arch == "nanodet-head"``), torch-free.

Per picture: NanoDet's features (:mod:`retrieval.models.nanodet`) -> a trained MLP head into
the text space, and the detector's top COCO classes as words (their text vectors, shipped,
weighted by confidence); the tower's vector is ``normalize(w_head * head + w_det * det)`` of
the two unit vectors (``image_cfg.fusion``). How the head was trained and the weights chosen:
``benchmarks/backbone_image.py``. :class:`PhotoEncoder` also runs an audio tower on Whisper's
encoder (:mod:`retrieval.models.ears`) where ``audio_cfg.arch`` says so; the other towers are
the packaged ones of the model ``towers_from`` names.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from . import ears, nanodet
from .encoder import l2_normalize
from .heads import MlpHead
from .image import ImagePreprocessor
from .onnx_runtime import OnnxEncoder
from .spec import WEIGHTS_DIR, ModelSpec, file_sha256

log = logging.getLogger(__name__)
ARCH = "nanodet-head"


class BackboneMissingError(FileNotFoundError):
    """The NanoDet graph a model needs is not installed (see ``benchmarks/convert_nanodet.py``)."""


@dataclass(frozen=True)
class StretchPreprocessor(ImagePreprocessor):
    """The whole picture stretched to ``image_size`` square (bilinear): a detector needs every
    part of the picture, so nothing is cropped. The model's input is NanoDet's own: BGR 0-255,
    normalised by NanoDet's mean and std, in one pass from the uint8 pixels."""

    image_size: int = nanodet.SIZE

    def crop(self, img: Image.Image) -> np.ndarray:
        resized = img.convert("RGB").resize((self.image_size, self.image_size), Image.BILINEAR)
        return np.asarray(resized, dtype=np.uint8)

    def normalize(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 ``[B, S, S, 3]`` RGB -> NanoDet's input, float32 ``[B, 3, S, S]`` BGR."""
        return nanodet.normalize(pixels)


class PhotoEncoder(OnnxEncoder):
    """A model with towers on pretrained backbones (NanoDet's eyes, Whisper's ears) and the
    packaged towers of ``towers_from`` for the rest, on ONNX Runtime and CTranslate2 (the
    registry checks the shipped files' hashes before it builds one)."""

    def __init__(self, spec: ModelSpec, folder: str | Path, threads: int | None = None) -> None:
        super().__init__(spec, folder, threads)
        digest = hashlib.sha256(spec.weights_hash().encode())
        self.ears: ears.WhisperHead | None = None
        self.backbone: nanodet.NanoDetFeatures | None = None
        audio_cfg = spec.config.get("audio_cfg", {})
        if audio_cfg.get("arch") == ears.ARCH:  # Whisper's encoder + a head (retrieval.models.ears)
            tower_cfg = spec.config.get("tower_audio_cfg")
            self.ears = ears.WhisperHead(audio_cfg, tower_cfg, threads=threads)
            self.preprocess_audio = self.ears.preprocess
            digest.update(self.ears.fingerprint().encode())
        if spec.config.get("image_cfg", {}).get("arch") == ARCH:
            self._init_image(spec, threads)
            digest.update(file_sha256(WEIGHTS_DIR / spec.config["image_cfg"]["head"]).encode())
            digest.update(file_sha256(WEIGHTS_DIR / spec.config["image_cfg"]["graph"]).encode())
        self.weights_hash = digest.hexdigest()

    def _init_image(self, spec: ModelSpec, threads: int | None) -> None:
        cfg = spec.config["image_cfg"]
        graph = WEIGHTS_DIR / cfg["graph"]
        if not graph.is_file():
            raise BackboneMissingError(
                f"{spec.name} needs the NanoDet graph {graph}, which is not installed: make it with "
                "benchmarks/convert_nanodet.py and copy nanodet-features.onnx there"
            )
        head_file = WEIGHTS_DIR / cfg["head"]
        record = head_file.with_suffix(".json")
        trained_at = json.loads(record.read_text()).get("image_size") if record.is_file() else None
        if trained_at is not None and int(trained_at) != int(cfg["image_size"]):
            raise ValueError(
                f"{spec.name}: its head {head_file.name} was trained on NanoDet's features of {trained_at} px "
                f"pictures, but image_cfg.image_size is {cfg['image_size']}: make them agree"
            )
        from safetensors.numpy import load_file

        tensors = load_file(str(head_file))
        self._head = MlpHead(tensors)
        self._classes = tensors["classes"]
        self._fusion = (float(cfg["fusion"]["head"]), float(cfg["fusion"]["det"]))
        self._top = int(cfg.get("top_classes", 3))
        # a batch's pictures side by side, one intra-op thread each, as many as there are cores (run_many)
        self._pictures_at_once = threads or len(os.sched_getaffinity(0))
        self.backbone = nanodet.NanoDetFeatures(graph, threads=threads, size=int(cfg["image_size"]))
        self.preprocess_image = StretchPreprocessor(image_size=self.backbone.size)

    def head(self, pooled: np.ndarray) -> np.ndarray:
        """The trained MLP on ``[N, 1232]`` pooled features: unit vectors ``[N, D]``."""
        return self._head(pooled)

    def detections(self, pooled: np.ndarray) -> np.ndarray:
        """The top classes' text vectors weighted by their confidence: unit vectors ``[N, D]``."""
        scores = pooled[:, nanodet.CLASS_SLICE]
        cut = -np.sort(-scores, axis=1)[:, self._top - 1 : self._top]
        return l2_normalize(np.where(scores >= cut, scores, 0.0) @ self._classes)

    def _image_forward(self, pixels: np.ndarray) -> np.ndarray:
        if self.backbone is None:  # the packaged scratch tower of ``towers_from``
            return super()._image_forward(pixels)
        outputs = self.backbone.run_many(list(pixels), self._pictures_at_once)
        pooled = np.stack([nanodet.pool(out)[0] for out in outputs])
        w_head, w_det = self._fusion
        return w_head * self.head(pooled) + w_det * self.detections(pooled)

    def _audio_forward(self, mels: np.ndarray) -> np.ndarray:
        if self.ears is None:
            return super()._audio_forward(mels)
        return self.ears.forward(mels, super()._audio_forward)

    def warm(self, modalities: tuple[str, ...] | list[str]) -> None:
        own = {"image": self.backbone is not None, "audio": self.ears is not None}
        super().warm([m for m in modalities if not own.get(m)])
        if "image" in modalities and self.backbone is not None:
            self.backbone.session()
            if self._pictures_at_once > 1:
                self.backbone.session(single=True)  # run_many's
        if "audio" in modalities and self.ears is not None:
            self.ears.backbone.model()
            if self.ears.preprocess.tower_mels:
                super().warm(["audio"])
