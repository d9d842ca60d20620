"""The README's screenshot of the search page: a folder of real drawings and sounds (the Tux
Paint stamps and their sound effects, prepared by ``benchmarks.datasets``) indexed with
xmr-mini, served, searched in Debian's Chromium through Playwright, and captured.

    python benchmarks/screenshot_page.py --data DATA [--query "a cat"] [--out benchmarks/results/serve-page.png]
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import indexer  # noqa: E402
from retrieval import Engine, create_model  # noqa: E402
from retrieval.models.registry import inference_runtime  # noqa: E402
from retrieval.server.app import create_app  # noqa: E402
from retrieval.server.files import ThumbnailCache  # noqa: E402
from retrieval.server.local import CHROMIUM_FLAGS, LocalServer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="the prepared data sets (tuxpaint/ inside)")
    parser.add_argument("--query", default="a cat")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "serve-page.png")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="xmr-shot-") as tmp:
        media = Path(tmp) / "tux-paint"
        shutil.copytree(args.data / "tuxpaint" / "images", media / "stamps")
        encoder = create_model("xmr-mini", runtime=inference_runtime("xmr-mini"))
        indexer.index_folder(media, encoder, indexer.IndexOptions())
        with Engine.open(media, model=encoder) as engine:
            served = LocalServer(create_app(engine, thumbs=ThumbnailCache(Path(tmp) / "thumbs")))
            try:
                with sync_playwright() as p:
                    browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=CHROMIUM_FLAGS)
                    page = browser.new_page(viewport={"width": 1280, "height": 800})
                    page.goto(f"{served.url}/?q={args.query.replace(' ', '+')}&to=image")
                    page.wait_for_function(
                        "() => { const imgs = [...document.querySelectorAll('.grid img')].slice(0, 18);"
                        " return imgs.length === 18 && imgs.every(i => i.complete && i.naturalWidth > 0); }"
                    )
                    args.out.parent.mkdir(parents=True, exist_ok=True)
                    page.screenshot(path=str(args.out))
                    browser.close()
            finally:
                served.stop()
    logging.info("wrote %s", args.out)
    os._exit(0)  # the uvicorn thread is done; skip interpreter teardown of its loop


if __name__ == "__main__":
    main()
