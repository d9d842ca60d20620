"""Thin entry point of `xmr bench index` ( indexing throughput end to end against the encoder alone).

Writes benchmarks/results/index_speed.{json,md}. Usage: python benchmarks/bench_index.py --help
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cli import app  # noqa: E402

if __name__ == "__main__":
    args = sys.argv[1:]
    if "--out" not in args:  # from the repository: refresh the committed tables
        args += ["--out", str(Path(__file__).resolve().parent / "results")]
    app(["bench", "index", *args])
