"""Synthetic indexes for speed benchmarks: random unit vectors stored through the indexer's own
storage (manifest, SQL rows, FAISS shards), so ``Engine`` searches them like any index."""

from __future__ import annotations

import logging
import os
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from sqlalchemy import insert

from indexer.layout import Layout, write_json_atomic
from indexer.schema import FILE, INDEXED, Item
from indexer.shards import ShardSet
from indexer.store import Store

log = logging.getLogger(__name__)


def unit_vectors(n: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), np.float32)
    for start in range(0, n, 100_000):
        block = rng.standard_normal((min(100_000, n - start), dim), dtype=np.float32)
        out[start : start + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def synthetic_index(folder: str | os.PathLike, n: int, model: str, weights_hash: str, dim: int,
                    factory: str = "Flat", modality: str = "image", seed: int = 0, shard_size: int = 2_000_000) -> Path:
    """Build (or reuse, when already complete) an index of ``n`` random ``modality`` vectors."""
    layout = Layout(Path(folder))
    done = layout.dir / "complete"
    if done.exists():
        return layout.dir
    layout.dir.mkdir(parents=True, exist_ok=True)
    vectors = unit_vectors(n, dim, seed)
    ids = np.arange(1, n + 1, dtype=np.int64)
    log.info("building a synthetic %s index of %d x %d vectors in %s", factory, n, dim, layout.dir)
    shards = ShardSet(layout.shards, modality, dim, factory, shard_size)
    shards.add(vectors, ids)
    shards.flush()
    store = Store(f"sqlite:///{layout.database}")
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    with store.session() as s:
        for start in range(0, n, 50_000):
            s.execute(insert(Item), [
                {"id": int(i), "kind": FILE, "path": f"synthetic/{i:08d}.jpg", "line": 0, "ext": "jpg", "modality": modality,
                 "size": 1000 + int(i) % 5000, "mtime_ns": 1_600_000_000_000_000_000 + int(i), "content_hash": f"{i:064x}",
                 "width": 640, "height": 480, "model": model, "indexed_at": now, "status": INDEXED}
                for i in ids[start : start + 50_000]
            ])
        s.commit()
    store.close()
    write_json_atomic(layout.manifest, {
        "version": 1, "root": str(layout.dir / "synthetic-root"), "model": model, "weights_hash": weights_hash, "dim": dim,
        "metric": "inner_product", "index_type": factory, "shard_size": shard_size, "modalities": ["image", "audio", "text"],
    })
    done.write_text("ok\n")
    return layout.dir
