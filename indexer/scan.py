"""Walk a media folder: which files are there, of which modality, and which must be skipped."""

from __future__ import annotations

import fnmatch
import logging
import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

EXTENSIONS = {
    "image": ("jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff"),
    "audio": ("wav", "flac", "ogg", "oga", "opus", "mp3"),
    "text": ("txt", "md"),
}
MODALITY_OF_EXT = {ext: m for m, exts in EXTENSIONS.items() for ext in exts}
# Known media the decoders here cannot read: reported as skipped rather than silently ignored.
UNSUPPORTED = {"heic", "heif", "avif", "m4a", "aac", "wma", "mp4", "mov", "mkv", "raw", "cr2", "nef"}


@dataclass(frozen=True)
class Found:
    """A file the walk found: its path relative to the root, and what stat said."""

    rel: str
    abs: str
    modality: str
    ext: str
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class Skipped:
    rel: str
    reason: str


def walk(root: str | os.PathLike, skip_dirs: Sequence[str] = (), exclude: Sequence[str] = ()) -> Iterator[Found | Skipped]:
    """Yield every indexable file under ``root`` (recursively) and every file it must skip.

    Hidden folders and ``skip_dirs`` (the index folder) are not entered; symbolic links are
    followed, but a folder already visited (a link loop) is entered once. ``exclude`` globs
    match paths relative to ``root`` (``*`` crosses ``/``) and file names.
    """
    root = os.path.abspath(os.fspath(root))
    skip = {os.path.realpath(d) for d in skip_dirs}
    seen_dirs: set[tuple[int, int]] = set()
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            st = os.stat(folder)
        except OSError as exc:
            yield Skipped(_rel(folder, root), f"cannot open folder: {exc.strerror}")
            continue
        if (st.st_dev, st.st_ino) in seen_dirs:
            log.debug("not entering %s again (symbolic link loop)", folder)
            continue
        seen_dirs.add((st.st_dev, st.st_ino))
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            yield Skipped(_rel(folder, root), f"cannot list folder: {exc.strerror}")
            continue
        subdirs = []
        for entry in entries:
            rel = _rel(entry.path, root)
            if entry.name.startswith("."):
                continue
            if _excluded(rel, entry.name, exclude):
                continue
            try:
                st = entry.stat(follow_symlinks=True)
            except FileNotFoundError:
                yield Skipped(rel, "broken symbolic link" if entry.is_symlink() else "file vanished during the scan")
                continue
            except OSError as exc:
                yield Skipped(rel, f"cannot stat: {exc.strerror}")
                continue
            if stat.S_ISDIR(st.st_mode):
                if os.path.realpath(entry.path) not in skip:
                    subdirs.append(entry.path)
                continue
            if not stat.S_ISREG(st.st_mode):
                continue
            ext = os.path.splitext(entry.name)[1][1:].lower()
            modality = MODALITY_OF_EXT.get(ext)
            if modality is None:
                if ext in UNSUPPORTED:
                    yield Skipped(rel, f"unsupported format: .{ext}")
                continue
            yield Found(rel, entry.path, modality, ext, st.st_size, st.st_mtime_ns)
        stack.extend(reversed(subdirs))


def _rel(path: str, root: str) -> str:
    rel = os.path.relpath(path, root)
    return "" if rel == "." else rel.replace(os.sep, "/")


def _excluded(rel: str, name: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(rel, p) or fnmatch.fnmatchcase(name, p) for p in patterns)


def find_index_dir(start: str | os.PathLike | None = None) -> Path | None:
    """The nearest ``.xmr`` folder at or above ``start`` (default: the current folder)."""
    here = Path(start or os.getcwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / ".xmr" / "manifest.json").is_file():
            return folder / ".xmr"
        if folder.name == ".xmr" and (folder / "manifest.json").is_file():
            return folder
    return None
