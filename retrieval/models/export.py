"""Export a torch model's towers to ONNX graphs, once, for the torch-free runtime."""

from __future__ import annotations

import json
import logging
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from .encoder import Encoder

log = logging.getLogger(__name__)
OPSET = 17


def _example_inputs(encoder: Encoder, modality: str) -> tuple[torch.Tensor, ...]:
    if modality == "text":
        ids = torch.tensor([[101, 2023, 2003, 1037, 3231, 102], [101, 7592, 102, 0, 0, 0]])
        return ids, (ids > 0).long()
    if modality == "image":
        size = encoder.preprocess_image.image_size
        return (torch.zeros(2, 3, size, size),)
    pre = encoder.preprocess_audio
    return (torch.zeros(2, pre.n_mels, pre.frames_per_window),)


def _dynamic_axes(modality: str) -> tuple[list[str], dict[str, dict[int, str]]]:
    if modality == "text":
        names = ["input_ids", "attention_mask"]
        return names, {
            "input_ids": {0: "batch", 1: "tokens"},
            "attention_mask": {0: "batch", 1: "tokens"},
            "embedding": {0: "batch"},
        }
    names = ["pixels"] if modality == "image" else ["mels"]
    return names, {names[0]: {0: "batch"}, "embedding": {0: "batch"}}


def _export_tower(encoder: Encoder, modality: str, path: Path, packaged: bool) -> None:
    names, axes = _dynamic_axes(modality)
    log.info("exporting the %s tower of %s to ONNX", modality, encoder.name)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation and tracer notes
        torch.onnx.export(
            encoder.model.towers[modality],
            _example_inputs(encoder, modality),
            str(path),
            input_names=names,
            output_names=["embedding"],
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,
            # A packaged graph keeps every parameter under its own name, untouched (no Conv+BN
            # fusion, no transposed copies), so each can be read from the shipped safetensors;
            # ONNX Runtime makes the same fusions when it loads the graph.
            do_constant_folding=not packaged,
            training=torch.onnx.TrainingMode.PRESERVE if packaged else torch.onnx.TrainingMode.EVAL,
        )


def export_onnx(encoder: Encoder, out_dir: str | os.PathLike) -> Path:
    """Write ``<modality>.onnx`` for every tower and a ``manifest.json`` into ``out_dir``.

    The folder is written under a temporary name and renamed into place, so a reader never
    sees a half-written export.
    """
    out_dir = Path(out_dir)
    if (out_dir / "manifest.json").is_file():
        return out_dir
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=out_dir.name + ".", dir=out_dir.parent))
    encoder.model.to("cpu").eval()
    for modality in encoder.modalities:
        _export_tower(encoder, modality, tmp / f"{modality}.onnx", packaged=False)
    manifest = {
        "name": encoder.name,
        "weights_hash": encoder.weights_hash,
        "modalities": list(encoder.modalities),
        "opset": OPSET,
    }
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2))
    encoder.model.to(encoder.device)
    try:
        os.replace(tmp, out_dir)
    except OSError:  # another process exported the same model first: theirs is as good
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def export_packaged(encoder: Encoder, out_dir: str | os.PathLike) -> Path:
    """Write a shipped model's graphs without their weights: every initializer that is a
    parameter of the tower is marked external and read at load time from the shipped
    safetensors (:mod:`retrieval.models.packaged`), so shipping adds no second copy of the weights.

    ``manifest.json`` names, per tower, the graph, the weights file and each parameter's key in it, and the
    sha256 of the model config the graphs were made from (a graph is stale when it differs).
    """
    import onnx
    from onnx import numpy_helper

    from .packaged import EXTERNAL_LOCATION, config_sha256

    spec = encoder.spec
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = encoder.model.to("cpu").eval()
    towers = {}
    for modality in encoder.modalities:
        weights, keys = _weights_keys(spec, modality)
        state = {k: v.detach().numpy() for k, v in model.towers[modality].state_dict().items()}
        path = out_dir / f"{modality}.onnx"
        _export_tower(encoder, modality, path, packaged=True)
        graph = onnx.load(str(path))
        external = {}
        for init in graph.graph.initializer:
            value = state.get(init.name)
            if init.name not in keys or value is None or not np.array_equal(numpy_helper.to_array(init), value):
                continue  # a constant of the graph itself: it stays inside
            init.ClearField("raw_data")
            init.ClearField("float_data")
            init.data_location = onnx.TensorProto.EXTERNAL
            del init.external_data[:]
            entry = init.external_data.add()
            entry.key, entry.value = "location", EXTERNAL_LOCATION
            external[init.name] = keys[init.name]
        onnx.save(graph, str(path))
        towers[modality] = {"graph": path.name, "weights": weights.name, "initializers": external}
    manifest = {"model": spec.name, "opset": OPSET, "config_sha256": config_sha256(spec.config), "towers": towers}
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    model.to(encoder.device)
    return out_dir


def _weights_keys(spec, modality: str) -> tuple[Path, dict[str, str]]:  # noqa: ANN001 - a ModelSpec
    """The shipped file a tower's parameters come from, and each parameter's key in it."""
    from safetensors import safe_open

    from .text_weights import tower_name

    weights = spec.text_weights_file if modality == "text" else spec.weights_file
    if weights is None:
        raise ValueError(f"{spec.name}'s {modality} tower has no shipped weights to package graphs for")
    with safe_open(str(weights), framework="numpy") as f:
        stored = list(f.keys())
    if modality == "text":
        return Path(weights), {name: key for key in stored if (name := tower_name(key)) is not None}
    prefix = f"towers.{modality}."
    return Path(weights), {key[len(prefix) :]: key for key in stored if key.startswith(prefix)}
