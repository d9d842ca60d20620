"""More emoji drawing styles for training, from the Iconify JSON packages on npm (``STYLES``:
Noto and its older "blob" design, Microsoft's Fluent Emoji in flat, colour and
high-contrast designs, EmojiOne in colour and monotone, Firefox OS emoji), captioned with
OpenMoji's CLDR annotation of the same code point.

Captions and their split come from OpenMoji (``split_of(caption_key(annotation))``), so an
emoji whose caption is in OpenMoji's test split is in these sets' test splits too, and never
trained on. Twemoji stays a style no model here trains on.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

from .common import caption_key, fetch_npm, rasterise_all, run_script, split_of, write_manifests
from .openmoji import annotated_entries

log = logging.getLogger(__name__)
STYLES = {  # set name -> (npm package, licence)
    "noto-emoji": ("@iconify-json/noto@1.2.9", "Apache-2.0"),
    "fluent-emoji": ("@iconify-json/fluent-emoji-flat@1.2.6", "MIT"),
    "fluent-emoji-color": ("@iconify-json/fluent-emoji@1.2.7", "MIT"),
    "fluent-emoji-mono": ("@iconify-json/fluent-emoji-high-contrast@1.2.6", "MIT"),
    "noto-v1-emoji": ("@iconify-json/noto-v1@1.2.5", "Apache-2.0"),
    "emojione": ("@iconify-json/emojione@1.2.3", "CC-BY-4.0"),
    "emojione-mono": ("@iconify-json/emojione-monotone@1.2.1", "CC-BY-4.0"),
    "fxemoji": ("@iconify-json/fxemoji@1.2.2", "Apache-2.0"),
}
NAMES = "@iconify-json/fluent-emoji-flat@1.2.6"  # code point -> icon name, for the packages whose chars.json is empty


def _codepoints(hexcode: str) -> str:
    """A code point sequence without variation selectors, lower case: the join key."""
    return "-".join(p for p in hexcode.lower().split("-") if p != "fe0f")


def icon_svg(icons: dict, name: str) -> str:
    """One Iconify icon as a standalone SVG document (aliases and flips are not icons here)."""
    icon = icons["icons"][name]
    width, height = icon.get("width", icons.get("width", 16)), icon.get("height", icons.get("height", 16))
    left, top = icon.get("left", icons.get("left", 0)), icon.get("top", icons.get("top", 0))
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" '
        f'viewBox="{left} {top} {width} {height}">{icon["body"]}</svg>'
    )


def _icon_name(entry: dict, icons: dict, chars: dict[str, str], by_caption: bool) -> str | None:
    """The icon of an OpenMoji entry: by code point, else (``by_caption``: packages without a
    chars.json of their own) by its annotation as Iconify spells names ("grinning-face", or
    "grinningface" in older sets)."""
    names = [chars.get(_codepoints(entry["hexcode"]))]
    if by_caption:
        slug = re.sub(r"[^a-z0-9]+", "-", entry["annotation"].lower()).strip("-")
        names += [slug, slug.replace("-", "")]
    return next((n for n in names if n in icons["icons"]), None)


def build_style(name: str, out: Path, cache: Path) -> dict[str, int]:
    package, licence = STYLES[name]
    pkg = fetch_npm(package, cache)
    icons = json.loads((pkg / "icons.json").read_text(encoding="utf-8"))
    chars = json.loads((pkg / "chars.json").read_text(encoding="utf-8"))
    by_caption = not chars
    if by_caption:
        chars = json.loads((fetch_npm(NAMES, cache) / "chars.json").read_text(encoding="utf-8"))
    chars = {_codepoints(k): v for k, v in chars.items()}
    svg_dir = cache / "svg" / name
    svg_dir.mkdir(parents=True, exist_ok=True)
    rows, jobs = [], []
    for e in annotated_entries(cache, lambda e: _icon_name(e, icons, chars, by_caption) is not None):
        svg = icon_svg(icons, _icon_name(e, icons, chars, by_caption))
        src = svg_dir / f"{e['hexcode']}.svg"
        src.write_text(svg, encoding="utf-8")
        rel = Path("images") / f"{e['hexcode']}.png"
        rows.append(
            {
                "image": str(rel),
                "text": e["annotation"],
                "source": name,
                "licence": licence,
                "category": e.get("group", ""),
            }
        )
        jobs.append((src, out / rel))
    out.mkdir(parents=True, exist_ok=True)
    failed = rasterise_all(jobs)
    rows = [r for r in rows if out / r["image"] not in failed]
    return write_manifests(out, rows, lambda r: split_of(caption_key(r["text"])))


def build(out: Path, cache: Path) -> dict[str, dict[str, int]]:
    """Every style, one folder each under ``out``."""
    return {name: build_style(name, out / name, cache) for name in STYLES}


def main() -> None:
    run_script(__doc__, build, "the data folder (one sub-folder a style)")


if __name__ == "__main__":
    main()
