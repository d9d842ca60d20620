"""OpenMoji (npm ``openmoji``): colour emoji SVGs captioned with their CLDR annotation.

Skin-tone variants are left out (they share their base emoji's caption). Tags and the
group/subgroup go into ``alt_texts``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

from .common import caption_key, fetch_npm, rasterise_all, run_script, split_of, write_manifests

log = logging.getLogger(__name__)
PACKAGE = "openmoji@17.0.0"


def annotated_entries(cache: Path, keep: Callable[[dict], bool] = lambda e: True) -> list[dict]:
    """OpenMoji's emoji with a CLDR annotation that ``keep`` accepts (say, that have an image in
    some style), skin-tone variants left out, the first of each caption."""
    entries = json.loads((fetch_npm(PACKAGE, cache) / "data/openmoji.json").read_text(encoding="utf-8"))
    out, seen = [], set()
    for e in entries:
        if e.get("skintone") or not e.get("annotation") or caption_key(e["annotation"]) in seen or not keep(e):
            continue
        seen.add(caption_key(e["annotation"]))
        out.append(e)
    return out


def build(out: Path, cache: Path) -> dict[str, int]:
    pkg = fetch_npm(PACKAGE, cache)
    rows, jobs = [], []
    for e in annotated_entries(cache, lambda e: (pkg / "color/svg" / f"{e['hexcode']}.svg").is_file()):
        svg = pkg / "color/svg" / f"{e['hexcode']}.svg"
        rel = Path("images") / f"{e['hexcode']}.png"
        tags = ", ".join(t for t in (e.get("tags", "") + "," + e.get("openmoji_tags", "")).split(",") if t.strip())
        alt = [t for t in (tags, f"{e.get('group', '')} {e.get('subgroups', '')}".replace("-", " ").strip()) if t]
        rows.append(
            {
                "image": str(rel),
                "text": e["annotation"],
                "alt_texts": alt,
                "source": "openmoji",
                "category": e.get("group", ""),
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
