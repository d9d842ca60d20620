"""Bytes written by checkpoints: ``--items`` synthetic clustered unit vectors added to one
modality's shards ``--checkpoint`` at a time, each checkpoint flushed (written and fsynced) as
``xmr index`` flushes it, in one run. Reports the bytes the process wrote (``/proc/self/io``),
the final size of the shard files, their ratio (goal <= 3), and what rewriting the whole last
shard at every checkpoint (xmr before delta shards) would have written for the same run.

    python benchmarks/checkpoint_bytes.py [--items 1000000] [--dim 384]   # results/checkpoint_bytes.json
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from indexer.storage.shards import ShardSet  # noqa: E402
from retrieval.bench.report import machine_info  # noqa: E402


def written_bytes() -> int:
    with open("/proc/self/io") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("write_bytes"))


def clustered(n: int, dim: int, rng: np.random.Generator, centres: np.ndarray) -> np.ndarray:
    v = centres[rng.integers(len(centres), size=n)] + 0.3 * rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--checkpoint", type=int, default=4096, help="items a checkpoint (xmr index's default)")
    parser.add_argument("--shard-size", type=int, default=250_000)
    parser.add_argument("--factory", default="Flat")
    parser.add_argument("--work", default=None, help="folder for the shards (default: a temporary one)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="xmr-ckpt-"))
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((1000, args.dim)).astype(np.float32)
    shards = ShardSet(work, "image", args.dim, args.factory, shard_size=args.shard_size).load()
    before, started = written_bytes(), time.perf_counter()
    rewrite_all = 0  # the old way: the whole dirty shard written at each checkpoint
    bytes_per_vector = args.dim * 4 + 8
    for start in range(0, args.items, args.checkpoint):
        n = min(args.checkpoint, args.items - start)
        shards.add(clustered(n, args.dim, rng, centres), np.arange(start, start + n, dtype=np.int64))
        shards.flush()
        end = start + n  # every shard this checkpoint touched, written whole, as it holds after it
        for shard in range(start // args.shard_size, (end - 1) // args.shard_size + 1):
            rewrite_all += (min(end, (shard + 1) * args.shard_size) - shard * args.shard_size) * bytes_per_vector
    seconds = time.perf_counter() - started
    wrote = written_bytes() - before
    final = sum(p.stat().st_size for p in shards.existing_paths())
    result = {
        "items": args.items,
        "dim": args.dim,
        "checkpoint": args.checkpoint,
        "shard_size": args.shard_size,
        "factory": args.factory,
        "checkpoints": -(-args.items // args.checkpoint),
        "files": len(shards.existing_paths()),
        "final_bytes": final,
        "written_bytes": wrote,
        "written_over_final": round(wrote / final, 2),
        "rewrite_all_bytes": rewrite_all,
        "rewrite_all_over_final": round(rewrite_all / final, 1),
        "seconds": round(seconds, 1),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }
    print(json.dumps(result), flush=True)
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "checkpoint_bytes.json").write_text(
        json.dumps({"machine": machine_info(), "result": result}, indent=2) + "\n"
    )


if __name__ == "__main__":
    main()
