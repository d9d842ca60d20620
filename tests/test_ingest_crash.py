"""The crash loop: SIGKILL an indexer at random moments, resume each time; at the end the index
equals one built in a single clean run (same paths, each once, same vectors, SQL and FAISS agreeing).

CI runs a short seeded loop; ``pytest --slow`` runs the full one (24 kills)."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import indexer
from indexer.storage.check import check_index
from tests.helpers import make_media
from tests.test_ingest_indexer import stored

pytestmark = pytest.mark.slow  # minutes of kills, rebuilds, clusters or training: left out by -m "not slow"

ROOT = Path(__file__).parent.parent
CHILD = """
import sys, indexer, retrieval
enc = retrieval.create_model("xmr-tiny", device="cpu")
opts = indexer.IndexOptions(workers=1, batch_size=16, checkpoint_items=32, index_dir=sys.argv[2])
print("ready", flush=True)
indexer.index_folder(sys.argv[1], enc, opts, progress=lambda done, total: print(done, total, flush=True))
print("finished", flush=True)
"""


def index_until_killed(root: Path, index_dir: Path, rng: random.Random) -> str:
    """Run the indexer and SIGKILL it at a random moment; returns the phase it died in."""
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(root), str(index_dir)], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    phase = rng.choice(["planning", "embedding", "embedding", "embedding"])
    delay = rng.uniform(0.0, 0.6) if phase == "planning" else rng.uniform(0.0, 3.0)
    state = "start"
    for line in proc.stdout:
        if line.startswith("finished"):
            state = "finished"
            break
        if line.startswith("ready") and phase == "planning":
            break
        if phase == "embedding" and line.split()[0] == "0":
            break
    if state != "finished":
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        state = phase
    proc.wait(timeout=120)
    return state


def test_sigkill_loop_ends_equal_to_a_clean_run(tmp_path: Path, tiny, request: pytest.FixtureRequest) -> None:
    kills = 24 if request.config.getoption("--slow") else 5
    root = make_media(
        tmp_path / "media", images=150 if kills > 5 else 80, audio=30 if kills > 5 else 16, texts=20, seed=3
    )
    index_dir = tmp_path / "crashed"
    rng = random.Random(1234)
    phases = []
    for n in range(kills):
        phases.append(index_until_killed(root, index_dir, rng))
        if n % 4 == 3:  # the folder changes between runs too: one file deleted, one moved
            files = sorted((root / "pics").iterdir())
            files[0].unlink()
            files[1].rename(root / "photos" / f"moved{n}{files[1].suffix}")
    assert sum(p != "finished" for p in phases) >= kills // 2, phases
    final = indexer.index_folder(root, tiny, indexer.IndexOptions(workers=0, index_dir=str(index_dir)))
    report = check_index(index_dir)
    assert report.ok, report.problems
    indexer.index_folder(root, tiny, indexer.IndexOptions(workers=0, index_dir=str(tmp_path / "clean")))
    crashed, clean = stored(root, index_dir), stored(root, tmp_path / "clean")
    assert set(crashed) == set(clean)
    assert len({i for i, _ in crashed.values()}) == len(crashed)
    for path, (_, vector) in clean.items():
        np.testing.assert_allclose(crashed[path][1], vector, atol=1e-5)
    assert sum(final.counts.values()) == len(clean)


def test_ctrl_c_stops_cleanly_with_progress_saved(tmp_path: Path) -> None:
    root = make_media(tmp_path / "media", images=800, audio=10, texts=5, seed=5)
    env = {**__import__("os").environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", "index", str(root), "--model", "xmr-tiny", "--batch-size", "8", "--json", "-v"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=env,
    )
    for line in proc.stderr:  # plain progress lines (not a terminal): wait for embedding to start
        if line.startswith("INFO xmr: index:"):
            break
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    summary = __import__("json").loads(out.strip().splitlines()[-1])
    assert proc.returncode == 130, err
    assert summary["interrupted"] is True and 0 < summary["added"] < 815
    report = check_index(root / ".xmr")
    assert report.ok, report.problems
    assert sum(report.counts.values()) == summary["added"]


WINDOW_CHILD = """
import sys, indexer, retrieval

enc = retrieval.create_model("xmr-tiny", device="cpu")
root, index_dir, db, factory, rebuild = sys.argv[1:6]
opts = indexer.IndexOptions(workers=1, batch_size=16, checkpoint_items=24, index_dir=index_dir, db_url=db or None,
                            shard_size=20, index_type=factory, rebuild=rebuild == "1")
indexer.index_folder(root, enc, opts)
"""


def _index_child(
    root: Path, index_dir: Path, db: str, factory: str, crash: str | None = None, rebuild: bool = False
) -> int:
    env = {**__import__("os").environ, "XMR_CRASH_AT": crash or ""}
    proc = subprocess.run(
        [sys.executable, "-c", WINDOW_CHILD, str(root), str(index_dir), db, factory, "1" if rebuild else "0"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode in (0, -signal.SIGKILL), proc.stderr
    return proc.returncode


def _same_as_clean(root: Path, index_dir: Path, clean_dir: Path, tiny) -> None:
    """The crashed index holds what a clean (Flat) index of the folder holds: the same paths,
    each once, each found by its own vector with score 1."""
    from retrieval import Engine

    assert check_index(index_dir).ok, check_index(index_dir).problems
    clean = stored(root, clean_dir)
    with Engine.open(index_dir, model=tiny) as engine:
        assert sum(engine.info()["counts"].values()) == len(clean)  # file items only: no texts file here
        for path, (_, vector) in clean.items():
            modality = (
                "image" if path.endswith((".png", ".jpg")) else "audio" if path.endswith((".wav", ".flac")) else "text"
            )
            hits = engine.search(vector=vector, to=modality, k=5)  # files of identical content tie
            assert any(h.path == str(root / path) and h.score == pytest.approx(1.0, abs=1e-4) for h in hits), path


@pytest.mark.parametrize(
    "crash, rebuild",
    [
        ("shard-written:2", False),  # between two shard renames of one checkpoint, rows not committed
        ("vectors-written:1", False),  # a checkpoint's vectors all flushed, its rows not committed
        ("rows-committed:1", False),  # just after a checkpoint's commit
        ("rebuild-rows-deleted", True),  # a rebuild: rows gone, shards not yet
        ("rebuild-wiped", True),  # a rebuild: rows and shards gone, manifest not yet rewritten
    ],
)
def test_kills_in_the_critical_windows_end_equal_to_a_clean_run(
    tmp_path: Path, tiny, db_url: str, crash: str, rebuild: bool
) -> None:
    from tests.helpers import touch_later, write_image

    root = make_media(tmp_path / "media", images=50, audio=6, texts=6, seed=11)
    index_dir, factory = tmp_path / "index", "IVF4,Flat"  # several shards of a trained index type
    assert _index_child(root, index_dir, db_url, factory) == 0
    for n, path in enumerate(sorted((root / "pics").iterdir())[:4]):  # content changes between runs
        write_image(path, seed=900 + n, fmt="PNG" if path.suffix == ".png" else "JPEG")
        touch_later(path)
    sorted((root / "photos").iterdir())[0].unlink()
    for n in range(25):
        write_image(root / "new" / f"{n}.png", seed=700 + n)
    assert _index_child(root, index_dir, db_url, factory, crash=crash, rebuild=rebuild) == -signal.SIGKILL
    assert _index_child(root, index_dir, db_url, factory) == 0  # the next run finishes the job
    indexer.index_folder(root, tiny, indexer.IndexOptions(workers=0, index_dir=str(tmp_path / "clean")))
    _same_as_clean(root, index_dir, tmp_path / "clean", tiny)


def test_a_database_that_turns_read_only_mid_run_loses_nothing(tmp_path: Path, tiny, db_url: str) -> None:
    """Shards written, then the SQL commit fails (PostgreSQL made read-only under the indexer):
    the run stops with the reason, what was indexed stays searchable, and the next run (the
    database writable again) ends equal to a clean run."""
    if not db_url.startswith("postgresql"):
        pytest.skip("made read-only through the server; SQLite's write errors are covered in test_storage_failures")
    import psycopg

    from retrieval import Engine

    name = db_url.rsplit("/", 1)[1]
    root = make_media(tmp_path / "media", images=40, audio=2, texts=2, seed=12)
    assert _index_child(root, tmp_path / "index", db_url, "Flat") == 0
    before = check_index(tmp_path / "index").counts
    for n in range(300):
        from tests.helpers import write_image

        write_image(root / "new" / f"{n}.png", seed=300 + n, size=16)
    env = {**__import__("os").environ, "PYTHONUNBUFFERED": "1"}
    child = (
        "import sys, indexer, retrieval\nenc = retrieval.create_model('xmr-tiny', device='cpu')\n"
        "try:\n    indexer.index_folder(sys.argv[1], enc, indexer.IndexOptions(workers=1, "
        "batch_size=8, checkpoint_items=8, index_dir=sys.argv[2],"
        " db_url=sys.argv[3]), progress=lambda d, t: print(d, flush=True))\n"
        "except Exception as exc:\n    print('ERROR', type(exc).__name__, exc, flush=True)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", child, str(root), str(tmp_path / "index"), db_url],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=env,
    )
    with psycopg.connect(dbname="postgres", autocommit=True) as admin:
        for line in proc.stdout:
            if line.split()[0].isdigit() and int(line.split()[0]) >= 40:
                break
        admin.execute(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        )
        out = proc.stdout.read()
        proc.wait(timeout=120)
        assert "ERROR StoreError" in out and "read-only transaction" in out, out
        with Engine.open(tmp_path / "index", model=tiny) as engine:  # still readable: the last committed state at least
            assert engine.info()["counts"]["image"] >= before["image"]
        admin.execute(f'ALTER DATABASE "{name}" SET default_transaction_read_only = off')
    assert _index_child(root, tmp_path / "index", db_url, "Flat") == 0
    indexer.index_folder(root, tiny, indexer.IndexOptions(workers=0, index_dir=str(tmp_path / "clean")))
    _same_as_clean(root, tmp_path / "index", tmp_path / "clean", tiny)
