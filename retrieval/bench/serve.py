"""Serving speed: the HTTP API and the page against the engine in-process, on an index of
100k image items (synthetic rows and vectors, every row a hard link to one of ~500 real JPEGs,
so thumbnails and media are real files).

Measured, each the median (p50) and p95 of repeated runs, ratios taken within one run:
- a warm text search over HTTP against ``Engine.search`` in-process (the same queries);
- a cached thumbnail served;
- ``clients`` concurrent clients searching for ``seconds`` (bounded loop, loopback only):
  requests, errors, p50/p95;
- Enter to the first thumbnail painted in Chromium (cold thumbnail cache), via Playwright.

Run: ``xmr bench serve [--items 100000] [--clients 16] [--seconds 60]``.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from .memory import make_photos
from .report import machine_info, markdown_table, write_outputs
from .synthetic import unit_vectors

log = logging.getLogger(__name__)
WORDS = [
    "a dog",
    "a red car",
    "the sea at night",
    "a bell",
    "a child drawing",
    "mountains",
    "a cat on a mat",
    "rain",
    "a bird",
    "a city street",
    "flowers",
    "a piano",
    "snow",
    "a boat",
    "fruit",
    "a clock",
]


def _p(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1000, q))


def build_index(folder: Path, items: int, photos: int, model: Any) -> Path:
    """A cached index of ``items`` image rows whose files are hard links to ``photos`` real JPEGs."""
    from indexer.ingest.bulk import IndexSpec, build_from_vectors
    from indexer.storage.layout import INDEX_FOLDER

    done = folder / "complete"
    if done.exists():
        return folder / "media"
    shutil.rmtree(folder, ignore_errors=True)
    source = make_photos(folder.parent / "photos-640", photos, 640)
    media = folder / "media"
    rows = []
    for i in range(items):
        path = media / f"d{i // 1000:03d}" / f"{i:06d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        os.link(source / f"{i % photos:05d}.jpg", path)
        st = path.stat()
        rows.append(
            {
                "path": str(path.relative_to(media)),
                "ext": "jpg",
                "size": st.st_size,
                "mtime_ns": st.st_mtime_ns,
                "width": 640,
                "height": 480,
            }
        )
    spec = IndexSpec(model=model.name, weights_hash=model.weights_hash, dim=model.embed_dim, root=str(media))
    build_from_vectors(media / INDEX_FOLDER, spec, "image", unit_vectors(items, model.embed_dim, seed=0), rows)
    done.write_text("ok\n")
    return media


def run_serve(
    items: int = 100_000,
    photos: int = 500,
    clients: int = 16,
    seconds: float = 60.0,
    repeat: int = 50,
    model: str = "xmr-mini",
    cache: str = "~/.cache/xmr/bench",
    out_dir: str | None = None,
) -> dict[str, Any]:
    """Measure (see the module docstring); write ``serve_speed.{json,md}`` to ``out_dir``."""
    import httpx

    from ..models.registry import create_model, inference_runtime
    from ..search.engine import Engine
    from ..server.app import create_app
    from ..server.files import ThumbnailCache
    from ..server.local import LocalServer

    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request would time the log, not the server
    encoder = create_model(model, runtime=inference_runtime(model))
    # keyed by the weights: vectors of one model are never searched with another
    media = build_index(Path(cache).expanduser() / f"serve-{items}-{encoder.weights_hash[:12]}", items, photos, encoder)
    result: dict[str, Any] = {"machine": machine_info(), "model": model, "items": items, "photos": photos}
    with tempfile.TemporaryDirectory(prefix="xmr-bench-serve-") as tmp, Engine.open(media, model=encoder) as engine:
        thumbs = ThumbnailCache(Path(tmp) / "thumbs")
        server = LocalServer(create_app(engine, thumbs=thumbs))
        try:
            for w in WORDS:  # warm: the model, the shards' aligned copies
                engine.search(text=w, to="image", k=20)
            inproc, http = [], []
            with httpx.Client(base_url=server.url, timeout=30) as client:
                for n in range(repeat):
                    q = WORDS[n % len(WORDS)]
                    start = time.perf_counter()
                    engine.search(text=q, to="image", k=20)
                    inproc.append(time.perf_counter() - start)
                    start = time.perf_counter()
                    client.get("/api/v1/search", params={"q": q, "to": "image", "k": 20}).raise_for_status()
                    http.append(time.perf_counter() - start)
                hit = client.get("/api/v1/search", params={"q": "a dog", "to": "image", "k": 1}).json()["results"][
                    "image"
                ][0]
                client.get(hit["thumbnail_url"]).raise_for_status()
                cached = []
                for _ in range(repeat):
                    start = time.perf_counter()
                    client.get(hit["thumbnail_url"]).raise_for_status()
                    cached.append(time.perf_counter() - start)
            result["search"] = {
                "in_process_p50_ms": _p(inproc, 50),
                "http_p50_ms": _p(http, 50),
                "http_p95_ms": _p(http, 95),
                "ratio_p50": _p(http, 50) / _p(inproc, 50),
            }
            result["cached_thumbnail"] = {"p50_ms": _p(cached, 50), "p95_ms": _p(cached, 95)}
            result["load"] = _load(server.url, clients, seconds)
            result["browser"] = _browser(server.url, thumbs, repeat=min(repeat, 12))
        finally:
            server.stop()
    if out_dir:
        rows = [
            {"what": "text search, in-process (Engine.search)", "p50_ms": result["search"]["in_process_p50_ms"]},
            {
                "what": "text search over HTTP",
                "p50_ms": result["search"]["http_p50_ms"],
                "p95_ms": result["search"]["http_p95_ms"],
            },
            {
                "what": "cached thumbnail",
                "p50_ms": result["cached_thumbnail"]["p50_ms"],
                "p95_ms": result["cached_thumbnail"]["p95_ms"],
            },
            {
                "what": f"{clients} clients for {seconds:g} s: {result['load']['requests']} "
                f"searches, {result['load']['errors']} errors",
                "p50_ms": result["load"]["p50_ms"],
                "p95_ms": result["load"]["p95_ms"],
            },
        ]
        if result["browser"]:
            rows.append({"what": "Enter to the first thumbnail painted (cold cache, Chromium)", **result["browser"]})
        table = markdown_table(rows, ["what", "p50_ms", "p95_ms"])
        table += f"\nHTTP / in-process search, p50: {result['search']['ratio_p50']:.2f}x ({items} items)\n"
        result["files"] = {k: str(v) for k, v in write_outputs(out_dir, "serve_speed", result, table).items()}
    return result


def _load(url: str, clients: int, seconds: float) -> dict[str, Any]:
    """``clients`` threads searching as fast as answers come, for ``seconds`` (bounded)."""
    import httpx

    times: list[float] = []
    errors: list[str] = []
    stop = time.monotonic() + seconds
    lock = threading.Lock()

    def client(n: int) -> None:
        with httpx.Client(base_url=url, timeout=30) as http:
            k = 0
            while time.monotonic() < stop and k < 100_000:
                q = WORDS[(n + k) % len(WORDS)]
                start = time.perf_counter()
                try:
                    http.get("/api/v1/search", params={"q": q, "to": "image", "k": 20}).raise_for_status()
                    with lock:
                        times.append(time.perf_counter() - start)
                except httpx.HTTPError as exc:
                    with lock:
                        errors.append(str(exc))
                k += 1

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {
        "clients": clients,
        "seconds": seconds,
        "requests": len(times) + len(errors),
        "errors": len(errors),
        "p50_ms": _p(times, 50) if times else None,
        "p95_ms": _p(times, 95) if times else None,
        "searches_per_s": len(times) / seconds,
    }


def _browser(url: str, thumbs: Any, repeat: int) -> dict[str, float] | None:
    """Enter to the first thumbnail painted, cold thumbnail cache, in Debian's Chromium."""
    chromium = shutil.which("chromium")
    from ..server.local import CHROMIUM_FLAGS

    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        chromium = None
    if chromium is None:
        log.warning("no Chromium or Playwright: the page is not timed")
        return None
    times = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(url + "/")
        for n in range(repeat + 1):
            shutil.rmtree(thumbs.folder, ignore_errors=True)
            thumbs.folder.mkdir(parents=True, exist_ok=True)
            thumbs._bytes = None
            page.fill("#q", WORDS[n % len(WORDS)] + f" {n}")
            page.evaluate(
                "() => { document.querySelector('#results').replaceChildren(); window.__t0 = performance.now(); }"
            )
            page.press("#q", "Enter")
            elapsed = page.evaluate(
                """() => new Promise(done => { const tick = () => {
                   const img = document.querySelector('.grid img');
                   if (img && img.complete && img.naturalWidth > 0) {
                     requestAnimationFrame(() => done(performance.now() - window.__t0));
                   } else setTimeout(tick, 2); }; tick(); })"""
            )
            if n:  # the first loads the page's code and the model: not counted
                times.append(elapsed / 1000)
        browser.close()
    return {"p50_ms": _p(times, 50), "p95_ms": _p(times, 95)}
