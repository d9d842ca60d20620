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
from tests.helpers import make_media, ocr_reader, speak, write_image, write_page, write_text  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.slow  # a browser and a server: run by default, left out by -m "not slow"


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
    write_image(root / "sprites" / "hero.png", seed=9, size=32)  # a small sprite (32x24 below)
    _shrink(root / "sprites" / "hero.png", (32, 24))
    labels = write_text(base / "labels.txt", "a dog\na red square\n")
    speak(root / "talks" / "party.wav", "happy birthday dear grandmother", before=1.0)  # words to find
    write_page(root / "scans" / "invoice.png", ["Invoice 7781", "Refurbishment of the north wing"])  # text to read
    from retrieval.models.ocr import OcrUnavailable, TextReader
    from retrieval.models.speech import SpeechRecognizer

    try:
        reader = TextReader()
    except OcrUnavailable:  # the test of text in pictures says so (fails under CI)
        reader = None
    options = indexer.IndexOptions(workers=0, texts=[str(labels)], transcriber=SpeechRecognizer(), text_reader=reader)
    indexer.index_folder(root, tiny, options)
    engine = Engine.open(root, model=tiny)
    served = LocalServer(create_app(engine, thumbs=ThumbnailCache(base / "thumbs")))
    yield served, root, engine, base
    served.stop()
    engine.close()


def _shrink(path: Path, size: tuple[int, int]) -> None:
    from PIL import Image

    with Image.open(path) as im:
        small = im.convert("RGB").resize(size, Image.NEAREST)
    small.save(path)


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
def page(browser, site, request: pytest.FixtureRequest):
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    yield page
    context.close()
    expected = getattr(request.node, "expected_console_errors", ())  # a test that asks for a 4xx on purpose
    errors = [e for e in errors if not any(x in e for x in expected)]
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


def test_words_heard_show_marked_and_play_from_their_moment(page, site) -> None:
    search(page, site, "Grandmother", to="audio")
    row = page.locator(".row").first
    assert row.locator(".name").inner_text() == "party.wav"
    assert [m.lower() for m in row.locator(".said mark").all_inner_texts()] == ["grandmother"]
    assert "birthday dear" in row.locator(".said").inner_text().lower()
    src = row.locator("audio").get_attribute("src")
    start, end = (float(x) for x in src.split("#t=")[1].split(","))
    assert 1.0 <= start < end < 4.0
    shot(page, site, "words-heard")


def test_text_read_in_a_picture_is_marked_and_outlined_in_the_detail_view(page, site) -> None:
    ocr_reader()  # skips (fails under CI) without the extra ocr
    search(page, site, "7781", to="image")
    card = page.locator(".grid .card").first
    assert card.locator(".name").inner_text() == "invoice.png"
    assert card.locator(".said mark").all_inner_texts() == ["7781"]
    card.click()
    page.wait_for_function(
        "() => document.querySelector('.box-layer') && document.querySelector('.box-layer').getAttribute('viewBox')"
    )
    assert page.get_attribute(".box-layer", "viewBox") == "0 0 1600 1200"
    outline = page.locator(".box-layer polygon").bounding_box()
    picture = page.locator("img.full").bounding_box()
    assert picture["x"] <= outline["x"] and outline["x"] + outline["width"] <= picture["x"] + picture["width"]
    shown = picture["width"] / 1600 if picture["width"] / picture["height"] < 1600 / 1200 else picture["height"] / 1200
    assert (
        outline["y"] - picture["y"] < 260 * shown + (picture["height"] - 1200 * shown) / 2
    )  # the first line, at y 200
    shot(page, site, "16-text-read")


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


def test_the_videos_chip_shows_videos_alone(page, site) -> None:
    search(page, site, "x", to="video")
    names = page.eval_on_selector_all(".group .name", "ns => ns.map(n => n.textContent)")
    assert names and all(n.endswith("film.webm") for n in names), names
    assert "to=video" in page.url


def test_scrolling_loads_more(page, site) -> None:
    page.set_viewport_size({"width": 700, "height": 500})  # the first page fills more than the screen
    search(page, site, "x", to="image")
    assert page.eval_on_selector_all(".grid .card", "c => c.length") == 24
    page.mouse.wheel(0, 20000)
    page.wait_for_function("() => document.querySelectorAll('.grid .card').length === 43")  # 42 images, a video
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
        page.click("#logout button")  # the cookie dropped: the page asks for the token again
        page.wait_for_selector("#login:not([hidden])")
        assert not [c for c in context.cookies() if c["name"] == "xmr_token"]
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
    when = first.locator(".meta")
    assert when.evaluate("m => m.scrollWidth <= m.clientWidth"), "the moment's end is cut off"
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


# --- issue 31: the page at 400 px, queries that say what they combine, and the small print -------


def test_the_page_fits_a_400_px_screen(browser, site) -> None:
    context = browser.new_context(viewport={"width": 400, "height": 800})
    page = context.new_page()
    try:
        for url in ("/", "/?q=bell"):
            page.goto(site[0].url + url)
            page.wait_for_selector("#q")
            if "q=" in url:
                page.wait_for_selector(".group")
            widths = page.evaluate(
                "() => [document.documentElement.scrollWidth, document.querySelector('.go').getBoundingClientRect()"
                ".right]"
            )
            assert widths[0] <= 400 and widths[1] <= 400, widths  # nothing runs past the right edge
        shot(page, site, "12-400px")
    finally:
        context.close()


def _parts(page) -> list[str]:
    """The query's parts as the page shows them: kind, and weight."""
    return page.eval_on_selector_all(
        "#query-preview .part", "ps => ps.map(p => p.dataset.kind + ' ' + p.querySelector('input').value)"
    )


def test_a_new_query_starts_afresh_and_a_combined_one_shows_its_parts(page, site) -> None:
    served, root, engine, base = site
    search(page, site, "stripes")
    assert _parts(page) == ["text 1"]
    with page.expect_request(lambda r: "/api/v1/search" in r.url) as sent:
        page.set_input_files("#image-file", str(sorted((root / "pics").iterdir())[0]))
    assert "q=" not in sent.value.url and page.input_value("#q") == ""  # the old text does not linger
    page.wait_for_function("() => document.querySelectorAll('#query-preview .part').length === 1")
    assert _parts(page) == ["image 1"]
    page.set_input_files("#audio-file", str(base / "clip.wav"))
    page.wait_for_function("() => document.querySelector('#query-preview .part').dataset.kind === 'audio'")
    page.fill("#q", "flower")
    with page.expect_response(lambda r: "/api/v1/search" in r.url and "q=flower" in r.url) as answered:
        page.press("#q", "Enter")
    assert answered.value.request.method == "GET" and "q=flower" in answered.value.url  # the sound is gone
    assert _parts(page) == ["text 1"]
    page.wait_for_selector(".group.audio .row")
    shown = [int(x) for x in page.eval_on_selector_all(".group.audio .row", "rs => rs.map(r => r.dataset.id)")]
    assert shown[:3] == [h.id for h in engine.search(text="flower", to="audio", k=3)]
    # Combined on purpose: the parts side by side, each with its weight, each removable.
    page.click("#combine")
    assert page.get_attribute("#combine", "aria-pressed") == "true"
    page.set_input_files("#image-file", str(sorted((root / "pics").iterdir())[1]))
    page.wait_for_function("() => document.querySelectorAll('#query-preview .part').length === 2")
    page.wait_for_function("() => !document.querySelector('#status').textContent.startsWith('Searching')")
    assert _parts(page) == ["text 1", "image 1"]
    shot(page, site, "13-combined-query")
    # What the page sends, read where it is sent (the form's file parts are not in Playwright's view).
    page.evaluate(
        """() => { window.sent = []; const send = window.fetch;
        window.fetch = (url, options) => {
          if (options && options.body instanceof FormData) {
            const fields = [...options.body.entries()].map(([k, v]) => [k, typeof v === "string" ? v : "file"]);
            window.sent.push([String(url), fields]);
          }
          return send(url, options); }; }"""
    )
    page.fill("#query-preview .part[data-kind=image] input", "0.5")
    page.dispatch_event("#query-preview .part[data-kind=image] input", "change")
    page.wait_for_function("() => window.sent.length >= 1")
    url, fields = page.evaluate("() => window.sent[window.sent.length - 1]")
    assert ["image_weight", "0.5"] in fields and ["image", "file"] in fields and "q=flower" in url, (url, fields)
    with page.expect_request(lambda r: "/api/v1/search" in r.url) as sent:
        page.click("#query-preview .part[data-kind=text] .remove")
    assert "q=" not in sent.value.url and _parts(page) == ["image 0.5"]


def test_a_bad_filter_clears_the_stale_results(page, site, request: pytest.FixtureRequest) -> None:
    request.node.expected_console_errors = ["status of 400 (Bad Request)"]
    search(page, site, "x", to="image")
    assert page.eval_on_selector_all(".grid .card", "c => c.length") > 0
    page.click("#toggle-filters")
    page.fill("#filters input[name=min_size]", "10Q")
    page.dispatch_event("#filters input[name=min_size]", "change")
    page.wait_for_selector("#status.error")
    assert "min_size" in page.inner_text("#status")
    assert page.eval_on_selector_all(".grid .card", "c => c.length") == 0  # no stale results under the error
    shot(page, site, "14-bad-filter")


def test_the_detail_view_gives_sizes_and_durations_as_people_read_them(page, site) -> None:
    import re

    search(page, site, "bell", to="audio")
    page.click(".row .link")
    page.wait_for_selector("#detail:not([hidden])")
    cells = dict(
        page.eval_on_selector_all(
            "#detail-body .meta-table tr", "rs => rs.map(r => [r.cells[0].textContent, r.cells[1].textContent])"
        )
    )
    assert re.fullmatch(r"\d+(\.\d)? (B|KB|MB|GB)", cells["size"]), cells
    assert re.fullmatch(r"\d+\.\d s|\d\d:\d\d:\d\d", cells["duration"]), cells
    assert cells["sample_rate"].endswith(" Hz"), cells


def test_a_video_moment_stops_at_its_end(page, site) -> None:
    page.goto(site[0].url + "/")
    page.click("#chips [data-to=image]")
    page.set_input_files("#image-file", str(site[3] / "frame.png"))
    page.wait_for_selector(".group .card video")
    page.locator(".card").first.click()
    player = page.locator("#detail video.full")
    page.wait_for_function("() => document.querySelector('#detail video').readyState >= 1", timeout=15000)
    player.evaluate("v => { v.muted = true; return v.play(); }")
    page.wait_for_function("() => document.querySelector('#detail video').paused", timeout=15000)
    stopped = player.evaluate("v => v.currentTime")
    assert 7.5 <= stopped <= 8.5, stopped  # the moment is 6-8 s; the next scene starts at 8
    assert "00:00:08" in page.inner_text("#detail .moment-end")


def test_a_small_sprite_is_shown_sharp(page, site) -> None:
    served, root, engine, base = site
    page.goto(served.url + "/")
    page.set_input_files("#image-file", str(root / "sprites" / "hero.png"))
    page.wait_for_selector(".grid .card")
    page.locator(".grid .card").first.click()
    page.wait_for_function(
        "() => document.querySelector('img.full') && document.querySelector('img.full').naturalWidth > 0"
    )
    assert page.eval_on_selector("img.full", "i => [i.naturalWidth, i.naturalHeight]") == [32, 24]
    page.wait_for_function("() => getComputedStyle(document.querySelector('img.full')).imageRendering === 'pixelated'")
    shot(page, site, "15-sprite")


def test_the_start_page_says_what_to_type(page, site) -> None:
    served, _, engine, _ = site
    page.goto(served.url + "/")
    page.wait_for_selector("#results .hint")
    hint = page.inner_text("#results .hint")
    counts = engine.info()["counts"]
    assert "e.g." in hint and f"{counts['image']} images" in hint, hint
    assert page.is_hidden("#logout")  # no token: nothing to log out of
    page.click("#results .hint .example")
    page.wait_for_selector(".group")
    assert page.input_value("#q") != ""
