"""Write errors, concurrent readers and damaged index files: the previous state stays
readable, and every message says what happened."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

import indexer
from indexer.storage.check import check_index
from retrieval import Engine
from tests.helpers import make_media, write_image

ROOT = Path(__file__).parent.parent
LIMITED = """
import resource, signal, sys, indexer, retrieval
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead of killing us
limit = int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
enc = retrieval.create_model("xmr-tiny", device="cpu")
try:
    indexer.index_folder(sys.argv[1], enc, indexer.IndexOptions(workers=0))
except Exception as exc:
    print(type(exc).__name__ + ": " + str(exc))
    sys.exit(3)
"""


@pytest.mark.parametrize(
    "limit, message",
    [
        (100_000, "ShardError: cannot write shard"),  # room for SQLite's pages, not for the grown shard (1000 x 128 B)
        (20_000, "StoreError: cannot open database"),  # not even room for SQLite's shared-memory file
    ],
)
def test_write_errors_leave_the_last_state_readable(tmp_path: Path, tiny, limit: int, message: str) -> None:
    root = make_media(tmp_path / "media", images=6, audio=2, texts=2)
    before = indexer.index_folder(root, tiny, indexer.IndexOptions(workers=0)).counts
    shard = root / ".xmr/shards/image-00000.faiss"
    new = 1000
    for n in range(new):
        write_image(root / "new" / f"{n}.png", seed=500 + n, size=16)
    proc = subprocess.run(
        [sys.executable, "-c", LIMITED, str(root), str(limit)], capture_output=True, text=True, cwd=ROOT, timeout=300
    )
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout.startswith(message), proc.stdout
    assert "File too large" in proc.stdout or "disk I/O error" in proc.stdout
    assert not list(shard.parent.glob("*.tmp"))  # no temporary file left behind
    report = check_index(root / ".xmr")
    assert report.ok, report.problems
    assert report.counts == before
    with Engine.open(root, model=tiny) as engine:
        assert len(engine.search(text="x", to="image", k=100)) == before["image"]
    assert indexer.index_folder(root, tiny, indexer.IndexOptions(workers=0)).counts["image"] == before["image"] + new


def test_searches_while_indexing_never_fail(tmp_path: Path, tiny) -> None:
    root = make_media(tmp_path / "media", images=120, audio=10, texts=10)
    child = (
        "import sys, indexer, retrieval\n"
        "enc = retrieval.create_model('xmr-tiny', device='cpu')\n"
        "indexer.index_folder(sys.argv[1], enc, indexer.IndexOptions(workers=1, batch_size=8, checkpoint_items=8))\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", child, str(root)], cwd=ROOT)
    seen, errors = [], []
    deadline = time.monotonic() + 240
    while proc.poll() is None and time.monotonic() < deadline:
        if not (root / ".xmr/manifest.json").exists():
            time.sleep(0.05)
            continue
        try:
            with Engine.open(root, model=tiny) as engine:
                hits = engine.search(text="stripes", to="image", k=500)
                seen.append(len(hits))
                assert all(Path(h.path).is_file() for h in hits)
                assert len({h.id for h in hits}) == len(hits)
        except Exception as exc:  # noqa: BLE001 - collected, then asserted empty
            errors.append(repr(exc))
    assert proc.wait(timeout=60) == 0
    assert errors == []
    assert len(seen) >= 3 and seen == sorted(seen) and seen[-1] <= 120  # only ever growing, complete states


def _cli(*args: str):
    from cli import app

    return CliRunner().invoke(app, list(args))


def test_truncated_shard_is_named_and_fixed(tmp_path: Path, tiny) -> None:
    root = make_media(tmp_path / "media", images=5, audio=2, texts=2)
    indexer.index_folder(root, tiny, indexer.IndexOptions(workers=0))
    shard = root / ".xmr/shards/image-00000.faiss"
    shard.write_bytes(shard.read_bytes()[:100])
    with pytest.raises(Exception, match="image-00000.faiss is unreadable"):
        Engine.open(root, model=tiny)
    sick = _cli("doctor", "--index", str(root), "--json")
    assert sick.exit_code == 1
    problems = json.loads(sick.stdout)["problems"]
    assert problems[0]["kind"] == "shard" and "image-00000.faiss" in problems[0]["message"]
    fixed = _cli("doctor", "--index", str(root), "--fix")
    assert fixed.exit_code == 0, fixed.output
    assert check_index(root / ".xmr").counts == {"image": 5, "audio": 2, "text": 2}


def test_edited_manifest_and_missing_database(tmp_path: Path, tiny) -> None:
    root = make_media(tmp_path / "media", images=3, audio=1, texts=1)
    indexer.index_folder(root, tiny, indexer.IndexOptions(workers=0))
    manifest = root / ".xmr/manifest.json"
    manifest.write_text(manifest.read_text()[:40])
    with pytest.raises(indexer.IndexCorruptError, match="manifest .* is damaged"):
        Engine.open(root)
    assert "damaged" in _cli("doctor", "--index", str(root / ".xmr")).output
    assert (
        _cli("doctor", "--index", str(root / ".xmr"), "--fix").exit_code == 0
    )  # restored from the copy in the database
    assert json.loads(manifest.read_text())["model"] == "xmr-tiny"
    (root / ".xmr/items.db").unlink()
    for extra in ("-wal", "-shm"):
        Path(str(root / ".xmr/items.db") + extra).unlink(missing_ok=True)
    with pytest.raises(Exception, match="database .* is missing"):
        Engine.open(root)
    out = _cli("doctor", "--index", str(root / ".xmr"), "--json")
    assert out.exit_code == 1 and "missing" in out.stdout
    assert _cli("doctor", "--index", str(root / ".xmr"), "--fix").exit_code == 0  # re-embedded from the files
    assert check_index(root / ".xmr").counts == {"image": 3, "audio": 1, "text": 1}
