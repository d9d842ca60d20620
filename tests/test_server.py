"""The HTTP API on a real index (httpx through FastAPI's TestClient): every endpoint and error
class, paging, uploads, "more like this", Range, thumbnails, hostile ids, files that changed
or lead out of the root, the token, the security headers."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install -e '.[dev]')")
from fastapi.testclient import TestClient  # noqa: E402

import indexer  # noqa: E402
from retrieval import Engine  # noqa: E402
from retrieval.server import uploads  # noqa: E402
from retrieval.server.app import create_app  # noqa: E402
from retrieval.server.files import OpenFile, ThumbnailCache  # noqa: E402
from tests.helpers import make_media, write_image, write_text  # noqa: E402


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, tiny):
    base = tmp_path_factory.mktemp("served")
    root = make_media(base / "media", images=12, audio=3, texts=2)
    labels = write_text(base / "labels.txt", "a dog\na cat on a mat\n")
    indexer.index_folder(root, tiny, indexer.IndexOptions(workers=0, texts=[str(labels)]))
    engine = Engine.open(root, model=tiny)
    app = create_app(engine, thumbs=ThumbnailCache(base / "thumbs"))
    with TestClient(app, base_url="http://localhost") as client:
        yield client, root, engine
    engine.close()


def _opened(path: Path) -> OpenFile:
    st = path.stat()
    return OpenFile(os.open(path, os.O_RDONLY), str(path), st.st_size, st.st_mtime_ns, st.st_dev, st.st_ino)


def _error(response, status: int, code: str, field: str | None = None) -> dict:
    assert response.status_code == status, response.text
    body = response.json()["error"]
    assert body["code"] == code and body["message"]
    if field is not None:
        assert body["field"] == field
    return body


def test_info_health_and_the_page(served) -> None:
    client, _, _ = served
    assert client.get("/healthz").json() == {"status": "ok"}
    info = client.get("/api/v1/info").json()
    assert info["counts"] == {"image": 12, "audio": 3, "text": 4} and info["model"] == "xmr-tiny"
    assert info["auth"] is False  # no token: nothing to log out of
    assert "root" not in info and "database" not in info  # nothing about where the server keeps things
    page = client.get("/")
    assert page.status_code == 200 and "<title>xmr search</title>" in page.text
    assert (
        "script-src 'self'" in page.headers["content-security-policy"]
        and "frame-ancestors 'none'" in page.headers["content-security-policy"]
    )
    assert page.headers["x-content-type-options"] == "nosniff"
    assert client.get("/static/app.js").status_code == 200 and client.get("/docs").status_code == 200


def test_text_search_by_get_with_paging(served) -> None:
    client, root, engine = served
    body = client.get("/api/v1/search", params={"q": "stripes", "to": ["image", "text"], "k": 5}).json()
    assert set(body["results"]) == {"image", "text"} and body["took_ms"] >= 0
    assert body["query"]["q"] == ["stripes"] and body["query"]["to"] == ["image", "text"]
    images = body["results"]["image"]
    direct = engine.search(text="stripes", to="image", k=5)
    assert [h["id"] for h in images] == [h.id for h in direct]
    first = images[0]
    assert not first["path"].startswith("/") and (root / first["path"]).is_file()
    assert first["thumbnail_url"] == f"/api/v1/items/{first['id']}/thumbnail" and first["media_url"].endswith("/media")
    line = next(h for h in body["results"]["text"] if h["line"] is not None)
    assert line["media_url"] is None and line["thumbnail_url"] is None and line["text"] and line["path"] == "labels.txt"
    page2 = client.get("/api/v1/search", params={"q": "stripes", "to": "image", "k": 5, "offset": 5}).json()["results"][
        "image"
    ]
    whole = client.get("/api/v1/search", params={"q": "stripes", "to": "image", "k": 10}).json()["results"]["image"]
    assert [h["id"] for h in images + page2] == [h["id"] for h in whole]
    assert [h["rank"] for h in page2] == list(range(6, 11))


def test_filters_share_the_cli_syntax(served) -> None:
    client, _, _ = served
    jpg = client.get("/api/v1/search", params={"q": "x", "to": "image", "ext": "jpg", "k": 50}).json()["results"][
        "image"
    ]
    assert jpg and all(h["path"].endswith(".jpg") for h in jpg)
    glob = client.get("/api/v1/search", params={"q": "x", "to": "image", "path": "pics/*", "k": 50}).json()["results"][
        "image"
    ]
    assert glob and all(h["path"].startswith("pics/") for h in glob)
    big = client.get("/api/v1/search", params={"q": "x", "to": "image", "min_size": "1M"}).json()["results"]
    assert big.get("image", []) == []


@pytest.mark.parametrize(
    "params, status, code, field",
    [
        ({"q": "x", "min_size": "10Q"}, 400, "bad_filter", "min_size"),
        ({"q": "x", "after": "yesterday"}, 400, "bad_filter", "after"),
        ({"q": "x", "max_duration": "-3"}, 400, "bad_filter", "max_duration"),
        ({"q": "x", "to": "pictures"}, 400, "bad_modality", "to"),
        ({"q": "x", "k": "0"}, 422, "bad_parameter", "k"),
        ({"q": "x", "k": "1001"}, 422, "bad_parameter", "k"),
        ({"q": "x", "k": "many"}, 422, "bad_parameter", "k"),
        ({"q": "x", "offset": "-1"}, 422, "bad_parameter", "offset"),
        ({"q": "x", "colour": "red"}, 400, "unknown_parameter", "colour"),
        ({"q": "x", "k": ["1", "2"]}, 400, "bad_parameter", "k"),
        ({"q": "rain^inf"}, 400, "bad_weight", "q"),
        ({}, 400, "empty_query", "q"),
    ],
)
def test_bad_searches_get_a_4xx_that_says_what_to_change(served, params, status, code, field) -> None:
    client, _, _ = served
    body = _error(client.get("/api/v1/search", params=params), status, code, field)
    assert len(body["message"]) > 10


def test_weighted_parts(served) -> None:
    client, _, engine = served
    got = client.get("/api/v1/search", params={"q": ["rain^1", "bell^-0.5"], "to": "image", "k": 3}).json()["results"][
        "image"
    ]
    from retrieval import Weighted

    direct = engine.search(text=["rain", Weighted("bell", -0.5)], to="image", k=3)
    assert [h["id"] for h in got] == [h.id for h in direct]


def test_uploads_and_more_like_this(served) -> None:
    client, root, _ = served
    query = sorted((root / "pics").iterdir())[0]
    hits = client.post(
        "/api/v1/search", data={"to": "image", "k": "3"}, files={"image": (query.name, query.read_bytes())}
    )
    assert hits.status_code == 200, hits.text
    top = hits.json()["results"]["image"][0]
    assert top["path"] == f"pics/{query.name}" and top["score"] == pytest.approx(1.0, abs=1e-4)
    sound = sorted((root / "sounds").iterdir())[0]
    heard = client.post(
        "/api/v1/search", data={"to": "audio"}, files={"audio": (sound.name, sound.read_bytes())}
    ).json()
    assert heard["results"]["audio"][0]["path"] == f"sounds/{sound.name}"
    like = client.post("/api/v1/search", data={"like": str(top["id"]), "k": "2"}).json()
    assert like["results"]["image"][0]["id"] == top["id"] and set(like["results"]) == {"image", "audio", "text"}
    weighted = client.post("/api/v1/search", data={"q": "rain", "to": "image", "image_weight": "0.5"},
                           files={"image": (query.name, query.read_bytes())})  # fmt: skip
    assert weighted.status_code == 200 and weighted.json()["query"]["image"] is True


def test_bad_uploads(served, monkeypatch: pytest.MonkeyPatch) -> None:
    client, root, _ = served
    _error(client.post("/api/v1/search", files={"image": ("a.png", b"not an image at all")}), 415, "bad_image", "image")
    _error(client.post("/api/v1/search", files={"audio": ("a.wav", b"RIFF....nonsense")}), 415, "bad_audio", "audio")
    _error(client.post("/api/v1/search", files={"image": ("a.png", b"")}), 422, "empty_upload", "image")
    _error(client.post("/api/v1/search", files={"video": ("a.mp4", b"x")}), 400, "unknown_parameter", "video")
    _error(client.post("/api/v1/search", data={"like": "banana"}), 400, "bad_parameter", "like")
    _error(client.post("/api/v1/search", data={"like": "123456789"}), 404, "unknown_item", "like")
    _error(client.post("/api/v1/search", data={"to": "image"}), 400, "empty_query", "q")
    monkeypatch.setattr(uploads, "MAX_UPLOAD_BYTES", 1000)
    image = sorted((root / "photos").iterdir())[0].read_bytes()
    _error(client.post("/api/v1/search", files={"image": ("big.png", image + bytes(2000))}), 413, "too_large", "image")
    monkeypatch.setattr(uploads, "MAX_UPLOAD_BYTES", 32 << 20)
    monkeypatch.setattr(uploads, "MAX_UPLOAD_SECONDS", 0.5)
    sound = sorted((root / "sounds").iterdir())[0].read_bytes()  # 1 s
    _error(client.post("/api/v1/search", files={"audio": ("long.wav", sound)}), 413, "too_long", "audio")
    monkeypatch.setattr(uploads, "MAX_UPLOAD_PIXELS", 100)
    _error(client.post("/api/v1/search", files={"image": ("many.png", image)}), 413, "too_large", "image")


def test_items_media_and_range(served) -> None:
    client, root, _ = served
    hit = client.get("/api/v1/search", params={"q": "x", "to": "audio", "k": 1}).json()["results"]["audio"][0]
    item = client.get(f"/api/v1/items/{hit['id']}").json()
    assert item["id"] == hit["id"] and item["metadata"]["duration"] == pytest.approx(1.0)
    data = (root / item["path"]).read_bytes()
    whole = client.get(item["media_url"])
    assert whole.status_code == 200 and whole.content == data and whole.headers["content-type"].startswith("audio/")
    part = client.get(item["media_url"], headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == data[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(data)}"
    assert client.get(item["media_url"], headers={"Range": f"bytes={len(data) + 10}-"}).status_code == 416


@pytest.mark.parametrize(
    "item_id", ["..%2F..%2Fetc%2Fpasswd", "-1", "1 OR 1=1", "99999999999999999999999", "0x10", "%00", "1.5"]
)
def test_hostile_ids_are_404_never_500(served, item_id: str) -> None:
    client, _, _ = served
    for suffix in ("", "/media", "/thumbnail"):
        response = client.get(f"/api/v1/items/{item_id}{suffix}")
        assert response.status_code == 404, (item_id, suffix, response.text)
        assert response.json()["error"]["code"] in ("unknown_item", "not_found") or "error" in response.json()


def test_thumbnails_are_made_once_and_bounded(served) -> None:
    client, _, _ = served
    hit = client.get("/api/v1/search", params={"q": "x", "to": "image", "k": 1}).json()["results"]["image"][0]
    first = client.get(hit["thumbnail_url"], params={"size": 64})
    assert first.status_code == 200 and first.headers["content-type"] == "image/jpeg"
    from io import BytesIO

    from PIL import Image

    assert max(Image.open(BytesIO(first.content)).size) <= 64
    assert client.get(hit["thumbnail_url"], params={"size": 64}).content == first.content
    _error(client.get(hit["thumbnail_url"], params={"size": 5000}), 422, "bad_parameter", "size")
    _error(client.get(hit["thumbnail_url"], params={"size": "big"}), 422, "bad_parameter", "size")
    audio = client.get("/api/v1/search", params={"q": "x", "to": "audio", "k": 1}).json()["results"]["audio"][0]
    _error(client.get(f"/api/v1/items/{audio['id']}/thumbnail"), 404, "no_thumbnail")
    line = next(
        h
        for h in client.get("/api/v1/search", params={"q": "dog", "to": "text", "k": 4}).json()["results"]["text"]
        if h["line"]
    )
    _error(client.get(f"/api/v1/items/{line['id']}/media"), 404, "no_file")


def test_thumbnail_cache_keeps_to_its_cap(tmp_path: Path) -> None:
    cache = ThumbnailCache(tmp_path / "thumbs", max_bytes=6000)
    paths = [write_image(tmp_path / f"{n}.png", seed=n, size=200) for n in range(8)]
    for n, path in enumerate(paths):
        with _opened(path) as f:
            cache.get(f, 128, n)
    total = sum(p.stat().st_size for p in (tmp_path / "thumbs").rglob("*.jpg"))
    assert 0 < total <= 6000


def test_files_that_changed_or_lead_outside_are_not_served(tmp_path: Path, tiny) -> None:
    root = make_media(tmp_path / "media", images=3, audio=0, texts=0)
    secret = tmp_path / "secret.png"
    indexer.index_folder(root, tiny, indexer.IndexOptions(workers=0))
    with (
        Engine.open(root, model=tiny) as engine,
        TestClient(create_app(engine, thumbs=ThumbnailCache(tmp_path / "t")), base_url="http://localhost") as client,
    ):
        hits = {
            h["path"]: h
            for h in client.get("/api/v1/search", params={"q": "x", "to": "image"}).json()["results"]["image"]
        }
        changed, linked = hits["photos/img1.png"], hits["pics/img0.jpg"]
        write_image(root / "photos/img1.png", seed=77, size=30)  # rewritten since it was indexed
        _error(client.get(changed["media_url"]), 404, "file_changed")
        target = root / "pics/img0.jpg"
        shutil.copy2(target, secret)  # same size and mtime, outside the root, linked in its place
        target.unlink()
        target.symlink_to(secret)
        os.utime(secret, ns=(secret.stat().st_atime_ns, secret.stat().st_mtime_ns))
        _error(client.get(linked["media_url"]), 404, "outside_root")
        _error(client.get(linked["thumbnail_url"]), 404, "outside_root")


def test_the_token_guards_the_api_and_the_cookie_serves_the_page(served, tmp_path: Path) -> None:
    _, _, engine = served
    app = create_app(engine, token="s3cret", thumbs=ThumbnailCache(tmp_path / "t"))
    with TestClient(app, base_url="http://localhost") as client:
        assert client.get("/healthz").status_code == 200 and client.get("/").status_code == 200
        denied = client.get("/api/v1/search", params={"q": "x"})
        _error(denied, 401, "unauthorised")
        assert denied.headers["www-authenticate"] == "Bearer"
        assert client.get("/api/v1/info", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.get("/api/v1/info", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        _error(client.post("/login", data={"token": "nope"}), 401, "bad_token")
        login = client.post("/login", data={"token": "s3cret"}, follow_redirects=False)
        assert login.status_code == 303
        cookie = login.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        assert client.get("/api/v1/session").status_code == 200  # the client keeps the cookie


def test_an_open_address_needs_a_token() -> None:
    from retrieval.server import ServeError, is_loopback, serve

    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost") and not is_loopback("0.0.0.0")
    with pytest.raises(ServeError, match="without a token.*--token"):
        serve(host="0.0.0.0", token=None)


def test_searches_while_the_index_changes(served, tiny) -> None:
    client, root, _ = served
    before = client.get("/api/v1/info").json()["counts"]["image"]
    for n in range(3):
        write_image(root / "new" / f"{n}.png", seed=900 + n)
    indexer.index_folder(root, tiny, indexer.IndexOptions(workers=0, texts=[str(root.parent / "labels.txt")]))
    assert client.get("/api/v1/info").json()["counts"]["image"] == before + 3
    got = client.get("/api/v1/search", params={"q": "x", "to": "image", "k": 100}).json()["results"]["image"]
    assert len(got) == before + 3 and len({h["id"] for h in got}) == len(got)
    np.testing.assert_array_less(0, [h["id"] for h in got])


def test_xmr_serve_as_a_real_process(tmp_path: Path, tiny) -> None:
    import socket
    import subprocess
    import sys
    import time

    import httpx

    root = make_media(tmp_path / "media", images=3, audio=0, texts=0)
    indexer.index_folder(root, tiny, indexer.IndexOptions(workers=0))
    cli = [sys.executable, "-m", "cli", "serve", "--index", str(root)]
    cwd = Path(__file__).parent.parent
    refused = subprocess.run([*cli, "--host", "0.0.0.0"], capture_output=True, text=True, timeout=60, cwd=cwd)
    assert refused.returncode == 2 and "without a token" in refused.stderr  # a bad option
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([*cli, "--port", str(port), "--token", "t0k"], cwd=cwd, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        assert httpx.get(f"http://127.0.0.1:{port}/api/v1/info").status_code == 401
        got = httpx.get(f"http://127.0.0.1:{port}/api/v1/info", headers={"Authorization": "Bearer t0k"})
        assert got.status_code == 200 and got.json()["counts"]["image"] == 3
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_the_api_answers_while_xmr_index_runs(tmp_path: Path, tiny) -> None:
    """A real indexer in another process commits batch after batch while the API is asked:
    never an error, counts only grow, hits unique and every file there."""
    import subprocess
    import sys
    import time

    root = make_media(tmp_path / "media", images=4, audio=0, texts=0)
    indexer.index_folder(root, tiny, indexer.IndexOptions(workers=0))
    for n in range(120):
        write_image(root / "new" / f"{n}.png", seed=400 + n, size=24)
    child = (
        "import sys, indexer, retrieval\nenc = retrieval.create_model('xmr-tiny', device='cpu')\n"
        "indexer.index_folder(sys.argv[1], enc, indexer.IndexOptions(workers=1, batch_size=8, checkpoint_items=8))\n"
    )
    with (
        Engine.open(root, model=tiny) as engine,
        TestClient(create_app(engine, thumbs=ThumbnailCache(tmp_path / "t")), base_url="http://localhost") as client,
    ):
        proc = subprocess.Popen([sys.executable, "-c", child, str(root)], cwd=Path(__file__).parent.parent)
        counts, deadline = [], time.monotonic() + 240
        while proc.poll() is None and time.monotonic() < deadline:
            answer = client.get("/api/v1/search", params={"q": "x", "to": "image", "k": 200})
            assert answer.status_code == 200, answer.text
            hits = answer.json()["results"].get("image", [])
            assert len({h["id"] for h in hits}) == len(hits)
            assert all((root / h["path"]).is_file() for h in hits)
            counts.append(len(hits))
        assert proc.wait(timeout=60) == 0
        final = client.get("/api/v1/search", params={"q": "x", "to": "image", "k": 200}).json()["results"]["image"]
    assert len(counts) >= 3 and counts == sorted(counts) and len(final) == 124


def test_a_thumbnail_cache_that_cannot_be_written_still_serves(tmp_path: Path) -> None:
    image = write_image(tmp_path / "a.png", seed=3, size=200)
    cache = ThumbnailCache(tmp_path / "thumbs")
    with _opened(image) as opened:
        blocked = cache._key(opened, 64).parent
        blocked.write_text("a file where the cache wants a folder")  # as a full or read-only disk refuses the write
        data = cache.read(opened, 64, 1)
    from io import BytesIO

    from PIL import Image

    assert max(Image.open(BytesIO(data)).size) <= 64
    assert not list((tmp_path / "thumbs").rglob("*.jpg"))


def test_a_hit_carries_its_path_under_the_folder_and_its_mtime(served) -> None:
    """What the server needs comes with the hit: no second read of the row, no path arithmetic."""
    client, root, engine = served
    hits = engine.search(text="x", to="all", k=50)
    files = [h for h in hits if h.line is None]
    lines = [h for h in hits if h.line is not None]
    assert files and lines
    for hit in files:
        assert (root / hit.relpath).is_file() and hit.path == str(root / hit.relpath)
        assert hit.mtime_ns == (root / hit.relpath).stat().st_mtime_ns
    assert all(h.relpath == "labels.txt" for h in lines)
    served_hits = client.get("/api/v1/search", params={"q": "x", "k": 50}).json()["results"]
    for group in served_hits.values():
        for h in group:
            assert "relpath" not in h and "mtime_ns" not in h  # the API's path is already relative
