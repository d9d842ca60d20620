"""Run exported towers on ONNX Runtime: the torch-free path for queries and inference."""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from .audio import AudioPreprocessor
from .encoder import Encoder, TextTokenizer, cache_dir
from .image import ImagePreprocessor
from .spec import ModelSpec

log = logging.getLogger(__name__)


def export_dir(spec: ModelSpec) -> Path:
    """Cache folder of a model's ONNX export, keyed by its weights hash."""
    safe = spec.name.replace("/", "_").replace(":", "_").replace("@", "_")[:80]
    return Path(cache_dir()) / "onnx" / f"{safe}-{spec.weights_hash()[:16]}"


class OnnxEncoder(Encoder):
    """The same interface as the torch model, on ONNX Runtime, with no torch import."""

    runtime = "onnx"

    def __init__(self, spec: ModelSpec, folder: str | os.PathLike | None = None, threads: int | None = None) -> None:

        if spec.kind != "xmr":
            raise ValueError(f"the ONNX runtime serves xmr models; {spec.name!r} runs on torch")
        self.spec = spec
        self.folder = Path(folder) if folder else export_dir(spec)
        manifest = json.loads((self.folder / "manifest.json").read_text())
        self.name = spec.name
        # A packaged folder (shipped graphs, weights read from the shipped safetensors) or an
        # export cached by :func:`retrieval.models.export.export_onnx` (graphs holding their weights).
        self._towers: dict[str, dict] = manifest.get("towers", {})
        self.weights_hash = spec.weights_hash() if self._towers else manifest["weights_hash"]
        self.embed_dim = int(spec.config["embed_dim"])
        self.modalities = tuple(self._towers) if self._towers else tuple(manifest["modalities"])
        cfg = spec.config
        self._threads = threads
        self._sessions: dict[str, object] = {}
        self._lock = threading.Lock()  # a server's threads create each session once
        if "text" in self.modalities:
            self.tokenizer = TextTokenizer(str(spec.tokenizer_file), cfg["text_cfg"].get("max_length", 256))
        if "image" in self.modalities:
            self.preprocess_image = ImagePreprocessor(image_size=cfg["image_cfg"]["image_size"])
        if "audio" in self.modalities:
            self.preprocess_audio = AudioPreprocessor.from_config(cfg["audio_cfg"])

    def _options(self, modality: str) -> tuple[Any, list]:
        """Session options for ``modality``'s graph, and the values they point at (which must
        live until the session is created: ONNX Runtime copies them then)."""
        import onnxruntime as ort

        options = ort.SessionOptions()
        # Idle intra-op threads sleep instead of spinning: while indexing, decode workers need
        # those cores (measured: end-to-end indexing 4.46 s -> 3.33 s on 2 cores, encoder alone unchanged).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if self._threads:
            options.intra_op_num_threads = self._threads
        if modality in self._towers:
            from .packaged import external_initializers

            weights = external_initializers(self.folder, self._towers[modality])
            values = [ort.OrtValue.ortvalue_from_numpy(v) for v in weights.values()]
            options.add_external_initializers(list(weights), values)
            return options, [weights, values]
        return options, []

    def _session(self, modality: str):
        # Sessions load lazily: a text query never pays for the image or audio graph.
        with self._lock:
            if modality not in self._sessions:
                import onnxruntime as ort

                graph = self._towers[modality]["graph"] if self._towers else f"{modality}.onnx"
                options, keep = self._options(modality)
                self._sessions[modality] = ort.InferenceSession(
                    str(self.folder / graph), options, providers=["CPUExecutionProvider"]
                )
                # ONNX Runtime copied the external initializers into the session (its
                # AddExternalInitializers contract; tests/test_models_light_install.py checks): ours are not kept.
                del keep
        return self._sessions[modality]

    def warm(self, modalities: tuple[str, ...] | list[str]) -> None:
        """Create the sessions of ``modalities`` now (each takes ~0.1 s), not on first use."""
        for modality in modalities:
            if modality in self.modalities:
                self._session(modality)

    def _text_forward(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return self._session("text").run(None, {"input_ids": ids, "attention_mask": mask})[0]

    def _image_forward(self, pixels: np.ndarray) -> np.ndarray:
        return self._session("image").run(None, {"pixels": np.ascontiguousarray(pixels, dtype=np.float32)})[0]

    def _audio_forward(self, mels: np.ndarray) -> np.ndarray:
        return self._session("audio").run(None, {"mels": np.ascontiguousarray(mels, dtype=np.float32)})[0]
