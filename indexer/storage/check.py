"""Consistency checks of an index (``xmr doctor``): SQL rows against FAISS ids, and files on disk."""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .layout import Layout
from .manifest import Manifest
from .paths import unescape_path
from .reader import IndexReader
from .schema import FILE, INDEXED, MODALITIES, PENDING
from .shards import ShardError
from .store import Store, StoreError

log = logging.getLogger(__name__)


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
    if not layout.exists():
        report.add("manifest", f"no manifest at {layout.manifest}: not an xmr index")
        return report
    if not layout.manifest.is_file():
        report.add("manifest", f"{layout.manifest} is missing (its backup is intact): `xmr doctor --fix` restores it")
    try:
        reader = IndexReader.open(layout.dir)
    except StoreError as exc:
        report.add("database", str(exc))
        return report
    except Exception as exc:  # noqa: BLE001 - reported, not raised: this is the doctor
        report.add("manifest", str(exc))
        return report
    with reader:
        _check_vectors(reader, report)
        if check_files:
            _check_files(reader.manifest, reader.store, report)
        report.counts = reader.store.counts()
    return report


def _check_vectors(reader: IndexReader, report: CheckReport) -> None:
    store = reader.store
    for modality in MODALITIES:
        ids = _vector_ids(report, lambda m=modality: reader.shards(m))
        if ids is not None:
            _compare(
                report,
                ids,
                store.ids(modality, INDEXED, vectors=True),  # videos among the image and audio rows
                f"{{n}} {modality} ids have more than one vector",
                f"{{n}} indexed {modality} rows have no vector",
                f"{{n}} {modality} vectors have no indexed row",
            )
        shards = reader.shards(modality) if ids is not None else None
        if shards is not None and len(unstored := shards.unstored()):
            report.add(
                "stored-vector",
                f"{len(unstored)} {modality} vectors have no stored float16 copy to re-score them with "
                "(a damaged vectors file): the next `xmr index` embeds them again",
                unstored.tolist(),
            )
    _check_segments(reader, report)
    if pending := sorted(store.ids(status=PENDING)):
        report.add(
            "pending", f"{len(pending)} rows wait to be embedded (an interrupted run): run `xmr index` again", pending
        )


def _check_segments(reader: IndexReader, report: CheckReport) -> None:
    """Moments of long files and videos: each segment row has one vector in its modality's
    segment shards, each vector a row, each row an indexed file."""
    items = reader.store.ids(status=INDEXED)
    for modality in MODALITIES:
        ids = _vector_ids(report, lambda m=modality: reader.segment_shards(m))
        if ids is None:
            continue
        rows = reader.store.segment_ids(modality=modality)
        _compare(
            report,
            ids,
            set(rows),
            f"{{n}} {modality} segment ids have more than one vector",
            f"{{n}} {modality} segments have no vector: run `xmr index` again",
            f"{{n}} {modality} segment vectors have no row: run `xmr index` again",
        )
        if strays := sorted({s for s, item in rows.items() if item not in items}):
            report.add("orphan-segment", f"{len(strays)} {modality} segments belong to no indexed file", strays)
    _check_spans(reader, report)


def _check_spans(reader: IndexReader, report: CheckReport) -> None:
    """Words found in media: each span is a text segment of its file and each text segment a
    span; the full-text index agrees with the spans."""
    problems = reader.store.span_problems()
    if unplaced := problems["unplaced"]:
        report.add("orphan-span", f"{len(unplaced)} spans of words have no segment: run `xmr index` again", unplaced)
    if wordless := problems["wordless"]:
        report.add("missing-span", f"{len(wordless)} text segments have no words: run `xmr index` again", wordless)
    if problems["fulltext"]:
        report.add(
            "fulltext",
            "the full-text index disagrees with the words found in media: `xmr doctor --fix` rebuilds it",
        )


def _vector_ids(report: CheckReport, load: Callable[[], Any]) -> np.ndarray | None:
    """The ids in a set of shards (none when it has none), or None, reported, when they cannot be read."""
    try:
        shards = load()
    except ShardError as exc:
        report.add("shard", str(exc))
        return None
    return shards.ids() if shards is not None else np.zeros(0, np.int64)


def _compare(report: CheckReport, ids: np.ndarray, expected: set[int], twice: str, lost: str, orphan: str) -> None:
    """Vector ids against the rows that should have them: ids twice, rows without a vector,
    vectors without a row (``{n}`` in each message is the count)."""
    listed = ids.tolist()
    if doubled := [int(i) for i, n in Counter(listed).items() if n > 1]:
        report.add("duplicate", twice.format(n=len(doubled)), doubled)
    present = set(listed)
    if missing := sorted(expected - present):
        report.add("missing-vector", lost.format(n=len(missing)), missing)
    if strays := sorted(present - expected):
        report.add("orphan-vector", orphan.format(n=len(strays)), strays)


def _check_files(manifest: Manifest, store: Store, report: CheckReport) -> None:
    root = manifest.root_path
    root_real = os.path.realpath(root)
    links = manifest.recorded.get("links", "inside")
    gone, outside = [], []
    for item in store.items(FILE):
        path = root / unescape_path(item.path)
        if not os.path.lexists(path):
            gone.append(str(path))
        elif links != "follow" and not _inside(os.path.realpath(path), root_real):
            outside.append(f"{path} -> {os.path.realpath(path)}")
    if gone:
        report.add("missing-file", f"{len(gone)} indexed files no longer exist: run `xmr index` to drop them", gone)
    if outside:
        report.add(
            "outside-root",
            f"{len(outside)} indexed files lie outside {root} through symbolic links "
            "(indexed with --links follow, or before --links existed): `xmr index --links follow` keeps "
            "following them, `xmr index --prune-unseen` removes them",
            outside,
        )


def _inside(path: str, root_real: str) -> bool:
    return path == root_real or path.startswith(root_real.rstrip(os.sep) + os.sep)
