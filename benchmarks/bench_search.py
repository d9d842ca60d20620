"""Thin entry point of `xmr bench speed` (Engine.search latency and QPS against a numpy top-k, at 10k/100k/1M
vectors and several index types).

Writes benchmarks/results/search_speed.{json,md,png}. Usage: python benchmarks/bench_search.py --help
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cli import app  # noqa: E402

if __name__ == "__main__":
    args = sys.argv[1:]
    if "--out" not in args:  # from the repository: refresh the committed tables
        args += ["--out", str(Path(__file__).resolve().parent / "results")]
    app(["bench", "speed", *args])
