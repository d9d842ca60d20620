"""``xmr serve`` against hostile clients (retrieval/server/guards.py, files.py, protocol.py): no
file outside the root even while links are swapped in, bodies refused while they arrive, Host
names checked (DNS rebinding), bounded queries, CORS preflights with a token, out-of-range
filters and weights as 400s, uploads decoded once, slow headers closed, logins throttled.
Real indexes, real uvicorn on loopback, raw sockets where the client must misbehave."""

from __future__ import annotations

import os
import shutil
import socket
import struct
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install -e '.[dev]')")
from fastapi.testclient import TestClient  # noqa: E402

import indexer  # noqa: E402
from retrieval import Engine, Weighted  # noqa: E402
from retrieval.bench.media import png_header_only  # noqa: E402
from retrieval.search.query import QueryError  # noqa: E402
from retrieval.server import uploads  # noqa: E402
from retrieval.server.app import create_app  # noqa: E402
from retrieval.server.files import ThumbnailCache  # noqa: E402
from retrieval.server.local import CHROMIUM_FLAGS, LocalServer  # noqa: E402
from retrieval.server.protocol import BoundedH11Protocol  # noqa: E402
from tests.helpers import make_media, write_image  # noqa: E402

LOCAL = "http://localhost"


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory, tiny):
    base = tmp_path_factory.mktemp("hostile")
    root = make_media(base / "media", images=6, audio=2, texts=1)
    share = root / "share"
    (share / ".k").mkdir(parents=True)
    (share / "race.txt").write_text("the file that was indexed, " * 8)
    write_image(share / "race.png", seed=5, size=96)
    indexer.index_folder(root, tiny, indexer.IndexOptions(workers=0))
    engine = Engine.open(root, model=tiny)
    yield base, root, engine
    engine.close()


@pytest.fixture(scope="module")
def client(index):
    base, _, engine = index
    with TestClient(create_app(engine, thumbs=ThumbnailCache(base / "thumbs")), base_url=LOCAL) as c:
        yield c


def _error(response, status: int, code: str, field: str | None = None) -> dict:
    assert response.status_code == status, response.text
    body = response.json()["error"]
    assert body["code"] == code and body["message"], body
    if field is not None:
        assert body["field"] == field, body
    return body


def _id_of(engine: Engine, root: Path, relative: str) -> int:
    hits = engine.search(text="x", to="all", k=100)
    return next(h.id for h in hits if h.path == str(root / relative))


# --- 1. a link swapped in ------------------------------------------------------------------


def _swapper(folder: Path, name: str, target: Path, stop: threading.Event) -> threading.Thread:
    """The attack: a symbolic link to ``target`` and a hard link to the indexed file renamed over
    ``name`` in turn, as fast as it goes."""
    keep, link, hard = folder / ".k" / f"keep-{name}", folder / ".k" / "L", folder / ".k" / "H"
    os.link(folder / name, keep)

    def run() -> None:
        while not stop.is_set():
            try:
                os.symlink(target, link)
                os.rename(link, folder / name)
                os.link(keep, hard)
                os.rename(hard, folder / name)
            except FileExistsError:
                for stale in (link, hard):
                    try:
                        os.unlink(stale)
                    except FileNotFoundError:
                        pass

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _outside_twin(original: Path, outside: Path, content: bytes) -> Path:
    """A file outside the root with the indexed file's size and mtime (what a check by stat sees)."""
    assert len(content) == original.stat().st_size
    outside.write_bytes(content)
    st = original.stat()
    os.utime(outside, ns=(st.st_atime_ns, st.st_mtime_ns))
    return outside


@pytest.mark.parametrize("route", ["media", "thumbnail"])
def test_a_link_swapped_in_never_serves_a_file_outside_the_root(index, client, route: str) -> None:
    base, root, engine = index
    name = "race.txt" if route == "media" else "race.png"
    share = root / "share"
    original = (share / name).read_bytes()
    if route == "media":
        secret = b"SECRET!" + b"x" * (len(original) - 7)
    else:
        import io

        from PIL import Image

        # Another picture of the same byte size: a solid red square, padded with a trailing comment.
        out = io.BytesIO()
        Image.new("RGB", (96, 96), (255, 0, 0)).save(out, format="PNG")
        secret = out.getvalue()
        assert len(secret) < len(original)
        secret += b"\0" * (len(original) - len(secret))  # bytes after IEND are ignored by decoders
    target = _outside_twin(share / name, base / f"outside-{name}", secret)
    item = _id_of(engine, root, f"share/{name}")
    url = f"/api/v1/items/{item}/{route}" + ("?size=64" if route == "thumbnail" else "")
    expected = client.get(url)
    assert expected.status_code == 200
    stop = threading.Event()
    thread = _swapper(share, name, target, stop)
    statuses: dict[int, int] = {}
    codes: set[str] = set()
    leaked = 0
    try:
        for _ in range(1500):
            response = client.get(url)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            if response.status_code == 404:
                codes.add(response.json()["error"]["code"])
            if response.status_code == 200:
                if route == "media":
                    leaked += response.content != original
                else:
                    leaked += response.content != expected.content
    finally:
        stop.set()
        thread.join()
        os.replace(share / ".k" / f"keep-{name}", share / name)  # (no-op when it is that link already)
        for left in (share / ".k").iterdir():
            left.unlink()
    assert leaked == 0, statuses
    assert set(statuses) <= {200, 404} and codes <= {"file_changed", "outside_root"}, (statuses, codes)
    assert statuses.get(200, 0) > 0, (statuses, codes)  # the race was run against a file that is served between swaps


def test_a_link_anywhere_on_the_way_is_not_followed_by_the_descriptor_walk(tmp_path: Path) -> None:
    from retrieval.server.files import _open_beneath

    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    (root / "a" / "f.txt").write_text("inside")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "f.txt").write_text("outside")
    fd = _open_beneath(str(root), ["a", "f.txt"])
    assert os.read(fd, 100) == b"inside"
    os.close(fd)
    shutil.rmtree(root / "a")
    (root / "a").symlink_to(tmp_path / "out")  # a folder on the way swapped for a link
    with pytest.raises(OSError):
        _open_beneath(str(root), ["a", "f.txt"])
    os.mkfifo(root / "fifo")  # a FIFO would hang a plain open for reading
    fd = _open_beneath(str(root), ["fifo"])
    os.close(fd)


def test_media_is_served_from_the_descriptor_with_ranges(index, client) -> None:
    _, root, engine = index
    item = _id_of(engine, root, "share/race.txt")
    data = (root / "share/race.txt").read_bytes()
    for header, status, body in [
        (None, 200, data),
        ("bytes=0-9", 206, data[:10]),
        ("bytes=10-", 206, data[10:]),
        ("bytes=-5", 206, data[-5:]),
        ("bytes=0-1,4-5", 200, data),  # several ranges: the whole file
        ("bytes=abc", 200, data),
    ]:
        response = client.get(f"/api/v1/items/{item}/media", headers={"Range": header} if header else {})
        assert response.status_code == status and response.content == body, header
        assert int(response.headers["content-length"]) == len(body)
    response = client.get(f"/api/v1/items/{item}/media", headers={"Range": f"bytes={len(data)}-"})
    assert response.status_code == 416 and response.headers["content-range"] == f"bytes */{len(data)}"


# --- 2. bodies refused while they arrive ---------------------------------------------------


def _answer(sock: socket.socket) -> bytes:
    """An HTTP answer's head and body as they come (in one segment or several), up to 64 kB."""
    sock.settimeout(60)
    out = b""
    while b"\r\n\r\n" not in out or len(out.partition(b"\r\n\r\n")[2]) < _length(out):
        try:
            chunk = sock.recv(65536)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
        if len(out) > 65536:
            break
    return out


def _length(head: bytes) -> int:
    for line in head.partition(b"\r\n\r\n")[0].split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 1


def _stream_until_answered(url: str, path: str, head: bytes, chunk: bytes, most: int) -> tuple[int, bytes]:
    """Send a chunked body of ``chunk`` repeated until the server answers or ``most`` bytes are
    sent; the bytes sent before the answer, and the answer's first bytes."""
    import select

    host, port = url.removeprefix("http://").split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 << 10)  # little waits in our own buffer
    sock.settimeout(5)
    sock.connect((host, int(port)))
    sock.sendall(
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nTransfer-Encoding: chunked\r\n".encode() + head + b"\r\n"
    )
    sent = 0
    try:
        while sent < most and not select.select([sock], [], [], 0)[0]:
            try:
                sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            except OSError:  # the server stopped reading (and answered): read the answer
                break
            sent += len(chunk)
        else:
            if sent >= most:
                sock.sendall(b"0\r\n\r\n")
        answer = _answer(sock)
    finally:
        sock.close()
    return sent, answer


@pytest.fixture(scope="module")
def served(index):
    base, _, engine = index
    server = LocalServer(create_app(engine, token="s3cret", thumbs=ThumbnailCache(base / "thumbs-served")))
    yield server
    server.stop()


def test_a_login_body_is_refused_while_it_arrives(served) -> None:
    # 1,000 fields of 1 MB raised the server by a gigabyte: now the body stops at a few kB.
    field = b"a" * (1 << 20)
    sent, answer = _stream_until_answered(
        served.url,
        "/login",
        b"Content-Type: application/x-www-form-urlencoded\r\n",
        b"f=" + field[:-200] + b"&",  # each field under the 1 MB a form part may have
        64 << 20,
    )
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    # Sent, not read: the kernel's socket buffers (several MB on loopback) hold what the server
    # has not read; the old server read all 64 MB before its answer.
    assert sent <= 16 << 20, f"{sent} bytes were taken before the answer"


def test_a_declared_length_past_the_limit_is_refused_before_reading(served) -> None:
    host, port = served.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            f"POST /api/v1/search HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer s3cret\r\n"
            f"Content-Type: multipart/form-data; boundary=x\r\nContent-Length: {400 << 20}\r\n\r\n".encode()
        )
        answer = _answer(sock)  # no body sent at all: answered from the header alone
    assert answer.startswith(b"HTTP/1.1 413") and b"too_large" in answer, answer[:300]


def test_an_upload_streamed_past_the_limit_is_refused_before_it_is_spooled(index, monkeypatch) -> None:
    base, _, engine = index
    monkeypatch.setattr(uploads, "MAX_UPLOAD_BYTES", 1 << 20)  # the body limit: 2 uploads + 256 kB
    server = LocalServer(create_app(engine, thumbs=ThumbnailCache(base / "thumbs-up")))
    try:
        head = b"Content-Type: multipart/form-data; boundary=xyz\r\n"
        first = b'--xyz\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n\r\n'
        sent, answer = _stream_until_answered(server.url, "/api/v1/search", head, first + b"\0" * (256 << 10), 64 << 20)
    finally:
        server.stop()
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert sent <= 16 << 20, f"{sent} bytes were taken before the answer"  # of 64 MB (see above)


# --- 3. DNS rebinding ----------------------------------------------------------------------


def test_a_no_token_server_answers_only_loopback_host_names(index) -> None:
    base, _, engine = index
    app = create_app(engine, thumbs=ThumbnailCache(base / "t3"))
    for host, status in [
        ("attacker.example:18002", 400),
        ("attacker.example", 400),
        ("127.0.0.1:18002", 200),
        ("localhost:8765", 200),
        ("[::1]:8765", 200),
        ("LOCALHOST", 200),
        ("localhost.attacker.example", 400),
        ("", 400),
    ]:
        with TestClient(app, base_url="http://127.0.0.1") as c:
            response = c.get("/api/v1/search", params={"q": "dog"}, headers={"Host": host})
        assert response.status_code == status, (host, response.text)
        if status == 400:
            assert "--allow-host" in _error(response, 400, "bad_host", "host")["message"]
    media = create_app(engine, thumbs=ThumbnailCache(base / "t3"))
    with TestClient(media, base_url="http://attacker.example:18002") as c:
        assert c.get("/api/v1/items/1/media").status_code == 400
        assert c.get("/").status_code == 400
    allowed = create_app(engine, thumbs=ThumbnailCache(base / "t3"), allow_hosts=["search.home.arpa"])
    with TestClient(allowed, base_url="http://search.home.arpa:8765") as c:
        assert c.get("/api/v1/search", params={"q": "dog"}).status_code == 200
    guarded = create_app(engine, token="t", thumbs=ThumbnailCache(base / "t3"))
    with TestClient(guarded, base_url="http://any.name.example") as c:  # the token guards it instead
        assert c.get("/api/v1/search", params={"q": "dog"}, headers={"Authorization": "Bearer t"}).status_code == 200
    network = create_app(engine, thumbs=ThumbnailCache(base / "t3"), listen="0.0.0.0")
    with TestClient(network, base_url="http://192.0.2.7:8765") as c:  # an IP literal cannot be rebound
        assert c.get("/api/v1/search", params={"q": "dog"}).status_code == 200
    with TestClient(network, base_url="http://attacker.example:8765") as c:
        assert c.get("/api/v1/search", params={"q": "dog"}).status_code == 400


# --- 4. query cost -------------------------------------------------------------------------


def _raw_get(url: str, target: str) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
    return out


def test_a_long_query_string_is_refused_before_any_work(index) -> None:
    base, _, engine = index
    server = LocalServer(create_app(engine, thumbs=ThumbnailCache(base / "t4")))
    try:
        long_q = _raw_get(server.url, "/api/v1/search?q=" + "dog+" * 25_000)  # 100 kB: 23.5 s before
        many = _raw_get(server.url, "/api/v1/search?" + "&".join(["q=a"] * 2500))
    finally:
        server.stop()
    assert long_q.startswith(b"HTTP/1.1 414") and b"query_too_long" in long_q, long_q[:300]
    assert many.startswith(b"HTTP/1.1 400") and b"too_many_parameters" in many, many[:300]  # 7.4 s before


def test_query_length_and_parts_are_bounded(client) -> None:
    _error(client.get("/api/v1/search", params={"q": "d" * 1001}), 400, "query_too_long", "q")
    assert client.get("/api/v1/search", params={"q": "d" * 1000}).status_code == 200
    _error(client.get("/api/v1/search", params=[("q", "a")] * 100), 400, "too_many_parameters")
    _error(client.get("/api/v1/search", params=[("q", "a")] * 9), 400, "too_many_parts", "q")
    _error(client.get("/api/v1/search", params=[("q", "a")] + [("ext", "png")] * 40), 400, "bad_filter", "ext")
    _error(client.post("/api/v1/search", data={"q": "d" * 5000}), 400, "query_too_long", "q")


# --- 5. CORS with a token ------------------------------------------------------------------


def test_a_preflight_is_answered_by_the_cors_layer_with_a_token(index) -> None:
    base, _, engine = index
    app = create_app(engine, token="s3cret", cors=["http://127.0.0.1:9999"], thumbs=ThumbnailCache(base / "t5"))
    with TestClient(app, base_url=LOCAL) as c:
        preflight = c.options(
            "/api/v1/search",
            headers={
                "Origin": "http://127.0.0.1:9999",
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "authorization",
            },
        )
        assert preflight.status_code == 200, preflight.text
        assert preflight.headers["access-control-allow-origin"] == "http://127.0.0.1:9999"
        denied = c.get("/api/v1/search", params={"q": "dog"}, headers={"Origin": "http://127.0.0.1:9999"})
        assert denied.status_code == 401 and denied.headers["access-control-allow-origin"] == "http://127.0.0.1:9999"


def test_a_page_on_another_origin_searches_with_the_token_in_chromium(index) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true but Chromium is not installed (apt-get install chromium)")
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    from starlette.applications import Starlette
    from starlette.responses import HTMLResponse
    from starlette.routing import Route

    base, _, engine = index
    other = LocalServer(Starlette(routes=[Route("/", lambda _: HTMLResponse("<title>elsewhere</title>"))]))
    api = LocalServer(create_app(engine, token="s3cret", cors=[other.url], thumbs=ThumbnailCache(base / "t5b")))
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS, headless=True)
            page = browser.new_page()
            page.goto(other.url + "/")
            script = """async ([url, token]) => {
                try {
                    const r = await fetch(url, {headers: {Authorization: 'Bearer ' + token}});
                    return [r.status, Object.keys((await r.json()).results || {}).length];
                } catch (e) { return ['failed', String(e)]; }
            }"""
            ok = page.evaluate(script, [api.url + "/api/v1/search?q=dog", "s3cret"])
            wrong = page.evaluate(script, [api.url + "/api/v1/search?q=dog", "nope"])
            browser.close()
    finally:
        api.stop()
        other.stop()
    assert ok[0] == 200 and ok[1] >= 1, ok
    assert wrong[0] == 401, wrong  # a wrong token is read as 401 by the page, not a network failure


# --- 6. and 8. out-of-range filters and weights ----------------------------------------------


@pytest.mark.parametrize(
    "params, field",
    [
        ({"after": "0001-01-01"}, "after"),
        ({"after": "1677-01-01"}, "after"),
        ({"before": "9999-12-31"}, "before"),
        ({"min_size": "9" * 30}, "min_size"),
        ({"max_size": "99999999999T"}, "max_size"),
    ],
)
def test_out_of_range_filters_are_400_naming_the_field(client, index, params: dict, field: str) -> None:
    _error(client.get("/api/v1/search", params={"q": "dog", **params}), 400, "bad_filter", field)
    _, _, engine = index
    value = params[field]
    if field in ("min_size", "max_size"):
        from retrieval.search.filters import parse_size

        with pytest.raises(QueryError, match=field):
            parse_size(value, field)
    else:
        with pytest.raises(QueryError, match=field):
            engine.search(text="dog", **params)


def test_the_cli_says_an_out_of_range_date_plainly(index) -> None:
    from typer.testing import CliRunner

    import cli

    _, root, _ = index
    result = CliRunner().invoke(cli.app, ["search", "dog", "--index", str(root / ".xmr"), "--after", "0001-01-01"])
    assert result.exit_code != 0 and "out of range" in result.output and "Traceback" not in result.output
    assert not isinstance(result.exception, (OverflowError, ValueError)) or isinstance(result.exception, SystemExit)


@pytest.mark.parametrize("q", ["a^1e308", "dog^0", "dog^1e-320", "dog^-1e9", "dog^nan"])
def test_weights_out_of_range_are_400(client, q: str) -> None:
    _error(client.get("/api/v1/search", params={"q": q}), 400, "bad_weight", "q")


def test_weights_in_range_still_work_and_python_refuses_the_rest(client, index) -> None:
    assert client.get("/api/v1/search", params={"q": "dog^0.5"}).status_code == 200
    assert client.get("/api/v1/search", params={"q": "dog^-0.5", "k": 2}).status_code in (200, 400)
    assert client.get("/api/v1/search", params={"q": "x^2"}).json()["query"]["q"] == ["x"]
    _, _, engine = index
    for weight in (0.0, 1e-320, 1e308):
        with pytest.raises(QueryError, match="weight"):
            engine.search(text=Weighted("dog", weight))
    _error(client.post("/api/v1/search", data={"like": "1", "like_weight": "0"}), 400, "bad_weight", "like_weight")


def test_a_parameter_given_twice_is_refused(client, index) -> None:
    base, root, _ = index
    _error(client.post("/api/v1/search", data={"like": ["1", "2"]}), 400, "bad_parameter", "like")
    image = sorted((root / "photos").iterdir())[0].read_bytes()
    files = [("image", ("a.png", image)), ("image", ("b.png", image))]
    _error(client.post("/api/v1/search", files=files), 400, "bad_parameter", "image")


# --- 7. uploads decoded once, within a bound -------------------------------------------------


def test_an_upload_is_decoded_once(client, index, monkeypatch) -> None:
    from PIL import Image

    opened: list[str] = []
    real = Image.open

    def counted(source, *args, **kwargs):
        opened.append(type(source).__name__)
        return real(source, *args, **kwargs)

    monkeypatch.setattr(Image, "open", counted)
    _, root, engine = index
    image = sorted((root / "photos").iterdir())[0]
    response = client.post("/api/v1/search", files={"image": ("a.png", image.read_bytes())}, data={"to": "image"})
    assert response.status_code == 200, response.text
    assert len(opened) == 1, opened  # before: once to check it, once more to embed it
    direct = engine.search(image=str(image), to="image", k=5)
    assert [h["id"] for h in response.json()["results"]["image"][:5]] == [h.id for h in direct]


def test_a_small_upload_that_promises_many_pixels_is_refused_from_its_header(client) -> None:
    tiny_bomb = png_header_only(6245, 6245)  # 39 Mpx in a few hundred bytes
    assert len(tiny_bomb) < 400
    body = _error(client.post("/api/v1/search", files={"image": ("b.png", tiny_bomb)}), 413, "too_large", "image")
    assert "PNG" in body["message"]
    deep = png_header_only(6240, 6240, bit_depth=16)
    _error(client.post("/api/v1/search", files={"image": ("d.png", deep)}), 413, "too_large", "image")


def test_a_deep_png_within_the_limit_is_read_without_a_float64_copy() -> None:
    from PIL import Image

    from retrieval.models.image import _to_rgb

    arr = (np.arange(300 * 200, dtype=np.uint32).reshape(200, 300) * 7 % 65536).astype(np.uint16)
    img = Image.fromarray(arr)
    assert img.mode.startswith("I;16")
    got = np.asarray(_to_rgb(img))[..., 0]
    want = (arr.astype(np.float64) * (255.0 / arr.max())).astype(np.uint8)  # the reference it replaced
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1 and (got == want).mean() > 0.999


# --- 8. slow headers, logins, logout ---------------------------------------------------------


class _QuickHeaders(BoundedH11Protocol):
    header_seconds = 1.0


def test_a_connection_that_never_finishes_its_headers_is_closed(index) -> None:
    base, _, engine = index
    server = LocalServer(create_app(engine, thumbs=ThumbnailCache(base / "t8")), http=_QuickHeaders)
    try:
        host, port = server.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as slow:
            slow.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A: ")
            started = time.monotonic()
            for _ in range(3):
                time.sleep(0.4)
                try:
                    slow.sendall(b"a")  # a byte now and then: still never the end of the headers
                except OSError:
                    break
            closed = slow.recv(100) == b""
            waited = time.monotonic() - started
        import http.client

        fine = http.client.HTTPConnection(host, int(port), timeout=10)  # a keep-alive client is served
        for _ in range(2):
            fine.request("GET", "/healthz")
            assert fine.getresponse().read() == b'{"status":"ok"}'
            time.sleep(0.6)  # within the keep-alive time, across the header deadline
        fine.close()
    finally:
        server.stop()
    assert closed and waited < 5


def test_wrong_tokens_are_throttled_and_logout_ends_the_session(index) -> None:
    base, _, engine = index
    with TestClient(create_app(engine, token="s3cret", thumbs=ThumbnailCache(base / "t9")), base_url=LOCAL) as c:
        for _ in range(10):
            _error(c.post("/login", data={"token": "guess"}), 401, "bad_token")
        throttled = c.post("/login", data={"token": "s3cret"})
        _error(throttled, 429, "too_many_logins", "token")
        assert int(throttled.headers["retry-after"]) > 0
    with TestClient(create_app(engine, token="s3cret", thumbs=ThumbnailCache(base / "t9")), base_url=LOCAL) as c:
        assert c.post("/login", data={"token": "s3cret"}, follow_redirects=False).status_code == 303
        assert c.get("/api/v1/session").status_code == 200
        out = c.post("/logout", follow_redirects=False)
        assert out.status_code == 303 and "xmr_token=" in out.headers["set-cookie"]
        assert c.get("/api/v1/session").status_code == 401
        _error(c.post("/login", data={"token": "x" * 10_000}), 413, "too_large")


def test_security_headers_are_on_every_answer_the_guard_gives(client) -> None:
    for response in (client.get("/healthz"), client.get("/api/v1/search", params={"q": "d" * 20_000})):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]


# --- a second look (review): ranges, odd names, abandoned and slow downloads, held logins -----


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("header", ["bytes=\xb2-", "bytes=0-\xb9", "bytes=" + "9" * 5000 + "-", "bytes=-" + "9" * 30])
def test_an_odd_range_is_never_a_500_nor_a_leaked_descriptor(index, client, header: str) -> None:
    _, root, engine = index
    item = _id_of(engine, root, "share/race.txt")
    size = (root / "share/race.txt").stat().st_size
    before = _open_fds()
    for _ in range(5):
        response = client.get(f"/api/v1/items/{item}/media", headers={"Range": header.encode("latin-1")})
        assert response.status_code in (200, 206, 416), response.text
    assert _open_fds() <= before
    assert client.get(f"/api/v1/items/{item}/media", headers={"Range": "Bytes=0-1"}).status_code == 206
    head = client.head(f"/api/v1/items/{item}/media")
    assert head.status_code == 200 and head.content == b"" and int(head.headers["content-length"]) == size
    assert head.headers["cross-origin-resource-policy"] == "same-origin"  # another site's <img> learns nothing


def test_a_file_name_that_is_not_utf8_is_served_as_json(tmp_path: Path, tiny) -> None:
    root = make_media(tmp_path / "media", images=2, audio=0, texts=0)
    odd = os.fsencode(root / "pics") + b"/caf\xe9\xff.png"
    write_image(Path(os.fsdecode(odd)), seed=9, size=80)
    indexer.index_folder(root, tiny, indexer.IndexOptions(workers=0))
    with Engine.open(root, model=tiny) as engine:
        app = create_app(engine, thumbs=ThumbnailCache(tmp_path / "t"))
        with TestClient(app, base_url=LOCAL) as c:
            found = c.get("/api/v1/search", params={"q": "x", "to": "image", "k": 10})
            assert found.status_code == 200, found.text
            odd_hit = next(h for h in found.json()["results"]["image"] if "caf" in h["path"])
            assert odd_hit["path"] == "pics/caf\\xe9\\xff.png"
            assert c.get(f"/api/v1/items/{odd_hit['id']}").status_code == 200
            media = c.get(odd_hit["media_url"])
            assert media.status_code == 200 and media.content == Path(os.fsdecode(odd)).read_bytes()


def _big_file_server(tmp_path: Path, megabytes: int) -> tuple[LocalServer, Path]:
    """A plain app that serves one big file through DescriptorResponse (as /media does)."""
    from starlette.applications import Starlette
    from starlette.routing import Route

    from retrieval.server.files import DescriptorResponse, OpenFile

    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(1 << 20) * megabytes)

    def serve(request):
        st = big.stat()
        opened = OpenFile(os.open(big, os.O_RDONLY), str(big), st.st_size, st.st_mtime_ns, st.st_dev, st.st_ino)
        return DescriptorResponse(opened, "application/octet-stream", {}, request.headers.get("range"))

    return LocalServer(Starlette(routes=[Route("/big", serve)])), big


def _read_bytes() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    return 0


def test_a_download_the_client_abandons_stops_reading_the_file(tmp_path: Path) -> None:
    server, _ = _big_file_server(tmp_path, 48)
    try:
        host, port = server.url.removeprefix("http://").split(":")
        before = _read_bytes()
        for _ in range(3):  # as a <video> does at each seek
            with socket.create_connection((host, int(port)), timeout=10) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # a reset, at once
                sock.sendall(f"GET /big HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
                sock.recv(1024)
        time.sleep(2.0)
        read = _read_bytes() - before
    finally:
        server.stop()
    assert read < 48 << 20, f"{read >> 20} MB read for three abandoned downloads of a 48 MB file"


def test_a_client_that_stops_reading_is_cut_off(tmp_path: Path, monkeypatch) -> None:
    from retrieval.server import files

    monkeypatch.setattr(files, "SEND_SECONDS", 1.0)
    server, _ = _big_file_server(tmp_path, 64)
    try:
        host, port = server.url.removeprefix("http://").split(":")
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect((host, int(port)))
        sock.sendall(f"GET /big HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        time.sleep(4.0)  # reads nothing: the server's sends block, then time out
        sock.settimeout(10)
        got, ended = 0, False
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(1 << 20)
            except (ConnectionResetError, TimeoutError):
                ended = True
                break
            if not chunk:
                ended = True
                break
            got += len(chunk)
        sock.close()
    finally:
        server.stop()
    assert ended and got < 64 << 20, f"{got >> 20} MB came before the end"


def test_logins_whose_bodies_arrive_together_are_throttled_all_the_same(index) -> None:
    base, _, engine = index
    server = LocalServer(create_app(engine, token="s3cret", thumbs=ThumbnailCache(base / "t10")))
    try:
        host, port = server.url.removeprefix("http://").split(":")
        socks = []
        for _ in range(20):
            s = socket.create_connection((host, int(port)), timeout=30)
            s.sendall(
                f"POST /login HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                "Content-Length: 11\r\n\r\ntoken=".encode()
            )
            socks.append(s)
        time.sleep(0.5)  # every request waits for the rest of its body
        for s in socks:
            s.sendall(b"guess")
        answers = [_answer(s)[9:12] for s in socks]
        for s in socks:
            s.close()
    finally:
        server.stop()
    assert answers.count(b"401") <= 10 and answers.count(b"429") >= 10, answers


def test_a_body_with_both_a_length_and_chunks_is_refused(served) -> None:
    host, port = served.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            f"POST /login HTTP/1.1\r\nHost: {host}\r\nContent-Length: 11\r\nTransfer-Encoding: chunked\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n\r\nb\r\ntoken=guess\r\n0\r\n\r\n".encode()
        )
        answer = _answer(sock)
    assert answer.startswith(b"HTTP/1.1 400") and b"bad_length" in answer, answer[:300]
