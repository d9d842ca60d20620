"""Synthetic indexes for speed benchmarks: random unit vectors stored through the indexer's own
storage (manifest, SQL rows, FAISS shards), so ``Engine`` searches them like any index."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import numpy as np

from indexer.ingest.bulk import IndexSpec, build_from_vectors
from indexer.storage.layout import Layout

log = logging.getLogger(__name__)


def unit_vectors(n: int, dim: int, seed: int, clusters: int | None = None, spread: float = 0.6) -> np.ndarray:
    """``n`` unit vectors around ``clusters`` random centres (default: one per 100 vectors), the
    way real embeddings bunch by topic. Uniformly random high-dimensional vectors would have
    no near neighbours at all, which no approximate index (and no real collection) shows."""
    rng = np.random.default_rng(seed)
    clusters = clusters or max(8, n // 100)
    centres = rng.standard_normal((clusters, dim), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    out = np.empty((n, dim), np.float32)
    for start in range(0, n, 100_000):
        m = min(100_000, n - start)
        block = centres[rng.integers(0, clusters, m)] + spread * rng.standard_normal(
            (m, dim), dtype=np.float32
        ) / np.sqrt(dim)
        out[start : start + m] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def queries_near(vectors: np.ndarray, count: int, seed: int, noise: float = 0.3) -> np.ndarray:
    """Queries that resemble stored vectors (a stored vector plus noise), as real queries do."""
    rng = np.random.default_rng(seed)
    picked = vectors[rng.integers(0, len(vectors), count)]
    q = picked + noise * rng.standard_normal(picked.shape, dtype=np.float32) / np.sqrt(vectors.shape[1])
    return (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)


def synthetic_index(
    folder: str | os.PathLike,
    n: int,
    model: str,
    weights_hash: str,
    dim: int,
    factory: str = "Flat",
    modality: str = "image",
    seed: int = 0,
    shard_size: int = 2_000_000,
) -> Path:
    """Build (or reuse, when already complete) an index of ``n`` random ``modality`` vectors."""
    layout = Layout(Path(folder))
    done = layout.dir / "complete"
    if done.exists():
        return layout.dir
    if layout.dir.exists():  # an earlier build cut short
        shutil.rmtree(layout.dir)
    rows = [
        {
            "path": f"synthetic/{i:08d}.jpg",
            "ext": "jpg",
            "size": 1000 + i % 5000,
            "mtime_ns": 1_600_000_000_000_000_000 + i,
            "content_hash": f"{i:064x}",
            "width": 640,
            "height": 480,
        }
        for i in range(1, n + 1)
    ]
    spec = IndexSpec(model=model, weights_hash=weights_hash, dim=dim, index_type=factory, shard_size=shard_size)
    build_from_vectors(layout.dir, spec, modality, unit_vectors(n, dim, seed), rows)
    done.write_text("ok\n")
    return layout.dir
