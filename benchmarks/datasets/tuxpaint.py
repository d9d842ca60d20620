"""Tux Paint stamps (Debian ``tuxpaint-stamps-default``): cut-out photos and drawings, their
sound effects, and English readings of their descriptions, all captioned by the stamp's
``.txt`` (first line).

Three manifests: ``images/`` (stamps), ``sounds/`` (``<stamp>.ogg|.wav``, non-speech effects)
and ``speech/`` (``<stamp>_desc.ogg``, a human reading the caption).
"""

from __future__ import annotations

import logging
from pathlib import Path

from PIL import Image

from .common import caption_key, fetch_deb, letterbox, rasterise, run_script, split_of, write_manifests

log = logging.getLogger(__name__)
PACKAGE = "tuxpaint-stamps-default"


def caption(txt: Path) -> str:
    first = txt.read_text(encoding="utf-8", errors="replace").splitlines()
    return " ".join(first[0].split()) if first else ""


def build(out: Path, cache: Path) -> dict[str, dict[str, int]]:
    root = fetch_deb(PACKAGE, cache) / "usr/share/tuxpaint/stamps"
    images, sounds, speech = [], [], []
    for txt in sorted(root.rglob("*.txt")):
        text = caption(txt)
        if len(caption_key(text)) < 3:
            continue
        stem = txt.with_suffix("")
        rel_stem = stem.relative_to(root)
        category = rel_stem.parts[0]
        for ext in (".png", ".svg"):
            src = stem.with_suffix(ext)
            if not src.is_file():
                continue
            rel = Path("images") / rel_stem.with_suffix(".png")
            dst = out / rel
            if ext == ".svg":
                if rasterise(src, dst):
                    continue
            elif not dst.exists():
                try:
                    with Image.open(src) as img:
                        dst.parent.mkdir(parents=True, exist_ok=True)
                        letterbox(img).save(dst)
                except OSError as exc:
                    log.warning("skipping %s: %s", src, exc)
                    continue
            images.append(
                {
                    "image": str(Path("..") / "tuxpaint" / rel),
                    "text": text,
                    "source": "tuxpaint",
                    "category": category,
                    "origin": ext[1:],
                }
            )
            break
        for ext in (".ogg", ".wav"):
            if stem.with_suffix(ext).is_file():
                sounds.append(
                    {"audio": str(stem.with_suffix(ext)), "text": text, "source": "tuxpaint-sfx", "category": category}
                )
                break
        desc = Path(f"{stem}_desc.ogg")
        if desc.is_file():
            speech.append({"audio": str(desc), "text": text, "source": "tuxpaint-speech", "category": category})
    by_caption = lambda r: split_of(caption_key(r["text"]))  # noqa: E731
    counts = {}
    for name, rows in (("images", images), ("sounds", sounds), ("speech", speech)):
        folder = out.parent / f"tuxpaint-{name}" if name != "images" else out
        folder.mkdir(parents=True, exist_ok=True)
        if name != "images":  # audio paths: relative to the manifest's folder
            import os

            rows = [{**r, "audio": os.path.relpath(r["audio"], folder)} for r in rows]
        else:
            rows = [{**r, "image": str(Path(r["image"]).relative_to(Path("..") / "tuxpaint"))} for r in rows]
        counts[name] = write_manifests(folder, rows, by_caption)
    write_raster_subset(out)
    return counts


def write_raster_subset(out: Path) -> None:
    """``test-raster.jsonl``: test stamps that ship as PNG (mostly cut-out photos, some
    drawings), as opposed to SVG drawings: the nearest thing to photographs in these sets."""
    import json

    rows = [json.loads(line) for line in (out / "test.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
    raster = [r for r in rows if r.get("origin") == "png"]
    (out / "test-raster.jsonl").write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in raster), encoding="utf-8"
    )


def main() -> None:
    run_script(__doc__, build, "folder of the image set; the audio sets go beside it")


if __name__ == "__main__":
    main()
