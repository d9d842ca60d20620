"""Consistency checks of an index (``xmr doctor``): SQL rows against FAISS ids, and files on disk."""

from __future__ import annotations

import logging
import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .layout import Layout, read_manifest
from .paths import unescape_path
from .schema import FILE, INDEXED, PENDING
from .shards import ShardError, ShardSet, shard_ids
from .store import Store

log = logging.getLogger(__name__)
MODALITIES = ("image", "audio", "text")


@dataclass
class Problem:
    """One disagreement found, with the ids or paths concerned (a sample when many)."""

    kind: str
    message: str
    count: int = 1
    sample: list = field(default_factory=list)


@dataclass
class CheckReport:
    index: str
    ok: bool = True
    counts: dict[str, int] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    def add(self, kind: str, message: str, items: list | None = None) -> None:
        items = list(items or [])
        self.problems.append(Problem(kind, message, max(1, len(items)), items[:10]))
        self.ok = False

    def to_dict(self) -> dict:
        return asdict(self)


def check_index(index_dir: str | os.PathLike, check_files: bool = True) -> CheckReport:
    """Check an index: manifest, shards readable, every indexed row has exactly one vector and
    every vector a row, no row left pending, and (``check_files``) every file still exists."""
    layout = Layout(Path(index_dir))
    report = CheckReport(index=str(layout.dir))
    try:
        manifest = read_manifest(layout)
    except Exception as exc:  # noqa: BLE001 - reported, not raised: this is the doctor
        report.add("manifest", str(exc))
        return report
    if manifest is None:
        report.add("manifest", f"no manifest at {layout.manifest}: not an xmr index")
        return report
    try:
        store = Store(layout.db_url(manifest))
    except Exception as exc:  # noqa: BLE001
        report.add("database", str(exc))
        return report
    try:
        _check_vectors(layout, manifest, store, report)
        if check_files:
            _check_files(manifest, store, report)
        report.counts = store.counts()
    finally:
        store.close()
    return report


def _check_vectors(layout: Layout, manifest: dict, store: Store, report: CheckReport) -> None:
    for modality in MODALITIES:
        shards = ShardSet(layout.shards, modality, int(manifest["dim"]), manifest.get("index_type", "Flat"))
        try:
            shards.load()
        except ShardError as exc:
            report.add("shard", str(exc))
            continue
        ids = np.concatenate([shard_ids(s) for s in shards.shards]) if shards.shards else np.zeros(0, np.int64)
        twice = [int(i) for i, n in Counter(ids.tolist()).items() if n > 1]
        if twice:
            report.add("duplicate", f"{len(twice)} {modality} ids have more than one vector", twice)
        in_shards = set(ids.tolist())
        indexed = store.ids(modality, INDEXED)
        if lost := sorted(indexed - in_shards):
            report.add("missing-vector", f"{len(lost)} indexed {modality} rows have no vector", lost)
        if orphans := sorted(in_shards - indexed):
            report.add("orphan-vector", f"{len(orphans)} {modality} vectors have no indexed row", orphans)
    if pending := sorted(store.ids(status=PENDING)):
        report.add("pending", f"{len(pending)} rows wait to be embedded (an interrupted run): run `xmr index` again", pending)


def _check_files(manifest: dict, store: Store, report: CheckReport) -> None:
    root = Path(unescape_path(manifest.get("root", "")))
    gone = [str(root / unescape_path(item.path)) for item in store.items(FILE) if not os.path.lexists(root / unescape_path(item.path))]
    if gone:
        report.add("missing-file", f"{len(gone)} indexed files no longer exist: run `xmr index` to drop them", gone)
