"""open_clip models behind the Encoder interface, with an optional bound audio tower."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import torch

from .audio import AudioPreprocessor
from .encoder import Encoder
from .image import ImagePreprocessor
from .spec import OPENCLIP_CONFIG_DIR, ModelSpec
from .towers import build_tower

log = logging.getLogger(__name__)


class PretrainedWeightsError(RuntimeError):
    """Raised when an open_clip model's pretrained weights cannot be found offline."""


def _register_own_configs() -> None:
    import open_clip

    for path in OPENCLIP_CONFIG_DIR.glob("*.json"):
        if path.stem not in open_clip.list_models():
            open_clip.add_model_config(path)


def _load_openclip(spec: ModelSpec, device: torch.device):
    import open_clip

    _register_own_configs()
    arch, pretrained = spec.openclip_arch, spec.openclip_pretrained
    if arch not in open_clip.list_models():
        raise ValueError(f"open_clip has no architecture {arch!r}; see `xmr models --openclip`")
    if pretrained and os.path.sep in pretrained and not Path(pretrained).is_file():
        raise FileNotFoundError(f"weights file for {spec.name} not found: {pretrained}")
    if pretrained is None:
        torch.manual_seed(int(spec.config.get("seed", 0)))
    try:
        model = open_clip.create_model(arch, pretrained=pretrained, device=device)
    except Exception as exc:  # open_clip raises RuntimeError/OSError/HF errors when offline
        if pretrained is None or os.path.isfile(pretrained):
            raise
        cache = os.environ.get("HF_HUB_CACHE") or os.path.join(
            os.environ.get("HF_HOME", os.path.expanduser("~/.cache/huggingface")), "hub"
        )
        raise PretrainedWeightsError(
            f"cannot load pretrained weights {pretrained!r} for open_clip model {arch!r}: not in the Hugging Face "
            f"cache ({cache}) and the hub cannot be reached ({type(exc).__name__}). Download the weights file on "
            f"a connected machine and name it instead: --model 'openclip:{arch}@/path/to/open_clip_pytorch_model.bin'"
        ) from exc
    return model.eval()


class OpenClipEncoder(Encoder):
    """An open_clip model: image and text towers, plus an audio tower bound by ``xmr train --into``."""

    runtime = "torch"

    def __init__(self, spec: ModelSpec, device: str | None = None) -> None:
        import open_clip

        self.spec = spec
        self.name = spec.name
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = _load_openclip(spec, self.device)
        self.clip_tokenizer = open_clip.get_tokenizer(spec.openclip_arch)
        vis = self.model.visual
        size = vis.image_size[0] if isinstance(vis.image_size, (tuple, list)) else vis.image_size
        mean = tuple(getattr(vis, "image_mean", None) or open_clip.OPENAI_DATASET_MEAN)
        std = tuple(getattr(vis, "image_std", None) or open_clip.OPENAI_DATASET_STD)
        self.preprocess_image = ImagePreprocessor(image_size=int(size), mean=mean, std=std)
        self.embed_dim = int(
            self.model.text_projection.shape[1]
            if hasattr(self.model, "text_projection") and self.model.text_projection is not None
            else spec.config.get("embed_dim")
        )
        self.audio_tower = None
        if spec.audio_checkpoint is not None:
            self._attach_audio(spec.audio_checkpoint)
        self.modalities = ("image", "text") + (("audio",) if self.audio_tower is not None else ())
        self.weights_hash = spec.weights_hash()

    def _attach_audio(self, checkpoint: Path) -> None:
        """Load an audio tower trained with ``xmr train --into`` (a checkpoint folder)."""
        from safetensors.torch import load_file

        folder = Path(checkpoint)
        meta = json.loads((folder / "meta.json").read_text())
        audio_cfg = meta["model_config"]["audio_cfg"]
        tower = build_tower(audio_cfg, self.embed_dim)
        state = {
            k.removeprefix("towers.audio."): v
            for k, v in load_file(str(folder / "weights.safetensors")).items()
            if k.startswith("towers.audio.")
        }
        tower.load_state_dict(state)
        self.audio_tower = tower.to(self.device).eval()
        self.preprocess_audio = AudioPreprocessor.from_config(audio_cfg)

    @torch.no_grad()
    def encode_text(self, texts, batch_size: int = 64) -> np.ndarray:
        self.require("text")
        if isinstance(texts, str):
            raise TypeError("encode_text takes a list of strings, not one string")
        out = []
        for start in range(0, len(texts), batch_size):
            tokens = self.clip_tokenizer(list(texts[start : start + batch_size])).to(self.device)
            out.append(self.model.encode_text(tokens).float().cpu().numpy())
        from .encoder import l2_normalize

        return l2_normalize(np.concatenate(out)) if out else np.zeros((0, self.embed_dim), np.float32)

    @torch.no_grad()
    def _image_forward(self, pixels: np.ndarray) -> np.ndarray:
        return (
            self.model.encode_image(torch.from_numpy(np.ascontiguousarray(pixels)).to(self.device))
            .float()
            .cpu()
            .numpy()
        )

    @torch.no_grad()
    def _audio_forward(self, mels: np.ndarray) -> np.ndarray:
        return self.audio_tower(torch.from_numpy(np.ascontiguousarray(mels)).to(self.device)).float().cpu().numpy()
