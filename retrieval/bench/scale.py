"""``xmr bench scale``: an index of ``--vectors`` synthetic clustered 384-d vectors built through
the project's own storage (:class:`indexer.ingest.bulk.BulkIndex`: the shards with ``--index-type auto``
and its changes of type, SQL rows bulk-inserted, a checkpoint every ``BLOCK`` vectors), then
searched through :class:`retrieval.Engine` in a fresh process.

Measured: build time, peak RSS and bytes written (``/proc/self/io``); bytes on disk (FAISS codes,
stored float16 vectors, SQL); search: open time, RSS (and how much of it is file pages, the
memory-mapped IVF lists), query p50/p95 for 1 and for 64 queries at a time, recall@10
against exact search over the same float32 vectors for 1,000 queries.

Every step is resumable (a 10M build takes hours on two cores): the build goes on from the
vectors its index holds (blocks are generated from their number, so the same vectors come
back), its per-block numbers are appended to ``build.jsonl``, the exact answers are saved once.

    xmr bench scale --vectors 1000000 [--max-memory 2G] [--work DIR]
"""

from __future__ import annotations

import json
import logging
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from .report import machine_info, markdown_table, write_outputs

log = logging.getLogger(__name__)
DIM = 384
BLOCK = 100_000  # vectors a checkpoint, and the unit the generator reproduces
COARSE, FINE = 1_000, 100  # 1,000 topics of 100 sub-topics each
QUERIES, K = 1_000, 10


class Synthetic:
    """Clustered unit vectors: a topic centre, plus a sub-topic offset, plus noise; each block
    of ``BLOCK`` vectors from its own seed, so any block can be made again alone."""

    def __init__(self, seed: int = 0, dim: int = DIM) -> None:
        rng = np.random.default_rng([seed, 1])
        self.seed, self.dim = seed, dim
        self.topics = rng.standard_normal((COARSE, dim)).astype(np.float32)
        self.subtopics = 0.6 * rng.standard_normal((COARSE * FINE, dim)).astype(np.float32)

    def _make(self, rng: np.random.Generator, n: int) -> np.ndarray:
        fine = rng.integers(COARSE * FINE, size=n)
        v = self.topics[fine // FINE] + self.subtopics[fine]
        v += 0.5 * rng.standard_normal((n, self.dim), dtype=np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    def block(self, number: int, n: int = BLOCK) -> np.ndarray:
        return self._make(np.random.default_rng([self.seed, 2, number]), n)

    def queries(self, n: int = QUERIES) -> np.ndarray:
        return self._make(np.random.default_rng([self.seed, 3]), n)


def written_bytes() -> int:
    with open("/proc/self/io") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("write_bytes"))


def _status() -> dict[str, int]:
    """This process's memory from /proc (bytes): resident now and at peak, anonymous and file-backed."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                out[key] = int(value.split()[0]) * 1024
    return out


# --- build (a child process) -----------------------------------------------------------------
def build(work: Path, vectors: int, max_memory: int, block: int = BLOCK, seed: int = 0) -> None:
    """Build or resume the index in ``work/index``; a line of numbers a block in ``work/build.jsonl``."""
    from indexer.ingest.bulk import BulkIndex, IndexSpec

    work.mkdir(parents=True, exist_ok=True)
    journal = work / "build.jsonl"
    before = {r.get("block_size", BLOCK) for r in _journal(work) if r["event"] == "opened"}
    if before - {block}:  # the vectors are made block by block: another size, other vectors
        raise RuntimeError(f"{work} was built in blocks of {before.pop()}, not {block}: pass that --block")
    started, wrote = time.perf_counter(), written_bytes()
    spec = IndexSpec(model="bench-scale", weights_hash="synthetic", dim=DIM, index_type="auto", modalities=("image",))
    synthetic = Synthetic(seed)
    with BulkIndex(work / "index", spec, "image", max_memory=max_memory) as index:
        _log(
            journal,
            {
                "event": "opened",
                "block_size": block,
                "count": index.count,
                "seconds": time.perf_counter() - started,
                "written": written_bytes() - wrote,
                "peak_rss": _peak(),
            },
        )
        if index.count % block and index.count < vectors:
            raise RuntimeError(
                f"{work / 'index'} holds {index.count} vectors, not whole blocks of {block}: another run's"
            )
        for number in range(-(-index.count // block), -(-vectors // block)):
            t, w = time.perf_counter(), written_bytes()
            n = min(block, vectors - number * block)
            rows = [{"path": f"v{number:05d}/{i:06d}.png", "ext": "png"} for i in range(n)]
            ids = index.add(synthetic.block(number, n), rows)
            _log(
                journal,
                {
                    "event": "block",
                    "block": number,
                    "count": index.count,
                    "first_id": int(ids[0]),
                    "seconds": time.perf_counter() - t,
                    "written": written_bytes() - w,
                    "peak_rss": _peak(),
                    "type": index.choice().factory,
                },
            )
            log.info("scale: %d/%d vectors (%s)", index.count, vectors, index.choice().factory)


def _peak() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _log(journal: Path, record: dict) -> None:
    with open(journal, "a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


# --- exact answers ---------------------------------------------------------------------------
def exact(work: Path, vectors: int, block: int = BLOCK, seed: int = 0) -> np.ndarray:
    """Positions of the exact top 10 of every query over the float32 vectors (made once)."""
    path = work / f"exact-{vectors}-{block}.npy"
    if path.exists():
        return np.load(path)
    from indexer.storage.exact import topk_inner_product

    synthetic = Synthetic(seed)
    queries = synthetic.queries()
    best_d = np.full((QUERIES, 0), -np.inf, np.float32)
    best_i = np.zeros((QUERIES, 0), np.int64)
    for number in range(-(-vectors // block)):
        chunk = synthetic.block(number, min(block, vectors - number * block))
        d, i = topk_inner_product(chunk, queries, K)
        d, i = np.concatenate([best_d, d], axis=1), np.concatenate([best_i, i + number * block], axis=1)
        order = np.argsort(-d, axis=1, kind="stable")[:, :K]
        best_d, best_i = np.take_along_axis(d, order, axis=1), np.take_along_axis(i, order, axis=1)
    np.save(path, best_i)
    return best_i


# --- search (a child process) ----------------------------------------------------------------
def search(work: Path, vectors: int, block: int = BLOCK, seed: int = 0) -> dict[str, Any]:
    """Open the index in this (fresh) process and query it: times, memory, recall@10."""
    from retrieval import Engine

    truth = exact(work, vectors, block, seed)
    first_id = next(r["first_id"] for r in _journal(work) if r.get("block") == 0)
    queries = Synthetic(seed).queries()
    before = _status()
    t = time.perf_counter()
    engine = Engine.open(work / "index")
    shards = engine.shards("image")
    opened = time.perf_counter() - t
    loaded = _status()
    single, found = [], []
    for q in queries:
        t = time.perf_counter()
        hits = engine.search(vector=q, to="image", k=K)
        single.append(time.perf_counter() - t)
        found.append([h.id - first_id for h in hits])
    batches = []
    for a in range(0, QUERIES, 64):
        batch = [{"vector": q} for q in queries[a : a + 64]]
        t = time.perf_counter()
        engine.search_batch(batch, to="image", k=K)
        batches.append(time.perf_counter() - t)
    recall = float(np.mean([len(set(f) & set(e.tolist())) / K for f, e in zip(found, truth)]))
    after = _status()
    facts = engine.info()
    engine.close()
    return {
        "type": facts["types"]["image"]["factory"],
        "reason": facts["types"]["image"]["reason"],
        "vectors": int(shards.ntotal),
        "open_seconds": round(opened, 2),
        "rss_before_open_mib": _mib(before["VmRSS"]),
        "rss_open_mib": _mib(loaded["VmRSS"]),
        "search_rss_mib": _mib(after["VmRSS"]),
        "search_peak_rss_mib": _mib(after["VmHWM"]),
        "search_rss_file_mib": _mib(after["RssFile"]),
        "search_rss_anon_mib": _mib(after["RssAnon"]),
        "p50_ms_1": _ms(np.percentile(single, 50)),
        "p95_ms_1": _ms(np.percentile(single, 95)),
        "p50_ms_64": _ms(np.percentile(batches, 50)),
        "p95_ms_64": _ms(np.percentile(batches, 95)),
        "recall_at_10": round(recall, 4),
    }


def _mib(n: float) -> float:
    return round(n / 2**20, 1)


def _ms(s: float) -> float:
    return round(float(s) * 1000, 2)


def _journal(work: Path) -> list[dict]:
    path = work / "build.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def _disk(index: Path) -> dict[str, int]:
    shards = index / "shards"
    files = list(shards.iterdir()) if shards.exists() else []
    return {
        "codes_bytes": sum(p.stat().st_size for p in files if p.suffix == ".faiss"),
        "stored_vectors_bytes": sum(p.stat().st_size for p in files if "-vectors." in p.name),
        "sql_bytes": sum(p.stat().st_size for p in index.glob("items.db*")),
    }


# --- the whole run ---------------------------------------------------------------------------
def run_scale(vectors: int, work: Path, max_memory: int, out: Path | None = None, block: int = BLOCK) -> dict[str, Any]:
    """Build (or resume), compute the exact answers, search in a fresh process, report."""
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    built = max((r["count"] for r in _journal(work) if r["event"] == "block"), default=0) >= vectors
    for step in ("search",) if built else ("build", "search"):  # a finished build is not opened again
        cmd = [
            sys.executable,
            "-m",
            "retrieval.bench.scale",
            step,
            str(work),
            str(vectors),
            str(max_memory),
            str(block),
        ]
        proc = subprocess.run(
            cmd, stdout=subprocess.PIPE, text=True, check=False, cwd=Path(__file__).resolve().parents[2]
        )
        if proc.returncode != 0:
            raise RuntimeError(f"bench scale: the {step} step failed (exit {proc.returncode}); run again to resume")
    searched = json.loads((work / "search.json").read_text())
    records = _journal(work)
    blocks = [r for r in records if r["event"] == "block"]
    final_bytes = _disk(work / "index")
    written = sum(r["written"] for r in records)
    result = {
        "vectors": vectors,
        "dim": DIM,
        "max_memory_gib": round(max_memory / 2**30, 2),
        "block": block,
        "build_seconds": round(sum(r["seconds"] for r in records), 1),
        "build_peak_rss_mib": _mib(max(r["peak_rss"] for r in records)),
        "build_written_bytes": written,
        "build_runs": sum(r["event"] == "opened" for r in records),
        "types_during_build": sorted({r["type"] for r in blocks}, key=[r["type"] for r in blocks].index),
        **final_bytes,
        "written_over_final": round(written / max(1, sum(final_bytes.values())), 2),
        **searched,
    }
    if out is not None:
        rows = [{"measure": k, "value": v} for k, v in result.items() if k != "reason"]
        result["files"] = write_outputs(
            out,
            f"scale-{vectors}-{budget_label(max_memory)}",
            {"machine": machine_info(), "result": result},
            markdown_table(rows, ["measure", "value"]),
        )
    return result


def budget_label(max_memory: int) -> str:
    """``2G``, ``512M``: the budget in a file name."""
    return f"{max_memory / 2**30:g}G" if max_memory >= 2**30 else f"{max_memory / 2**20:g}M"


def main(argv: list[str]) -> None:
    step, work, vectors, max_memory = argv[0], Path(argv[1]), int(argv[2]), int(argv[3])
    block = int(argv[4]) if len(argv) > 4 else BLOCK
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if step == "build":
        build(work, vectors, max_memory, block)
    else:
        result = search(work, vectors, block)
        (work / "search.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main(sys.argv[1:])
