"""Embedding on a Ray cluster (issue 22): one module-scoped 2-node cluster on this machine
(``ray.cluster_utils.Cluster``, one CPU each); the index it makes is the local path's."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow  # minutes of kills, rebuilds, clusters or training: left out by -m "not slow"

ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install -e '.[ray]')")

from indexer import IndexOptions, index_folder  # noqa: E402
from retrieval import Engine, create_model  # noqa: E402
from tests.helpers import make_media  # noqa: E402


@pytest.fixture(scope="module")
def cluster():
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "object_store_memory": 100 * 2**20})
    c.add_node(num_cpus=1, object_store_memory=100 * 2**20)
    ray.init(address=c.address, log_to_driver=False)
    yield c
    ray.shutdown()
    c.shutdown()


def _vectors(root: Path, index: Path, tiny) -> dict[str, np.ndarray]:
    out = {}
    with Engine.open(index, model=tiny) as engine:
        for modality in ("image", "audio", "text"):
            shards = engine.shards(modality)
            if shards is None:
                continue
            ids = shards.ids()
            rows = engine.index.rows(ids)
            for i, v in zip(ids, shards.reconstruct(ids)):
                out[str(Path(rows[int(i)].path))] = v
    return out


def test_the_cluster_makes_the_local_index(cluster, tmp_path: Path, tiny) -> None:
    root = make_media(tmp_path / "media", images=8, audio=4, texts=3, seed=5)
    import soundfile as sf

    from tests.helpers import write_video

    rng = np.random.default_rng(0)
    sf.write(root / "long.wav", (0.1 * rng.standard_normal(16000 * 14)).astype(np.float32), 16000)  # moments
    pictures = [rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in range(3)]
    write_video(
        root / "film.mp4", pictures, seconds_each=2.0, wave=(0.1 * rng.standard_normal(16000 * 6)).astype(np.float32)
    )
    factory = functools.partial(create_model, "xmr-tiny", device="cpu")
    on_ray = index_folder(
        root, tiny, IndexOptions(index_dir=str(tmp_path / "ray"), ray=cluster.address, encoder_factory=factory)
    )
    local = index_folder(root, tiny, IndexOptions(index_dir=str(tmp_path / "local"), workers=1))
    assert on_ray.added == local.added == 17 and on_ray.counts == local.counts
    assert on_ray.segments == local.segments > 0
    a, b = _vectors(root, tmp_path / "ray", tiny), _vectors(root, tmp_path / "local", tiny)
    assert a.keys() == b.keys()
    for path in a:
        np.testing.assert_allclose(a[path], b[path], atol=1e-5)
    with Engine.open(tmp_path / "ray", model=tiny) as x, Engine.open(tmp_path / "local", model=tiny) as y:
        for track in ("image", "audio"):
            sx, sy = x.index.segment_shards(track), y.index.segment_shards(track)
            assert sx.ntotal == sy.ntotal > 0
            rx, ry = x.index.segment_rows(sx.ids()), y.index.segment_rows(sy.ids())
            key = lambda rows, shards: sorted(  # noqa: E731
                (rows[int(i)].item_id, rows[int(i)].start, tuple(np.round(v, 4)))
                for i, v in zip(shards.ids(), shards.reconstruct(shards.ids()))
            )
            got, want = key(rx, sx), key(ry, sy)
            assert [g[1] for g in got] == [w[1] for w in want]
            np.testing.assert_allclose([g[2] for g in got], [w[2] for w in want], atol=2e-4)


def test_a_worker_killed_mid_run_is_replaced_and_nothing_is_lost(cluster, tmp_path: Path, tiny) -> None:
    import os
    import signal
    import threading
    import time

    from tests.helpers import write_image

    root = tmp_path / "media"
    for n in range(120):
        write_image(root / f"img{n:03d}.png", seed=300 + n, size=900)  # large: the run lasts a few seconds
    factory = functools.partial(create_model, "xmr-tiny", device="cpu")
    killed: list[int] = []
    finished = threading.Event()

    def kill_one() -> None:  # watches until the run ends: on busy cores the actors may start late
        while not finished.is_set() and not killed:
            for pid in _map_workers():
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
            time.sleep(0.02)

    killer = threading.Thread(target=kill_one)
    killer.start()
    try:
        summary = index_folder(
            root,
            tiny,
            IndexOptions(index_dir=str(tmp_path / "ray"), ray=cluster.address, encoder_factory=factory, batch_size=4),
        )
    finally:
        finished.set()
        killer.join()
    assert killed, "no Ray worker was found to kill"
    assert summary.added == 120 and not summary.skipped
    local = index_folder(root, tiny, IndexOptions(index_dir=str(tmp_path / "local"), workers=1))
    a, b = _vectors(root, tmp_path / "ray", tiny), _vectors(root, tmp_path / "local", tiny)
    assert local.added == 120 and a.keys() == b.keys()
    for path in a:
        np.testing.assert_allclose(a[path], b[path], atol=1e-5)


def _map_workers() -> list[int]:
    """Processes of Ray Data's actors (their titles read ``ray::_MapWorker...``) busy with a batch."""
    import os

    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                title = f.read()
        except OSError:
            continue
        if b"MapWorker" in title and b"submit" in title:
            found.append(int(pid))
    return found


DRIVER = """
import functools, sys, indexer, retrieval

enc = retrieval.create_model("xmr-tiny", device="cpu")
root, index_dir, address = sys.argv[1:4]
factory = functools.partial(retrieval.create_model, "xmr-tiny", device="cpu")
opts = indexer.IndexOptions(index_dir=index_dir, ray=address or None, encoder_factory=factory, checkpoint_items=8,
                            batch_size=8, workers=1)
print(indexer.index_folder(root, enc, opts).added)
"""


def test_a_driver_killed_mid_run_is_resumed_by_a_run_without_ray(cluster, tmp_path: Path, tiny) -> None:
    import os
    import signal
    import subprocess
    import sys

    repo = Path(__file__).resolve().parent.parent
    root = make_media(tmp_path / "media", images=30, audio=2, texts=2, seed=8)
    env = {**os.environ, "PYTHONPATH": str(repo), "XMR_CRASH_AT": "rows-committed:2"}
    args = [sys.executable, "-c", DRIVER, str(root), str(tmp_path / "index"), cluster.address]
    done = subprocess.run(args, env=env, cwd=repo, capture_output=True, text=True, timeout=300)
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    env.pop("XMR_CRASH_AT")
    args[-1] = ""  # the next run, without --ray
    done = subprocess.run(args, env=env, cwd=repo, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert 0 < int(done.stdout.split()[-1]) < 34, "the first run's commits were kept"
    local = index_folder(root, tiny, IndexOptions(index_dir=str(tmp_path / "local"), workers=1))
    a, b = _vectors(root, tmp_path / "index", tiny), _vectors(root, tmp_path / "local", tiny)
    assert local.added == 34 and a.keys() == b.keys()
    for path in a:
        np.testing.assert_allclose(a[path], b[path], atol=1e-5)


def test_xmr_index_ray_from_the_command_line(cluster, tmp_path: Path) -> None:
    import json
    import os
    import subprocess
    import sys

    repo = Path(__file__).resolve().parent.parent
    root = make_media(tmp_path / "media", images=4, audio=2, texts=1, seed=9)
    args = [sys.executable, "-m", "cli", "index", str(root), "--model", "xmr-tiny", "--ray", cluster.address, "--json"]
    done = subprocess.run(args, cwd=repo, env={**os.environ, "PYTHONPATH": str(repo)}, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1])["added"] == 7


def test_a_file_that_crashes_or_hangs_its_decoder_on_a_worker_is_skipped_and_remembered(
    cluster, tmp_path: Path, tiny
) -> None:
    """On the cluster as on the local path: the file is skipped with the reason (and not tried
    again until it changes), the worker lives on, the run completes."""
    from tests.helpers import WithFaults, faulty_tiny, write_image

    root = make_media(tmp_path / "media", images=6, audio=1, texts=0, seed=4)
    for name in ("crash.png", "hang.png", "raise.png"):
        write_image(root / "bad" / name, seed=len(name))
    options = IndexOptions(ray=cluster.address, encoder_factory=faulty_tiny, decode_timeout=2.5)
    summary = index_folder(root, WithFaults(tiny), options)
    reasons = {Path(s["path"]).name: s["reason"] for s in summary.skipped}
    assert reasons["crash.png"] == "decoder crashed (signal 11)"
    assert reasons["hang.png"] == "decoder made no progress for 2.5 s"
    assert reasons["raise.png"].startswith("decoder error: KeyError")
    assert summary.counts == {"image": 6, "audio": 1}
    again = index_folder(root, WithFaults(tiny), options)
    reasons = {Path(s["path"]).name: s["reason"] for s in again.skipped}
    assert "not tried again until the file changes" in reasons["crash.png"]
