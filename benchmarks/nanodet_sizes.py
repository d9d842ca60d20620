"""NanoDet's graph (xmr-mini-photo's eyes) on the CPU at several picture sizes, now that the
shipped graph is cut to its convolutions (free batch and size; ``benchmarks/convert_nanodet.py``):
pictures a second for the graph alone, two ways, alternated round by round in one run:

* side by side: ``workers`` pictures at a time on threads sharing one single-threaded session
  (``NanoDetFeatures.run_many``, what xmr-mini-photo does);
* batched: ``--batch`` pictures in one run of a session with ONNX Runtime's default threads.

    PYTHONPATH=. python benchmarks/nanodet_sizes.py [--sizes 416 320] [--pictures 96] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from retrieval.models import nanodet
from retrieval.models.spec import WEIGHTS_DIR

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[416, 352, 320, 288, 256])
    parser.add_argument("--pictures", type=int, default=96)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/nanodet_sizes.json")
    args = parser.parse_args()
    graph = WEIGHTS_DIR / "nanodet-features.onnx"
    cores = len(os.sched_getaffinity(0))
    rng = np.random.default_rng(0)
    backbone = nanodet.NanoDetFeatures(graph)
    inputs = {s: rng.standard_normal((args.pictures, 3, s, s)).astype(np.float32) for s in args.sizes}
    session = backbone.session()
    for x in inputs.values():  # loaded and warmed at every size before the clock
        backbone.run_many(list(x[:cores]), cores)
        session.run(None, {nanodet.INPUT: x[: args.batch]})
    rounds: list[dict] = []
    for r in range(args.rounds):
        for s, x in inputs.items():
            start = time.perf_counter()
            backbone.run_many(list(x), cores)
            side = len(x) / (time.perf_counter() - start)
            start = time.perf_counter()
            for b in range(0, len(x), args.batch):
                session.run(None, {nanodet.INPUT: x[b : b + args.batch]})
            batched = len(x) / (time.perf_counter() - start)
            rounds.append(
                {"round": r, "size": s, "side_by_side_per_s": round(side, 1), "batched_per_s": round(batched, 1)}
            )
            print(f"round {r} size {s}: side by side {side:.1f}/s, batches of {args.batch} {batched:.1f}/s", flush=True)
    summary = {
        s: {
            mode: [min(v), max(v)]
            for mode in ("side_by_side_per_s", "batched_per_s")
            for v in [[row[mode] for row in rounds if row["size"] == s]]
        }
        for s in args.sizes
    }
    result = {
        "host": platform.processor() or platform.machine(),
        "cores": cores,
        "pictures": args.pictures,
        "batch": args.batch,
        "graph_sha256": backbone.sha256,
        "summary_min_max": summary,
        "rounds": rounds,
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
