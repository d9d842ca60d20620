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

from ..storage.autotype import Choice, default_budget
from ..storage.layout import IndexLock, IndexMismatchError, Layout
from ..storage.manifest import Manifest, read_manifest
from ..storage.paths import escape_path
from ..storage.schema import FILE, INDEXED, MODALITIES
from ..storage.store import Store, new_index_uuid
from ..storage.writer import IndexWriter, RowChange, VectorChange

log = logging.getLogger(__name__)


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
            self.writer = IndexWriter.open(self.layout, self.manifest, self.store)
            self.budget = int(max_memory or self.manifest.max_memory or default_budget())
            self.shards = self.writer.shards(modality)
            rows = self.store.id_array(modality, INDEXED)
            self.writer.drop_orphans(self.shards, rows, "vectors of a cut-short chunk")
            self.count = len(rows)
        except BaseException:
            self._lock.__exit__()
            raise

    def _manifest(self, max_memory: int | None) -> Manifest:
        spec = self.spec
        manifest = read_manifest(self.layout)
        if manifest is not None:
            if (manifest.weights_hash, manifest.dim) != (spec.weights_hash, spec.dim):
                raise IndexMismatchError(
                    f"{self.layout.dir} holds an index of {manifest.model!r} ({manifest.dim}-d), "
                    f"not {spec.model!r} ({spec.dim}-d)"
                )
        else:
            manifest = Manifest(
                root=escape_path(spec.root or str(self.layout.dir / "root")),
                model=spec.model,
                weights_hash=spec.weights_hash,
                dim=spec.dim,
                index_type=spec.index_type,
                shard_size=spec.shard_size,
                modalities=list(spec.modalities),
                index_uuid=new_index_uuid(),
                created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            )
        if max_memory:
            manifest.max_memory = int(max_memory)
        manifest.index_uuid = manifest.index_uuid or new_index_uuid()  # a version-1 index claims its rows
        return manifest

    def choice(self) -> Choice:
        """How the modality's shards are made now."""
        return self.manifest.choice(self.modality)

    def add(self, vectors: np.ndarray, rows: Sequence[dict]) -> np.ndarray:
        """One checkpoint: ``vectors`` (unit rows) and their ``rows``; returns their new ids.

        Raises:
            ValueError: the counts differ.
        """
        if len(rows) != len(vectors):
            raise ValueError(f"{len(rows)} rows for {len(vectors)} vectors")
        start = self.store.max_id() + 1
        ids = np.arange(start, start + len(rows), dtype=np.int64)
        now = datetime.now(timezone.utc).replace(tzinfo=None)
        mine = {"modality": self.modality, "model": self.spec.model, "indexed_at": now, "status": INDEXED}
        new = [{"kind": FILE, **row, "id": int(i), **mine} for i, row in zip(ids, rows)]
        change = VectorChange(vectors=vectors, ids=ids)
        self.writer.checkpoint({self.modality: (self.shards, change)}, RowChange(new=new))
        self.count += len(rows)
        shard_sets = {self.modality: self.shards}
        self.writer.follow(shard_sets, self.budget)
        self.shards = shard_sets[self.modality]
        return ids

    def close(self) -> None:
        try:
            self.writer.publish()
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
