"""The options an index records (--exclude, --texts, --links) stay in force for later runs
until the user changes them: a plain re-run keeps what the first run was told (issue 31, 1)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import indexer
from indexer.storage.layout import Layout
from indexer.storage.manifest import read_manifest
from indexer.storage.schema import TEXT_LINE
from indexer.storage.store import Store
from tests.helpers import make_media, write_text
from tests.test_ingest_indexer import assert_consistent, run


def _media(tmp_path: Path) -> Path:
    """The issue's folder: pictures, a raw/ folder to leave out, and a labels file inside it."""
    root = make_media(tmp_path / "D", images=2, audio=0, texts=1)
    write_text(root / "raw" / "b.txt", "a raw note\n")
    write_text(root / "labels.txt", "a dog\na cat\na bird\n")
    return root


def _index(*args: str) -> dict:
    from cli import app

    result = CliRunner().invoke(app, ["index", *args, "--workers", "0", "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])


def _labels(root: Path) -> list[str]:
    store = Store(f"sqlite:///{root / '.xmr/items.db'}")
    try:
        return sorted(r.text for r in store.items(TEXT_LINE))
    finally:
        store.close()


def _paths(root: Path) -> set[str]:
    store = Store(f"sqlite:///{root / '.xmr/items.db'}")
    try:
        return {r.path for r in store.file_rows()}
    finally:
        store.close()


def test_a_plain_rerun_keeps_the_recorded_exclude_and_texts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _media(tmp_path)
    monkeypatch.chdir(tmp_path)  # --texts given relative to here...
    first = _index("D", "--model", "xmr-tiny", "--exclude", "raw/*", "--texts", "D/labels.txt")
    assert first["recorded_options"] == {}  # nothing taken from a record: all was given
    assert _labels(root) == ["a bird", "a cat", "a dog"]
    assert "raw/b.txt" not in _paths(root)
    monkeypatch.chdir(root / "photos")  # ...and the re-run started from elsewhere
    again = _index(str(root))
    assert (again["added"], again["removed"], again["updated"]) == (0, 0, 0)
    assert again["recorded_options"] == {"exclude": ["raw/*"], "texts": [str(root / "labels.txt")]}
    assert _labels(root) == ["a bird", "a cat", "a dog"]
    assert "raw/b.txt" not in _paths(root)
    options = read_manifest(Layout(root / ".xmr")).options
    assert options["exclude"] == ["raw/*"] and options["texts"] == [str(root / "labels.txt")]
    assert_consistent(root / ".xmr")


def test_the_human_summary_names_the_recorded_options_it_used(tmp_path: Path) -> None:
    from cli import app

    root = _media(tmp_path)
    _index(str(root), "--model", "xmr-tiny", "--exclude", "raw/*", "--texts", str(root / "labels.txt"))
    result = CliRunner().invoke(app, ["index", str(root), "--workers", "0"])
    assert result.exit_code == 0, result.output
    said = result.output
    assert "recorded options used: --exclude 'raw/*', --texts " in said, said
    assert "--no-exclude" in said and "--no-texts" in said  # how to change them
    info = CliRunner().invoke(app, ["info", "--index", str(root)])
    options = next(line for line in info.output.splitlines() if line.startswith("options"))
    assert f"--exclude 'raw/*', --texts {root / 'labels.txt'}" in options, options


def test_new_values_replace_the_recorded_ones_and_no_flags_clear_them(tmp_path: Path) -> None:
    root = _media(tmp_path)
    _index(str(root), "--model", "xmr-tiny", "--exclude", "raw/*", "--texts", str(root / "labels.txt"))
    other = write_text(tmp_path / "other.txt", "a fish\n")
    replaced = _index(str(root), "--texts", str(other))
    assert replaced["recorded_options"] == {"exclude": ["raw/*"]}  # texts given anew, exclude as recorded
    assert _labels(root) == ["a fish"]
    assert _index(str(root))["recorded_options"]["texts"] == [str(other)]
    cleared = _index(str(root), "--no-texts", "--no-exclude")
    assert cleared["recorded_options"] == {}
    assert _labels(root) == [] and "raw/b.txt" in _paths(root)
    assert read_manifest(Layout(root / ".xmr")).options["exclude"] == []
    plain = _index(str(root))  # cleared stays cleared
    assert (plain["added"], plain["removed"]) == (0, 0) and "raw/b.txt" in _paths(root)


def test_no_flag_with_a_new_value_is_refused(tmp_path: Path) -> None:
    from cli import app

    root = _media(tmp_path)
    result = CliRunner().invoke(app, ["index", str(root), "--texts", str(root / "labels.txt"), "--no-texts"])
    assert result.exit_code == 2 and "--no-texts" in result.output
    assert not (root / ".xmr").exists()


def test_index_folder_reuses_what_the_index_recorded(tmp_path: Path, tiny) -> None:
    root = _media(tmp_path)
    run(root, tiny, exclude=["raw/*"], texts=[str(root / "labels.txt")], links="none")
    summary = run(root, tiny)  # IndexOptions() leaves them unset: as recorded
    assert summary.recorded_options == {"exclude": ["raw/*"], "texts": [str(root / "labels.txt")], "links": "none"}
    assert (summary.added, summary.removed) == (0, 0) and _labels(root) == ["a bird", "a cat", "a dog"]
    (root / "labels.txt").unlink()  # a recorded texts file gone: its items leave, the rest stays recorded
    summary = run(root, tiny)
    assert summary.removed == 4 and _labels(root) == []  # three labels, and labels.txt as a file
    assert summary.recorded_options == {"exclude": ["raw/*"], "links": "none"}
    summary = run(root, tiny, exclude=[], links="inside")  # explicit empty: cleared
    assert summary.added == 1 and "raw/b.txt" in _paths(root)
    assert summary.recorded_options == {}
    assert indexer.IndexOptions().exclude is None  # unset, not empty: the record decides
