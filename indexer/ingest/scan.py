"""Walk a media folder: which files are there, of which modality, and which must be skipped."""

from __future__ import annotations

import fnmatch
import logging
import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

log = logging.getLogger(__name__)

EXTENSIONS = {
    "image": ("jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff"),
    "audio": ("wav", "flac", "ogg", "oga", "opus", "mp3", "m4a", "aac"),
    "text": ("txt", "md"),
    "video": ("mp4", "m4v", "mov", "mkv", "webm", "avi"),
}
MODALITY_OF_EXT = {ext: m for m, exts in EXTENSIONS.items() for ext in exts}
# Known media the decoders here cannot read: reported as skipped rather than silently ignored.
UNSUPPORTED = {"heic", "heif", "avif", "wma", "raw", "cr2", "nef"}


@dataclass(frozen=True, slots=True)  # slots: a million of them in a run
class Found:
    """A file the walk found: its path relative to the root, and what stat said."""

    rel: str
    abs: str
    modality: str
    ext: str
    size: int
    mtime_ns: int


@dataclass(frozen=True, slots=True)
class Skipped:
    """A path the walk could not take in. ``keep``: it may still hold indexed files that could
    not be seen this time (a folder that failed to list, a link not followed), so the rows
    under it stay."""

    rel: str
    reason: str
    keep: bool = False


LINKS = ("inside", "follow", "none")


def _inside(path: str, root_real: str) -> bool:
    return path == root_real or path.startswith(root_real.rstrip(os.sep) + os.sep)


def walk(
    root: str | os.PathLike, skip_dirs: Sequence[str] = (), exclude: Sequence[str] = (), links: str = "inside"
) -> Iterator[Found | Skipped]:
    """Yield every indexable file under ``root`` (recursively) and every file it must skip.

    Hidden folders and ``skip_dirs`` (the index folder) are not entered; a folder already
    visited (a link loop) is entered once. Symbolic links: ``inside`` follows a link whose
    target stays inside the root's real path, ``follow`` every link, ``none`` none; a link not
    followed is reported (``keep``). ``exclude`` globs match paths relative to ``root`` (``*``
    crosses ``/``) and file names.
    """
    if links not in LINKS:
        raise ValueError(f"links must be one of {', '.join(LINKS)}, not {links!r}")
    root = os.path.abspath(os.fspath(root))
    root_real = os.path.realpath(root)
    skip = {os.path.realpath(d) for d in skip_dirs}
    seen_dirs: set[tuple[int, int]] = set()
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            st = os.stat(folder)
        except OSError as exc:
            yield Skipped(
                _rel(folder, root), f"cannot open folder: {exc.strerror}; its indexed files are kept", keep=True
            )
            continue
        if (st.st_dev, st.st_ino) in seen_dirs:
            log.debug("not entering %s again (symbolic link loop)", folder)
            continue
        seen_dirs.add((st.st_dev, st.st_ino))
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            yield Skipped(
                _rel(folder, root), f"cannot list folder: {exc.strerror}; its indexed files are kept", keep=True
            )
            continue
        subdirs = []
        for entry in entries:
            rel = _rel(entry.path, root)
            if entry.name.startswith("."):
                continue
            if _excluded(rel, entry.name, exclude):
                continue
            if links != "follow" and entry.is_symlink() and _may_index(entry):
                target = os.path.realpath(entry.path)
                if links == "none":
                    yield Skipped(rel, "symbolic link not followed (--links none)", keep=True)
                    continue
                if not _inside(target, root_real) and os.path.exists(target):
                    yield Skipped(
                        rel,
                        f"symbolic link to {target}, outside the indexed folder (--links follow follows it)",
                        keep=True,
                    )
                    continue
            try:
                st = entry.stat(follow_symlinks=True)
            except FileNotFoundError:
                yield Skipped(rel, "broken symbolic link" if entry.is_symlink() else "file vanished during the scan")
                continue
            except OSError as exc:
                yield Skipped(rel, f"cannot stat: {exc.strerror}", keep=True)
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


def _may_index(entry: os.DirEntry) -> bool:
    """A link worth reporting when not followed: to a folder, or named like media (or one that
    cannot be followed at all: a loop, a target behind a folder it may not enter)."""
    try:
        return entry.is_dir(follow_symlinks=True) or os.path.splitext(entry.name)[1][1:].lower() in MODALITY_OF_EXT
    except OSError:
        return True


def _rel(path: str, root: str) -> str:
    rel = os.path.relpath(path, root)
    return "" if rel == "." else rel.replace(os.sep, "/")


def _excluded(rel: str, name: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(rel, p) or fnmatch.fnmatchcase(name, p) for p in patterns)
