"""The SQL side of an index: items and their metadata, through SQLAlchemy 2.0.

SQLite (WAL mode) by default; any SQLAlchemy URL (PostgreSQL) by choice. A database may hold
several indexes: a :class:`Store` reads and writes the rows of one of them (``index_id``).
"""

from __future__ import annotations

import json
import logging
import os
import uuid as uuidlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

import numpy as np
from sqlalchemy import Engine, create_engine, delete, event, func, insert, inspect, select, text, update
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError, SQLAlchemyError
from sqlalchemy.orm import Session

from .errors import StoreError
from .fulltext import Terms, create_fulltext, search_spans
from .manifest import Manifest, manifest_of_text
from .schema import (
    FILE,
    ID_BITS,
    INDEXED,
    PENDING,
    SCHEMA_VERSION,
    SEGMENT_BIT,
    Base,
    Failure,
    Fingerprint,
    IndexRow,
    Item,
    Meta,
    Reading,
    Segment,
    Span,
    holds_vector,
)
from .sqlite_rows import sqlite_file as _sqlite_file

log = logging.getLogger(__name__)
CHUNK = 900  # ids per IN (...) list: under SQLite's bound-parameter limit
INSERT_CHUNK = 50_000  # rows per INSERT statement (executemany) of a checkpoint
# An item's columns as a new row has them when not given (as the schema's defaults): every row
# of one INSERT names the same columns.
ITEM_DEFAULTS: dict[str, Any] = {
    "line": 0,
    "ext": "",
    "size": 0,
    "mtime_ns": 0,
    "content_hash": "",
    "width": None,
    "height": None,
    "duration": None,
    "sample_rate": None,
    "text": None,
    "model": "",
    "indexed_at": None,
    "status": PENDING,
}


def _make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(conn, _record) -> None:  # noqa: ANN001
            cur = conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA case_sensitive_like=ON")  # LIKE as in PostgreSQL: path globs are case-sensitive
            cur.close()

        return engine
    try:
        return create_engine(url, pool_pre_ping=True)
    except ModuleNotFoundError as exc:  # the database's driver: psycopg for PostgreSQL
        extra = " pip install 'xmr[postgres]'" if url.startswith("postgresql") else f" pip install {exc.name}"
        raise StoreError(
            f"the database {url.split(':', 1)[0]} needs the {exc.name} driver, not installed:{extra}"
        ) from None


def _end(conn: Any, sqlite: bool, how: str) -> None:
    """End a transaction begun by hand (SQLite's BEGIN IMMEDIATE) or by SQLAlchemy."""
    if sqlite:
        conn.exec_driver_sql(how)
    elif how == "COMMIT":
        conn.commit()
    else:
        conn.rollback()


def new_index_uuid() -> str:
    return str(uuidlib.uuid4())


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


class Store:
    """The rows of one index in one SQL database (see :meth:`bind`)."""

    def __init__(self, url: str, create: bool = True, index_id: int | None = None) -> None:
        """Open (``create``: and create when missing) the database at ``url``, upgrading an
        older schema in place.

        Raises:
            StoreError: cannot connect, a newer schema, an upgrade that cannot be written, or
                (not ``create``) no xmr tables there.
        """
        self.url = url
        self._index_id = index_id
        if not create and (path := _sqlite_file(url)) and not os.path.exists(path):
            raise StoreError(f"the index database {path} is missing; `xmr doctor --fix` rebuilds it from the files")
        try:
            self.engine = _make_engine(url)
            found = inspect(self.engine)
            if not found.has_table(Item.__tablename__) and not create:
                raise StoreError(
                    f"database {self.safe_url} holds no xmr items table; `xmr doctor --fix` rebuilds it from the files"
                )
            version = self._version() if found.has_table(Meta.__tablename__) else None
            if version is not None and version > SCHEMA_VERSION:
                raise StoreError(
                    f"database {self.safe_url} has schema version {version}, newer than this xmr "
                    f"({SCHEMA_VERSION}): upgrade xmr"
                )
            if version is not None and version < SCHEMA_VERSION:
                from .migrate import upgrade

                upgrade(self.engine, version)
            if version is None or create:
                self._create_schema()
        except SQLAlchemyError as exc:
            raise StoreError(
                f"cannot open database {self.safe_url}: {exc.__class__.__name__}: {str(exc).splitlines()[0]}"
            ) from exc

    @classmethod
    def of_index(cls, url: str, manifest: Manifest) -> "Store":
        """Open an existing index's database, bound to that index's rows (read side).

        Raises:
            StoreError: as :meth:`__init__`, or the database holds no such index.
        """
        store = cls(url, create=False)
        try:
            found = store.find_index(manifest.index_uuid, manifest.root)
            if found is None and manifest.index_uuid:
                raise StoreError(
                    f"database {store.safe_url} holds no index with this manifest's id ({manifest.index_uuid}); "
                    "`xmr doctor --fix` re-embeds it from the files"
                )
            if found is not None:
                store.bind(found)
            else:
                store.index_id  # noqa: B018 - a database of several indexes refuses to guess here
        except BaseException:
            store.close()
            raise
        return store

    def _create_schema(self) -> None:
        """Create what is missing, once even when several indexers open a new database at the
        same moment (PostgreSQL: under an advisory lock; SQLite: a lost race is tried again, and
        each try gets further: pysqlite runs each CREATE on its own, so two creators interleave
        table by table, and a busy machine can lose several rounds)."""
        import random
        import time

        from .migrate import LOCK_KEY

        sqlite = self.engine.dialect.name == "sqlite"
        for attempt in range(10):
            try:
                with self.engine.connect() as conn:
                    # SQLite: the write lock first (BEGIN IMMEDIATE waits for it), never a read lock
                    # upgraded mid-way, which a second creator makes fail at once.
                    if sqlite:
                        conn.exec_driver_sql("BEGIN IMMEDIATE")
                    else:
                        conn.begin()
                        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
                    try:
                        Base.metadata.create_all(conn)
                        create_fulltext(conn)
                        if conn.execute(select(Meta.value).where(Meta.key == "schema_version")).first() is None:
                            conn.execute(insert(Meta).values(key="schema_version", value=str(SCHEMA_VERSION)))
                    except BaseException:
                        _end(conn, sqlite, "ROLLBACK")
                        raise
                    _end(conn, sqlite, "COMMIT")
                return
            except (OperationalError, IntegrityError, ProgrammingError):
                if attempt == 9:
                    raise
                time.sleep(random.uniform(0.01, 0.1))

    def _version(self) -> int | None:
        with Session(self.engine) as s:
            row = s.get(Meta, "schema_version")
            return int(row.value) if row is not None else None

    @property
    def safe_url(self) -> str:
        """The URL with any password hidden."""
        from sqlalchemy.engine import make_url

        return make_url(self.url).render_as_string(hide_password=True)

    def session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    @contextmanager
    def writing(self, what: str) -> Iterator[Session]:
        """A session committed at the end; any database error becomes a :class:`StoreError`
        saying what could not be saved (the transaction rolls back: nothing half-written)."""
        try:
            with self.session() as s:
                yield s
                s.commit()
        except SQLAlchemyError as exc:
            raise StoreError(
                f"cannot {what} in {self.safe_url} "
                f"({str(exc.orig if getattr(exc, 'orig', None) else exc).splitlines()[0]}); "
                "is the disk full? Everything saved before is intact"
            ) from exc

    def close(self) -> None:
        self.engine.dispose()

    # --- which index ---------------------------------------------------------------------
    @property
    def index_id(self) -> int:
        """The index this store reads and writes; when not bound, the database's only index."""
        if self._index_id is None:
            with self.session() as s:
                ids = list(s.scalars(select(IndexRow.id)))
            if len(ids) > 1:
                raise StoreError(
                    f"database {self.safe_url} serves {len(ids)} indexes: open it through an index folder's manifest"
                )
            self._index_id = ids[0] if ids else 0
        return self._index_id

    def bind(self, index_id: int) -> None:
        self._index_id = index_id

    def find_index(self, index_uuid: str | None, root: str, folder: str | None = None) -> int | None:
        """The id of an index: the one with ``index_uuid``; else the one registered for the index
        ``folder`` (its manifest was lost, or never written: a run killed right after it
        registered); else, for an index made before schema 2, the unclaimed migrated index of
        the same ``root``. None when there is none."""
        with self.session() as s:
            if index_uuid:
                found = s.scalar(select(IndexRow.id).where(IndexRow.uuid == index_uuid))
                if found is not None:
                    return found
            if folder:
                found = s.scalar(select(IndexRow.id).where(IndexRow.dir == folder).order_by(IndexRow.id))
                if found is not None:
                    return found
            roots = [root]
            if self.url.startswith("sqlite") and len(list(s.scalars(select(IndexRow.id)))) == 1:
                roots.append("")  # a private database whose version-1 first run never recorded its root
            return s.scalar(
                select(IndexRow.id).where(IndexRow.uuid.is_(None), IndexRow.root.in_(roots)).order_by(IndexRow.id)
            )

    def register_index(self, index_uuid: str, root: str, folder: str) -> int:
        """Find or create the index ``index_uuid`` (claiming a migrated one of the same root),
        record its folders, bind this store to it and return its id."""
        for _ in range(5):  # another process may take the same new id: try the next
            found = self.find_index(index_uuid, root, folder)
            try:
                with self.writing("register the index") as s:
                    if found is not None:
                        s.execute(
                            update(IndexRow).where(IndexRow.id == found).values(uuid=index_uuid, root=root, dir=folder)
                        )
                    else:
                        top = s.scalar(select(func.max(IndexRow.id)))
                        found = 0 if top is None and not self._has_rows_of(s, 0) else (top or 0) + 1
                        s.add(IndexRow(id=found, uuid=index_uuid, root=root, dir=folder, created=_now()))
            except StoreError as exc:
                if isinstance(exc.__cause__, IntegrityError):
                    continue
                raise
            self.bind(found)
            return found
        raise StoreError(f"cannot register the index in {self.safe_url}: too many indexers creating indexes at once")

    @staticmethod
    def _has_rows_of(s: Session, index_id: int) -> bool:
        return s.scalar(select(Item.id).where(Item.index_id == index_id).limit(1)) is not None

    def indexes(self) -> list[dict[str, Any]]:
        """Every index this database serves: id, uuid, root, folder, item count."""
        with self.session() as s:
            counts = dict(s.execute(select(Item.index_id, func.count()).group_by(Item.index_id)).all())
            return [
                {"id": r.id, "uuid": r.uuid, "root": r.root, "dir": r.dir, "items": int(counts.get(r.id, 0))}
                for r in s.scalars(select(IndexRow).order_by(IndexRow.id))
            ]

    def id_range(self) -> tuple[int, int]:
        """The ids this index allocates: ``[lo, hi)``."""
        return self.index_id << ID_BITS, (self.index_id + 1) << ID_BITS

    def max_id(self) -> int:
        """The largest id of this index's rows, or the bottom of its range."""
        lo, _ = self.id_range()
        with self.session() as s:
            top = s.scalar(select(func.max(Item.id)).where(Item.index_id == self.index_id))
        return max(int(top or 0), lo)

    # --- reads ---------------------------------------------------------------------------
    def _mine(self, q):  # noqa: ANN001, ANN202
        return q.where(Item.index_id == self.index_id)

    def items(self, kind: str | None = None) -> list[Item]:
        with self.session() as s:
            q = self._mine(select(Item))
            if kind:
                q = q.where(Item.kind == kind)
            return list(s.scalars(q))

    def file_rows(self) -> list[Any]:
        """What change detection compares with the files found, for every file item: plain rows
        (id, path, size, mtime_ns, status, content_hash, modality, duration), a fraction of the
        memory of ORM objects at a million rows."""
        c = Item.__table__.c
        q = select(c.id, c.path, c.size, c.mtime_ns, c.status, c.content_hash, c.modality, c.duration).where(
            c.index_id == self.index_id, c.kind == FILE
        )
        with self.engine.connect() as conn:
            return list(conn.execute(q))

    def facts_of(self, modality: str) -> list[Any]:
        """Plain rows (id, path, kind, size, mtime_ns, content_hash, width, height, duration) of
        this index's indexed items of ``modality``, in id order: what finding copies weighs."""
        c = Item.__table__.c
        q = (
            select(c.id, c.path, c.kind, c.size, c.mtime_ns, c.content_hash, c.width, c.height, c.duration)
            .where(c.index_id == self.index_id, c.status == INDEXED, c.modality == modality)
            .order_by(c.id)
        )
        with self.engine.connect() as conn:
            return list(conn.execute(q))

    def id_array(self, modality: str | None = None, status: str | None = None, vectors: bool = False) -> np.ndarray:
        """:meth:`ids` as a sorted int64 array (8 bytes an id, not a Python set's ~70)."""
        q = self._mine(select(Item.id))
        if modality:
            q = q.where(holds_vector(modality) if vectors else Item.modality == modality)
        if status:
            q = q.where(Item.status == status)
        with self.engine.connect() as conn:
            out = np.fromiter(conn.execute(q).scalars(), dtype=np.int64)
        out.sort()
        return out

    def segment_count(self) -> int:
        """Moments of long audio and video (the spans of words found in media not counted)."""
        with self.session() as s:
            q = select(func.count()).select_from(Segment).where(Segment.index_id == self.index_id)
            return int(s.scalar(q.where(Segment.modality != "text")))

    def file_id(self, path: str) -> int | None:
        """The id of this index's file stored under ``path`` (escaped, relative), if any."""
        with self.session() as s:
            q = self._mine(select(Item.id)).where(Item.kind == FILE, Item.path == path)
            found = s.scalar(q)
            return int(found) if found is not None else None

    def rows_by_ids(self, ids: Sequence[int]) -> dict[int, Any]:
        """Rows of ``ids`` as plain rows (attribute access, no ORM objects): several times faster
        than ORM objects for the hits of a query batch."""
        table = Item.__table__
        out: dict[int, Any] = {}
        ids = [int(i) for i in ids]
        with self.engine.connect() as conn:
            for start in range(0, len(ids), CHUNK):
                # index_id + 0: by primary key (SQLite without statistics would take the
                # (index_id, path, line) index for 5+ ids and read every row of the index).
                q = select(table).where(
                    table.c.id.in_(ids[start : start + CHUNK]), table.c.index_id + 0 == self.index_id
                )
                for row in conn.execute(q):
                    out[row.id] = row
        return out

    def matching_ids(self, modality: str, conditions: Sequence[Any]) -> list[int]:
        """Ids of this index's indexed rows with a vector among ``modality``'s (videos among the
        image and audio ones) that meet SQL ``conditions`` on :class:`Item`."""
        with self.session() as s:
            q = self._mine(select(Item.id)).where(holds_vector(modality), Item.status == INDEXED, *conditions)
            return list(s.scalars(q))

    def counts(self, status: str | None = INDEXED) -> dict[str, int]:
        with self.session() as s:
            q = self._mine(select(Item.modality, func.count())).group_by(Item.modality)
            if status:
                q = q.where(Item.status == status)
            return {m: int(n) for m, n in s.execute(q)}

    def ids(self, modality: str | None = None, status: str | None = None, vectors: bool = False) -> set[int]:
        """Ids of this index's rows (of ``modality``, of ``status``); with ``vectors``, those with
        a vector in ``modality``'s shards (videos in the image and audio ones)."""
        with self.session() as s:
            q = self._mine(select(Item.id))
            if modality:
                q = q.where(holds_vector(modality) if vectors else Item.modality == modality)
            if status:
                q = q.where(Item.status == status)
            return set(s.scalars(q))

    def manifest_copy_of_folder(self, folder: str) -> Manifest | None:
        """The manifest copy of the index registered for ``folder`` (escaped), if any."""
        with self.session() as s:
            found = s.scalar(select(IndexRow.id).where(IndexRow.dir == folder).order_by(IndexRow.id))
            row = s.get(Meta, f"manifest:{found}") if found is not None else None
            return manifest_of_text(row.value) if row else None

    def manifest_copy(self) -> Manifest | None:
        """The copy of the index manifest kept in the database (see :meth:`save_manifest_copy`)."""
        with self.session() as s:
            row = s.get(Meta, f"manifest:{self.index_id}")
            return manifest_of_text(row.value) if row else None

    def failures(self) -> dict[str, Failure]:
        """Files whose decoder crashed or hung, by stored path."""
        with self.session() as s:
            return {f.path: f for f in s.scalars(select(Failure).where(Failure.index_id == self.index_id))}

    # --- writes --------------------------------------------------------------------------
    def mark_pending(self, ids: Sequence[int]) -> None:
        with self.writing("mark items pending") as s:
            for start in range(0, len(ids), CHUNK):
                s.execute(update(Item).where(Item.id.in_(ids[start : start + CHUNK])).values(status=PENDING))

    def update_many(self, changes: Sequence[tuple[int, dict]]) -> None:
        with self.writing("update items") as s:
            for item_id, values in changes:
                s.execute(update(Item).where(Item.id == item_id).values(**values))

    def save_items(
        self,
        new: Sequence[dict[str, Any]],
        changed: Sequence[tuple[int, dict[str, Any]]] = (),
        drop_segments: Sequence[int] = (),
        new_segments: Sequence[tuple[int, int, str, float, float]] = (),
        spans: Sequence[dict[str, Any]] = (),
        readings: Sequence[dict[str, Any]] = (),
        drop_readings: Sequence[int] = (),
        fingerprints: Sequence[dict[str, Any]] = (),
    ) -> None:
        """One checkpoint's rows in one transaction: ``new`` items inserted (dicts of
        :class:`Item` columns with their ``id``; the columns left out take their defaults),
        ``changed`` ones updated, the readings of ``drop_readings`` files deleted, segments
        replaced (``drop_segments`` ids deleted, with the spans under those ids; each new one
        ``(id, item id, modality, start, end)``), ``spans`` and ``readings`` (dicts of
        :class:`Span` and :class:`Reading` columns) added, ``fingerprints`` (dicts of
        :class:`Fingerprint` columns) added or replaced. Committed whole or not at all."""
        columns = set(Item.__table__.columns.keys())
        for row in (*new, *(values for _, values in changed)):
            if unknown := set(row) - columns:
                raise ValueError(f"items have no column {', '.join(sorted(unknown))}")
        rows = [{**ITEM_DEFAULTS, **row, "index_id": self.index_id} for row in new]
        drop = [int(i) for i in drop_segments]
        with self.writing("save the new items") as s:
            for start in range(0, len(rows), INSERT_CHUNK):
                s.execute(insert(Item), rows[start : start + INSERT_CHUNK])
            for item_id, values in changed:
                s.execute(update(Item).where(Item.id == item_id).values(**values))
            unread = [int(i) for i in drop_readings]
            for start in range(0, len(unread), CHUNK):
                part = unread[start : start + CHUNK]
                s.execute(delete(Reading).where(Reading.item_id.in_(part), Reading.index_id == self.index_id))
            for start in range(0, len(drop), CHUNK):
                s.execute(delete(Span).where(Span.id.in_(drop[start : start + CHUNK])))
                s.execute(delete(Segment).where(Segment.id.in_(drop[start : start + CHUNK])))
            s.add_all(
                Segment(id=i, index_id=self.index_id, item_id=item, modality=m, start=a, end=b)
                for i, item, m, a, b in new_segments
            )
            s.flush()
            if spans:
                s.execute(
                    insert(Span), [{"words": None, "confidence": 1.0, **r, "index_id": self.index_id} for r in spans]
                )
            for r in readings:
                s.merge(Reading(**{**r, "index_id": self.index_id, "read_at": _now()}))
            for r in fingerprints:
                s.merge(Fingerprint(**{**r, "index_id": self.index_id, "made_at": _now()}))

    def delete(self, ids: Sequence[int]) -> None:
        """Delete items, their segments and what was read from them (rows only: the caller
        removes the vectors)."""
        ids = [int(i) for i in ids]
        with self.writing("delete items") as s:
            for start in range(0, len(ids), CHUNK):
                part = ids[start : start + CHUNK]
                self._delete_words(s, part)
                mine = (Fingerprint.item_id.in_(part), Fingerprint.index_id == self.index_id)
                s.execute(delete(Fingerprint).where(*mine))
                s.execute(delete(Segment).where(Segment.item_id.in_(part), Segment.index_id == self.index_id))
                s.execute(delete(Item).where(Item.id.in_(part), Item.index_id == self.index_id))

    # --- segments (the moments of long files) ---------------------------------------------
    def segment_range(self) -> tuple[int, int]:
        """The ids this index's segments take: the upper half of its range."""
        lo, hi = self.id_range()
        return lo + (1 << SEGMENT_BIT), hi

    def max_segment_id(self) -> int:
        lo, _ = self.segment_range()
        with self.session() as s:
            top = s.scalar(select(func.max(Segment.id)).where(Segment.index_id == self.index_id))
        return max(int(top or 0), lo)

    def segment_ids(self, item_ids: Sequence[int] | None = None, modality: str | None = None) -> dict[int, int]:
        """``{segment id: item id}`` of this index (of ``item_ids`` only, of ``modality`` only, when given)."""
        out: dict[int, int] = {}
        with self.session() as s:
            q = select(Segment.id, Segment.item_id).where(Segment.index_id == self.index_id)
            if modality is not None:
                q = q.where(Segment.modality == modality)
            if item_ids is None:
                return {int(a): int(b) for a, b in s.execute(q)}
            ids = [int(i) for i in item_ids]
            for start in range(0, len(ids), CHUNK):
                part = q.where(Segment.item_id.in_(ids[start : start + CHUNK]))
                out.update({int(a): int(b) for a, b in s.execute(part)})
        return out

    def longest_segments(self, modality: str) -> dict[int, float]:
        """``{item id: its longest segment of modality, seconds}`` of this index (a video's frame
        interval, read back from its frames)."""
        with self.session() as s:
            q = (
                select(Segment.item_id, func.max(Segment.end - Segment.start))
                .where(Segment.index_id == self.index_id, Segment.modality == modality)
                .group_by(Segment.item_id)
            )
            return {int(item): float(span) for item, span in s.execute(q)}

    def segment_rows(self, ids: Sequence[int]) -> dict[int, Any]:
        """Segment rows (id, item_id, modality, start, end) of ``ids`` that belong to this index."""
        table = Segment.__table__
        out: dict[int, Any] = {}
        ids = [int(i) for i in ids]
        with self.engine.connect() as conn:
            for start in range(0, len(ids), CHUNK):
                q = select(table).where(table.c.id.in_(ids[start : start + CHUNK]), table.c.index_id == self.index_id)
                out.update({row.id: row for row in conn.execute(q)})
        return out

    def delete_segments(self, ids: Sequence[int]) -> None:
        """Delete segments (and the spans under their ids)."""
        ids = [int(i) for i in ids]
        with self.writing("delete segments") as s:
            for start in range(0, len(ids), CHUNK):
                s.execute(delete(Span).where(Span.id.in_(ids[start : start + CHUNK])))
                s.execute(delete(Segment).where(Segment.id.in_(ids[start : start + CHUNK])))

    # --- words found in media (spans) and the readings that found them --------------------
    def unread(
        self, source: str, modalities: Sequence[str], model: str, retry_failed: bool = False
    ) -> list[tuple[int, bool]]:
        """``(id, read before)`` of this index's indexed files of ``modalities`` that ``source``
        has not read with ``model``: never read, read by another model, or (``retry_failed``)
        whose reading failed."""
        with self.session() as s:
            mine = (Reading.index_id == self.index_id, Reading.source == source)
            done = select(Reading.item_id).where(*mine, Reading.model == model)
            if retry_failed:
                done = done.where(Reading.reason == "")
            q = self._mine(select(Item.id)).where(
                Item.kind == FILE, Item.status == INDEXED, Item.modality.in_(list(modalities)), Item.id.not_in(done)
            )
            todo = sorted(int(i) for i in s.scalars(q))
            read = set(s.scalars(select(Reading.item_id).where(*mine))) if todo else set()
        return [(i, i in read) for i in todo]

    def spans_of(self, item_ids: Sequence[int], source: str | None = None) -> list[Span]:
        """The spans of these items, in order of item and time."""
        ids = [int(i) for i in item_ids]
        out: list[Span] = []
        with self.session() as s:
            for start in range(0, len(ids), CHUNK):
                q = select(Span).where(Span.item_id.in_(ids[start : start + CHUNK]), Span.index_id == self.index_id)
                if source:
                    q = q.where(Span.source == source)
                out.extend(s.scalars(q))
        return sorted(out, key=lambda r: (r.item_id, r.start, r.id))

    def spans_by_id(self, span_ids: Sequence[int]) -> dict[int, Span]:
        ids = [int(i) for i in span_ids]
        out: dict[int, Span] = {}
        with self.session() as s:
            for start in range(0, len(ids), CHUNK):
                q = select(Span).where(Span.id.in_(ids[start : start + CHUNK]), Span.index_id == self.index_id)
                out.update({r.id: r for r in s.scalars(q)})
        return out

    def search_spans(
        self,
        terms: Terms,
        limit: int,
        source: str | None = None,
        item_ids: Sequence[int] | None = None,
        prefix: bool = False,
    ) -> list[tuple[int, int, float]]:
        """``(span id, item id, score)`` of the spans matching ``terms`` (full text; of the files
        ``item_ids`` only, when given; words as prefixes with ``prefix``), best first."""
        with self.engine.connect() as conn:
            return search_spans(conn, self.index_id, terms, limit, source, item_ids, prefix)

    def span_ids(self) -> dict[int, int]:
        """``{span id: item id}`` of this index's words found in media."""
        with self.session() as s:
            q = select(Span.id, Span.item_id).where(Span.index_id == self.index_id)
            return {int(a): int(b) for a, b in s.execute(q)}

    def span_problems(self) -> dict[str, list[int]]:
        """Disagreements of the words found in media: spans without their segment (``unplaced``),
        text segments without their span (``wordless``), and (SQLite) whether the full-text
        index agrees with the spans (``fulltext``: [1] when it does not)."""
        spans, segments = self.span_ids().keys(), self.segment_ids(modality="text").keys()
        out = {"unplaced": sorted(spans - segments), "wordless": sorted(segments - spans), "fulltext": []}
        if self.engine.dialect.name == "sqlite":
            try:
                with self.engine.begin() as conn:
                    conn.exec_driver_sql("INSERT INTO spans_fts(spans_fts, rank) VALUES ('integrity-check', 1)")
            except SQLAlchemyError:
                out["fulltext"] = [1]
        return out

    def forget_words(self, item_ids: Sequence[int]) -> None:
        """Delete the words found in these files (spans, their text segments, the readings), so
        that they are read again (the caller drops the segments' vectors)."""
        ids = [int(i) for i in item_ids]
        with self.writing("forget words found in media") as s:
            for start in range(0, len(ids), CHUNK):
                part = ids[start : start + CHUNK]
                self._delete_words(s, part)
                mine = (Segment.item_id.in_(part), Segment.index_id == self.index_id, Segment.modality == "text")
                s.execute(delete(Segment).where(*mine))

    def _delete_words(self, s: Session, item_ids: list[int]) -> None:
        """The spans and readings of ``item_ids`` (a chunk), in the caller's transaction."""
        s.execute(delete(Span).where(Span.item_id.in_(item_ids), Span.index_id == self.index_id))
        s.execute(delete(Reading).where(Reading.item_id.in_(item_ids), Reading.index_id == self.index_id))

    def rebuild_fulltext(self) -> None:
        """Make the full-text index again from the spans (SQLite; PostgreSQL's index is kept by
        the database itself)."""
        if self.engine.dialect.name == "sqlite":
            with self.engine.begin() as conn:
                conn.exec_driver_sql("INSERT INTO spans_fts(spans_fts) VALUES ('rebuild')")

    def readings(self, source: str) -> dict[str, float]:
        """What ``source`` read in this index: files, files with words, seconds of media,
        failures, and the spans found."""
        with self.session() as s:
            q = select(
                func.count(),
                func.sum(Reading.seconds),
                func.count().filter(Reading.spans > 0),
                func.count().filter(Reading.reason != ""),
                func.sum(Reading.spans),
            ).where(Reading.index_id == self.index_id, Reading.source == source)
            files, seconds, with_words, failed, spans = s.execute(q).one()
        return {
            "files": int(files or 0),
            "with_words": int(with_words or 0),
            "seconds": float(seconds or 0.0),
            "failed": int(failed or 0),
            "spans": int(spans or 0),
        }

    # --- fingerprints (perceptual hashes, acoustic fingerprints) ---------------------------
    def unfingerprinted(self, methods: dict[str, str]) -> list[int]:
        """Ids of this index's indexed files of the modalities in ``methods`` (``{modality:
        method}``) without a fingerprint by their modality's method of their present content:
        never made, made by another method, or made before the file changed."""
        out: list[int] = []
        with self.session() as s:
            for modality, method in sorted(methods.items()):
                done = select(Fingerprint.item_id).where(
                    Fingerprint.index_id == self.index_id,
                    Fingerprint.item_id == Item.id,
                    Fingerprint.method == method,
                    Fingerprint.content_hash == Item.content_hash,
                )
                q = self._mine(select(Item.id)).where(
                    Item.kind == FILE, Item.status == INDEXED, Item.modality == modality, ~done.exists()
                )
                out.extend(int(i) for i in s.scalars(q))
        return sorted(out)

    def fingerprints(self, method: str, head: int | None = None) -> dict[int, bytes]:
        """``{item id: fingerprint}`` by ``method`` of this index's indexed files whose content has
        not changed since (failed ones left out); ``head``: only its first bytes, read as such."""
        value = Fingerprint.value if head is None else func.substr(Fingerprint.value, 1, head)
        with self.session() as s:
            q = (
                select(Fingerprint.item_id, value)
                .join(Item, Item.id == Fingerprint.item_id)
                .where(
                    Fingerprint.index_id == self.index_id,
                    Item.index_id == self.index_id,
                    Item.status == INDEXED,
                    Fingerprint.method == method,
                    Fingerprint.content_hash == Item.content_hash,
                    Fingerprint.reason == "",
                )
            )
            return {int(i): bytes(v) for i, v in s.execute(q)}

    def save_manifest_copy(self, manifest: Manifest) -> None:
        """Keep a copy of the manifest, so a damaged manifest file can be restored."""
        with self.writing("save the manifest copy") as s:
            s.merge(Meta(key=f"manifest:{self.index_id}", value=json.dumps(manifest.to_json())))

    def record_failures(self, failures: Sequence[tuple[str, int, int, str]]) -> None:
        """Remember files (path, size, mtime_ns, reason) whose decoder crashed or hung."""
        if not failures:
            return
        with self.writing("record decoder failures") as s:
            for path, size, mtime_ns, reason in failures:
                s.merge(
                    Failure(
                        index_id=self.index_id, path=path, size=size, mtime_ns=mtime_ns, reason=reason, failed_at=_now()
                    )
                )

    def forget_failures(self, paths: Sequence[str] | None = None) -> None:
        """Forget the recorded failures of ``paths`` (all of this index's when None)."""
        with self.writing("forget decoder failures") as s:
            q = delete(Failure).where(Failure.index_id == self.index_id)
            if paths is None:
                s.execute(q)
                return
            paths = list(paths)
            for start in range(0, len(paths), CHUNK):
                s.execute(q.where(Failure.path.in_(paths[start : start + CHUNK])))

    def delete_all(self) -> None:
        """Every item row of this index (other indexes in the database keep theirs; the files
        whose decoder crashed or hung stay remembered)."""
        with self.writing("delete every item") as s:
            s.execute(delete(Span).where(Span.index_id == self.index_id))
            s.execute(delete(Reading).where(Reading.index_id == self.index_id))
            s.execute(delete(Fingerprint).where(Fingerprint.index_id == self.index_id))
            s.execute(delete(Segment).where(Segment.index_id == self.index_id))
            s.execute(delete(Item).where(Item.index_id == self.index_id))
