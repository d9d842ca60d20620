"""An index made by xmr before schema 2 (``tests/data/v1``, made by ``tests/data/v1/make.py`` at
commit 3e1cad1) upgrades in place, on SQLite and PostgreSQL, with nothing lost."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest

import indexer
from indexer.storage.check import check_index
from indexer.storage.constants import SCHEMA_VERSION
from indexer.storage.layout import Layout
from indexer.storage.manifest import read_manifest
from indexer.storage.migrate import MigrationError
from indexer.storage.store import Store
from retrieval import Engine
from tests.test_ingest_indexer import stored

FIXTURE = Path(__file__).parent / "data" / "v1"
OLD_ROOT = "/tmp/v1fixture/media"
COUNTS = {"image": 6, "audio": 2, "text": 4}


class Fixed:
    """xmr-tiny under the fixture's weights hash (as tests/data/v1/make.py indexed it)."""

    def __init__(self, model) -> None:  # noqa: ANN001
        self._model = model
        self.weights_hash = "v1-fixture"

    def __getattr__(self, name: str):  # noqa: ANN204
        return getattr(self._model, name)


def _v1_index(tmp_path: Path, db_url: str) -> tuple[Path, Path]:
    """The fixture copied under ``tmp_path``, its folder paths moved there; returns (media, index)."""
    media = tmp_path / "media"
    shutil.copytree(FIXTURE / "media", media)
    shutil.copy(FIXTURE / "media-labels.txt", tmp_path)  # the texts file, beside the folder as it was
    backend = "sqlite" if db_url.startswith("sqlite") else "postgres"
    index = tmp_path / "index"
    shutil.copytree(FIXTURE / backend, index)
    manifest = json.loads((index / "manifest.json").read_text())
    manifest["root"] = str(media)
    if backend == "postgres":
        manifest["db"] = db_url
        import psycopg

        dump = (FIXTURE / "postgres.sql").read_text().replace(OLD_ROOT, str(media))
        dump = "\n".join(
            line for line in dump.splitlines() if not line.startswith("\\")
        )  # psql's own commands (\restrict)
        with psycopg.connect(dbname=db_url.rsplit("/", 1)[1], autocommit=True) as conn:
            conn.execute(dump)
    else:
        with sqlite3.connect(index / "items.db") as conn:
            (copy,) = conn.execute("SELECT value FROM meta WHERE key = 'manifest'").fetchone()
            conn.execute("UPDATE meta SET value = ? WHERE key = 'manifest'", (copy.replace(OLD_ROOT, str(media)),))
            conn.execute("UPDATE items SET path = replace(path, ?, ?) WHERE kind = 'text-line'", (OLD_ROOT, str(media)))
    (index / "manifest.json").write_text(json.dumps(manifest))
    return media, index


def _schema_version(url: str) -> int:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.connect() as conn:
        version = int(conn.execute(text("SELECT value FROM meta WHERE key = 'schema_version'")).scalar_one())
    engine.dispose()
    return version


def test_a_v1_index_upgrades_in_place_with_nothing_lost(tmp_path: Path, tiny, db_url: str) -> None:
    media, index = _v1_index(tmp_path, db_url)
    url = Layout(index).db_url(read_manifest(Layout(index)).db)
    assert _schema_version(url) == 1
    before = stored(media, index, url)  # read through today's code: the rows of the only index
    assert len(before) == 10
    with Engine.open(index) as engine:  # a reader upgrades it
        assert engine.info()["counts"] == COUNTS
        path, (item_id, vector) = next(iter(sorted(before.items())))
        hit = engine.search(vector=vector, to=engine.store.rows_by_ids([item_id])[item_id].modality, k=1)[0]
        assert (hit.id, hit.path) == (item_id, str(media / path))
    assert _schema_version(url) == SCHEMA_VERSION == 5
    labels = str(tmp_path / "media-labels.txt")
    summary = indexer.index_folder(
        media, Fixed(tiny), indexer.IndexOptions(workers=0, index_dir=str(index), texts=[labels])
    )
    assert (summary.added, summary.updated, summary.removed, summary.unchanged) == (0, 0, 0, 12)
    assert summary.counts == COUNTS
    manifest = read_manifest(Layout(index))
    assert manifest.index_id == 0 and manifest.index_uuid  # it claimed the rows it made
    after = stored(media, index, url)
    assert {p: i for p, (i, _) in after.items()} == {p: i for p, (i, _) in before.items()}
    for p, (_, v) in before.items():
        np.testing.assert_array_equal(after[p][1], v)
    assert check_index(index).ok
    # The upgraded database now serves a second index without touching the first.
    other = tmp_path / "other"
    shutil.copytree(media / "photos", other)
    second = indexer.index_folder(other, Fixed(tiny), indexer.IndexOptions(workers=0, db_url=url))
    assert second.counts == {"image": 3} and second.removed == 0
    assert check_index(index).counts == COUNTS


def test_an_upgrade_that_cannot_write_refuses_and_changes_nothing(tmp_path: Path) -> None:
    _, index = _v1_index(tmp_path, "sqlite")
    readonly = f"sqlite:///file:{index / 'items.db'}?mode=ro&uri=true"
    with pytest.raises(MigrationError, match="needs write access"):
        Store(readonly, create=False)
    assert _schema_version(f"sqlite:///{index / 'items.db'}") == 1
    with sqlite3.connect(index / "items.db") as conn:
        assert conn.execute("SELECT count(*) FROM items").fetchone() == (12,)


def test_a_checkpoint_writes_rows_whole_and_refuses_a_column_items_do_not_have(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'items.db'}")
    store.register_index("u", "/root", "/root/.xmr")
    row = {"id": store.max_id() + 1, "kind": "file", "path": "a.png", "modality": "image", "status": "indexed"}
    with pytest.raises(ValueError, match="no column colour"):
        store.save_items([row | {"colour": "red"}])
    assert store.counts() == {}  # nothing half-written
    store.save_items([row], new_segments=[(row["id"] + (1 << 39), row["id"], "image", 0.0, 1.0)])
    saved = store.rows_by_ids([row["id"]])[row["id"]]
    assert (saved.ext, saved.size, saved.width, saved.index_id) == ("", 0, None, store.index_id)
    assert store.segment_ids([row["id"]]) == {row["id"] + (1 << 39): row["id"]}
    store.close()


def test_a_version_3_database_gains_the_words_tables_and_their_full_text_index(tmp_path: Path, db_url: str) -> None:
    """Today's schema before words found in media (3), made by dropping what 4 adds from a new
    database: opened, it is upgraded in place and full-text search works on both backends."""
    from sqlalchemy import text

    from indexer.storage.fulltext import parse_terms

    store = Store(db_url)
    store.register_index("u", "/root", "/root/.xmr")
    with store.engine.begin() as conn:
        for table in ("spans_fts", "spans", "readings"):
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")
        conn.execute(text("UPDATE meta SET value = '3' WHERE key = 'schema_version'"))
    store.close()
    store = Store(db_url, create=False)
    assert store._version() == SCHEMA_VERSION == 5
    item = store.max_id() + 1
    store.save_items(
        [{"id": item, "kind": "file", "path": "a.wav", "modality": "audio", "status": "indexed"}],
        new_segments=[(item + (1 << 39), item, "text", 1.0, 2.0)],
        spans=[{"id": item + (1 << 39), "item_id": item, "source": "speech", "start": 1.0, "end": 2.0, "text": "Hi"}],
        readings=[{"item_id": item, "source": "speech", "model": "m", "spans": 1}],
    )
    assert [s for s, _, _ in store.search_spans(parse_terms("hi"), 5)] == [item + (1 << 39)]
    assert not any(store.span_problems().values())
    store.delete([item])
    assert store.search_spans(parse_terms("hi"), 5) == [] and store.readings("speech")["files"] == 0
    store.close()


def test_a_version_4_database_gains_the_fingerprints_table(tmp_path: Path, db_url: str) -> None:
    """Today's schema before fingerprints (4), made by dropping what 5 adds: opened, it is
    upgraded in place; fingerprints are saved, read back while the file is unchanged, and go
    with their file."""
    from sqlalchemy import text

    store = Store(db_url)
    store.register_index("u", "/root", "/root/.xmr")
    with store.engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE fingerprints")
        conn.execute(text("UPDATE meta SET value = '4' WHERE key = 'schema_version'"))
    store.close()
    store = Store(db_url, create=False)
    assert store._version() == SCHEMA_VERSION == 5
    item = store.max_id() + 1
    row = {"id": item, "kind": "file", "path": "a.png", "modality": "image", "status": "indexed", "content_hash": "h1"}
    store.save_items([row])
    assert store.unfingerprinted({"image": "m"}) == [item]
    store.save_items([], fingerprints=[{"item_id": item, "method": "m", "content_hash": "h1", "value": b"\x01" * 8}])
    assert store.fingerprints("m") == {item: b"\x01" * 8} and store.unfingerprinted({"image": "m"}) == []
    assert store.unfingerprinted({"image": "another method"}) == [item]
    store.save_items([], changed=[(item, {"content_hash": "h2"})])  # the file changed: its fingerprint is stale
    assert store.fingerprints("m") == {} and store.unfingerprinted({"image": "m"}) == [item]
    store.delete([item])
    with store.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM fingerprints")).scalar_one() == 0
    store.close()
