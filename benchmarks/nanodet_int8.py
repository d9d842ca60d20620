"""NanoDet's graph quantised to int8 by ONNX Runtime's static quantisation (QDQ, per-channel
weights, calibrated on pictures of a folder) against the shipped float32 graph: pictures a second
(one at a time, two intra-op threads) and how far the pooled features move (cosine, and the top
COCO class kept). An exploration for issue 37's 40/s: nothing here ships.

    PYTHONPATH=. python benchmarks/nanodet_int8.py FOLDER [--calibrate 32] [--test 80] [--activations QUInt8]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from retrieval.models import nanodet
from retrieval.models.spec import WEIGHTS_DIR

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="pictures (*.png, *.jpg): the first calibrate, the last test")
    parser.add_argument("--calibrate", type=int, default=32)
    parser.add_argument("--test", type=int, default=80)
    parser.add_argument("--activations", choices=["QUInt8", "QInt8"], default="QUInt8")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/nanodet_int8.json")
    args = parser.parse_args()
    files = sorted(p for p in args.folder.iterdir() if p.suffix.lower() in {".png", ".jpg", ".jpeg"})
    calib = [nanodet.to_input(Image.open(f))[None] for f in files[: args.calibrate]]
    test = [nanodet.to_input(Image.open(f))[None] for f in files[-args.test :]]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter(calib)

        def get_next(self) -> dict | None:
            x = next(self.items, None)
            return None if x is None else {nanodet.INPUT: x}

    src = str(WEIGHTS_DIR / "nanodet-features.onnx")
    with tempfile.TemporaryDirectory() as tmp:
        pre, q8 = f"{tmp}/pre.onnx", f"{tmp}/int8.onnx"
        quant_pre_process(src, pre)
        activations = getattr(QuantType, args.activations)
        quantize_static(
            pre, q8, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=activations, weight_type=QuantType.QInt8,
            extra_options={"ActivationSymmetric": args.activations == "QInt8"},
        )  # fmt: skip

        def session(path: str) -> ort.InferenceSession:
            options = ort.SessionOptions()
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            options.intra_op_num_threads = 2
            return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])

        fp32, int8 = session(src), session(q8)
        names = [o.name for o in fp32.get_outputs()]

        def pooled(s: ort.InferenceSession) -> np.ndarray:
            return np.stack([nanodet.pool(dict(zip(names, s.run(None, {nanodet.INPUT: x}))))[0] for x in test])

        a, b = pooled(fp32), pooled(int8)
        speeds: dict[str, list[float]] = {"fp32": [], "int8": []}
        for _ in range(2):  # alternated
            for label, s in (("fp32", fp32), ("int8", int8)):
                start = time.perf_counter()
                for x in test:
                    s.run(None, {nanodet.INPUT: x})
                speeds[label].append(round(len(test) / (time.perf_counter() - start), 1))
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    top = float(np.mean(a[:, nanodet.CLASS_SLICE].argmax(1) == b[:, nanodet.CLASS_SLICE].argmax(1)))
    result = {
        "host": platform.processor() or platform.machine(),
        "activations": args.activations,
        "calibrate": len(calib),
        "test": len(test),
        "pictures_per_s": speeds,
        "pooled_cosine_min": round(float(cos.min()), 4),
        "pooled_cosine_mean": round(float(cos.mean()), 4),
        "top_class_kept": round(top, 3),
    }
    print(json.dumps(result))
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
