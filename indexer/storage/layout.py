"""The on-disk index folder: manifest, lock, database and shards."""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
INDEX_FOLDER = ".xmr"  # an index's folder inside the folder it indexes (hidden, so the walk skips it)


class XmrIndexError(RuntimeError):
    """Base of the indexer's errors about an index as a whole."""


class IndexBusyError(XmrIndexError):
    """Another process is updating this index."""


class IndexMismatchError(XmrIndexError):
    """The index belongs to another folder, or was built by another model."""


class IndexNotFoundError(XmrIndexError):
    """No index where one was expected."""


class MassRemovalError(XmrIndexError):
    """A run would remove more than half of an index: more likely a missing drive than a purge."""


class IndexCorruptError(XmrIndexError):
    """An index file is damaged."""


@dataclass(frozen=True)
class Layout:
    """Paths inside an index folder."""

    dir: Path

    @property
    def manifest(self) -> Path:
        return self.dir / "manifest.json"

    @property
    def manifest_backup(self) -> Path:
        return self.dir / "manifest.backup.json"

    @property
    def database(self) -> Path:
        return self.dir / "items.db"

    @property
    def shards(self) -> Path:
        return self.dir / "shards"

    @property
    def lock(self) -> Path:
        return self.dir / "lock"

    def exists(self) -> bool:
        """Whether this folder holds an index (its manifest, or the backup of it)."""
        return self.manifest.is_file() or self.manifest_backup.is_file()

    def db_url(self, db: Any = None) -> str:
        """The database a manifest names (``db``: its URL, or the manifest itself), else the
        SQLite database inside the folder."""
        if db is not None and not isinstance(db, str):
            db = db.get("db")  # a Manifest, or a manifest as a dict
        return db or f"sqlite:///{self.database}"


def write_json_atomic(path: Path, data: dict) -> None:
    """Write JSON through a temporary file, fsync and rename."""
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, ensure_ascii=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class IndexLock:
    """An exclusive lock on an index folder (``flock``; released when the process dies)."""

    def __init__(self, layout: Layout, wait: float = 0.0) -> None:
        self.path = layout.lock
        self.wait = wait
        self.fd: int | None = None

    def __enter__(self) -> "IndexLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + self.wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise
                if time.monotonic() >= deadline:
                    holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
                    os.close(fd)
                    raise IndexBusyError(
                        f"another xmr process (pid {holder}) is updating the index at {self.path.parent}; "
                        "wait for it to finish (or pass --wait SECONDS)"
                    ) from None
                time.sleep(0.2)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self.fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            os.ftruncate(self.fd, 0)
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


def find_index_dir(start: str | os.PathLike | None = None) -> Path | None:
    """The nearest ``.xmr`` folder at or above ``start`` (default: the current folder)."""
    here = Path(start or os.getcwd()).resolve()
    for folder in (here, *here.parents):
        if Layout(folder / INDEX_FOLDER).exists():
            return folder / INDEX_FOLDER
        if folder.name == INDEX_FOLDER and Layout(folder).exists():
            return folder
    return None
