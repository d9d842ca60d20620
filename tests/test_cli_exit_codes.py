"""One exit code for one kind of outcome (issue 31, 7): 2 for a bad option or argument, whether
Typer or xmr finds it, 1 when the command could not do its job with good options (no index,
a refused run), 0 on success."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.helpers import make_media
from tests.test_ingest_indexer import run

ROOT = Path(__file__).resolve().parent.parent


def _cli(*args: str):
    from cli import app

    return CliRunner().invoke(app, list(args))


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory, tiny) -> Path:
    root = make_media(tmp_path_factory.mktemp("exit") / "media", images=2, audio=1, texts=1)
    run(root, tiny)
    return root


BAD_SEARCH_OPTIONS = [
    ["--min-size", "10Q"],
    ["--max-size", "lots"],
    ["--after", "yesterday-ish"],
    ["--before", "2024-13-45"],
    ["--to", "pictures"],
    ["--image", "no-such-file.jpg"],
    ["-k", "0"],
]


@pytest.mark.parametrize("bad", BAD_SEARCH_OPTIONS, ids=[" ".join(b) for b in BAD_SEARCH_OPTIONS])
def test_every_bad_search_option_exits_2(indexed: Path, bad: list[str]) -> None:
    result = _cli("search", "a dog", "--index", str(indexed), *bad)
    assert result.exit_code == 2, (result.exit_code, result.output)
    assert "Traceback" not in result.output


BAD_INDEX_OPTIONS = [
    ["--links", "sometimes"],
    ["--index-type", "NotAType42"],
    ["--reindex-type", "NotAType42"],
    ["--max-memory", "lots"],
    ["--frame-seconds", "0"],
    ["--model", "no-such-model"],
    ["--texts", "no-such-labels.txt"],
]


@pytest.mark.parametrize("bad", BAD_INDEX_OPTIONS, ids=[" ".join(b) for b in BAD_INDEX_OPTIONS])
def test_every_bad_index_option_exits_2(tmp_path: Path, bad: list[str]) -> None:
    root = make_media(tmp_path / "media", images=1, audio=0, texts=0)
    result = _cli("index", str(root), "--workers", "0", *bad)
    assert result.exit_code == 2, (result.exit_code, result.output)
    assert "Traceback" not in result.output


def test_a_command_that_cannot_do_its_job_exits_1(tmp_path: Path, indexed: Path) -> None:
    nowhere = _cli("search", "a dog", "--index", str(tmp_path / "no-index-here"))
    assert nowhere.exit_code == 1, nowhere.output
    other = make_media(tmp_path / "other", images=1, audio=0, texts=0)
    foreign = _cli("index", str(other), "--index", str(indexed / ".xmr"), "--workers", "0")
    assert foreign.exit_code == 1 and "belongs to" in foreign.output, foreign.output


def test_the_exit_codes_as_a_real_subprocess(indexed: Path) -> None:
    def xmr(*args: str) -> int:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        return subprocess.run(
            [sys.executable, "-m", "cli", *args], capture_output=True, env=env, timeout=120
        ).returncode

    assert xmr("search", "a dog", "--index", str(indexed), "--min-size", "10Q") == 2
    assert xmr("search", "a dog", "--index", str(indexed), "--after", "not-a-date") == 2
    assert xmr("search", "a dog", "--index", str(indexed), "-k", "1") == 0


def test_the_help_documents_the_exit_codes() -> None:
    result = _cli("--help")
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert "Exit codes: 0" in text and "2 a bad option" in text and "1 " in text, text
