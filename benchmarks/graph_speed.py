"""The shipped graphs (parameters unfused, read from safetensors at load) against a graph exported
with its weights folded in (what xmr ran before): session load time and forward passes per
second for each tower, alternated in one process so host noise hits both alike.

    python benchmarks/graph_speed.py [--reps 7] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from retrieval import create_model  # noqa: E402
from retrieval.bench.report import machine_info  # noqa: E402
from retrieval.models.encoder import pad_ids  # noqa: E402
from retrieval.models.onnx_runtime import OnnxEncoder  # noqa: E402
from retrieval.models.packaged import graphs_dir  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()
    from retrieval.models.export import export_onnx

    spec = create_model("xmr-mini", runtime="onnx").spec
    folded_dir = export_onnx(create_model("xmr-mini", device="cpu", runtime="torch"), Path(tempfile.mkdtemp()) / "x")
    rng = np.random.default_rng(0)
    ids, mask = pad_ids([[101, *rng.integers(1000, 20000, 14).tolist(), 102] for _ in range(args.batch)])
    inputs = {
        "text": lambda e: e._text_forward(ids, mask),
        "image": lambda e: e._image_forward(rng.random((args.batch, 3, 64, 64), dtype=np.float32)),
        "audio": lambda e: e._audio_forward(rng.standard_normal((args.batch, 64, 501)).astype(np.float32)),
    }
    rows = []
    for modality, run in inputs.items():
        load = {"shipped": [], "folded": []}
        rate = {"shipped": [], "folded": []}
        for _ in range(args.reps):
            for name in ("shipped", "folded"):
                started = time.perf_counter()
                enc = OnnxEncoder(spec, folded_dir if name == "folded" else graphs_dir("xmr-mini"))
                enc.warm([modality])
                load[name].append(time.perf_counter() - started)
                run(enc)
                started = time.perf_counter()
                run(enc)
                rate[name].append(args.batch / (time.perf_counter() - started))
        row = {"tower": modality, "batch": args.batch}
        for name in ("shipped", "folded"):
            row[f"{name} load s"] = round(statistics.median(load[name]), 3)
            row[f"{name} items/s"] = round(statistics.median(rate[name]), 1)
        rows.append(row)
        print(json.dumps(row), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    payload = {"machine": machine_info(), "reps": args.reps, "rows": rows}
    (out / "graph_speed.json").write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()
