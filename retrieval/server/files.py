"""The files behind items, served safely: by item id only, opened once without following links
the index does not follow, checked by the open descriptor (still the indexed file, under the
root), served from that descriptor; thumbnails cached outside the index.
"""

from __future__ import annotations

import errno
import hashlib
import io
import logging
import mimetypes
import os
import re
import stat
import threading
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path
from typing import Any

import anyio
from starlette.responses import Response

from .params import ApiError

log = logging.getLogger(__name__)
THUMB_SIZES = (64, 1024)
SEND_SECONDS = 60.0  # for a client to take one chunk of a file
EXTRA_TYPES = {
    ".flac": "audio/flac",
    ".opus": "audio/ogg",
    ".oga": "audio/ogg",
    ".ogg": "audio/ogg",
    ".webp": "image/webp",
    ".md": "text/markdown",
    ".mp3": "audio/mpeg",
    ".wav": "audio/wav",
    ".m4a": "audio/mp4",
    ".aac": "audio/aac",
    ".mp4": "video/mp4",
    ".m4v": "video/mp4",
    ".mov": "video/quicktime",
    ".mkv": "video/x-matroska",
    ".webm": "video/webm",
    ".avi": "video/x-msvideo",
}


def media_type(path: str) -> str:
    ext = os.path.splitext(path)[1].lower()
    return EXTRA_TYPES.get(ext) or mimetypes.guess_type(path)[0] or "application/octet-stream"


@dataclass
class OpenFile:
    """An item's file, opened once and checked by its descriptor: serve from ``fd`` (and close it)."""

    fd: int
    path: str  # for its media type and name only: never opened again
    size: int
    mtime_ns: int
    dev: int
    ino: int

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> "OpenFile":
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()


def open_item_file(root: Path, links: str, hit: Any, mtime_ns: int) -> OpenFile:
    """Open the file of an indexed file item once, without following a link the index was not
    told to follow, and check the open descriptor: a regular file, of the size and mtime it had
    when indexed. A link renamed over the file between a check and an open cannot redirect it:
    nothing is opened twice.

    ``links`` is the index's option: ``none`` follows no link, ``inside`` only links whose target
    stays under the root's real path (resolved first, then every component of the resolved path
    opened from the root's descriptor with ``O_NOFOLLOW``, so a link swapped in meanwhile fails
    the open), ``follow`` every link (the file may lie anywhere, as the index was told).

    Raises:
        ApiError: 404 for a text line (no file), a file gone, changed since indexing, or outside
            the root.
    """
    if hit.line is not None:
        raise ApiError(404, "no_file", f"item {hit.id} is a line of a texts file: it has no media", "id")
    gone = ApiError(404, "file_gone", f"the file of item {hit.id} is gone; run `xmr index` to update", "id")
    changed = ApiError(
        404, "file_changed", f"the file of item {hit.id} changed since it was indexed; run `xmr index`", "id"
    )
    outside = ApiError(404, "outside_root", f"the file of item {hit.id} lies outside the indexed folder", "id")
    path = str(hit.path)
    try:
        if links == "follow":
            fd = os.open(path, READ_FLAGS)
        else:
            root_real = os.path.realpath(root)
            if links == "inside":
                real = os.path.realpath(path)
                if not real.startswith(root_real.rstrip(os.sep) + os.sep):
                    raise outside
                relative = os.path.relpath(real, root_real)
            else:
                relative = os.path.relpath(path, root)
            parts = relative.split(os.sep)
            if any(p in ("", ".", "..") for p in parts):
                raise outside
            fd = _open_beneath(root_real, parts)
    except FileNotFoundError:
        raise gone from None
    except OSError as exc:
        # ELOOP/ENOTDIR: a link where the index saw none (or none it may follow); EACCES and the rest:
        # whatever it is now, it is not the file that was indexed.
        if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK) and links != "follow":
            raise outside from None
        raise changed from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise changed
        if st.st_size != hit.metadata.get("size") or st.st_mtime_ns != mtime_ns:
            raise changed
    except BaseException:
        os.close(fd)
        raise
    return OpenFile(fd, path, st.st_size, st.st_mtime_ns, st.st_dev, st.st_ino)


READ_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK  # O_NONBLOCK: a FIFO swapped in cannot hang the open


def _open_beneath(root_real: str, parts: list[str]) -> int:
    """Open ``root_real/parts...`` from the root's descriptor, following no link on the way."""
    fd = os.open(root_real, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in parts[:-1]:
            step = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            os.close(fd)
            fd = step
        return os.open(parts[-1], READ_FLAGS | os.O_NOFOLLOW, dir_fd=fd)
    finally:
        os.close(fd)


RANGE = re.compile(r"\s*bytes\s*=\s*(\d{0,18})\s*-\s*(\d{0,18})\s*", re.ASCII | re.IGNORECASE)


def parse_range(header: str | None, size: int) -> tuple[int, int] | None | bool:
    """A single ``bytes=`` range as (first, last) inclusive; None to send the whole file (no
    range, or one this server does not take: several, or malformed); False when unsatisfiable.
    ASCII digits only, at most 18 of them (past any file's end)."""
    m = RANGE.fullmatch(header or "")
    if m is None:
        return None
    first_s, last_s = m.groups()
    if first_s == "":
        if not last_s or int(last_s) == 0:
            return False if last_s else None
        return max(0, size - int(last_s)), size - 1
    first = int(first_s)
    last = min(int(last_s), size - 1) if last_s else size - 1
    if first >= size:
        return False
    if last < first:
        return None
    return first, last


class DescriptorResponse(Response):
    """A file sent from the descriptor it was opened and checked by (never reopened by path),
    with one byte range (``206``) or whole, in chunks read off the event loop; closes it."""

    chunk = 256 << 10

    def __init__(self, opened: OpenFile, media_type: str, headers: dict[str, str], range_header: str | None) -> None:
        super().__init__(content=None, media_type=media_type, headers=headers)
        self.opened = opened
        size = opened.size
        self.headers["accept-ranges"] = "bytes"
        self.headers["last-modified"] = formatdate(opened.mtime_ns / 1e9, usegmt=True)
        self.headers["etag"] = f'"{opened.ino:x}-{size:x}-{opened.mtime_ns:x}"'
        wanted = parse_range(range_header, size)
        if wanted is False:
            self.status_code, self.first, self.last = 416, 0, -1
            self.headers["content-range"] = f"bytes */{size}"
        elif wanted is None:
            self.first, self.last = 0, size - 1
        else:
            self.status_code = 206
            self.first, self.last = wanted
            self.headers["content-range"] = f"bytes {self.first}-{self.last}/{size}"
        self.headers["content-length"] = str(self.last - self.first + 1)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            async with anyio.create_task_group() as group:

                async def watch() -> None:  # a client that goes (a seek, a closed tab) stops the reads
                    while (await receive())["type"] != "http.disconnect":
                        pass
                    group.cancel_scope.cancel()

                group.start_soon(watch)
                await self._send(scope, send)
                group.cancel_scope.cancel()
        finally:
            self.opened.close()

    async def _send(self, scope: Any, send: Any) -> None:
        async def bounded(message: dict[str, Any]) -> None:
            with anyio.fail_after(SEND_SECONDS):  # a client that stops reading holds nothing for long
                await send(message)

        await bounded({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        position, end = self.first, self.last + 1
        if scope.get("method") == "HEAD":
            position = end
        while position < end:
            want = min(self.chunk, end - position)
            data = await anyio.to_thread.run_sync(os.pread, self.opened.fd, want, position)
            if not data:  # cut short in place since the check: end the response, no bytes from elsewhere
                log.warning("%s shrank while it was served", self.opened.path)
                raise ConnectionAbortedError("file shrank while served")
            position += len(data)
            await bounded({"type": "http.response.body", "body": data, "more_body": position < end})
        if self.first > self.last or scope.get("method") == "HEAD":
            await bounded({"type": "http.response.body", "body": b"", "more_body": False})


class ThumbnailCache:
    """JPEG thumbnails made on first request, kept in ``folder`` up to ``max_bytes`` (the least
    recently used go first). A file's thumbnail is keyed by its device, inode, size and mtime
    as its descriptor tells them, so a changed file gets a new one."""

    def __init__(self, folder: Path, max_bytes: int = 1 << 30) -> None:
        self.folder, self.max_bytes = Path(folder), max_bytes
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._bytes: int | None = None

    def _key(self, opened: OpenFile, size: int) -> Path:
        key = f"{opened.dev}|{opened.ino}|{opened.size}|{opened.mtime_ns}|{size}"
        digest = hashlib.sha256(key.encode()).hexdigest()[:32]
        return self.folder / digest[:2] / f"{digest}.jpg"

    def read(self, opened: OpenFile, size: int, item_id: int) -> bytes:
        """The JPEG thumbnail of the open file, at most ``size`` pixels a side: from the cache,
        else decoded from the descriptor now and kept (a cache that cannot be written, a full
        disk say, only costs the keeping).

        Raises:
            ApiError: 422 when the image cannot be decoded.
        """
        thumb = self._key(opened, size)
        try:
            data = thumb.read_bytes()
            os.utime(thumb)  # recently used
            return data
        except OSError:
            pass  # not made yet, trimmed (or the folder cleared) a moment ago, or a cache it cannot read
        from ..models.image import ImageDecodeError, open_image

        try:
            with os.fdopen(os.dup(opened.fd), "rb") as stream:
                stream.seek(0)
                img = open_image(stream, min_side=size)
        except ImageDecodeError as exc:
            raise ApiError(422, "undecodable", f"item {item_id}: {exc}", "id") from None
        img.thumbnail((size, size))
        out = io.BytesIO()
        img.save(out, format="JPEG", quality=85)
        data = out.getvalue()
        tmp = thumb.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            thumb.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(data)
            os.replace(tmp, thumb)
        except OSError as exc:
            log.warning("cannot keep a thumbnail in %s (%s): serving it uncached", self.folder, exc.strerror or exc)
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass
            return data
        self._added(len(data))
        return data

    def get(self, opened: OpenFile, size: int, item_id: int) -> Path:
        """The cached thumbnail's file (made when missing)."""
        self.read(opened, size, item_id)
        return self._key(opened, size)

    def _added(self, nbytes: int) -> None:
        with self._lock:
            if self._bytes is None:
                self._bytes = sum(p.stat().st_size for p in self.folder.rglob("*.jpg"))
            else:
                self._bytes += nbytes
            if self._bytes <= self.max_bytes:
                return
            files = sorted(self.folder.rglob("*.jpg"), key=lambda p: p.stat().st_mtime)
            for old in files:
                if self._bytes <= self.max_bytes * 0.9:
                    break
                try:
                    size = old.stat().st_size
                    old.unlink()
                    self._bytes -= size
                except OSError:
                    continue
            log.info("thumbnail cache trimmed to %.1f MB", self._bytes / 1e6)
