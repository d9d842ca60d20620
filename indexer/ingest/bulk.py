"""Indexes from vectors already computed: rows and vectors bulk-loaded through the indexer's
own storage (benchmarks at scale, imports), so the result is an index like any other.

    build_from_vectors(folder, IndexSpec(model=..., weights_hash=..., dim=384), "image", vectors, rows)

or, a chunk at a time and resumable (each chunk one checkpoint, as ``xmr index`` makes them):

    with BulkIndex(folder, spec, "image") as index:
        for vectors, rows in chunks[index.count // CHUNK:]:
            index.add(vectors, rows)

Each row is a dict of :class:`indexer.storage.schema.Item` columns (``path`` relative to the root,
``size``, ``mtime_ns``, ...); ids are allocated here, in the order of the rows.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from sqlalchemy import insert

from ..storage import retype
from ..storage.autotype import Choice, choice_of, default_budget
from ..storage.faults import crash_point
from ..storage.layout import MANIFEST_VERSION, IndexLock, IndexMismatchError, Layout, read_manifest, write_manifest
from ..storage.paths import escape_path
from ..storage.schema import FILE, INDEXED, MODALITIES, Item
from ..storage.store import Store, new_index_uuid

log = logging.getLogger(__name__)
ROWS_PER_INSERT = 50_000


@dataclass
class IndexSpec:
    """What the manifest of a bulk-built index says."""

    model: str
    weights_hash: str
    dim: int
    root: str = ""  # default: FOLDER/root (an empty folder: these items have no files)
    index_type: str = "Flat"
    shard_size: int = 250_000
    modalities: tuple[str, ...] = MODALITIES


class BulkIndex:
    """An index of one modality filled chunk by chunk. Each :meth:`add` is a checkpoint: the
    vectors written (and fsynced), then their rows committed; under ``auto`` the index type then
    follows the size as it does in ``xmr index``. Opened again on the same folder, it goes on
    from the rows it holds (a cut-short checkpoint's vectors, without rows, are dropped).
    Holds the index's lock while open.

    Raises:
        IndexMismatchError: the folder holds an index of another model or dimension.
    """

    def __init__(
        self, folder: str | os.PathLike, spec: IndexSpec, modality: str, max_memory: int | None = None
    ) -> None:
        self.layout = Layout(Path(folder))
        self.layout.dir.mkdir(parents=True, exist_ok=True)
        self.spec, self.modality = spec, modality
        self._lock = IndexLock(self.layout).__enter__()
        try:
            self.store = Store(self.layout.db_url())
            self.manifest = self._manifest(max_memory)
            self.manifest["index_id"] = self.store.register_index(
                self.manifest["index_uuid"], self.manifest["root"], escape_path(str(self.layout.dir))
            )
            write_manifest(self.layout, self.manifest)  # once the database exists, as xmr index
            self.store.save_manifest_copy(self.manifest)
            self.budget = int(max_memory or self.manifest.get("max_memory") or default_budget())
            shards = retype.shard_set(self.layout.shards, self.manifest, modality, spec.dim)
            retype.remove_others(self.layout.shards, modality, keep=shards.modality)
            self.shards = shards.load(tidy=True)
            rows = self.store.id_array(modality, INDEXED)
            orphans = np.setdiff1d(np.unique(self.shards.ids()), rows, assume_unique=True)
            if len(orphans):
                log.info("dropping %d vectors of a cut-short chunk (no rows)", len(orphans))
                self.shards.remove(orphans)
                self.shards.flush()
            self.count = len(rows)
        except BaseException:
            self._lock.__exit__()
            raise

    def _manifest(self, max_memory: int | None) -> dict:
        spec = self.spec
        manifest = read_manifest(self.layout)
        if manifest is not None:
            if (manifest.get("weights_hash"), int(manifest["dim"])) != (spec.weights_hash, spec.dim):
                raise IndexMismatchError(
                    f"{self.layout.dir} holds an index of {manifest.get('model')!r} ({manifest['dim']}-d), "
                    f"not {spec.model!r} ({spec.dim}-d)"
                )
            return manifest | ({"max_memory": int(max_memory)} if max_memory else {})
        return {
            "version": MANIFEST_VERSION,
            "root": escape_path(spec.root or str(self.layout.dir / "root")),
            "model": spec.model,
            "weights_hash": spec.weights_hash,
            "dim": spec.dim,
            "metric": "inner_product",
            "index_type": spec.index_type,
            "shard_size": spec.shard_size,
            "modalities": list(spec.modalities),
            "index_uuid": new_index_uuid(),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        } | ({"max_memory": int(max_memory)} if max_memory else {})

    def choice(self) -> Choice:
        """How the modality's shards are made now."""
        return choice_of(self.manifest, self.modality)

    def add(self, vectors: np.ndarray, rows: Sequence[dict]) -> np.ndarray:
        """One checkpoint: ``vectors`` (unit rows) and their ``rows``; returns their new ids.

        Raises:
            ValueError: the counts differ.
        """
        if len(rows) != len(vectors):
            raise ValueError(f"{len(rows)} rows for {len(vectors)} vectors")
        start = self.store.max_id() + 1
        ids = np.arange(start, start + len(rows), dtype=np.int64)
        self.shards.add(vectors, ids)
        self.shards.flush()  # vectors first, then their rows, as every indexing run
        crash_point("bulk-vectors-written")
        now = datetime.now(timezone.utc).replace(tzinfo=None)
        with self.store.writing("bulk-load rows") as s:
            for a in range(0, len(rows), ROWS_PER_INSERT):
                s.execute(
                    insert(Item),
                    [
                        {
                            "kind": FILE,
                            "line": 0,
                            "ext": "",
                            "size": 0,
                            "mtime_ns": 0,
                            "content_hash": "",
                            **row,
                            "id": int(i),
                            "index_id": self.store.index_id,
                            "modality": self.modality,
                            "model": self.spec.model,
                            "indexed_at": now,
                            "status": INDEXED,
                        }
                        for i, row in zip(ids[a : a + ROWS_PER_INSERT], rows[a : a + ROWS_PER_INSERT])
                    ],
                )
        self.count += len(rows)
        shard_sets = {self.modality: self.shards}
        retype.follow(self.layout, self.manifest, shard_sets, self.budget, self.store)
        self.shards = shard_sets[self.modality]
        return ids

    def close(self) -> None:
        try:
            write_manifest(self.layout, self.manifest)
            self.store.save_manifest_copy(self.manifest)
            self.store.close()
        finally:
            self._lock.__exit__()

    def __enter__(self) -> "BulkIndex":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def build_from_vectors(
    folder: str | os.PathLike, spec: IndexSpec, modality: str, vectors: np.ndarray, rows: Sequence[dict]
) -> Layout:
    """A new index in ``folder`` holding ``vectors`` (unit rows, ``[N, dim]``) with ``rows``.

    Raises:
        ValueError: ``folder`` holds an index already, or the sizes disagree.
    """
    layout = Layout(Path(folder))
    if layout.manifest.exists():
        raise ValueError(f"{layout.dir} holds an index already")
    if len(rows) != len(vectors):
        raise ValueError(f"{len(rows)} rows for {len(vectors)} vectors")
    log.info("bulk-loading %d %s vectors (%s) into %s", len(rows), modality, spec.index_type, layout.dir)
    with BulkIndex(folder, spec, modality) as index:
        index.add(vectors, rows)
    return layout
