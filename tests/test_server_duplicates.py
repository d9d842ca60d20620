"""Copies over HTTP: ``GET /api/v1/duplicates`` (TestClient; paths under the folder, media by
id, a hostile threshold a 422 saying what to change) and the page's Duplicates view (Chromium
through Playwright against the real server: each group side by side, sizes shown, the kept
file marked)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install -e '.[dev]')")

from fastapi.testclient import TestClient  # noqa: E402
from PIL import Image  # noqa: E402

import indexer  # noqa: E402
from retrieval import Engine  # noqa: E402
from retrieval.bench.duplicates import image_copy  # noqa: E402
from retrieval.models.fingerprint import Fingerprinter  # noqa: E402
from retrieval.server.app import create_app  # noqa: E402
from retrieval.server.files import ThumbnailCache  # noqa: E402
from tests.helpers import write_photo  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory, tiny) -> Path:
    root = tmp_path_factory.mktemp("served") / "media"
    boat = Image.open(write_photo(root / "boat.png", seed=21, scene=0)).convert("RGB")
    image_copy(boat, "turn90").save(root / "boat-turned.jpg")
    image_copy(boat, "half").save(root / "boat-small.jpg")
    write_photo(root / "field.png", seed=22, scene=1)
    indexer.index_folder(root, tiny, indexer.IndexOptions(workers=0, fingerprinter=Fingerprinter()))
    return root


@pytest.fixture(scope="module")
def client(index: Path, tiny, tmp_path_factory: pytest.TempPathFactory):
    engine = Engine.open(index, model=tiny)
    app = create_app(engine, thumbs=ThumbnailCache(tmp_path_factory.mktemp("thumbs")))
    with TestClient(app, base_url="http://localhost") as c:
        yield c
    engine.close()


def test_the_api_lists_groups_with_paths_under_the_folder_and_the_file_to_keep(client, index: Path) -> None:
    response = client.get("/api/v1/duplicates")
    assert response.status_code == 200
    (group,) = response.json()["groups"]
    assert sorted(i["path"] for i in group["items"]) == ["boat-small.jpg", "boat-turned.jpg", "boat.png"]
    assert all(not i["path"].startswith("/") for i in group["items"])  # never where it lies on the server
    kept = next(i for i in group["items"] if i["id"] == group["keep"])
    assert kept["path"] == "boat.png" and group["modality"] == "image" and "hash" in group["why"]
    media = client.get(kept["media_url"])
    assert media.status_code == 200 and media.content == (index / "boat.png").read_bytes()
    assert client.get("/api/v1/duplicates", params={"modality": "audio"}).json() == {"groups": []}
    strict = client.get("/api/v1/duplicates", params={"threshold": "1"}).json()["groups"]
    assert all("100%" in g["why"] or g["why"] == "same bytes" for g in strict)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"threshold": "-1"}, "threshold"),
        ({"threshold": "nan"}, "threshold"),
        ({"threshold": "1e9"}, "threshold"),
        ({"threshold": "lots"}, "threshold"),
        ({"threshold": "9" * 5000}, "threshold"),
        ({"modality": "pictures"}, "modality"),
    ],
)
def test_a_hostile_parameter_is_a_422_that_says_what_to_change(client, params: dict, field: str) -> None:
    response = client.get("/api/v1/duplicates", params=params)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["field"] == field and f"{field} must be" in error["message"]


@pytest.mark.slow  # a browser and a server
def test_the_page_shows_each_group_side_by_side_with_the_kept_file_marked(index: Path, tiny, tmp_path: Path) -> None:
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    from retrieval.server.local import CHROMIUM_FLAGS, LocalServer

    if CHROMIUM is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true but Chromium is not installed (apt-get install chromium)")
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    engine = Engine.open(index, model=tiny)
    served = LocalServer(create_app(engine, thumbs=ThumbnailCache(tmp_path / "thumbs")))
    try:
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
            page = browser.new_page(viewport={"width": 1280, "height": 860})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(served.url + "/")
            page.click("#show-duplicates")
            page.wait_for_selector(".dup-group .card.keep")
            page.wait_for_function(
                "() => [...document.querySelectorAll('.dup-group img')].every(i => i.complete && i.naturalWidth > 0)"
            )
            names = page.eval_on_selector_all(".dup-group .card", "cs => cs.map(c => c.title)")
            assert sorted(names) == ["boat-small.jpg", "boat-turned.jpg", "boat.png"]
            assert page.get_attribute(".dup-group .card.keep", "title") == "boat.png"
            assert page.inner_text(".dup-group .card.keep .badge") == "keep"
            assert "320×240" in page.inner_text(".dup-group .card.keep")  # its size shown
            assert "Nothing is deleted" in page.inner_text("#status")
            page.screenshot(path=str(tmp_path / "duplicates.png"))
            browser.close()
        assert errors == []
    finally:
        served.stop()
        engine.close()
