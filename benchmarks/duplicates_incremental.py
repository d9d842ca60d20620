"""What naming new copies as they arrive costs an ``xmr index`` run (``Summary.copies``): a folder
of 200 photos indexed, then 100 more added (the rest of ``--photos``, photo-like pictures drawn
here, and 20 copies of indexed photos: half size, turned, framed, grey), with the check and
without it (a fingerprinter without ``copies``), ``--repeats`` times each, alternating; the
check's own seconds in each run. Then the check alone: 100 new pictures' hashes against 100,000
stored ones (random, 50 of the new 1 bit from a stored one).

    python benchmarks/duplicates_incremental.py [--photos DIR] [--repeats 3]
    # writes benchmarks/results/duplicates_incremental.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

import indexer
from indexer.ingest import build
from retrieval import create_model
from retrieval.bench.duplicates import image_copy, synthetic_photo
from retrieval.bench.report import machine_info
from retrieval.models.fingerprint import Fingerprinter

ROOT = Path(__file__).resolve().parent.parent
COPIES = ("half", "turn90", "border", "grey")


class WithoutCheck:
    """The same fingerprints, without ``copies``: the run does not look for new copies."""

    def __init__(self) -> None:
        self.inner = Fingerprinter(audio=False)
        self.methods, self.source = self.inner.methods, self.inner.source

    def fingerprint(self, path: Any, modality: str) -> bytes:
        return self.inner.fingerprint(path, modality)


def _timed_check(seconds: list[float]) -> None:
    """Time each run's ``_copies_of_new`` (the check) into ``seconds``."""
    check = build._Run._copies_of_new

    def timed(self: Any) -> None:
        start = time.perf_counter()
        check(self)
        seconds.append(time.perf_counter() - start)

    build._Run._copies_of_new = timed


def one_run(root: Path, encoder: Any, photos: list[Path], make: Any, seconds: list[float]) -> dict[str, Any]:
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    first = [Image.open(p).convert("RGB") for p in photos[:200]]
    for n, img in enumerate(first):
        img.save(root / f"a{n:03d}.png")
    seconds.clear()
    options = indexer.IndexOptions(fingerprinter=make(), speech=False, ocr=False)
    start = time.perf_counter()
    before = indexer.index_folder(root, encoder, options)
    first_seconds = time.perf_counter() - start
    rest = photos[200:280]
    for n, p in enumerate(rest):
        Image.open(p).convert("RGB").save(root / f"b{n:03d}.png")
    for n in range(80 - len(rest)):
        synthetic_photo(n, scene=n % 10).save(root / f"s{n:03d}.png")
    for n in range(20):
        image_copy(first[n * 7], COPIES[n % 4]).save(root / f"c{n:03d}.jpg", quality=90)
    options = indexer.IndexOptions(fingerprinter=make(), speech=False, ocr=False)
    start = time.perf_counter()
    after = indexer.index_folder(root, encoder, options)
    return {
        "first_200_seconds": round(first_seconds, 2),
        "then_100_seconds": round(time.perf_counter() - start, 2),
        "check_seconds": [round(s, 3) for s in seconds],
        "copies_among_first_200": len(before.copies),
        "copies_among_then_100": sorted(c["path"] for c in after.copies),
    }


def check_alone(stored_n: int = 100_000, new_n: int = 100) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    stored = {i: rng.integers(0, 256, 16, dtype=np.uint8).tobytes() for i in range(stored_n)}
    new = list(range(stored_n - new_n, stored_n))
    flip = np.array([1] + [0] * 15, dtype=np.uint8)
    for i in new[: new_n // 2]:
        stored[i] = bytes(np.frombuffer(stored[i - stored_n // 2], dtype=np.uint8) ^ flip)
    start = time.perf_counter()
    found = Fingerprinter(audio=False).copies(new, stored)
    return {"stored": stored_n, "new": new_n, "seconds": round(time.perf_counter() - start, 3), "found": len(found)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", default="/root/xmr-data/gcompris-photos/images")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "duplicates_incremental.json"))
    args = parser.parse_args()
    photos = sorted(p for p in Path(args.photos).rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    encoder = create_model("xmr-mini")
    seconds: list[float] = []
    _timed_check(seconds)
    work = Path(tempfile.mkdtemp(prefix="xmr-dup-incremental-"))
    result: dict[str, Any] = {"photos": args.photos, "with": [], "without": []}
    try:
        for _ in range(args.repeats):
            result["without"].append(one_run(work / "without", encoder, photos, WithoutCheck, seconds))
            result["with"].append(one_run(work / "with", encoder, photos, lambda: Fingerprinter(audio=False), seconds))
            print(json.dumps({k: result[k][-1] for k in ("without", "with")}), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["check_alone"] = check_alone()
    result["machine"] = machine_info()
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result["check_alone"]))


if __name__ == "__main__":
    main()
