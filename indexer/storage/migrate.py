"""Schema upgrades of an index database, in place and in one transaction each.

From version 2 on, a version that only adds tables is one line of :data:`TABLES_ADDED` (its
tables and their indexes created, the version raised): 2 -> 3, the ``segments`` table (moments
of long files); 3 -> 4, ``spans`` and ``readings`` (words found in media) with the full-text
index over them (:mod:`indexer.storage.fulltext`); 4 -> 5, ``fingerprints`` (perceptual hashes
and acoustic fingerprints, for finding copies). A new kind of row takes the next version.

1 -> 2: one database may serve several indexes. Items get ``index_id`` (the rows already
there belong to index 0, whose root is taken from the manifest copy the database holds), the
unique key becomes (index_id, path, line), and the ``indexes`` and ``failures`` tables appear.
The index that made a version-1 database claims index 0 the first time it opens it (its
manifest has no uuid yet; the root matches).

A database another process is upgrading at the same moment is upgraded once: the upgrade
takes a write lock (SQLite ``BEGIN IMMEDIATE``, a PostgreSQL advisory lock) and reads the
version again under it.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.schema import CreateIndex, CreateTable

from .errors import StoreError
from .fulltext import create_fulltext
from .schema import SCHEMA_VERSION, Failure, Fingerprint, IndexRow, Item, Reading, Segment, Span

log = logging.getLogger(__name__)
V1_COLUMNS = (
    "id",
    "kind",
    "path",
    "line",
    "ext",
    "modality",
    "size",
    "mtime_ns",
    "content_hash",
    "width",
    "height",
    "duration",
    "sample_rate",
    "text",
    "model",
    "indexed_at",
    "status",
)
LOCK_KEY = 7_100_325  # pg_advisory_xact_lock key of xmr's schema upgrades
# The tables each schema version from 3 on adds (nothing else changes in those versions).
TABLES_ADDED: dict[int, tuple[type, ...]] = {3: (Segment,), 4: (Span, Reading), 5: (Fingerprint,)}


class MigrationError(StoreError):
    """An older database that cannot be upgraded here (read-only, or damaged)."""


def upgrade(engine: Engine, version: int) -> None:
    """Bring a database of schema ``version`` up to :data:`SCHEMA_VERSION`.

    Raises:
        MigrationError: the upgrade failed (nothing was changed: it runs in one transaction).
    """
    if not 1 <= version < SCHEMA_VERSION:
        raise MigrationError(f"cannot upgrade schema version {version} (this xmr knows 1 -> {SCHEMA_VERSION})")
    log.warning("upgrading the index database from schema %d to %d", version, SCHEMA_VERSION)
    try:
        if version == 1:
            if engine.dialect.name == "sqlite":
                _sqlite_1_to_2(engine)
            else:
                _generic_1_to_2(engine)
        for to in range(max(version, 2) + 1, SCHEMA_VERSION + 1):
            _add_tables(engine, to)
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        words = ("readonly", "read-only", "permission", "denied")
        hint = (
            "the upgrade needs write access: run `xmr index` once as the database's owner"
            if any(w in reason.lower() for w in words)
            else "run `xmr index` again; if it fails the same way, the database may be damaged"
        )
        raise MigrationError(
            f"cannot upgrade the index database from schema {version} to {SCHEMA_VERSION} ({reason}); "
            f"it is unchanged: {hint}"
        ) from exc


def _current_version(conn: Connection) -> int:
    return int(conn.execute(text("SELECT value FROM meta WHERE key = 'schema_version'")).scalar_one())


def _sqlite_1_to_2(engine: Engine) -> None:
    # SQLite cannot drop a table's UNIQUE constraint: the items table is copied into the new form.
    with engine.connect() as conn:
        conn.exec_driver_sql("BEGIN IMMEDIATE")  # pysqlite leaves DDL outside its own transactions
        try:
            if _current_version(conn) >= 2:
                conn.exec_driver_sql("ROLLBACK")
                return
            conn.exec_driver_sql("DROP INDEX IF EXISTS ix_items_modality_status")
            conn.exec_driver_sql("DROP INDEX IF EXISTS ix_items_hash")
            conn.exec_driver_sql("ALTER TABLE items RENAME TO items_v1")
            for table in (Item.__table__, IndexRow.__table__, Failure.__table__):
                conn.execute(CreateTable(table, if_not_exists=True))
                for index in table.indexes:
                    conn.execute(CreateIndex(index, if_not_exists=True))
            columns = ", ".join(V1_COLUMNS)
            conn.exec_driver_sql(f"INSERT INTO items ({columns}, index_id) SELECT {columns}, 0 FROM items_v1")
            conn.exec_driver_sql("DROP TABLE items_v1")
            _finish(conn)
            conn.exec_driver_sql("COMMIT")
        except BaseException:
            conn.exec_driver_sql("ROLLBACK")
            raise


def _generic_1_to_2(engine: Engine) -> None:
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
        if _current_version(conn) >= 2:
            return
        conn.execute(text("ALTER TABLE items ADD COLUMN index_id INTEGER NOT NULL DEFAULT 0"))
        conn.execute(text("ALTER TABLE items DROP CONSTRAINT uq_items_path_line"))
        conn.execute(text("ALTER TABLE items ADD CONSTRAINT uq_items_index_path_line UNIQUE (index_id, path, line)"))
        for table in (IndexRow.__table__, Failure.__table__):
            conn.execute(CreateTable(table, if_not_exists=True))
        _finish(conn)


def _add_tables(engine: Engine, to: int) -> None:
    """Add the tables of version ``to`` (:data:`TABLES_ADDED`) and raise the version to it,
    once even when two processes upgrade at the same moment."""
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.begin()
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
        try:
            if _current_version(conn) < to:
                for table in TABLES_ADDED[to]:
                    conn.execute(CreateTable(table.__table__, if_not_exists=True))
                    for index in table.__table__.indexes:
                        conn.execute(CreateIndex(index, if_not_exists=True))
                if Span in TABLES_ADDED[to]:
                    create_fulltext(conn)
                conn.execute(text("UPDATE meta SET value = :v WHERE key = 'schema_version'"), {"v": str(to)})
            if engine.dialect.name == "sqlite":
                conn.exec_driver_sql("COMMIT")
            else:
                conn.commit()
        except BaseException:
            if engine.dialect.name == "sqlite":
                conn.exec_driver_sql("ROLLBACK")
            else:
                conn.rollback()
            raise


def _finish(conn: Connection) -> None:
    """Register the rows already there as index 0 and move its manifest copy to its key."""
    copy = conn.execute(text("SELECT value FROM meta WHERE key = 'manifest'")).scalar()
    root = json.loads(copy).get("root", "") if copy else ""
    conn.execute(
        text("INSERT INTO indexes (id, uuid, root, dir, created) VALUES (0, NULL, :root, '', :now)"),
        {"root": root, "now": datetime.now(timezone.utc).replace(tzinfo=None)},
    )
    conn.execute(text("UPDATE meta SET key = 'manifest:0' WHERE key = 'manifest'"))
    conn.execute(text("UPDATE meta SET value = '2' WHERE key = 'schema_version'"))
    log.info(
        "schema upgraded to %d: %d existing rows belong to index 0 (%s)",
        2,
        conn.execute(text("SELECT count(*) FROM items")).scalar_one(),
        root or "root unknown",
    )
