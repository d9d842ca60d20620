"""Export a torch model's towers to ONNX graphs, once, for the torch-free runtime."""

from __future__ import annotations

import json
import logging
import os
import tempfile
import warnings
from pathlib import Path

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
    model = encoder.model.to("cpu").eval()
    for modality in encoder.modalities:
        names, axes = _dynamic_axes(modality)
        log.info("exporting the %s tower of %s to ONNX", modality, encoder.name)
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the legacy exporter's deprecation and tracer notes
            torch.onnx.export(
                model.towers[modality],
                _example_inputs(encoder, modality),
                str(tmp / f"{modality}.onnx"),
                input_names=names,
                output_names=["embedding"],
                dynamic_axes=axes,
                opset_version=OPSET,
                dynamo=False,
            )
    manifest = {
        "name": encoder.name,
        "weights_hash": encoder.weights_hash,
        "modalities": list(encoder.modalities),
        "opset": OPSET,
    }
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2))
    model.to(encoder.device)
    try:
        os.replace(tmp, out_dir)
    except OSError:  # another process exported the same model first: theirs is as good
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir
