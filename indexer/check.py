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

from .layout import IndexCorruptError, IndexLock, Layout, read_manifest, read_manifest_backup, write_manifest
from .paths import unescape_path
from .reader import IndexReader
from .schema import FILE, INDEXED, MODALITIES, PENDING
from .shards import ShardError, read_index
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


def _check_files(manifest: dict, store: Store, report: CheckReport) -> None:
    root = Path(unescape_path(manifest.get("root", "")))
    root_real = os.path.realpath(root)
    links = (manifest.get("options") or {}).get("links", "inside")
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


def repair_index(
    index_dir: str | os.PathLike, make_encoder: Callable[[str], Any], allow_mass_removal: bool = False
):  # -> Summary
    """Repair an index from what survives: a damaged manifest is restored from its backup or the
    copy in the database, unreadable shards are set aside (``*.corrupt``), and an indexing run
    with the options the index was last built with (``--exclude``, ``--texts``, ``--links``)
    then drops stray vectors and rows and re-embeds only what has no vector left. All of it
    under the index's lock.

    Args:
        make_encoder: builds the index's model from its name.

    Raises:
        IndexCorruptError: neither the manifest nor a copy of it can be read.
        IndexBusyError: another process is updating the index.
    """
    from .build import IndexOptions, index_locked

    layout = Layout(Path(index_dir))
    with IndexLock(layout):
        manifest = _manifest_or_copy(layout)
        root = unescape_path(manifest["root"])
        if not os.path.isdir(root):
            raise IndexCorruptError(f"the indexed folder {root} is gone; nothing to rebuild from")
        if layout.shards.exists():
            for path in sorted(layout.shards.glob("*.faiss")):
                try:
                    read_index(path)
                except ShardError as exc:
                    aside = path.with_name(path.name + ".corrupt")
                    log.warning("%s; moving it aside to %s, its vectors will be re-embedded", exc, aside.name)
                    os.replace(path, aside)
        # --exclude, --texts and --links left unset: the run takes the recorded ones (a recorded
        # texts file that is gone is dropped with a warning, its items removed).
        options = IndexOptions(
            index_dir=str(layout.dir), db_url=manifest.get("db"), allow_mass_removal=allow_mass_removal
        )
        return index_locked(Path(os.path.abspath(root)), layout, make_encoder(manifest["model"]), options)


def _manifest_or_copy(layout: Layout) -> dict:
    """The manifest; else its backup file; else the copy in the database the backup names (or
    the default SQLite database). A copy found is written back as the manifest."""
    try:
        manifest = read_manifest(layout)
    except IndexCorruptError:
        manifest = None
    if manifest is not None:
        if not layout.manifest.is_file():  # read from the backup: put it back
            log.warning("restoring %s from its backup", layout.manifest)
            write_manifest(layout, manifest)
        return manifest
    copy = read_manifest_backup(layout)
    if copy is None:
        try:
            store = Store(layout.db_url(), create=False)
            try:
                copy = store.manifest_copy()
            finally:
                store.close()
        except StoreError:
            copy = None
    if copy is None:
        raise IndexCorruptError(
            f"the manifest at {layout.manifest} is missing or damaged and no copy of it survives; "
            "index the folder again with `xmr index FOLDER --index ...`"
        )
    log.warning("restoring %s from a copy", layout.manifest)
    write_manifest(layout, copy)
    return copy
