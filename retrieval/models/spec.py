"""What a model is, resolved from its name without importing torch: :class:`ModelSpec`, which
the registry builds and every runtime (torch, ONNX Runtime, open_clip) reads."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .encoder import cache_dir

log = logging.getLogger(__name__)
CONFIG_DIR = Path(__file__).parent / "model_configs"
OPENCLIP_CONFIG_DIR = CONFIG_DIR / "openclip"
WEIGHTS_DIR = Path(__file__).parent / "weights"


@dataclass
class ModelSpec:
    """Everything needed to build a model, resolved without importing torch."""

    name: str
    kind: str  # "xmr" or "openclip"
    config: dict[str, Any]
    weights_file: Path | None = None
    text_weights_file: Path | None = None  # the pretrained text tower (shipped by xmr)
    tokenizer_file: Path | None = None
    openclip_arch: str | None = None
    openclip_pretrained: str | None = None
    audio_checkpoint: Path | None = None

    @property
    def modalities(self) -> tuple[str, ...]:
        if self.kind == "openclip":
            return ("image", "text") + (("audio",) if self.audio_checkpoint else ())
        return tuple(m for m in ("image", "audio", "text") if f"{m}_cfg" in self.config)

    @property
    def trained(self) -> bool:
        """Whether the non-text towers have trained weights (not random initialisation)."""
        return self.weights_file is not None

    def weights_hash(self) -> str:
        """sha256 over the config and the bytes of every weights file the model loads."""
        h = hashlib.sha256()
        h.update(json.dumps(self.config, sort_keys=True).encode())
        h.update(f"{self.kind}|{self.openclip_arch}|{self.openclip_pretrained}".encode())
        audio = self.audio_checkpoint and self.audio_checkpoint / "weights.safetensors"
        for path in (
            self.weights_file,
            self.text_weights_file,
            audio,
        ):
            h.update(file_sha256(path).encode() if path else b"-")
        return h.hexdigest()

    def text_hash(self) -> str:
        """sha256 of what decides the text tower's output: its config and pretrained weights
        (training the other towers leaves it alone). open_clip checkpoints hold every tower in
        one file, so there it is :meth:`weights_hash`."""
        if self.kind != "xmr":
            return self.weights_hash()
        h = hashlib.sha256()
        text = {k: self.config.get(k) for k in ("text_cfg", "embed_dim", "seed")}
        h.update(json.dumps(text, sort_keys=True).encode())
        h.update(file_sha256(self.text_weights_file).encode() if self.text_weights_file else b"-")
        return h.hexdigest()


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file, memoised on disk by (path, size, mtime) so large files hash once."""
    path = Path(path).resolve()
    st = path.stat()
    key = hashlib.sha256(f"{path}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:32]
    memo = Path(cache_dir()) / "hashes" / key
    try:
        return memo.read_text().strip()
    except OSError:
        pass
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    digest = h.hexdigest()
    try:
        memo.parent.mkdir(parents=True, exist_ok=True)
        memo.write_text(digest)
    except OSError as exc:  # a read-only home only costs a re-hash next time
        log.debug("cannot memoise hash in %s: %s", memo, exc)
    return digest
