"""Thin entry point of `xmr bench recall` (recall@k in every direction on pairs manifests, Karpathy JSON
or AudioCaps/Clotho CSV).

Writes benchmarks/results/recall-MODEL.{json,md,png}. Usage: python benchmarks/bench_recall.py --help
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cli import app  # noqa: E402

if __name__ == "__main__":
    args = sys.argv[1:]
    if "--out" not in args:  # from the repository: refresh the committed tables
        args += ["--out", str(Path(__file__).resolve().parent / "results")]
    app(["bench", "recall", *args])
