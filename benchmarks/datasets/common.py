"""Shared helpers of the dataset scripts: fetching packages, splits, rasterising, manifests.

A pairs manifest is JSONL, one pair a line: ``{"image"|"audio": path, "text": caption,
"source": ...}``, paths relative to the manifest. Each set is written as ``train.jsonl``,
``val.jsonl`` and ``test.jsonl`` in its own folder; the split of every pair is a pure
function of its key (a caption, a voice, a speaker), so it is fixed and reproducible.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import logging
import os
import re
import subprocess
import tempfile
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

log = logging.getLogger(__name__)
SPLITS = ("train", "val", "test")
IMAGE_SIDE = 96


def split_of(key: str, val: float = 0.1, test: float = 0.1, salt: str = "xmr-v1") -> str:
    """A fixed split for ``key``: sha1 of the salted key mapped into [0, 1)."""
    u = int(hashlib.sha1(f"{salt}|{key}".encode()).hexdigest()[:12], 16) / float(1 << 48)
    return "test" if u < test else "val" if u < test + val else "train"


def caption_key(text: str) -> str:
    """Normalised caption, the key of caption-disjoint splits across every set."""
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).strip()


def write_manifests(folder: Path, rows: Iterable[dict], split_key) -> dict[str, int]:
    """Write ``train/val/test.jsonl`` under ``folder``; ``split_key(row)`` names each row's split."""
    out = {s: [] for s in SPLITS}
    for row in rows:
        out[split_key(row)].append(row)
    counts = {}
    for split, items in out.items():
        with open(folder / f"{split}.jsonl", "w", encoding="utf-8") as f:
            for row in items:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        counts[split] = len(items)
    log.info("%s: %s", folder.name, counts)
    return counts


def read_captions(manifests: Iterable[Path]) -> dict[str, str]:
    """The distinct captions of ``manifests``: caption key -> first text with that key."""
    captions: dict[str, str] = {}
    for manifest in manifests:
        for line in manifest.read_text(encoding="utf-8").splitlines():
            text = json.loads(line)["text"]
            captions.setdefault(caption_key(text), text)
    return captions


def clip_path(key: str, reading: int) -> Path:
    """Where a speech set keeps reading ``reading`` of the caption ``key`` (relative to the set)."""
    return Path("clips") / key[:1] / f"{key[:60].replace(' ', '_')}-{reading}.wav"


def synthesize_all(out: Path, rows: list[dict], jobs: list, synth: Callable[[object], str | None]) -> dict[str, int]:
    """Run the speech ``jobs`` (``synth`` returns a failure reason or None) two at a time, then
    write the manifests of the ``rows`` (each with its ``split``) whose clip exists."""
    out.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(2) as ex:
        failures = [f for f in ex.map(synth, jobs) if f]
    if failures:
        log.warning("%d clips failed: %s", len(failures), failures[:3])
    rows = [r for r in rows if (out / r["audio"]).exists()]
    return write_manifests(out, rows, lambda r: r.pop("split"))


def fetch_deb(package: str, cache: Path) -> Path:
    """Download a Debian package (apt-get download) and unpack it; returns the unpacked root."""
    root = cache / "debs" / package
    if (root / ".done").exists():
        return root
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        os.chmod(tmp, 0o777)  # apt's sandbox user must be able to write there
        subprocess.run(["apt-get", "download", package], cwd=tmp, check=True, capture_output=True)
        (deb,) = glob.glob(os.path.join(tmp, "*.deb"))
        subprocess.run(["dpkg-deb", "-x", deb, str(root)], check=True)
    (root / ".done").touch()
    return root


def fetch_npm(spec: str, cache: Path) -> Path:
    """``npm pack`` a package and unpack it; returns the folder holding its ``package/``."""
    name = spec.replace("@", "-").replace("/", "-")
    root = cache / "npm" / name
    if (root / ".done").exists():
        return root / "package"
    root.mkdir(parents=True, exist_ok=True)
    out = subprocess.run(["npm", "pack", spec, "--silent"], cwd=root, check=True, capture_output=True, text=True)
    tarball = root / out.stdout.strip().splitlines()[-1]
    subprocess.run(["tar", "-xzf", str(tarball), "-C", str(root)], check=True)
    tarball.unlink()
    (root / ".done").touch()
    return root / "package"


def letterbox(img: Image.Image, side: int = IMAGE_SIDE) -> Image.Image:
    """Fit an image into a ``side`` x ``side`` white square (aspect kept, transparency on white)."""
    img = img.convert("RGBA")
    bg = Image.new("RGBA", img.size, (255, 255, 255, 255))
    img = Image.alpha_composite(bg, img).convert("RGB")
    scale = side / max(img.size)
    img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.LANCZOS)
    canvas = Image.new("RGB", (side, side), (255, 255, 255))
    canvas.paste(img, ((side - img.width) // 2, (side - img.height) // 2))
    return canvas


def is_blank(img: Image.Image) -> bool:
    """True when an image is (nearly) one flat colour: a failed render."""
    arr = np.asarray(img.convert("L"), dtype=np.int16)
    return int(arr.max()) - int(arr.min()) < 8


def rasterise(svg: Path, out: Path, side: int = IMAGE_SIDE) -> str | None:
    """Render an SVG to a letterboxed PNG with rsvg-convert; returns a failure reason or None."""
    if out.exists():
        return None
    big = side * 2
    try:
        png = subprocess.run(
            ["rsvg-convert", "-w", str(big), "-h", str(big), "-a", "-b", "white", str(svg)],
            check=True,
            capture_output=True,
            timeout=60,
        ).stdout
        import io

        img = Image.open(io.BytesIO(png))
        img.load()
    except (subprocess.SubprocessError, OSError) as exc:
        return f"render failed: {str(exc)[:100]}"
    if is_blank(img):
        return "renders blank"
    out.parent.mkdir(parents=True, exist_ok=True)
    letterbox(img, side).save(out)
    return None


def rasterise_all(jobs: list[tuple[Path, Path]], workers: int = 2) -> dict[Path, str]:
    """Rasterise many SVGs in parallel; returns the failures (output path -> reason)."""
    with ThreadPoolExecutor(workers) as pool:
        reasons = list(pool.map(lambda job: rasterise(*job), jobs))
    failures = {out: r for (svg, out), r in zip(jobs, reasons) if r}
    if failures:
        log.warning("%d of %d SVGs failed to render", len(failures), len(jobs))
    return failures


def run_script(doc: str, build: Callable[[Path, Path], object], out_help: str = "folder of the set") -> None:
    """The command line of a set script: ``--out DIR --cache DIR``, then print ``build``'s counts."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help=out_help)
    parser.add_argument("--cache", type=Path, required=True, help="downloads and unpacked packages (kept between runs)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    print(build(args.out, args.cache))
