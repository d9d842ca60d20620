"""Do the light and full installs embed text alike? Recall on every test split, three text paths.

The light install runs xmr-mini's shipped graphs on ONNX Runtime (weights read from the shipped
safetensors, parameters unfused: ONNX Runtime fuses them at load); the full install trains and
runs GPUs on torch; before the light install, queries and indexing ran a graph exported from
torch with its weights folded in. This embeds each test split's captions with all three, the
images and audio once (shipped graphs), and prints R@1/R@10 both ways per path, the largest
change between paths, and the largest difference between their text vectors.

    python benchmarks/light_parity.py [--data /work/data] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import glob
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from retrieval import create_model  # noqa: E402
from retrieval.bench.recall import directions, load_captioned  # noqa: E402
from retrieval.bench.report import machine_info  # noqa: E402
from retrieval.models.onnx_runtime import OnnxEncoder  # noqa: E402

PATHS = ("light", "torch", "folded export")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="/work/data", help="folder of data sets (DATASET/test*.jsonl)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()
    from retrieval.models.export import export_onnx

    splits = sorted(glob.glob(f"{args.data}/*/test*.jsonl"))
    light = create_model("xmr-mini", runtime="onnx")
    torch_model = create_model("xmr-mini", device="cpu", runtime="torch")
    folded = OnnxEncoder(light.spec, export_onnx(torch_model, Path(tempfile.mkdtemp()) / "export"))
    encoders = dict(zip(PATHS, (light, torch_model, folded)))
    rows, started, worst_vec = [], time.time(), 0.0
    for split in splits:
        items = load_captioned(split)
        for modality in ("image", "audio"):
            mine = [it for it in items if it.modality == modality]
            if not mine:
                continue
            texts = list(dict.fromkeys(c for it in mine for c in it.captions))
            paths = [it.path for it in mine]
            media = light.encode_image(paths) if modality == "image" else light.encode_audio(paths)
            vecs = {name: enc.encode_text(texts) for name, enc in encoders.items()}
            worst_vec = max(worst_vec, *(float(np.abs(vecs[p] - vecs["light"]).max()) for p in PATHS))
            scores = {name: directions(mine, media, texts, v) for name, v in vecs.items()}
            for direction in scores["light"]:
                row = {"split": str(Path(split).relative_to(args.data)), "direction": direction}
                row["queries"] = scores["light"][direction]["queries"]
                for name in PATHS:
                    for k in ("R@1", "R@10"):
                        row[f"{k} {name}"] = round(scores[name][direction][k], 2)
                rows.append(row)
                print(json.dumps(row), flush=True)
    worst = max(abs(r[f"{k} {p}"] - r[f"{k} light"]) for r in rows for k in ("R@1", "R@10") for p in PATHS)
    payload = {
        "machine": machine_info(),
        "seconds": round(time.time() - started, 1),
        "largest_recall_change_points": worst,
        "largest_text_vector_difference": worst_vec,
        "rows": rows,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "light_parity.json").write_text(json.dumps(payload, indent=2) + "\n")
    print(
        f"{len(rows)} split-directions: largest R@1/R@10 change {worst:.2f} points, text vectors within {worst_vec:.2e}"
    )


if __name__ == "__main__":
    main()
