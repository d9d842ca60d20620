"""`xmr serve` under attack: 16 clients searching while 4 hostile ones send body bombs, slow
headers, the longest queries and the costliest uploads the server takes, against the same 16
clients alone. Everything on loopback, bounded in count and time; the server is a real
``xmr serve`` process, so its memory is its own.

Reports the normal clients' p50/p95 in both phases (goal: p95 under attack within 2x), their
errors, what the hostile requests got, and the server's peak and final RSS.

Usage: python benchmarks/hostile_serve.py [--seconds 60] [--items 10000] [--out benchmarks/results]
Writes hostile_serve.{json,md}.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import select
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

WORDS = ["a dog", "a red car", "the sea at night", "a bell", "mountains", "rain", "a bird", "flowers", "snow", "fruit"]


def _rss(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of ``pid`` in MiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) // 1024
    return fields["VmRSS"], fields["VmHWM"]


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _costly_uploads() -> dict[str, tuple[str, bytes, str]]:
    """The most expensive uploads the server accepts: a 16-bit PNG just under the full-decode
    limit, a JPEG near the pixel limit, and audio of the longest a query may be."""
    import soundfile as sf
    from PIL import Image

    side = 3990  # 15.9 Mpx, under MAX_UPLOAD_FULL_PIXELS
    ramp = (np.add.outer(np.arange(side), np.arange(side)) * 8 % 65536).astype(np.uint16)
    deep = io.BytesIO()
    Image.fromarray(ramp).save(deep, format="PNG", compress_level=1)
    big = io.BytesIO()
    Image.new("RGB", (7000, 5600), (90, 140, 200)).save(big, format="JPEG", quality=60)  # 39.2 Mpx
    wav = io.BytesIO()
    rate = 16000
    t = np.arange(rate * 590) / rate
    sf.write(wav, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), rate, format="WAV", subtype="PCM_16")
    return {
        "deep_png": ("image", deep.getvalue(), "image/png"),
        "big_jpeg": ("image", big.getvalue(), "image/jpeg"),
        "long_audio": ("audio", wav.getvalue(), "audio/wav"),
    }


class Phase:
    def __init__(self, url: str, seconds: float) -> None:
        self.url, self.seconds = url, seconds
        self.deadline = time.monotonic() + seconds
        self.latencies: list[float] = []
        self.errors: dict[str, int] = {}
        self.hostile: dict[str, int] = {}
        self.lock = threading.Lock()

    def live(self) -> bool:
        return time.monotonic() < self.deadline

    def count(self, table: dict[str, int], key: str) -> None:
        with self.lock:
            table[key] = table.get(key, 0) + 1

    def normal(self, n: int) -> None:
        import httpx

        with httpx.Client(base_url=self.url, timeout=60) as client:
            i = n
            while self.live():
                started = time.perf_counter()
                try:
                    r = client.get("/api/v1/search", params={"q": WORDS[i % len(WORDS)], "to": "image", "k": 20})
                    ok = r.status_code == 200
                except httpx.HTTPError as exc:
                    ok, r = False, type(exc).__name__
                took = time.perf_counter() - started
                if ok:
                    with self.lock:
                        self.latencies.append(took)
                else:
                    self.count(self.errors, str(getattr(r, "status_code", r)))
                i += 1

    def _raw(self, request: bytes, body: bytes = b"", chunk: bytes = b"", most: int = 0) -> bytes:
        host, port = self.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=30) as sock:
            sock.sendall(request + body)
            sent = 0
            while chunk and sent < most and not select.select([sock], [], [], 0)[0]:
                try:
                    sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                except OSError:
                    break
                sent += len(chunk)
            try:
                return sock.recv(64)
            except OSError as exc:
                return type(exc).__name__.encode()

    def bombs(self) -> None:
        from retrieval.bench.media import png_header_only

        host = self.url.removeprefix("http://")
        field = b"f=" + b"a" * ((1 << 20) - 200) + b"&"
        bomb_png = png_header_only(6245, 6245)
        boundary = b"b0undary"
        multipart = (
            b"--" + boundary + b'\r\nContent-Disposition: form-data; name="image"; filename="b.png"\r\n'
            b"Content-Type: image/png\r\n\r\n" + bomb_png + b"\r\n--" + boundary + b"--\r\n"
        )
        kinds = ["login", "length", "png"]
        i = 0
        while self.live():
            kind = kinds[i % len(kinds)]
            i += 1
            if kind == "login":  # 1,000 fields of 1 MB, chunked
                answer = self._raw(
                    f"POST /login HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n"
                    "Content-Type: application/x-www-form-urlencoded\r\n\r\n".encode(),
                    chunk=field,
                    most=1000 * len(field),
                )
            elif kind == "length":  # a 400 MB upload announced
                answer = self._raw(
                    f"POST /api/v1/search HTTP/1.1\r\nHost: {host}\r\nContent-Length: {400 << 20}\r\n"
                    "Content-Type: multipart/form-data; boundary=x\r\n\r\n".encode()
                )
            else:  # 39 Mpx promised in a few hundred bytes
                answer = self._raw(
                    f"POST /api/v1/search HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len(multipart)}\r\n"
                    f"Content-Type: multipart/form-data; boundary={boundary.decode()}\r\n\r\n".encode(),
                    multipart,
                )
            self.count(self.hostile, f"bomb {kind}: {answer[9:12].decode(errors='replace') or 'closed'}")

    def slow_headers(self, connections: int = 40) -> None:
        host, port = self.url.removeprefix("http://").split(":")
        open_: list[socket.socket] = []
        while self.live():
            while len(open_) < connections:
                try:
                    s = socket.create_connection((host, int(port)), timeout=5)
                    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
                    open_.append(s)
                    self.count(self.hostile, "slow headers: opened")
                except OSError:
                    self.count(self.hostile, "slow headers: refused")
                    break
            time.sleep(1.0)
            for s in list(open_):
                try:
                    s.sendall(b"a")
                    if select.select([s], [], [], 0)[0] and s.recv(1) == b"":
                        raise ConnectionError
                except OSError:
                    open_.remove(s)
                    s.close()
                    self.count(self.hostile, "slow headers: closed by the server")
        for s in open_:
            s.close()

    def long_queries(self) -> None:
        import httpx

        host = self.url.removeprefix("http://")
        longest_legal = [("q", ("w" + "ord " * 250)[:1000]) for _ in range(8)] + [("to", "image")]
        with httpx.Client(base_url=self.url, timeout=120) as client:
            i = 0
            while self.live():
                if i % 3 == 0:
                    answer = self._raw(
                        f"GET /api/v1/search?q={'dog+' * 25_000} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
                    )
                    self.count(self.hostile, f"100 kB q: {answer[9:12].decode(errors='replace') or 'closed'}")
                elif i % 3 == 1:
                    answer = self._raw(
                        f"GET /api/v1/search?{'&'.join(['q=a'] * 2500)} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
                    )
                    self.count(self.hostile, f"2,500 q parts: {answer[9:12].decode(errors='replace') or 'closed'}")
                else:
                    r = client.get("/api/v1/search", params=longest_legal)
                    self.count(self.hostile, f"8 x 1,000-char q (legal): {r.status_code}")
                i += 1

    def costly_uploads(self, uploads: dict[str, tuple[str, bytes, str]]) -> None:
        import httpx

        names = list(uploads)
        with httpx.Client(base_url=self.url, timeout=300) as client:
            i = 0
            while self.live():
                name = names[i % len(names)]
                field, data, mime = uploads[name]
                try:
                    r = client.post("/api/v1/search", files={field: (name, data, mime)}, data={"to": "image"})
                    self.count(self.hostile, f"{name} ({len(data) >> 10} kB, legal): {r.status_code}")
                except httpx.HTTPError as exc:
                    self.count(self.hostile, f"{name}: {type(exc).__name__}")
                i += 1


HOSTILE = ("bombs", "slow_headers", "long_queries", "costly_uploads")


def run_phase(
    url: str, pid: int, seconds: float, clients: int, hostile: tuple[str, ...], uploads: dict
) -> dict[str, Any]:
    phase = Phase(url, seconds)
    threads = [threading.Thread(target=phase.normal, args=(n,)) for n in range(clients)]
    for kind in hostile:
        args = (uploads,) if kind == "costly_uploads" else ()
        threads.append(threading.Thread(target=getattr(phase, kind), args=args))
    peak = 0
    import resource

    cpu = resource.getrusage(resource.RUSAGE_SELF)
    server_cpu = _cpu_seconds(pid)
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        peak = max(peak, _rss(pid)[0])
        time.sleep(0.2)
    lat = np.asarray(phase.latencies) * 1000
    return {
        "requests": len(lat),
        "p50_ms": round(float(np.percentile(lat, 50)), 1) if len(lat) else None,
        "p95_ms": round(float(np.percentile(lat, 95)), 1) if len(lat) else None,
        "errors": phase.errors,
        "hostile": dict(sorted(phase.hostile.items())),
        "server_rss_peak_mib": peak,
        "server_cpu_s": round(_cpu_seconds(pid) - server_cpu, 1),
        "client_cpu_s": round(
            resource.getrusage(resource.RUSAGE_SELF).ru_utime
            + resource.getrusage(resource.RUSAGE_SELF).ru_stime
            - cpu.ru_utime
            - cpu.ru_stime,
            1,
        ),
        "server_rss_after_mib": _rss(pid)[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--cache", default="~/.cache/xmr/bench")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    parser.add_argument("--hostile", default=",".join(HOSTILE), help="which hostile clients: " + ",".join(HOSTILE))
    args = parser.parse_args()

    from retrieval.bench.report import machine_info
    from retrieval.bench.serve import build_index
    from retrieval.models.registry import create_model, inference_runtime

    encoder = create_model("xmr-mini", runtime=inference_runtime("xmr-mini"))
    folder = Path(args.cache).expanduser() / f"serve-{args.items}-{encoder.weights_hash[:12]}"
    media = build_index(folder, args.items, 500, encoder)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    xmr = Path(sys.executable).parent / "xmr"
    env = {**os.environ, "XMR_CACHE_DIR": str(folder / "serve-cache")}
    server = subprocess.Popen([str(xmr), "serve", "--index", str(media / ".xmr"), "--port", str(port)], env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        import httpx

        for _ in range(300):
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        for w in WORDS:
            httpx.get(url + "/api/v1/search", params={"q": w, "to": "image"}, timeout=60)
        uploads = _costly_uploads()
        idle = _rss(server.pid)[0]
        result: dict[str, Any] = {"machine": machine_info(), "items": args.items, "seconds": args.seconds}
        result["server_rss_idle_mib"] = idle
        hostile = tuple(h for h in args.hostile.split(",") if h)
        result["hostile_clients"] = list(hostile)
        result["alone"] = run_phase(url, server.pid, args.seconds, args.clients, (), uploads)
        result["attacked"] = run_phase(url, server.pid, args.seconds, args.clients, hostile, uploads)
        result["p95_ratio"] = round(result["attacked"]["p95_ms"] / result["alone"]["p95_ms"], 2)
        result["server_rss_peak_hwm_mib"] = _rss(server.pid)[1]
    finally:
        server.terminate()
        server.wait(30)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "hostile_serve.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "| phase | requests | p50 ms | p95 ms | errors | server RSS peak MiB | server CPU s | load generator CPU s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for phase in ("alone", "attacked"):
        r = result[phase]
        lines.append(
            f"| {args.clients} clients {phase} | {r['requests']} | {r['p50_ms']} | {r['p95_ms']} | "
            f"{sum(r['errors'].values())} | {r['server_rss_peak_mib']} | {r['server_cpu_s']} | {r['client_cpu_s']} |"
        )
    lines += [
        "",
        f"p95 attacked / alone: {result['p95_ratio']}x; server idle {idle} MiB, "
        f"high-water mark {result['server_rss_peak_hwm_mib']} MiB",
        "",
        "| hostile request: answer | count |",
        "| --- | --- |",
    ]
    lines += [f"| {k} | {v} |" for k, v in result["attacked"]["hostile"].items()]
    lines += ["", f"Host: {result['machine']}"]
    (out / "hostile_serve.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
