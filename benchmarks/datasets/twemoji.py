"""Twemoji (npm ``@twemoji/svg``, graphics CC-BY-4.0): emoji of another drawing style, captioned
with the same CLDR annotations as OpenMoji (the Unicode names).

An evaluation set only (never trained on): it tests a change of drawing style, not new words.
Every emoji goes to ``test.jsonl``; ``test-unseen.jsonl`` keeps those whose caption is in
OpenMoji's test split (captions the model never trained on either).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from .common import caption_key, fetch_npm, rasterise_all, run_script, split_of
from .openmoji import annotated_entries

log = logging.getLogger(__name__)
PACKAGE = "@twemoji/svg@15.0.0"


def _twemoji_name(hexcode: str) -> str:
    # Twemoji drops the FE0F variation selector from file names (except in sequences with 200D).
    parts = hexcode.lower().split("-")
    if "200d" not in parts:
        parts = [p for p in parts if p != "fe0f"]
    return "-".join(parts)


def build(out: Path, cache: Path) -> dict[str, int]:
    svgs = fetch_npm(PACKAGE, cache)
    folder = next(p for p in (svgs, svgs / "svg", svgs / "assets/svg") if any(p.glob("1f600*.svg")))
    rows, jobs = [], []
    for e in annotated_entries(cache, lambda e: (folder / f"{_twemoji_name(e['hexcode'])}.svg").is_file()):
        svg = folder / f"{_twemoji_name(e['hexcode'])}.svg"
        rel = Path("images") / f"{e['hexcode']}.png"
        rows.append({"image": str(rel), "text": e["annotation"], "source": "twemoji", "category": e.get("group", "")})
        jobs.append((svg, out / rel))
    out.mkdir(parents=True, exist_ok=True)
    failed = rasterise_all(jobs)
    rows = [r for r in rows if out / r["image"] not in failed]
    unseen = [r for r in rows if split_of(caption_key(r["text"])) == "test"]
    for name, part in (("test.jsonl", rows), ("test-unseen.jsonl", unseen)):
        (out / name).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in part), encoding="utf-8")
    return {"test": len(rows), "test-unseen": len(unseen), "failed": len(failed)}


def main() -> None:
    run_script(__doc__, build)


if __name__ == "__main__":
    main()
