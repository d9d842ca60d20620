"""What bounds reading text in a folder of photos: the first look (which decides whether a
picture holds text) at several sizes, beside the image tower's embedding of the same pictures.
For each look size, detection alone and the reader's look (detection, then its boxes' crops
read at that size): seconds a photo without text, the share of those photos passed on to a
full read (textures taken for text), and the share of pictures with text (``xmr bench ocr``'s
signs, pages and screens) let through (one missed here is never read). Embedding: xmr-mini's
image tower on the same photos, preprocessed, in batches of 32.

    python benchmarks/ocr_look.py [--pictures 40] [--photos DIR]   # writes benchmarks/results/ocr_look.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from retrieval import create_model
from retrieval.bench.ocr import KINDS, _make, _photos, _phrases
from retrieval.bench.report import machine_info
from retrieval.models import ocr
from retrieval.models.ocr import TextReader, _bgr

ROOT = Path(__file__).resolve().parent.parent
SIDES = (320, 480, 640)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pictures", type=int, default=40)
    parser.add_argument("--photos", default="/root/xmr-data/gcompris-photos/images")
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/ocr_look.json"))
    args = parser.parse_args()
    reader = TextReader()
    reader.load()
    encoder = create_model("xmr-mini")
    rng = np.random.default_rng(0)
    work = Path(tempfile.mkdtemp(prefix="xmr-ocr-look-"))
    try:
        phrases = _phrases(rng, args.pictures * len(KINDS))
        backgrounds = _photos(Path(args.photos), args.pictures) if Path(args.photos).is_dir() else []
        made, plain = _make(work / "media", rng, phrases, backgrounds, args.pictures)
        pictures = {p: Image.open(p).convert("RGB") for p, *_ in made} | {
            p: Image.open(p).convert("RGB") for p in plain
        }
        reader._engine.text_det(_bgr(pictures[plain[0]].resize((320, 240))))  # warm
        rows = []
        for side in SIDES:
            took, passed = [], 0
            for path in plain:
                started = time.perf_counter()
                look = pictures[path].copy()
                look.thumbnail((side, side))
                boxes, _ = reader._engine.text_det(_bgr(look))
                took.append(time.perf_counter() - started)
                passed += boxes is not None and len(boxes) > 0
            through = []
            for path, kind, *_ in made:
                look = pictures[path].copy()
                look.thumbnail((side, side))
                boxes, _ = reader._engine.text_det(_bgr(look))
                through.append((kind, boxes is not None and len(boxes) > 0))
            ocr.LOOK_SIDE = side  # the reader's own look: the boxes' crops read too
            read_took, read_passed = [], 0
            for path in plain:
                started = time.perf_counter()
                read_passed += reader._looks_written(pictures[path])
                read_took.append(time.perf_counter() - started)
            read_through = [(kind, reader._looks_written(pictures[path])) for path, kind, *_ in made]
            rows.append(
                {
                    "look_side": side,
                    "seconds_per_photo": round(float(np.median(took)), 4),
                    "photos_passed_on": round(passed / len(plain), 3),
                    "read_look_seconds_per_photo": round(float(np.median(read_took)), 4),
                    "read_look_photos_passed_on": round(read_passed / len(plain), 3),
                    **{
                        f"read_look_{kind}_let_through": round(
                            float(np.mean([ok for k, ok in read_through if k == kind])), 3
                        )
                        for kind in KINDS
                    },
                    **{
                        f"{kind}_let_through": round(float(np.mean([ok for k, ok in through if k == kind])), 3)
                        for kind in KINDS
                    },
                }
            )
            print(rows[-1], flush=True)
        encoder.encode_image([pictures[plain[0]]])  # warm
        started = time.perf_counter()
        encoder.encode_image([pictures[p] for p in plain], batch_size=32)
        embed = (time.perf_counter() - started) / len(plain)
        result = {
            "pictures": len(made) + len(plain),
            "looks": rows,
            "embed_seconds_per_photo": round(embed, 4),
            "machine": machine_info(),
        }
        print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=1))
        Path(args.out).write_text(json.dumps(result, indent=1))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
