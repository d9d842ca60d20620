"""Stored vectors: every vector of a modality whose index keeps only lossy codes (PQ), as float16
on disk, to re-score search candidates exactly and to rebuild the index as another type.

Two append-only files: ``<prefix>-vectors.f16`` (rows of ``dim`` float16) and
``<prefix>-vectors.ids`` (one int64 a row). A flush appends and fsyncs the rows first, then
their ids, so an id on disk always has its row; a kill mid-append leaves a partial tail that
readers ignore and the next writer cuts. Nothing is rewritten in place: a vector replaced (an
updated file, an id used again) is appended again and the last row of an id wins; the rows of
removed ids stay until the index is rebuilt (:mod:`indexer.storage.retype` writes only live ones).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


class StoredVectorsError(RuntimeError):
    """Raised when the stored vectors cannot be written or lack an id asked for."""


class _Rows:
    """The rows file, read with one ``pread`` a row (runs of consecutive rows in one). Not
    memory-mapped: the kernel maps the cached pages around each row touched into the process
    (fault-around), and after a thousand queries a 10M-row file counted whole in the process's
    resident memory (6.9 GB); the page cache keeps them all the same, shared and reclaimable."""

    def __init__(self, fd: int, dim: int) -> None:
        self.fd = fd  # owned, kept open: the file may be removed (a rebuild), this view not
        self.dim, self.width = dim, dim * 2

    def read(self, where: np.ndarray) -> np.ndarray:
        """float16 ``[len(where), dim]``: the rows at ``where`` (any order, repeats allowed)."""
        order = np.argsort(where, kind="stable")
        rows = where[order]
        starts = np.concatenate([[0], np.flatnonzero(np.diff(rows) != 1) + 1, [len(rows)]]).tolist()
        read, fd, width = os.pread, self.fd, self.width
        data = b"".join([read(fd, (b - a) * width, int(rows[a]) * width) for a, b in zip(starts[:-1], starts[1:])])
        if len(data) != len(rows) * width:
            raise StoredVectorsError(
                f"stored vectors: reads came back short ({len(data)} of {len(rows) * width} bytes)"
            )
        out = np.empty((len(rows), self.dim), np.float16)
        out[order] = np.frombuffer(data, np.float16).reshape(len(rows), self.dim)
        return out

    def __del__(self) -> None:
        try:
            os.close(self.fd)
        except (OSError, AttributeError):
            pass


def _read_ids(fd: int, start: int, stop: int) -> np.ndarray:
    """Ids ``start:stop`` of an ids file, read through ``fd``."""
    want, data = (stop - start) * 8, bytearray()
    while len(data) < want:
        chunk = os.pread(fd, min(want - len(data), 1 << 30), start * 8 + len(data))
        if not chunk:
            raise StoredVectorsError(f"stored vector ids: the file ended {want - len(data)} bytes early")
        data += chunk
    return np.frombuffer(data, dtype=np.int64).copy()


class Lookup:
    """One view of the stored rows: ids sorted (the newest row of an id last among equals),
    their row numbers, the rows file."""

    def __init__(self, signature: tuple, sorted_ids: np.ndarray, order: np.ndarray, rows: _Rows | None) -> None:
        self.signature, self.sorted_ids, self.order, self.rows = signature, sorted_ids, order, rows

    @property
    def count(self) -> int:
        return len(self.sorted_ids)

    def _find(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        at = np.searchsorted(self.sorted_ids, ids, side="right") - 1
        if not len(self.sorted_ids):
            return at, np.zeros(len(ids), bool)
        return at, (at >= 0) & (self.sorted_ids[np.maximum(at, 0)] == ids)

    def has(self, ids: np.ndarray) -> np.ndarray:
        return self._find(np.asarray(ids, dtype=np.int64))[1]

    def get(self, ids: np.ndarray, where_from: Path | str = "the stored vectors") -> np.ndarray:
        ids = np.asarray(ids, dtype=np.int64)
        at, ok = self._find(ids)
        if not ok.all():
            raise StoredVectorsError(
                f"{int((~ok).sum())} ids (first {int(ids[~ok][0])}) have no stored vector in {where_from}"
            )
        if not len(ids):
            return np.zeros((0, self.rows.dim if self.rows is not None else 0), np.float32)
        return self.rows.read(self.order[at]).astype(np.float32)


class StoredVectors:
    """The stored vectors of one shard set (``prefix`` names its files in ``folder``)."""

    def __init__(self, folder: Path, prefix: str, dim: int) -> None:
        self.rows_path = Path(folder) / f"{prefix}-vectors.f16"
        self.ids_path = Path(folder) / f"{prefix}-vectors.ids"
        self.dim = dim
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []
        self._lookup: Lookup | None = None

    @property
    def row_bytes(self) -> int:
        return self.dim * 2

    def exists(self) -> bool:
        return self.ids_path.exists()

    def count(self) -> int:
        """Complete rows on disk (a partial tail not counted)."""
        try:
            return min(self.ids_path.stat().st_size // 8, self.rows_path.stat().st_size // self.row_bytes)
        except FileNotFoundError:
            return 0

    def append(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        """Queue rows for the next :meth:`flush`."""
        if len(ids):
            self._pending.append((np.asarray(vectors, dtype=np.float16), np.asarray(ids, dtype=np.int64)))

    def flush(self) -> int:
        """Append the queued rows (rows, fsync, ids, fsync); returns the bytes written.

        Raises:
            StoredVectorsError: the disk refused (the files keep what they held).
        """
        if not self._pending:
            return 0
        vectors = np.concatenate([v for v, _ in self._pending])
        ids = np.concatenate([i for _, i in self._pending])
        n = self.count()
        try:
            self.rows_path.parent.mkdir(parents=True, exist_ok=True)
            for path, data, width in ((self.rows_path, vectors, self.row_bytes), (self.ids_path, ids, 8)):
                with open(path, "ab") as f:
                    f.truncate(n * width)  # a tail a kill left half-written
                    f.seek(n * width)
                    f.write(np.ascontiguousarray(data).tobytes())
                    f.flush()
                    os.fsync(f.fileno())
        except OSError as exc:
            raise StoredVectorsError(
                f"cannot append to {self.rows_path} ({exc.strerror or exc}); is the disk full?"
            ) from exc
        self._pending = []
        return vectors.nbytes + ids.nbytes

    def lookup(self) -> Lookup:
        """A consistent view of the rows on disk now (ask several things of one view: another
        call may see rows a writer appended since). Grown files are taken in by sorting only
        the new ids and merging. Both files are opened first and read through their descriptors,
        so a file removed meanwhile (a rebuild's old prefix) leaves the last view in use."""
        last = self._lookup
        if last is not None and last.signature == self._signature():  # the common case: two stats
            return last
        fds = []
        try:
            for path in (self.ids_path, self.rows_path):
                fds.append(os.open(path, os.O_RDONLY))
        except FileNotFoundError:
            for fd in fds:
                os.close(fd)
            return self._lookup or Lookup((0, None, None), np.zeros(0, np.int64), np.zeros(0, np.int64), None)
        ids_fd, rows_fd = fds
        try:
            st_ids, st_rows = os.fstat(ids_fd), os.fstat(rows_fd)
            n = min(st_ids.st_size // 8, st_rows.st_size // self.row_bytes)
            signature = (n, st_ids.st_ino, st_rows.st_ino)
            if last is not None and last.signature == signature:
                return last
            if n == 0:
                view = Lookup(signature, np.zeros(0, np.int64), np.zeros(0, np.int64), None)
            elif last is not None and last.signature[1:] == signature[1:] and 0 < last.count < n:
                tail = _read_ids(ids_fd, last.count, n)
                order = np.concatenate([last.order, np.argsort(tail, kind="stable") + last.count])
                merged = np.concatenate([last.sorted_ids, np.sort(tail, kind="stable")])
                # Two sorted runs: a stable sort merges them (older rows first among equal ids).
                again = np.argsort(merged, kind="stable")
                view = Lookup(signature, merged[again], order[again], _Rows(os.dup(rows_fd), self.dim))
            else:
                ids = _read_ids(ids_fd, 0, n)
                order = np.argsort(ids, kind="stable")  # equal ids keep file order: the last is the newest
                view = Lookup(signature, ids[order], order, _Rows(os.dup(rows_fd), self.dim))
        finally:
            os.close(ids_fd)
            os.close(rows_fd)
        self._lookup = view
        return view

    def _signature(self) -> tuple | None:
        try:
            st_ids, st_rows = self.ids_path.stat(), self.rows_path.stat()
        except FileNotFoundError:
            return None
        return min(st_ids.st_size // 8, st_rows.st_size // self.row_bytes), st_ids.st_ino, st_rows.st_ino

    def has(self, ids: np.ndarray) -> np.ndarray:
        """Whether each id has a stored row (bool array)."""
        return self.lookup().has(ids)

    def get(self, ids: np.ndarray) -> np.ndarray:
        """float32 ``[len(ids), dim]``: each id's newest stored row.

        Raises:
            StoredVectorsError: an id has no stored row.
        """
        return self.lookup().get(ids, self.rows_path)

    def remove_files(self) -> None:
        for path in (self.rows_path, self.ids_path):
            try:
                path.unlink()
            except FileNotFoundError:
                pass
        self._lookup = None
