"""The SQL side of an index: items and their metadata, through SQLAlchemy 2.0.

SQLite (WAL mode) by default; any SQLAlchemy URL (PostgreSQL) by choice.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from typing import Any
from contextlib import contextmanager
from datetime import datetime, timezone

from sqlalchemy import Engine, create_engine, delete, event, func, inspect, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from .schema import INDEXED, PENDING, SCHEMA_VERSION, Base, Item, Meta

log = logging.getLogger(__name__)


class StoreError(RuntimeError):
    """Raised when the database cannot be opened, read or written."""


def sqlite_url(path: str) -> str:
    return f"sqlite:///{path}"


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
    return create_engine(url, pool_pre_ping=True)


class Store:
    """Items of one index in one SQL database."""

    def __init__(self, url: str, create: bool = True) -> None:
        """Open (``create``: and create when missing) the database at ``url``.

        Raises:
            StoreError: cannot connect, a newer schema, or (not ``create``) no xmr tables there.
        """
        self.url = url
        if not create and url.startswith("sqlite:///") and not os.path.exists(url[len("sqlite:///"):]):
            raise StoreError(f"the index database {url[len('sqlite:///'):]} is missing; `xmr doctor --fix` rebuilds it from the files")
        try:
            self.engine = _make_engine(url)
            if create:
                Base.metadata.create_all(self.engine)
            elif not inspect(self.engine).has_table(Item.__tablename__):
                raise StoreError(f"database {self.safe_url} holds no xmr items table; `xmr doctor --fix` rebuilds it from the files")
            with Session(self.engine) as s:
                version = s.get(Meta, "schema_version")
                if version is None:
                    s.add(Meta(key="schema_version", value=str(SCHEMA_VERSION)))
                    s.commit()
                elif int(version.value) > SCHEMA_VERSION:
                    raise StoreError(f"database {self.safe_url} has schema version {version.value}, newer than this xmr ({SCHEMA_VERSION}): upgrade xmr")
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot open database {self.safe_url}: {exc.__class__.__name__}: {str(exc).splitlines()[0]}") from exc

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
            raise StoreError(f"cannot {what} in {self.safe_url} ({str(exc.orig if getattr(exc, 'orig', None) else exc).splitlines()[0]}); "
                             "is the disk full? Everything saved before is intact") from exc

    def close(self) -> None:
        self.engine.dispose()

    # --- reads ---------------------------------------------------------------------------
    def items(self, kind: str | None = None) -> list[Item]:
        with self.session() as s:
            q = select(Item)
            if kind:
                q = q.where(Item.kind == kind)
            return list(s.scalars(q))

    def by_ids(self, ids: Iterable[int]) -> dict[int, Item]:
        ids = [int(i) for i in ids]
        out: dict[int, Item] = {}
        with self.session() as s:
            for start in range(0, len(ids), 900):  # stay under SQLite's bound-parameter limit
                for item in s.scalars(select(Item).where(Item.id.in_(ids[start : start + 900]))):
                    out[item.id] = item
        return out

    def rows_by_ids(self, ids: Sequence[int]) -> dict[int, Any]:
        """Like :meth:`by_ids`, as plain rows (attribute access, no ORM objects): several times
        faster for the hits of a query batch."""
        table = Item.__table__
        out: dict[int, Any] = {}
        with self.engine.connect() as conn:
            for start in range(0, len(ids), 900):
                for row in conn.execute(select(table).where(table.c.id.in_(ids[start : start + 900]))):
                    out[row.id] = row
        return out

    def counts(self, status: str | None = INDEXED) -> dict[str, int]:
        with self.session() as s:
            q = select(Item.modality, func.count()).group_by(Item.modality)
            if status:
                q = q.where(Item.status == status)
            return {m: int(n) for m, n in s.execute(q)}

    def ids(self, modality: str | None = None, status: str | None = None) -> set[int]:
        with self.session() as s:
            q = select(Item.id)
            if modality:
                q = q.where(Item.modality == modality)
            if status:
                q = q.where(Item.status == status)
            return set(s.scalars(q))

    def manifest_copy(self) -> dict | None:
        """The copy of the index manifest kept in the database (see :meth:`save_manifest_copy`)."""
        import json

        with self.session() as s:
            row = s.get(Meta, "manifest")
            return json.loads(row.value) if row else None

    # --- writes --------------------------------------------------------------------------
    def add(self, items: Sequence[Item]) -> list[Item]:
        """Insert items (ids assigned by the database) and commit."""
        with self.writing("add items") as s:
            s.add_all(items)
        return list(items)

    def mark_indexed(self, ids: Sequence[int], model: str) -> None:
        now = datetime.now(timezone.utc).replace(tzinfo=None)
        with self.writing("mark items indexed") as s:
            for start in range(0, len(ids), 900):
                s.execute(update(Item).where(Item.id.in_(ids[start : start + 900])).values(status=INDEXED, indexed_at=now, model=model))

    def mark_pending(self, ids: Sequence[int]) -> None:
        with self.writing("mark items pending") as s:
            for start in range(0, len(ids), 900):
                s.execute(update(Item).where(Item.id.in_(ids[start : start + 900])).values(status=PENDING))

    def update(self, item_id: int, **values) -> None:
        with self.writing("update an item") as s:
            s.execute(update(Item).where(Item.id == item_id).values(**values))

    def update_many(self, changes: Sequence[tuple[int, dict]]) -> None:
        with self.writing("update items") as s:
            for item_id, values in changes:
                s.execute(update(Item).where(Item.id == item_id).values(**values))

    def delete(self, ids: Sequence[int]) -> None:
        with self.writing("delete items") as s:
            for start in range(0, len(ids), 900):
                s.execute(delete(Item).where(Item.id.in_(ids[start : start + 900])))

    def save_manifest_copy(self, manifest: dict) -> None:
        """Keep a copy of the manifest, so a damaged manifest file can be restored."""
        import json

        with self.writing("save the manifest copy") as s:
            s.merge(Meta(key="manifest", value=json.dumps(manifest)))

    def delete_all(self) -> None:
        with self.writing("delete every item") as s:
            s.execute(delete(Item))
