"""Build the media folder that `xmr bench index` is measured on, from prepared data sets.

The folder mixes what a person's media folder holds: small drawings (Open Clip Art PNGs),
large camera-sized JPEGs (1600x1200, made by enlarging drawings and adding sensor-like noise
so they decode like photographs), speech clips (the synthetic speech set) and notes (text
files of captions). Deterministic for given sets and counts.

    python -m benchmarks.index_corpus --sets data --out bench-media
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
from PIL import Image


def _rows(manifest: Path, limit: int) -> list[dict]:
    rows = []
    with open(manifest, encoding="utf-8") as f:
        for line in f:
            rows.append(json.loads(line))
            if len(rows) == limit:
                break
    if len(rows) < limit:
        raise SystemExit(f"{manifest} holds {len(rows)} pairs, fewer than the {limit} asked for")
    return rows


def build(
    sets: Path, out: Path, drawings: int = 1501, photos: int = 300, clips: int = 300, notes: int = 200
) -> dict[str, int]:
    """Write the corpus into ``out`` (emptied first) and return the count of each kind."""
    if out.exists():
        shutil.rmtree(out)
    for sub in ("drawings", "photos", "speech", "notes"):
        (out / sub).mkdir(parents=True)
    art = sets / "openclipart"
    for i, row in enumerate(_rows(art / "train.jsonl", drawings)):
        shutil.copyfile(art / row["image"], out / "drawings" / f"{i:05d}.png")
    rng = np.random.default_rng(0)
    for i, row in enumerate(_rows(art / "val.jsonl", photos)):
        with Image.open(art / row["image"]) as im:
            big = np.asarray(im.convert("RGB").resize((1600, 1200), Image.BICUBIC), dtype=np.float32)
        big += rng.normal(0, 6, big.shape).astype(np.float32)
        Image.fromarray(big.clip(0, 255).astype(np.uint8)).save(out / "photos" / f"{i:04d}.jpg", quality=90)
    speech = sets / "speech"
    for i, row in enumerate(_rows(speech / "val.jsonl", clips)):
        shutil.copyfile(speech / row["audio"], out / "speech" / f"{i:04d}.wav")
    for i, row in enumerate(_rows(art / "test.jsonl", notes)):
        (out / "notes" / f"{i:04d}.txt").write_text(
            row["text"] + "\n" + ", ".join(row.get("alt_texts", [])) + "\n", encoding="utf-8"
        )
    return {"drawings": drawings, "photos": photos, "speech": clips, "notes": notes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--sets", type=Path, required=True, help="folder of prepared sets (python -m benchmarks.datasets.all --out)"
    )
    parser.add_argument("--out", type=Path, required=True, help="folder to write (emptied first)")
    for kind, default in (("drawings", 1501), ("photos", 300), ("clips", 300), ("notes", 200)):
        parser.add_argument(f"--{kind}", type=int, default=default, help=f"how many (default {default})")
    args = parser.parse_args()
    print(build(args.sets, args.out, args.drawings, args.photos, args.clips, args.notes))


if __name__ == "__main__":
    main()
