"""Thin entry point of `xmr bench memory` (peak RSS of the indexer and its decode workers while
indexing N generated photos, for several N).

Writes benchmarks/results/index_memory.{json,md}. Usage: python benchmarks/bench_memory.py --help
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cli import app  # noqa: E402

if __name__ == "__main__":
    args = sys.argv[1:]
    if "--out" not in args:  # from the repository: refresh the committed tables
        args += ["--out", str(Path(__file__).resolve().parent / "results")]
    app(["bench", "memory", *args])
