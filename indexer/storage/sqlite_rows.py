"""Rows of an index in its own SQLite database, read with the standard library's ``sqlite3``.

A query needs only the rows of its hits; reading them through SQLAlchemy costs its import
(a quarter of a cold ``xmr search``). :class:`SqliteRows` serves exactly those reads for the
common case, a current-schema SQLite database holding the index by its manifest's id, and
declines (``open`` returns None) for everything else, which then goes through
:class:`indexer.storage.store.Store` as before (PostgreSQL, an older schema to upgrade, a missing or
damaged database, an index to find by folder). It is checked against ``Store`` in the tests.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections import namedtuple
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from urllib.parse import quote

from .constants import INDEXED, SCHEMA_VERSION
from .fulltext import Terms, fts5_match
from .manifest import Manifest

log = logging.getLogger(__name__)
DATETIME_COLUMNS = ("indexed_at",)  # the items table's DateTime columns (indexer.storage.schema.Item)
CHUNK = 900  # ids per IN (...) list, under SQLite's bound-parameter limit (as the Store)
SegmentRow = namedtuple("SegmentRow", ["id", "index_id", "item_id", "modality", "start", "end"])
SpanRow = namedtuple("SpanRow", ["id", "item_id", "source", "start", "end", "text", "confidence", "words"])


def sqlite_file(url: str) -> str | None:
    """The file of a SQLite URL (``sqlite:///path`` or ``sqlite:///file:path?mode=ro&uri=true``)."""
    if not url.startswith("sqlite:///"):
        return None
    path = url[len("sqlite:///") :]
    return path[len("file:") :].split("?", 1)[0] if path.startswith("file:") else path


class SqliteRows:
    """Read-only row access for one index of a SQLite database (build with :meth:`open`)."""

    def __init__(self, conn: sqlite3.Connection, index_id: int) -> None:
        self.conn, self.index_id = conn, index_id
        self._row_type: Any = None
        self._lock = threading.Lock()  # one connection, shared by the server's threads

    @classmethod
    def open(cls, url: str, manifest: Manifest) -> SqliteRows | None:
        """The rows of the manifest's index, or None when this fast path does not apply."""
        path = sqlite_file(url)
        uuid = manifest.index_uuid
        if path is None or url[len("sqlite:///") :].startswith("file:") or not uuid or not os.path.isfile(path):
            return None
        try:  # mode=rw: a database that vanished since the check is not created anew
            conn = sqlite3.connect(f"file:{quote(path)}?mode=rw", uri=True, timeout=30, check_same_thread=False)
        except sqlite3.Error:
            return None
        try:
            version = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if version is None or int(version[0]) != SCHEMA_VERSION:
                conn.close()
                return None
            found = conn.execute("SELECT id FROM indexes WHERE uuid = ?", (uuid,)).fetchone()
        except (sqlite3.Error, ValueError) as exc:
            log.debug("fast row reads declined for %s: %s", path, exc)
            conn.close()
            return None
        if found is None:
            conn.close()
            return None
        return cls(conn, int(found[0]))

    def _rows(self, cursor: sqlite3.Cursor) -> list[Any]:
        if self._row_type is None:
            names = [d[0] for d in cursor.description]
            self._row_type = namedtuple("ItemRow", names)
            self._dates = [i for i, n in enumerate(names) if n in DATETIME_COLUMNS]
        out = []
        for r in cursor.fetchall():
            if self._dates:  # SQLAlchemy stores DateTime as ISO text in SQLite and reads it back a datetime
                r = list(r)
                for i in self._dates:
                    r[i] = datetime.fromisoformat(r[i]) if isinstance(r[i], str) else r[i]
            out.append(self._row_type(*r))
        return out

    def _select_in(self, sql: str, ids: Sequence[int], read: Any) -> list[Any]:
        """``sql`` (``{marks}`` for the id list, a last ``?`` for the index) over ``ids`` in
        chunks, each chunk's cursor turned into rows by ``read``."""
        ids = [int(i) for i in ids]
        out: list[Any] = []
        for start in range(0, len(ids), CHUNK):
            part = ids[start : start + CHUNK]
            with self._lock:
                cursor = self.conn.execute(sql.format(marks=",".join("?" * len(part))), (*part, self.index_id))
                out += read(cursor)
        return out

    def rows_by_ids(self, ids: Sequence[int]) -> dict[int, Any]:
        """Rows of ``ids`` (this index's only), with attribute access, as :meth:`Store.rows_by_ids`."""
        # "+index_id": not through the (index_id, path, line) index, which SQLite (without
        # statistics) takes for 5+ ids and then reads every row of the index; by primary key.
        rows = self._select_in("SELECT * FROM items WHERE id IN ({marks}) AND +index_id = ?", ids, self._rows)
        return {row.id: row for row in rows}

    def segment_rows(self, ids: Sequence[int]) -> dict[int, Any]:
        """Segment rows of ``ids`` (this index's only), as :meth:`Store.segment_rows`."""
        sql = (
            'SELECT id, index_id, item_id, modality, "start", "end" FROM segments '
            "WHERE id IN ({marks}) AND +index_id = ?"
        )
        rows = self._select_in(sql, ids, lambda cursor: [SegmentRow(*r) for r in cursor.fetchall()])
        return {r.id: r for r in rows}

    def spans_by_id(self, ids: Sequence[int]) -> dict[int, Any]:
        """Spans of ``ids`` (this index's only), as :meth:`Store.spans_by_id` (plain rows)."""
        sql = (
            'SELECT id, item_id, source, "start", "end", text, confidence, words FROM spans '
            "WHERE id IN ({marks}) AND +index_id = ?"
        )
        rows = self._select_in(sql, ids, lambda cursor: [SpanRow(*r) for r in cursor.fetchall()])
        return {r.id: r for r in rows}

    def search_spans(
        self,
        terms: Terms,
        limit: int,
        source: str | None = None,
        item_ids: Sequence[int] | None = None,
        prefix: bool = False,
    ) -> list[tuple[int, int, float]]:
        """Full-text search of the spans, as :meth:`Store.search_spans` (SQLite's FTS5)."""
        if not terms or limit <= 0 or (item_ids is not None and not len(item_ids)):
            return []
        where, params = "", [fts5_match(terms, prefix), self.index_id]
        if source:
            where += " AND s.source = ?"
            params.append(source)
        if item_ids is not None:
            where += f" AND s.item_id IN ({','.join('?' * len(item_ids))})"
            params += [int(i) for i in item_ids]
        sql = (
            "SELECT s.id, s.item_id, -bm25(spans_fts) FROM spans_fts JOIN spans s ON s.id = spans_fts.rowid "
            f"WHERE spans_fts MATCH ? AND s.index_id = ?{where} ORDER BY bm25(spans_fts) LIMIT ?"
        )
        with self._lock:
            found = self.conn.execute(sql, (*params, int(limit))).fetchall()
        return [(int(a), int(b), float(c)) for a, b, c in found]

    def segment_ids_of(self, item_ids: Sequence[int], modality: str | None = None) -> dict[int, int]:
        """``{segment id: item id}`` of the segments of ``item_ids`` (of ``modality``), as :meth:`Store.segment_ids`."""
        sql = "SELECT id, item_id, modality FROM segments WHERE item_id IN ({marks}) AND index_id = ?"
        found = self._select_in(sql, item_ids, lambda cursor: cursor.fetchall())
        return {int(a): int(b) for a, b, m in found if modality is None or m == modality}

    def counts(self) -> dict[str, int]:
        """Indexed items per modality, as :meth:`Store.counts`."""
        with self._lock:
            cursor = self.conn.execute(
                "SELECT modality, count(*) FROM items WHERE index_id = ? AND status = ? GROUP BY modality",
                (self.index_id, INDEXED),
            )
            return {m: int(n) for m, n in cursor.fetchall()}

    def close(self) -> None:
        with self._lock:
            self.conn.close()
