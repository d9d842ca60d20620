"""Indexes from vectors already computed: rows and vectors bulk-loaded through the indexer's
own storage (benchmarks at scale, imports), so the result is an index like any other.

    build_from_vectors(folder, IndexSpec(model=..., weights_hash=..., dim=384), "image", vectors, rows)

Each row is a dict of :class:`indexer.schema.Item` columns (``path`` relative to the root,
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

from .layout import MANIFEST_VERSION, IndexLock, Layout, write_manifest
from .paths import escape_path
from .schema import FILE, INDEXED, MODALITIES, Item
from .shards import ShardSet
from .store import Store, new_index_uuid

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
    layout.dir.mkdir(parents=True, exist_ok=True)
    root = spec.root or str(layout.dir / "root")
    with IndexLock(layout):
        store = Store(layout.db_url())
        try:
            manifest = {
                "version": MANIFEST_VERSION,
                "root": escape_path(root),
                "model": spec.model,
                "weights_hash": spec.weights_hash,
                "dim": spec.dim,
                "metric": "inner_product",
                "index_type": spec.index_type,
                "shard_size": spec.shard_size,
                "modalities": list(spec.modalities),
                "index_uuid": new_index_uuid(),
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            }
            manifest["index_id"] = store.register_index(
                manifest["index_uuid"], manifest["root"], escape_path(str(layout.dir))
            )
            lo, _ = store.id_range()
            ids = np.arange(lo + 1, lo + 1 + len(rows), dtype=np.int64)
            log.info("bulk-loading %d %s vectors (%s) into %s", len(ids), modality, spec.index_type, layout.dir)
            shards = ShardSet(layout.shards, modality, spec.dim, spec.index_type, spec.shard_size)
            shards.add(vectors, ids)
            shards.flush()  # vectors first, then their rows, as every indexing run
            now = datetime.now(timezone.utc).replace(tzinfo=None)
            with store.writing("bulk-load rows") as s:
                for start in range(0, len(rows), ROWS_PER_INSERT):
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
                                "index_id": store.index_id,
                                "modality": modality,
                                "model": spec.model,
                                "indexed_at": now,
                                "status": INDEXED,
                            }
                            for i, row in zip(
                                ids[start : start + ROWS_PER_INSERT], rows[start : start + ROWS_PER_INSERT]
                            )
                        ],
                    )
            write_manifest(layout, manifest)
            store.save_manifest_copy(manifest)
        finally:
            store.close()
    return layout
