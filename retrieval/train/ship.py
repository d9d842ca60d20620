"""Ship a trained checkpoint as a model's packaged weights (``retrieval/models/weights/NAME.safetensors``).

Only the trained towers go in (the text tower ships on its own,
``retrieval/models/weights/all-minilm-l6-v2.safetensors``); a sidecar JSON records
the checkpoint's step, training config and validation recall. New weights replace old ones
only when they score higher on validation (the validation splits choose; the test splits never
do): by mean R@10, or, for a run that chose its checkpoints with ``--select sources``, by the
per-source score (:func:`retrieval.train.metrics.source_score`) over every validation source of the
merged model.

A run that trained only some towers (``xmr train --modality image``) ships just those: they
replace the same towers of the shipped weights, the others stay. The towers are independent
given the frozen text tower, so the merged model's validation recall is the new run's for the
directions it trained and the shipped record's for the rest; that merged mean decides (so
validate on the same validation manifests as the shipped run did).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

from ..models.registry import WEIGHTS_DIR
from ..models.spec import file_sha256
from .metrics import source_score

log = logging.getLogger(__name__)
MAX_BYTES = 25 * 1024 * 1024


class ShipError(RuntimeError):
    """The checkpoint cannot be shipped (missing, too large, or not better than what ships)."""


def ship(
    checkpoint: str | os.PathLike, name: str = "xmr-mini", force: bool = False, weights_dir: Path = WEIGHTS_DIR
) -> Path:
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
    record = weights_dir / f"{name}.json"
    target = weights_dir / f"{name}.safetensors"
    old_record = json.loads(record.read_text()) if record.exists() else {}
    part = _partial(meta, old_record) if target.is_file() else None
    val = {**old_record.get("val", {}), **meta["val"]} if part else meta.get("val")
    score = _mean_r10(val) if part else meta.get("val_mean_R@10")
    by_source = (
        _merge_sources(old_record.get("val_by_source", {}), meta.get("val_by_source", {}), part)
        if part
        else meta.get("val_by_source")
    )
    if not force:
        _check_better(name, meta, old_record, score, by_source, target)
    weights_dir.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    if part:
        _merge_towers(target, weights, part, tmp)
    else:
        shutil.copyfile(weights, tmp)
    os.chmod(tmp, 0o644)  # packaged weights are read by every user (safetensors writes 0600)
    digest = file_sha256(tmp)
    os.replace(tmp, target)
    entry = {
        "step": meta.get("step"),
        "total_steps": meta.get("total_steps"),
        "data_hash": meta.get("data_hash"),
        "train_config": meta.get("train_config"),
    }
    towers = {**_provenance(old_record), **{m: entry for m in part}} if part else {}
    # A merged model has no single run: its record says which run each tower comes from.
    provenance = {"towers": towers} if towers else entry
    per_source = {"val_sources_score": source_score(by_source), "val_by_source": by_source} if by_source else {}
    record.write_text(
        json.dumps(
            {"model": name, "sha256": digest, **provenance, "val_mean_R@10": score, "val": val, **per_source}, indent=2
        )
        + "\n"
    )
    log.info(
        "shipped %s (%s, step %s, mean validation R@10 %s) as %s",
        ckpt,
        f"towers {', '.join(part)}" if part else "all towers",
        meta.get("step"),
        score,
        target,
    )
    return target


def _check_better(
    name: str, meta: dict, old_record: dict, score: float | None, by_source: dict | None, shipped: Path
) -> None:
    """Refuse a checkpoint that does not beat the shipped weights by the score its run chose
    checkpoints with: pooled mean R@10, or (``select="sources"``) the per-source score.

    A run validated on sources the shipped record never saw (a new data set) is compared on
    the same pairs: the shipped weights are measured now on the run's own validation
    manifests, so the new sources count for both (the shipped weights near chance there)."""
    if not old_record:
        return
    cfg = meta.get("train_config") or {}
    if cfg.get("select") == "sources":
        if not old_record.get("val_by_source"):
            raise ShipError(
                f"the shipped {name} records no per-source validation recall to compare a --select "
                "sources run with (--force to ship anyway)"
            )
        old_by_source = old_record["val_by_source"]
        unseen = sorted(set(meta.get("val_by_source") or {}) - set(old_by_source))
        if unseen and cfg.get("val") and shipped.is_file():
            log.info(
                "the shipped %s was never validated on %s: measuring it on the run's validation pairs",
                name,
                ", ".join(unseen),
            )
            towers = sorted(cfg.get("modalities") or [])
            old_by_source = _merge_sources(
                old_by_source, measure_by_source(name, shipped, cfg["val"], towers, cfg.get("cache")), towers
            )
        old, new, what = source_score(old_by_source), source_score(by_source or {}), "per-source validation score"
    else:
        old, new, what = old_record.get("val_mean_R@10"), score, "mean validation R@10"
    if old is not None and (new is None or new <= old):
        raise ShipError(
            f"the shipped {name} scores {what} {old:.2f}; this checkpoint "
            f"{'none' if new is None else f'{new:.2f}'}: not better (--force to ship anyway)"
        )


def measure_by_source(name: str, weights: Path, val: list[str], towers: list[str], cache: str | None) -> dict:
    """Per-source validation recall of ``weights`` for ``towers`` on ``val``, as training
    measures it (the same pairs, the same recall)."""
    import tempfile

    from .loop import TrainConfig, Trainer

    with tempfile.TemporaryDirectory(prefix="xmr-ship-") as tmp:
        cfg = TrainConfig(
            data=list(val),
            val=list(val),
            out=tmp,
            model=name,
            modalities=towers,
            cache=cache,
            overrides={"weights": str(weights)},
        )
        by_source: dict = {}
        Trainer(cfg).validate(by_source)
    return by_source


def _merge_sources(old: dict, new: dict, towers: list[str]) -> dict:
    """Per-source recall of a merged model: the shipped sources of the towers kept, and the
    new run's (none of the retrained towers' old entries survive: they measured old weights)."""
    return {**{s: d for s, d in old.items() if not _modalities(d) & set(towers)}, **new}


def _partial(meta: dict, old_record: dict) -> list[str] | None:
    """The towers a checkpoint trained, when they are fewer than the shipped record covers."""
    trained = (meta.get("train_config") or {}).get("modalities")
    if not trained or not meta.get("val") or not old_record.get("val"):
        return None
    return sorted(trained) if _modalities(old_record["val"]) - set(trained) else None


def _provenance(record: dict) -> dict[str, dict]:
    """Which run each shipped tower comes from (a whole-model record: the same run for all)."""
    if record.get("towers"):
        return record["towers"]
    keys = ("step", "total_steps", "data_hash", "train_config")
    return {m: {k: record.get(k) for k in keys} for m in _modalities(record.get("val", {}))}


def _modalities(val: dict) -> set[str]:
    return {m for direction in val for m in direction.split("->") if m != "text"}


def _mean_r10(val: dict) -> float:
    return float(sum(r["R@10"] for r in val.values()) / len(val))


def _merge_towers(shipped: Path, new: Path, towers: list[str], out: Path) -> None:
    """Write ``shipped`` with the tensors of ``towers`` taken from ``new``."""
    from safetensors.numpy import load_file, save_file

    old, fresh = load_file(str(shipped)), load_file(str(new))
    missing = [m for m in towers if not any(k.startswith(f"towers.{m}.") for k in fresh)]
    if missing:
        raise ShipError(f"{new} holds no {', '.join(missing)} tower")
    prefixes = tuple(f"towers.{m}." for m in towers)
    merged = {k: v for k, v in old.items() if not k.startswith(prefixes)}
    merged.update({k: v for k, v in fresh.items() if k.startswith(prefixes)})
    save_file(merged, str(out))
