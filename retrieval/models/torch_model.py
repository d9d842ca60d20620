"""xmr models in torch: the towers of a JSON config, and the Encoder that runs them."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from torch import nn

from .audio import AudioPreprocessor
from .encoder import Encoder, TextTokenizer
from .image import ImagePreprocessor
from .spec import ModelSpec
from .towers import build_tower

log = logging.getLogger(__name__)


class XmrModel(nn.Module):
    """The towers named in a config: ``text``, ``image`` and ``audio`` (any subset)."""

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        dim = config["embed_dim"]
        # Seeded so every process builds the same random weights.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(config.get("seed", 0)))
            self.towers = nn.ModuleDict(
                {m: build_tower(config[f"{m}_cfg"], dim) for m in ("text", "image", "audio") if f"{m}_cfg" in config}
            )
        self.logit_scale = nn.Parameter(torch.tensor(float(np.log(1 / 0.07))))

    def forward_tower(self, modality: str, *inputs: torch.Tensor) -> torch.Tensor:
        return self.towers[modality](*inputs)


def load_weights(model: XmrModel, path: str, strict_towers: tuple[str, ...] = ("image", "audio")) -> None:
    """Load tower weights from a safetensors file (``towers.<modality>.*`` keys)."""
    from safetensors.torch import load_file

    state = load_file(str(path))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected:
        raise ValueError(f"{path}: weights for layers this config lacks: {', '.join(unexpected[:5])}")
    lacking = [k for k in missing if k.split(".")[1] in strict_towers and f"{k.split('.')[1]}" in model.towers]
    if lacking:
        raise ValueError(f"{path}: no weights for {', '.join(lacking[:5])}")


class TorchEncoder(Encoder):
    """Runs an :class:`XmrModel` with torch (training, export, and the indexer)."""

    runtime = "torch"

    def __init__(self, spec: ModelSpec, device: str | None = None) -> None:
        self.spec = spec
        self.name = spec.name
        self.embed_dim = int(spec.config["embed_dim"])
        self.modalities = spec.modalities
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = XmrModel(spec.config)
        cfg = spec.config
        if "text_cfg" in cfg:
            self.tokenizer = TextTokenizer(str(spec.tokenizer_file), cfg["text_cfg"].get("max_length", 256))
            if spec.text_weights_file is not None:
                from .text_weights import load_text_weights

                state = {k: torch.from_numpy(v) for k, v in load_text_weights(spec.text_weights_file).items()}
                missing, unexpected = self.model.towers["text"].load_state_dict(state, strict=False)
                missing = [m for m in missing if not m.startswith("proj.")]
                if missing or unexpected:
                    raise ValueError(
                        f"{spec.text_weights_file}: not this text tower's weights ({missing or unexpected})"
                    )
        if "image_cfg" in cfg:
            self.preprocess_image = ImagePreprocessor(image_size=cfg["image_cfg"]["image_size"])
        if "audio_cfg" in cfg:
            self.preprocess_audio = AudioPreprocessor.from_config(cfg["audio_cfg"])
        if spec.weights_file is not None:
            load_weights(self.model, str(spec.weights_file))
        else:
            random = [m for m in self.modalities if m != "text" or spec.text_weights_file is None]
            if random:
                log.warning(
                    "model %s has no trained weights: %s tower(s) randomly initialised (seed %s)",
                    spec.name,
                    "/".join(random),
                    cfg.get("seed", 0),
                )
        self.model.to(self.device).eval()
        self.weights_hash = spec.weights_hash()

    @torch.no_grad()
    def _text_forward(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        ids_t = torch.from_numpy(ids).to(self.device)
        mask_t = torch.from_numpy(mask).to(self.device)
        return self.model.towers["text"](ids_t, mask_t).float().cpu().numpy()

    @torch.no_grad()
    def _image_forward(self, pixels: np.ndarray) -> np.ndarray:
        return (
            self.model.towers["image"](torch.from_numpy(np.ascontiguousarray(pixels)).to(self.device))
            .float()
            .cpu()
            .numpy()
        )

    @torch.no_grad()
    def _audio_forward(self, mels: np.ndarray) -> np.ndarray:
        return (
            self.model.towers["audio"](torch.from_numpy(np.ascontiguousarray(mels)).to(self.device))
            .float()
            .cpu()
            .numpy()
        )
