"""The search page in a real browser: Debian's Chromium driven by Playwright against the real
server (uvicorn on loopback) over a real index. Each state is saved as a screenshot in the
test's folder (``pytest --basetemp=DIR`` keeps them where you can look).

Without Chromium these tests skip, saying why; under CI (CI=true) they must run."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install -e '.[dev]')")
playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')")

import indexer  # noqa: E402
from retrieval import Engine  # noqa: E402
from retrieval.server.app import create_app  # noqa: E402
from retrieval.server.files import ThumbnailCache  # noqa: E402
from retrieval.server.local import CHROMIUM_FLAGS, LocalServer  # noqa: E402
from tests.helpers import make_media, write_text  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true but Chromium is not installed (apt-get install chromium)")
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
        yield b
        b.close()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, tiny):
    base = tmp_path_factory.mktemp("site")
    root = make_media(base / "media", images=40, audio=3, texts=2)
    _recording(root / "long" / "rec.wav", base / "clip.wav")  # a moment to find
    _film(root / "films" / "film.webm", base / "frame.png")  # a video's frame to find
    labels = write_text(base / "labels.txt", "a dog\na red square\n")
    indexer.index_folder(root, tiny, indexer.IndexOptions(workers=0, texts=[str(labels)]))
    engine = Engine.open(root, model=tiny)
    served = LocalServer(create_app(engine, thumbs=ThumbnailCache(base / "thumbs")))
    yield served, root, engine, base
    served.stop()
    engine.close()


def _recording(path: Path, clip_path: Path) -> None:
    """12 s of quiet with a 1 s tone at 6 s; the tone alone in ``clip_path``."""
    import numpy as np
    import soundfile as sf

    rate = 16000
    clip = (0.3 * np.sin(2 * np.pi * 1500 * np.arange(rate) / rate)).astype(np.float32)
    wave = np.zeros(12 * rate, np.float32)
    wave[6 * rate : 7 * rate] = clip
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, wave, rate, subtype="FLOAT")
    sf.write(clip_path, clip, rate, subtype="FLOAT")


def _film(path: Path, frame_path: Path) -> None:
    """A 10 s VP9 video of five pictures, 2 s each; its fourth picture alone in ``frame_path``."""
    import numpy as np
    from PIL import Image

    from tests.helpers import write_video

    rng = np.random.default_rng(7)
    pictures = [
        np.kron(rng.integers(0, 256, (4, 6, 3), dtype=np.uint8), np.ones((16, 16, 1), np.uint8)) for _ in range(5)
    ]
    write_video(path, pictures, seconds_each=2.0, fps=10)
    Image.fromarray(pictures[3]).save(frame_path)


@pytest.fixture
def page(browser, site):
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    yield page
    context.close()
    assert errors == [], errors  # no script errors, no CSP violations


def shot(page, site, name: str) -> None:
    page.screenshot(path=str(site[3] / f"{name}.png"), full_page=False)


def loaded_images(page) -> list[int]:
    return page.eval_on_selector_all(".grid img", "imgs => imgs.map(i => i.complete ? i.naturalWidth : 0)")


def search(page, site, text: str, to: str | None = None) -> None:
    page.goto(site[0].url + "/")
    if to:
        page.click(f"#chips [data-to={to}]")
    page.fill("#q", text)
    page.press("#q", "Enter")
    page.wait_for_selector(".group")


def test_a_text_query_shows_the_engines_images(page, site) -> None:
    served, _, engine, _ = site
    search(page, site, "stripes", to="image")
    page.wait_for_function(
        "() => [...document.querySelectorAll('.grid img')].slice(0, 8).every(i => i.complete && i.naturalWidth > 0)"
    )
    ids = [int(x) for x in page.eval_on_selector_all(".grid .card", "cards => cards.map(c => c.dataset.id)")]
    assert ids[:10] == [h.id for h in engine.search(text="stripes", to="image", k=10)]
    assert all(w > 0 for w in loaded_images(page)[:8])
    assert "q=stripes" in page.url and "to=image" in page.url  # the URL holds the query
    shot(page, site, "1-text-query")
    page.goto(page.url)  # bookmarkable: the same results come back
    page.wait_for_selector(".grid .card")
    assert int(page.get_attribute(".grid .card", "data-id")) == ids[0]


def test_an_image_upload_finds_its_near_duplicate(page, site) -> None:
    served, root, engine, base = site
    page.goto(served.url + "/")
    query = sorted((root / "pics").iterdir())[3]
    page.set_input_files("#image-file", str(query))
    page.wait_for_selector(".grid .card")
    first = page.eval_on_selector(".grid .card", "c => c.querySelector('.name').textContent")
    assert first == query.name
    assert page.is_visible("#query-preview img")
    shot(page, site, "2-image-upload")


def test_an_audio_result_plays(page, site) -> None:
    search(page, site, "bell", to="audio")
    page.eval_on_selector(".row audio", "a => { a.preload = 'auto'; a.load(); a.play().catch(() => {}); }")
    page.wait_for_function("() => document.querySelector('.row audio').readyState >= 2", timeout=15000)
    shot(page, site, "3-audio")


def test_detail_view_keys_and_more_like_this(page, site) -> None:
    served, _, engine, _ = site
    search(page, site, "night", to="image")
    cards = page.eval_on_selector_all(".grid .card", "cards => cards.map(c => c.dataset.id)")
    page.click(".grid .card")
    page.wait_for_selector("#detail:not([hidden]) img.full")
    page.wait_for_function("() => document.querySelector('img.full').naturalWidth > 0")
    assert f"<td>{cards[0]}</td>" in page.inner_html("#detail-body")
    shot(page, site, "4-detail")
    page.keyboard.press("ArrowRight")
    assert f"<td>{cards[1]}</td>" in page.inner_html("#detail-body")
    page.keyboard.press("Escape")
    assert page.is_hidden("#detail")
    page.click(".grid .card")
    page.click("#more-like")
    page.wait_for_function(
        f"() => (document.querySelector('.grid .card') || {{dataset: {{}}}}).dataset.id === '{cards[0]}'"
    )
    assert "like=" in page.url
    shot(page, site, "5-more-like-this")


def test_filters_narrow_the_results(page, site) -> None:
    search(page, site, "x", to="image")
    page.click("#toggle-filters")
    page.fill("#filters input[name=ext]", "jpg")
    page.press("#filters input[name=ext]", "Enter")
    page.dispatch_event("#filters input[name=ext]", "change")
    page.wait_for_function(
        "() => [...document.querySelectorAll('.grid .name')].every(n => n.textContent.endsWith('.jpg'))"
    )
    names = page.eval_on_selector_all(".grid .name", "ns => ns.map(n => n.textContent)")
    assert names and all(n.endswith(".jpg") for n in names)
    assert "ext=jpg" in page.url
    shot(page, site, "6-filters")


def test_scrolling_loads_more(page, site) -> None:
    page.set_viewport_size({"width": 700, "height": 500})  # the first page fills more than the screen
    search(page, site, "x", to="image")
    assert page.eval_on_selector_all(".grid .card", "c => c.length") == 24
    page.mouse.wheel(0, 20000)
    page.wait_for_function("() => document.querySelectorAll('.grid .card').length === 41")  # 40 images, a video
    shot(page, site, "7-scrolled")


def test_token_login(browser, site, tmp_path: Path) -> None:
    _, _, engine, base = site
    served = LocalServer(create_app(engine, token="open sesame", thumbs=ThumbnailCache(tmp_path / "thumbs")))
    try:
        context = browser.new_context()
        page = context.new_page()
        page.goto(served.url + "/?q=dog")
        page.wait_for_selector("#login:not([hidden])")
        shot(page, site, "8-login")
        page.fill("#login input[name=token]", "open sesame")
        page.click("#login button")
        page.wait_for_selector("#search")
        page.fill("#q", "dog")
        page.press("#q", "Enter")
        page.wait_for_selector(".group")
        assert page.wait_for_function(
            "() => [...document.querySelectorAll('.grid img')].some(i => i.complete && i.naturalWidth > 0)"
        )
        shot(page, site, "9-after-login")
        context.close()
    finally:
        served.stop()


def test_a_moment_plays_from_its_start(page, site) -> None:
    """A sound searched with the page finds the recording at its moment: the row says when, and
    its player starts there (a media fragment Chromium honours)."""
    page.goto(site[0].url + "/")
    page.click("#chips [data-to=audio]")
    page.set_input_files("#audio-file", str(site[3] / "clip.wav"))
    page.wait_for_selector(".group .row audio")
    first = page.locator(".row").first
    assert "rec.wav" in first.inner_text() and "00:00:06–00:00:07" in first.inner_text()
    src = first.locator("audio").get_attribute("src")
    assert src.endswith("#t=6,7"), src
    first.locator("audio").evaluate("a => { a.preload = 'auto'; a.load(); }")
    page.wait_for_function("() => document.querySelector('.row audio').readyState >= 1", timeout=15000)
    assert abs(first.locator("audio").evaluate("a => a.currentTime") - 6.0) < 0.05
    shot(page, site, "5-moment")


def test_a_video_frame_shows_at_its_moment_and_plays_in_the_detail_view(page, site) -> None:
    """An image searched with the page finds the video's frame: its card is the video paused at
    that moment, and the detail view plays it from there."""
    page.goto(site[0].url + "/")
    page.click("#chips [data-to=image]")
    page.set_input_files("#image-file", str(site[3] / "frame.png"))
    page.wait_for_selector(".group .card")
    first = page.locator(".card").first
    assert "film.webm" in first.inner_text() and "00:00:06" in first.inner_text()
    still = first.locator("video")
    assert still.get_attribute("src").endswith("#t=6,8")
    page.wait_for_function("() => document.querySelector('.card video').readyState >= 2", timeout=15000)
    assert abs(still.evaluate("v => v.currentTime") - 6.0) < 0.05 and still.evaluate("v => v.videoWidth") == 96
    shot(page, site, "10-video-frame")
    first.click()
    player = page.locator("#detail video.full")
    assert player.get_attribute("src").endswith("#t=6,8")
    page.wait_for_function("() => document.querySelector('#detail video').readyState >= 1", timeout=15000)
    assert player.evaluate("v => v.currentTime") >= 6.0 - 0.05
    shot(page, site, "11-video-detail")
