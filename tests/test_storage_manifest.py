"""The typed manifest (indexer/storage/manifest.py): its JSON is the on-disk format, read
through its migrations, written back field for field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import indexer
from indexer.storage.autotype import Choice
from indexer.storage.layout import IndexCorruptError, IndexMismatchError, Layout
from indexer.storage.manifest import MANIFEST_VERSION, Manifest, Reindexing, read_manifest, write_manifest
from tests.helpers import make_media

FIXTURE = Path(__file__).parent / "data" / "v1" / "sqlite" / "manifest.json"


def test_a_version_1_manifest_reads_through_its_migrations_and_keeps_every_field() -> None:
    data = json.loads(FIXTURE.read_text())
    manifest = Manifest.from_json(data)
    assert (manifest.model, manifest.dim, manifest.index_type, manifest.shard_size) == ("xmr-tiny", 32, "Flat", 250000)
    assert manifest.index_uuid is None and manifest.options is None and manifest.recorded == {}
    assert manifest.root_path == Path("/tmp/v1fixture/media")
    assert manifest.choice("image") == Choice("Flat", reason="given (--index-type)", prefix="image")
    # Written back, it says what it said (version 2: nothing an older xmr would misread).
    assert manifest.to_json() == data | {"version": 2}


def test_types_and_a_type_change_under_way_round_trip(tmp_path: Path) -> None:
    chosen = Choice("IVF256,Flat", nprobe=16, trained_for=10_000, budget=1 << 30, reason="r", prefix="text.e2")
    manifest = Manifest(
        root="/x",
        model="m",
        dim=8,
        index_type="auto",
        types={"text": chosen},
        reindexing=Reindexing("auto", ["image"]),
        max_memory=1 << 30,
        extra={"from_a_later_xmr": [1, 2]},
    )
    layout = Layout(tmp_path)
    write_manifest(layout, manifest)
    data = json.loads(layout.manifest.read_text())
    assert data["version"] == MANIFEST_VERSION and data["types"]["text"]["prefix"] == "text.e2"
    assert data["reindexing"] == {"type": "auto", "left": ["image"]} and data["from_a_later_xmr"] == [1, 2]
    assert "reframing" not in data and "db" not in data  # fields off or empty are not written
    back = read_manifest(layout)
    assert back == manifest and back.choice("text") == chosen
    assert back.choice("audio").factory == "Flat" and back.auto
    assert json.loads(layout.manifest_backup.read_text()) == data


def test_a_damaged_or_newer_manifest_is_refused_with_the_reason(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    layout.manifest.write_text(json.dumps({"model": "m", "dim": "not a number"}))
    with pytest.raises(IndexCorruptError, match="damaged"):
        read_manifest(layout)
    layout.manifest.write_text(json.dumps({"model": "m"}))
    with pytest.raises(IndexCorruptError, match="required fields missing"):
        read_manifest(layout)
    for bad in ({"version": 0}, {"version": "x"}, {"types": ["image"]}, {"reindexing": {"type": "auto"}}):
        layout.manifest.write_text(json.dumps({"model": "m", "dim": 8} | bad))
        with pytest.raises(IndexCorruptError, match="damaged"):
            read_manifest(layout)
    newer = json.dumps({"version": MANIFEST_VERSION + 1, "model": "m", "dim": 8, "root": ""})
    layout.manifest.write_text(newer)
    with pytest.raises(IndexMismatchError, match="newer xmr .*upgrade xmr"):
        read_manifest(layout)
    layout.manifest.unlink()
    layout.manifest_backup.write_text(newer)  # a newer backup is refused too, not read as this version
    with pytest.raises(IndexMismatchError, match="backup.*newer xmr"):
        read_manifest(layout)


def test_scripts_that_read_the_manifest_as_a_dict_still_can(tmp_path: Path) -> None:
    manifest = Manifest(root="/x", model="m", dim=8, db="sqlite:////tmp/x.db")
    assert manifest["model"] == "m" and manifest.get("db") == "sqlite:////tmp/x.db" and manifest.get("types") is None
    layout = Layout(tmp_path)
    assert layout.db_url(manifest) == layout.db_url(manifest.to_json()) == layout.db_url(manifest.db)
    assert layout.db_url(Manifest(model="m", dim=8)) == f"sqlite:///{layout.database}"


def test_an_indexing_run_writes_the_fields_it_always_wrote(tmp_path: Path, tiny) -> None:
    root = make_media(tmp_path / "media", images=2, audio=1, texts=1)
    indexer.index_folder(root, tiny, indexer.IndexOptions(workers=0))
    data = json.loads((root / ".xmr" / "manifest.json").read_text())
    assert set(data) == {
        "version",
        "root",
        "model",
        "weights_hash",
        "dim",
        "metric",
        "index_type",
        "shard_size",
        "modalities",
        "index_uuid",
        "index_id",
        "created",
        "options",
        "last_run",
    }
    assert Manifest.from_json(data).to_json() == data
