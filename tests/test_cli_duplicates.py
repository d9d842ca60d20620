"""``xmr duplicates`` (cli.py over Engine.duplicates): the JSON shape of issue 36, --paths and -0
never list a group's kept file, hostile thresholds exit 2 with what to change; once as a real
subprocess."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

import indexer
from indexer.storage.layout import Layout
from indexer.storage.manifest import read_manifest
from retrieval.bench.duplicates import image_copy
from retrieval.models.fingerprint import Fingerprinter
from tests.helpers import write_photo

ROOT = Path(__file__).resolve().parent.parent


def _cli(*args: str):
    from cli import app

    return CliRunner().invoke(app, list(args))


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory, tiny) -> Path:
    """Two photos with copies (one copy bigger than its original, one a byte copy), one without."""
    root = tmp_path_factory.mktemp("dups") / "media"
    lake = Image.open(write_photo(root / "lake.png", seed=11, scene=0)).convert("RGB")
    (root / "small").mkdir()
    image_copy(lake, "half").save(root / "small" / "lake-half.jpg")
    image_copy(lake, "border").save(root / "lake-screenshot.png")  # more pixels: kept
    write_photo(root / "hill.png", seed=12, scene=1)
    shutil.copy(root / "hill.png", root / "hill copy.png")
    write_photo(root / "town.png", seed=13, scene=2)
    indexer.index_folder(root, tiny, indexer.IndexOptions(workers=0, fingerprinter=Fingerprinter()))
    return root


def test_json_lists_each_group_with_its_items_the_one_to_keep_and_why(folder: Path) -> None:
    result = _cli("duplicates", "--index", str(folder / ".xmr"), "--json")
    assert result.exit_code == 0, result.output
    groups = json.loads(result.output)["groups"]
    assert [sorted(Path(i["path"]).name for i in g["items"]) for g in groups] == [
        ["hill copy.png", "hill.png"],
        ["lake-half.jpg", "lake-screenshot.png", "lake.png"],
    ]
    for g in groups:
        assert set(g) == {"items", "keep", "why"}
        assert all(set(i) == {"id", "path", "size", "width", "height", "duration"} for i in g["items"])
    assert groups[0]["why"] == "same bytes"
    kept = {Path(i["path"]).name for g in groups for i in g["items"] if i["id"] == g["keep"]}
    assert "lake-screenshot.png" in kept  # the most pixels, as the README says


@pytest.mark.parametrize("flag", ["--paths", "-0"])
def test_paths_lists_every_copy_but_never_a_kept_file(folder: Path, flag: str) -> None:
    listed = _cli("duplicates", "--index", str(folder / ".xmr"), flag).stdout_bytes
    paths = [p for p in listed.split(b"\0" if flag == "-0" else b"\n") if p]
    groups = json.loads(_cli("duplicates", "--index", str(folder / ".xmr"), "--json").output)["groups"]
    kept = {i["path"] for g in groups for i in g["items"] if i["id"] == g["keep"]}
    others = {i["path"] for g in groups for i in g["items"] if i["id"] != g["keep"]}
    assert {os.fsdecode(p) for p in paths} == others and not kept & {os.fsdecode(p) for p in paths}
    assert all(Path(os.fsdecode(p)).exists() for p in paths)  # listed, never deleted


@pytest.mark.parametrize("threshold", ["-1", "0", "nan", "1e9", "inf"])
def test_a_hostile_threshold_exits_2_saying_what_to_change(folder: Path, threshold: str) -> None:
    result = _cli("duplicates", "--index", str(folder / ".xmr"), "--threshold", threshold)
    assert result.exit_code == 2
    assert "threshold must be" in result.output and "--threshold" in result.output


def test_the_table_marks_the_kept_file_and_a_real_subprocess_exits_0(folder: Path) -> None:
    result = _cli("duplicates", "--index", str(folder / ".xmr"), "--modality", "image")
    assert result.exit_code == 0 and "keep" in result.output and "lake-screenshot.png" in result.output
    assert _cli("duplicates", "--index", str(folder / ".xmr"), "--modality", "pictures").exit_code == 2
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "cli", "duplicates", "--index", str(folder / ".xmr"), "--paths"],
        capture_output=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0 and done.stdout.count(b"\n") == 3  # hill copy, lake, lake-half


def test_xmr_index_lists_the_new_pictures_that_are_copies_of_indexed_ones(tmp_path: Path) -> None:
    """Issue 36's "a new file is compared against the index when it arrives": the run that adds
    a turned copy and a framed one names them with their original; a new distinct photo, and
    the next run, which adds nothing, name none."""
    root = tmp_path / "media"
    lake = Image.open(write_photo(root / "lake.png", seed=11, scene=0)).convert("RGB")
    write_photo(root / "town.png", seed=13, scene=2)
    run = ("index", str(root), "--model", "xmr-tiny", "--workers", "0")
    assert json.loads(_cli(*run, "--json").output)["copies"] == []
    image_copy(lake, "turn90").save(root / "lake-turned.jpg", quality=90)
    image_copy(lake, "border").save(root / "lake-screenshot.png")
    write_photo(root / "forest.png", seed=14, scene=0)  # the lake's scene, another photo
    result = _cli(*run, "--json")
    copies = json.loads(result.output)["copies"]
    assert sorted((c["path"], c["copy_of"]) for c in copies) == [
        ("lake-screenshot.png", "lake.png"),
        ("lake-turned.jpg", "lake.png"),
    ]
    assert all(0 <= c["bits"] <= 6 for c in copies)
    again = _cli(*run)
    assert again.exit_code == 0 and "copies:" not in again.output
    assert read_manifest(Layout(root / ".xmr")).last_run["copies"] == 0  # the manifest keeps the count, not the list
    (root / "lake-again.png").write_bytes((root / "lake.png").read_bytes())
    said = _cli(*run).output
    assert "copies: 1 new pictures are copies of indexed ones: lake-again.png (of lake.png)" in said
