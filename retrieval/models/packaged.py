"""Shipped ONNX graphs whose weights are read from the shipped safetensors at load time.

A packaged model folder (``retrieval/models/weights/NAME.graphs/``) holds one graph per tower with
every parameter marked external, and a ``manifest.json`` naming, per tower, the weights file
and key prefix to read them from (:func:`retrieval.models.export.export_packaged` writes it). This
module needs numpy, safetensors and ONNX Runtime only: it is how the light install runs.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from .spec import WEIGHTS_DIR, ModelSpec

log = logging.getLogger(__name__)
EXTERNAL_LOCATION = "xmr-packaged-weights"  # an external initializer's location: supplied at load


def config_sha256(config: dict[str, Any]) -> str:
    """sha256 of a model config: a packaged graph matches the config it was exported from."""
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()


def graphs_dir(name: str) -> Path:
    """Where the packaged graphs of model ``name`` live."""
    return WEIGHTS_DIR / f"{name}.graphs"


def packaged_graphs(spec: ModelSpec) -> Path | None:
    """The packaged graphs folder for ``spec``, or None when it has none that fit: a model
    without shipped graphs, weights other than the shipped ones (a checkpoint), or a config
    that changed since the graphs were made."""
    if spec.kind != "xmr" or spec.weights_file is None or spec.weights_file.parent != WEIGHTS_DIR:
        return None
    folder = graphs_dir(spec.name)
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    if manifest.get("config_sha256") != config_sha256(spec.config):
        log.warning("the packaged graphs of %s were made for another config: exporting anew", spec.name)
        return None
    towers = manifest.get("towers", {})
    if set(towers) != set(spec.modalities):
        return None
    for modality, tower in towers.items():  # each graph reads its own file: it must be the spec's
        weights = spec.text_weights_file if modality == "text" else spec.weights_file
        if weights is None or Path(weights) != WEIGHTS_DIR / tower["weights"]:
            return None
    return folder


def read_manifest(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "manifest.json").read_text())


def external_initializers(folder: Path, tower: dict[str, Any]) -> dict[str, np.ndarray]:
    """The arrays a packaged tower's graph leaves out (the manifest lists them), by initializer
    name, as contiguous float32, read from its weights file."""
    from safetensors import safe_open

    out: dict[str, np.ndarray] = {}
    with safe_open(str(WEIGHTS_DIR / tower["weights"]), framework="numpy") as f:
        keys = set(f.keys())
        for name, key in tower["initializers"].items():
            if key not in keys:
                raise ValueError(f"{folder / tower['graph']}: {WEIGHTS_DIR / tower['weights']} lacks {key!r}")
            out[name] = np.ascontiguousarray(f.get_tensor(key), dtype=np.float32)
    return out
