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
from indexer.check import check_index
from tests.helpers import make_media
from tests.test_indexer import stored

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
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(root), str(index_dir)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
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
    root = make_media(tmp_path / "media", images=150 if kills > 5 else 80, audio=30 if kills > 5 else 16, texts=20, seed=3)
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
    proc = subprocess.Popen([sys.executable, "-m", "cli", "index", str(root), "--model", "xmr-tiny", "--batch-size", "8", "--json", "-v"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
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
