"""Thin entry point of `xmr bench serve` (HTTP search against the engine in-process, cached
thumbnails, concurrent clients, Enter to the first thumbnail in Chromium).

Writes benchmarks/results/serve_speed.{json,md}. Usage: python benchmarks/bench_serve.py --help
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cli import app  # noqa: E402

if __name__ == "__main__":
    args = sys.argv[1:]
    if "--out" not in args:  # from the repository: refresh the committed tables
        args += ["--out", str(Path(__file__).resolve().parent / "results")]
    app(["bench", "serve", *args])
