"""Search speed: ``Engine.search`` end to end against a plain numpy top-k (rclip's approach)
over the same vectors and queries, per collection size, index type and batch size; plus the
cold start of a CLI text query in a new process.

Run: ``xmr bench speed [--sizes 10000,100000,1000000] [--index-types Flat,HNSW32] [--json]``.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .report import machine_info, markdown_table, write_outputs
from .synthetic import queries_near, synthetic_index, unit_vectors

log = logging.getLogger(__name__)
APPROXIMATE_DEFAULT = ("HNSW32", "IVF1024,Flat", "SQ8", "Flat-fp16")
FACTORY_ALIASES = {"Flat-fp16": "SQfp16"}


@dataclass
class SpeedConfig:
    sizes: list[int] = field(default_factory=lambda: [10_000, 100_000, 1_000_000])
    index_types: list[str] | None = None  # default: Flat at every size, the approximate types at 100k
    batches: list[int] = field(default_factory=lambda: [1, 64])
    dim: int | None = None  # default: the model's embedding size
    k: int = 10
    queries: int = 64
    cache: str | None = None  # where built indexes are kept between runs (default: $XMR_CACHE_DIR/bench)
    model: str = "xmr-mini"
    cold_runs: int = 5
    cold_size: int = 100_000
    keep: bool = True  # False: the indexes this run built or used are removed at its end


def cache_folder(cfg: SpeedConfig) -> Path:
    """Where the benchmark's indexes live: ``cfg.cache``, else ``$XMR_CACHE_DIR/bench``
    (``~/.cache/xmr/bench``)."""
    from ..models.encoder import cache_dir

    return Path(os.path.expanduser(cfg.cache)) if cfg.cache else Path(cache_dir()) / "bench"


def _bytes_under(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else 0


def cases(cfg: SpeedConfig) -> list[tuple[int, str]]:
    if cfg.index_types:
        return [(n, t) for n in cfg.sizes for t in cfg.index_types]
    out = [(n, "Flat") for n in cfg.sizes]
    mid = 100_000 if 100_000 in cfg.sizes else sorted(cfg.sizes)[len(cfg.sizes) // 2]
    return out + [(mid, t) for t in APPROXIMATE_DEFAULT]


def _timed(fn, reps: int) -> list[float]:
    fn()  # warm: the first query of a memory-mapped flat shard reads it in place,
    fn()  # the second makes its aligned copy for BLAS (see indexer/storage/shards.py)
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def numpy_topk(matrix: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """The baseline: one matrix product and an argpartition, as rclip does."""
    scores = queries @ matrix.T
    part = np.argpartition(-scores, k, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, 1), axis=1)
    return np.take_along_axis(part, order, 1)


def run_speed(cfg: SpeedConfig, out_dir: str | None = None) -> dict[str, Any]:
    from retrieval.models.registry import resolve
    from retrieval.search.engine import Engine

    spec = resolve(cfg.model)
    weights_hash = spec.weights_hash()
    cfg.dim = cfg.dim or int(spec.config["embed_dim"])
    cache = cache_folder(cfg)
    log.info("building the benchmark's indexes under %s (kept for the next run unless --no-keep)", cache)
    used: list[Path] = []  # index folders this run built or reused
    results = []
    by_size: dict[int, list[tuple[int, str]]] = {}
    for n, factory in cases(cfg):
        by_size.setdefault(n, []).append((n, factory))
    for n, group in sorted(by_size.items()):
        matrix = unit_vectors(n, cfg.dim, seed=0)  # the same vectors every index of this size holds
        queries = queries_near(matrix, cfg.queries, seed=12345)
        exact = numpy_topk(matrix, queries, cfg.k) + 1  # ids are rows + 1
        for _, factory in group:
            folder = cache / f"{factory.replace(',', '_')}-{n}-{cfg.dim}-{weights_hash[:8]}-c"
            used.append(folder)
            synthetic_index(folder, n, cfg.model, weights_hash, cfg.dim, FACTORY_ALIASES.get(factory, factory))
            with Engine.open(folder) as engine:
                for batch in cfg.batches:
                    results.append(_measure(engine, matrix, queries, exact, n, factory, batch, cfg, folder))
                    log.info("%s", results[-1])
        del matrix
    payload: dict[str, Any] = {"machine": machine_info(), "config": cfg.__dict__, "results": results}
    if cfg.cold_runs:
        payload["cold_cli"] = cold_cli(cfg, cache, weights_hash)
        used.append(cache / f"Flat-{cfg.cold_size}-{cfg.dim}-{weights_hash[:8]}-c")
    used = list(dict.fromkeys(used))
    if not cfg.keep:
        for folder in used:
            shutil.rmtree(folder, ignore_errors=True)
    payload["cache"] = {
        "path": str(cache),
        "folders": [f.name for f in used],  # every one named *-c: rm -rf PATH/*-c removes them all
        "bytes": sum(_bytes_under(f) for f in used),
        "kept": cfg.keep,
    }
    if out_dir:
        columns = [
            "n",
            "index",
            "batch",
            "engine_p50_ms",
            "engine_p95_ms",
            "qps",
            "numpy_p50_ms",
            "recall_at_10",
            "bytes_per_vector",
        ]
        table = markdown_table(results, columns)
        if "cold_cli" in payload:
            c = payload["cold_cli"]
            table += (
                f"\nCold CLI text query (new process, {c['n']} vectors, model {cfg.model}): "
                f"median {c['median_s']:.2f} s over {c['runs']} runs.\n"
            )
        paths = write_outputs(out_dir, "search_speed", payload, table)
        plot_speed(results, Path(out_dir) / "search_speed.png")
        payload["files"] = {k: str(v) for k, v in paths.items()}
    return payload


def _measure(
    engine,
    matrix: np.ndarray,
    queries: np.ndarray,
    exact: np.ndarray,
    n: int,
    factory: str,
    batch: int,
    cfg: SpeedConfig,
    folder: Path,
) -> dict[str, Any]:
    reps = max(3, min(30, cfg.queries // batch * 4)) if n < 1_000_000 else max(3, min(10, cfg.queries // batch))
    groups = [queries[(i * batch) % len(queries) :][:batch] for i in range(reps)]
    it = iter(range(10**9))

    def engine_call() -> None:
        q = groups[next(it) % len(groups)]
        if batch == 1:
            engine.search(vector=q[0], to="image", k=cfg.k)
        else:
            engine.search_batch([{"vector": v} for v in q], to="image", k=cfg.k)

    def numpy_call() -> None:
        numpy_topk(matrix, groups[next(it) % len(groups)], cfg.k)

    engine_t = np.array(_timed(engine_call, reps)) * 1000
    numpy_t = np.array(_timed(numpy_call, reps)) * 1000
    found = np.array([[h.id for h in engine.search(vector=q, to="image", k=cfg.k)] for q in queries[:32]])
    recall = float(np.mean([len(set(f) & set(e)) / cfg.k for f, e in zip(found, exact[:32])]))
    shard_bytes = sum(p.stat().st_size for p in (folder / "shards").glob("image-*.faiss"))
    return {
        "n": n,
        "dim": cfg.dim,
        "batch": batch,
        "index": factory,
        "engine_p50_ms": float(np.percentile(engine_t, 50)),
        "engine_p95_ms": float(np.percentile(engine_t, 95)),
        "qps": batch / float(np.median(engine_t) / 1000),
        "numpy_p50_ms": float(np.percentile(numpy_t, 50)),
        "numpy_p95_ms": float(np.percentile(numpy_t, 95)),
        "recall_at_10": recall if factory != "Flat" else None,
        "bytes_per_vector": shard_bytes / n,
    }


def cold_cli(cfg: SpeedConfig, cache: Path, weights_hash: str) -> dict[str, Any]:
    """Wall time of ``xmr search TEXT --index DIR --json`` in a new process (the model's ONNX
    export made once beforehand, as any first query makes it)."""
    from retrieval.models.registry import create_model

    folder = cache / f"Flat-{cfg.cold_size}-{cfg.dim}-{weights_hash[:8]}-c"
    synthetic_index(folder, cfg.cold_size, cfg.model, weights_hash, cfg.dim)
    create_model(cfg.model, runtime="onnx")  # makes the export once
    exe = Path(sys.executable).parent / "xmr"  # this environment's console script, as a user runs it
    command = [str(exe)] if exe.exists() else [sys.executable, "-m", "cli"]
    times = []
    for _ in range(cfg.cold_runs):
        start = time.perf_counter()
        proc = subprocess.run(
            [*command, "search", "a dog on a beach", "--index", str(folder), "--json", "--to", "image"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        times.append(time.perf_counter() - start)
        if proc.returncode != 0:
            raise RuntimeError(f"cold CLI query failed: {proc.stderr.strip()}")
    return {"n": cfg.cold_size, "runs": cfg.cold_runs, "median_s": float(np.median(times)), "times_s": times}


def plot_speed(results: list[dict[str, Any]], path: Path) -> None:
    from ..extras import pyplot

    plt = pyplot(path)
    if plt is None:
        return None
    fig = speed_figure(results)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def speed_figure(results: list[dict[str, Any]]):  # noqa: ANN201 - a matplotlib Figure
    """The speed plot: Engine and numpy latency of Flat by size, and each other type at its size."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for batch in sorted({r["batch"] for r in results}):
        flat = sorted((r for r in results if r["index"] == "Flat" and r["batch"] == batch), key=lambda r: r["n"])
        if flat:
            ax.plot(
                [r["n"] for r in flat], [r["engine_p50_ms"] for r in flat], "o-", label=f"Engine Flat, batch {batch}"
            )
            ax.plot(
                [r["n"] for r in flat], [r["numpy_p50_ms"] for r in flat], "x--", label=f"numpy top-k, batch {batch}"
            )
    # The other types sit at one size with close latencies: labels beside the points would pile
    # up, so each has its own marker, named in the legend.
    others = [r for r in results if r["index"] != "Flat" and r["batch"] == 1]
    for n, (r, marker) in enumerate(zip(others, "s^Dv<>PX*hd")):
        ax.scatter(
            [r["n"]], [r["engine_p50_ms"]], marker=marker, color=f"C{4 + n}", zorder=3, label=f"{r['index']}, batch 1"
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("vectors in the index")
    ax.set_ylabel("p50 latency per call (ms)")
    ax.set_title("Search latency: Engine vs numpy top-k")
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return fig
