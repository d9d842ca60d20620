"""NanoDet's graph (xmr-mini-photo's eyes) on the CPU: pictures one after another on a session
with ONNX Runtime's default intra-op threads, against two pictures side by side on threads sharing
one single-threaded session (``NanoDetFeatures.run_many``, what xmr-mini-photo does), alternated.

    python benchmarks/nanodet_threads.py [--pictures 160] [--rounds 3]  # writes results/nanodet_threads.json
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
    parser.add_argument("--pictures", type=int, default=160)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/nanodet_threads.json")
    args = parser.parse_args()
    graph = WEIGHTS_DIR / "nanodet-features.onnx"
    rng = np.random.default_rng(0)
    inputs = [rng.standard_normal((3, nanodet.SIZE, nanodet.SIZE)).astype(np.float32) for _ in range(args.pictures)]
    one_at_a_time = nanodet.NanoDetFeatures(graph)  # ONNX Runtime's default intra-op threads
    side_by_side = nanodet.NanoDetFeatures(graph)  # run_many: its own single-threaded session
    cores = len(os.sched_getaffinity(0))
    one_at_a_time.run(inputs[0])  # loaded and warmed before the clock
    side_by_side.run_many(inputs[:cores], cores)
    rounds = []
    for r in range(args.rounds):
        start = time.perf_counter()
        for x in inputs:
            one_at_a_time.run(x)
        a = len(inputs) / (time.perf_counter() - start)
        start = time.perf_counter()
        side_by_side.run_many(inputs, cores)
        b = len(inputs) / (time.perf_counter() - start)
        rounds.append({"one_at_a_time_per_s": round(a, 1), "side_by_side_per_s": round(b, 1), "ratio": round(b / a, 2)})
        print(f"round {r}: one at a time {a:.1f}/s, {cores} side by side {b:.1f}/s ({b / a:.2f}x)", flush=True)
    result = {"host": platform.processor() or platform.machine(), "cores": cores, "pictures": args.pictures}
    args.out.write_text(json.dumps(result | {"rounds": rounds}, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
