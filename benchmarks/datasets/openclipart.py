"""Open Clip Art (Debian ``openclipart-svg``): SVG drawings captioned from their RDF metadata.

Pitfall handled: titles are often collection names ("gramastar", "Part of the Flat Icon
Collection"); a title shared by more than ``MAX_SHARED`` files is replaced by the cleaned
file name, and no caption covers more than ``MAX_PER_CAPTION`` images.
"""

from __future__ import annotations

import collections
import logging
import re
import xml.etree.ElementTree as ET
from pathlib import Path

from .common import caption_key, fetch_deb, rasterise_all, run_script, split_of, write_manifests

log = logging.getLogger(__name__)
NS = {
    "dc": "http://purl.org/dc/elements/1.1/",
    "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
    "cc": "http://web.resource.org/cc/",
}
MAX_SHARED = 5
MAX_PER_CAPTION = 5
PACKAGE = "openclipart-svg"


def read_metadata(svg: Path) -> dict[str, object]:
    """Title, description and keywords from an SVG's RDF block (empty when unreadable)."""
    try:
        root = ET.parse(svg).getroot()
    except (ET.ParseError, OSError):
        return {}
    work = root.find(".//cc:Work", NS)
    if work is None:
        return {}
    text = lambda tag: " ".join((work.findtext(tag, default="", namespaces=NS) or "").split())  # noqa: E731
    keywords = [" ".join((li.text or "").split()) for li in work.findall("dc:subject/rdf:Bag/rdf:li", NS)]
    return {"title": text("dc:title"), "description": text("dc:description"), "keywords": [k for k in keywords if k]}


def clean_filename(svg: Path) -> str:
    """``aiga_air_transportation_01.svg`` -> ``aiga air transportation``."""
    name = re.sub(r"[_\-.]+", " ", svg.stem)
    name = re.sub(r"\b(\d+|svg|png|clip ?art|openclipart)\b", " ", name, flags=re.I)
    return " ".join(name.split())


def usable_description(desc: str, title: str) -> str:
    words = desc.split()
    if len(words) < 3 or len(words) > 40 or desc.lower().startswith(("http", "part of", "created", "made with")):
        return ""
    return "" if caption_key(desc) == caption_key(title) else desc


def build(out: Path, cache: Path) -> dict[str, int]:
    svg_root = fetch_deb(PACKAGE, cache) / "usr/share/openclipart/svg"
    files = sorted(svg_root.rglob("*.svg"))
    meta = {svg: read_metadata(svg) for svg in files}
    title_count = collections.Counter(caption_key(m.get("title", "")) for m in meta.values())
    per_caption: collections.Counter = collections.Counter()
    rows, jobs = [], []
    for svg, m in meta.items():
        title = m.get("title", "")
        if not title or title_count[caption_key(title)] > MAX_SHARED or len(caption_key(title)) < 3:
            title = clean_filename(svg)
        key = caption_key(title)
        if len(key) < 3 or per_caption[key] >= MAX_PER_CAPTION:
            continue
        per_caption[key] += 1
        rel = Path("images") / svg.relative_to(svg_root).with_suffix(".png")
        alt = [
            t for t in (usable_description(m.get("description", ""), title), ", ".join(m.get("keywords", [])[:8])) if t
        ]
        rows.append(
            {
                "image": str(rel),
                "text": title,
                "alt_texts": alt,
                "source": "openclipart",
                "category": svg.relative_to(svg_root).parts[0],
            }
        )
        jobs.append((svg, out / rel))
    out.mkdir(parents=True, exist_ok=True)
    failed = rasterise_all(jobs)
    rows = [r for r in rows if out / r["image"] not in failed]
    return write_manifests(out, rows, lambda r: split_of(caption_key(r["text"])))


def main() -> None:
    run_script(__doc__, build)


if __name__ == "__main__":
    main()
