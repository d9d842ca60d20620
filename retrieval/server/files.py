"""The files behind items, served safely: by item id only, checked at serve time (still the
indexed file, under the root's real path), and thumbnails cached outside the index.
"""

from __future__ import annotations

import hashlib
import io
import logging
import mimetypes
import os
import threading
from pathlib import Path
from typing import Any

from .params import ApiError

log = logging.getLogger(__name__)
THUMB_SIZES = (64, 1024)
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


def item_file(root: Path, links: str, hit: Any, mtime_ns: int) -> Path:
    """The file of an indexed file item, if it is still the one indexed and may be served.

    Raises:
        ApiError: 404 for a text line (no file), a file gone, changed since indexing, or outside
            the root (through a link the index was not told to follow).
    """
    if hit.line is not None:
        raise ApiError(404, "no_file", f"item {hit.id} is a line of a texts file: it has no media", "id")
    path = Path(hit.path)
    try:
        st = path.stat()
    except OSError:
        raise ApiError(
            404, "file_gone", f"the file of item {hit.id} is gone; run `xmr index` to update", "id"
        ) from None
    if st.st_size != hit.metadata.get("size") or st.st_mtime_ns != mtime_ns:
        raise ApiError(
            404, "file_changed", f"the file of item {hit.id} changed since it was indexed; run `xmr index`", "id"
        )
    real, root_real = os.path.realpath(path), os.path.realpath(root)
    if links != "follow" and not (real == root_real or real.startswith(root_real.rstrip(os.sep) + os.sep)):
        raise ApiError(404, "outside_root", f"the file of item {hit.id} lies outside the indexed folder", "id")
    return path


class ThumbnailCache:
    """JPEG thumbnails made on first request, kept in ``folder`` up to ``max_bytes`` (the least
    recently used go first). A file's thumbnail is keyed by its size and mtime, so a changed
    file gets a new one."""

    def __init__(self, folder: Path, max_bytes: int = 1 << 30) -> None:
        self.folder, self.max_bytes = Path(folder), max_bytes
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._bytes: int | None = None

    def _key(self, path: Path, size: int) -> Path:
        st = path.stat()
        key = hashlib.sha256(f"{os.path.realpath(path)}|{st.st_size}|{st.st_mtime_ns}|{size}".encode()).hexdigest()[:32]
        return self.folder / key[:2] / f"{key}.jpg"

    def read(self, path: Path, size: int, item_id: int) -> bytes:
        """The JPEG thumbnail of ``path``, at most ``size`` pixels a side: from the cache, else
        made now and kept (a cache that cannot be written, a full disk say, only costs the
        keeping).

        Raises:
            ApiError: 422 when the image cannot be decoded.
        """
        thumb = self._key(path, size)
        try:
            data = thumb.read_bytes()
            os.utime(thumb)  # recently used
            return data
        except OSError:
            pass  # not made yet, trimmed (or the folder cleared) a moment ago, or a cache it cannot read
        from ..image import ImageDecodeError, open_image

        try:
            img = open_image(str(path), min_side=size)
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

    def get(self, path: Path, size: int, item_id: int) -> Path:
        """The cached thumbnail's file (made when missing)."""
        self.read(path, size, item_id)
        return self._key(path, size)

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
