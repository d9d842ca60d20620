"""Checkpoints that cost what they add (issue 22): a shard's new vectors go to delta files beside
its base, merged into the next generation's base once they outgrow it; crash-safe at each step."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import indexer.storage.shards as shards_module
from indexer.storage.shards import MERGE_RATIO, ShardSet, part_of

pytestmark = pytest.mark.slow  # minutes of kills, rebuilds, clusters or training: left out by -m "not slow"

ROOT = Path(__file__).resolve().parent.parent


def _unit(n: int, dim: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _written(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Bytes of every shard file written from now on."""
    sizes: list[int] = []
    real = shards_module.write_atomic

    def counting(index, path: Path) -> None:  # noqa: ANN001
        real(index, path)
        sizes.append(path.stat().st_size)

    monkeypatch.setattr(shards_module, "write_atomic", counting)
    return sizes


@pytest.mark.parametrize("factory", ["Flat", "IVF8,Flat", "SQ8", "IVF8,SQ8", "IVF8,PQ8", "IVF8,PQ8x4fs", "HNSW8"])
def test_checkpoints_write_what_they_add_and_search_as_one_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, factory: str
) -> None:
    import faiss

    dim, total, step = 32, 12_000, 300
    vectors, ids = _unit(total, dim, 0), np.arange(5, 5 + total, dtype=np.int64) * 3
    shards = ShardSet(tmp_path, "image", dim, factory, shard_size=5_000).load()
    written = _written(monkeypatch)
    for start in range(0, total, step):
        shards.add(vectors[start : start + step], ids[start : start + step])
        shards.flush()
        # As each indexing run starts anew: parts mapped, read whole only when changed.
        shards = ShardSet(tmp_path, "image", dim, factory, shard_size=5_000).load(mmap=True, tidy=True)
    final = sum(p.stat().st_size for p in shards.existing_paths())
    rewrite_all = sum(  # what rewriting the whole last shard at every checkpoint wrote
        (start % 5_000 + step) * dim * 4 for start in range(0, total, step)
    )
    merges = factory in ("Flat", "IVF8,Flat", "SQ8", "IVF8,SQ8", "IVF8,PQ8")  # the others rewrite their shard
    if factory in ("Flat", "IVF8,Flat"):  # (a delta of PQ codes carries its codebooks: bigger than its codes here)
        assert sum(written) <= 3 * final and 2 * sum(written) < rewrite_all, (sum(written), final, rewrite_all)
    numbers = sorted({part_of(p.name, "image")[0] for p in shards.existing_paths()})
    assert numbers == [0, 1, 2] and any(part_of(p.name, "image")[1] > 0 for p in shards.existing_paths()) == merges
    on_disk = sorted(p.name for p in tmp_path.glob("image-*.faiss") if part_of(p.name, "image"))
    assert on_disk == sorted(p.name for p in shards.existing_paths()), "nothing merged is left behind"
    assert sorted(shards.ids().tolist()) == sorted(ids.tolist())
    queries = _unit(10, dim, 1)
    if factory == "Flat":
        flat = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        flat.add_with_ids(vectors, ids)
        d_ref, i_ref = flat.search(queries, 20)
        for mapped in (shards, ShardSet(tmp_path, "image", dim, factory, shard_size=5_000).load(mmap=True)):
            d, i = mapped.search(queries, 20)
            np.testing.assert_array_equal(i, i_ref)
            np.testing.assert_allclose(d, d_ref, rtol=1e-5, atol=1e-6)
    elif factory == "IVF8,Flat":  # every list probed: each vector finds itself
        sample = np.random.default_rng(2).choice(total, 600, replace=False)
        d, i = shards.search(vectors[sample], 1)
        np.testing.assert_array_equal(i[:, 0], ids[sample])
        np.testing.assert_allclose(shards.reconstruct(ids[sample]), vectors[sample], atol=1e-6)
    else:  # lossy codes: a vector's own stored code answers to its id, base or delta, merged or not
        sample = np.random.default_rng(2).choice(total, 200, replace=False)
        if "fs" not in factory:
            stored = shards.reconstruct(ids[sample])
            d, i = shards.search(stored, 5)
            assert all(ids[s] in row for s, row in zip(sample, i))


def test_a_removal_rewrites_the_part_that_held_the_vector(tmp_path: Path) -> None:
    dim = 16
    shards = ShardSet(tmp_path, "audio", dim, "Flat", shard_size=1_000).load()
    shards.add(_unit(100, dim, 0), np.arange(100))
    shards.flush()
    shards.add(_unit(50, dim, 1), np.arange(100, 150))  # a delta of 50 beside a base of 100
    shards.flush()
    assert len(shards.existing_paths()) == 2
    shards = ShardSet(tmp_path, "audio", dim, "Flat", shard_size=1_000).load(mmap=True, tidy=True)
    assert shards.remove(np.array([3, 120])) == 2 and shards.mapped == [False, False]
    shards.add(_unit(10, dim, 2), np.arange(200, 210))
    shards.flush()
    again = ShardSet(tmp_path, "audio", dim, "Flat", shard_size=1_000).load()
    assert sorted(again.ids().tolist()) == [i for i in range(150) if i not in (3, 120)] + list(range(200, 210))


MERGE_CHILD = """
import sys, numpy as np
from indexer.storage.shards import ShardSet

folder, rounds = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(0)
for r in range(rounds):
    s = ShardSet(folder, "image", 8, "Flat", shard_size=10_000).load()
    v = rng.standard_normal((40, 8)).astype("float32")
    if r * 40 in set(s.ids().tolist()):
        continue  # added before the kill
    s.add(v / np.linalg.norm(v, axis=1, keepdims=True), np.arange(r * 40, (r + 1) * 40))
    s.flush()
"""


@pytest.mark.parametrize("crash", ["shard-merged:1", "shard-merged:2", "shard-written:4"])
def test_a_kill_during_a_merge_leaves_every_vector_once(tmp_path: Path, crash: str) -> None:
    """Killed after the merged base is written but before the merged files go (or while a delta
    is written): the next load takes the newest base, drops what it merged, and finds each id once."""
    import os

    env = {**os.environ, "XMR_CRASH_AT": crash, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", MERGE_CHILD, str(tmp_path), "12"], env=env, cwd=ROOT, timeout=120)
    assert done.returncode == -signal.SIGKILL
    left = sorted(p.name for p in tmp_path.glob("image-*.faiss"))
    shards = ShardSet(tmp_path, "image", 8, "Flat", shard_size=10_000).load()
    ids = shards.ids()
    assert len(ids) == len(set(ids.tolist())) and set(ids.tolist()) >= set(range(40)), left
    if crash.startswith("shard-merged"):
        assert len(left) > len(shards.existing_paths()), "the merged files were still there"
        assert sorted(p.name for p in tmp_path.glob("image-*.faiss")) == [p.name for p in shards.existing_paths()]
    done = subprocess.run(
        [sys.executable, "-c", MERGE_CHILD, str(tmp_path), "12"],
        cwd=ROOT,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0
    again = ShardSet(tmp_path, "image", 8, "Flat", shard_size=10_000).load()
    assert sorted(again.ids().tolist()) == list(range(480))


def test_merging_keeps_deltas_within_their_ratio(tmp_path: Path) -> None:
    shards = ShardSet(tmp_path, "text", 8, "Flat", shard_size=100_000).load()
    for r in range(60):
        shards.add(_unit(10, 8, r), np.arange(r * 10, r * 10 + 10))
        shards.flush()
        base, *deltas = [s.ntotal for s in shards.shards]
        assert sum(deltas) < MERGE_RATIO * base and len(deltas) < shards_module.MAX_DELTAS


def test_an_emptied_delta_goes_and_adding_goes_on(tmp_path: Path) -> None:
    dim = 16
    shards = ShardSet(tmp_path, "audio", dim, "Flat", shard_size=1_000).load()
    shards.add(_unit(100, dim, 0), np.arange(100))
    shards.flush()
    shards.add(_unit(50, dim, 1), np.arange(100, 150))
    shards.flush()
    assert shards.remove(np.arange(100, 150)) == 50  # the files of a recent run all deleted
    shards.flush()
    assert [p.name for p in shards.existing_paths()] == ["audio-00000.faiss"]
    for r in range(3):
        shards.add(_unit(300, dim, 2 + r), np.arange(1_000 + 300 * r, 1_300 + 300 * r))
        shards.flush()
    again = ShardSet(tmp_path, "audio", dim, "Flat", shard_size=1_000).load()
    assert sorted(again.ids().tolist()) == list(range(100)) + list(range(1_000, 1_900))


@pytest.mark.parametrize("factory", ["IVF4,Flat", "IVF4,SQ8", "SQ8"])
@pytest.mark.parametrize("change", ["add", "remove"])
def test_a_lost_template_is_rebuilt_from_a_shard(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, factory: str, change: str
) -> None:
    """doctor --fix sets a damaged template aside; the next run (parts memory-mapped, as the
    indexer loads them) adds to a new delta, or rebuilds a second shard without a removed id."""
    dim = 8
    shards = ShardSet(tmp_path, "image", dim, factory, shard_size=150).load()
    shards.add(_unit(200, dim, 0), np.arange(200))
    shards.flush()
    shards.template_path.rename(tmp_path / "image-trained.faiss.corrupt")
    again = ShardSet(tmp_path, "image", dim, factory, shard_size=150).load(mmap=True, tidy=True)
    if change == "add":
        again.add(_unit(20, dim, 1), np.arange(200, 220))
        expected = list(range(220))
    else:
        assert again.remove(np.array([170])) == 1  # in the second shard: the first stays mapped
        expected = [i for i in range(200) if i != 170]
    again.flush()
    assert sorted(ShardSet(tmp_path, "image", dim, factory).load().ids().tolist()) == expected
    if change == "add":  # (an IVF removes in place: no template needed)
        assert again.template_path.exists() and "image-trained.faiss is missing" in caplog.text


def test_a_type_that_cannot_remove_says_so(tmp_path: Path) -> None:
    from indexer.storage.shards import ShardError

    shards = ShardSet(tmp_path, "image", 8, "IVF4,PQ4x4fs", shard_size=1_000).load()
    shards.add(_unit(300, 8, 0), np.arange(300))
    shards.flush()
    again = ShardSet(tmp_path, "image", 8, "IVF4,PQ4x4fs", shard_size=1_000).load(mmap=True, tidy=True)
    with pytest.raises(ShardError, match="cannot give back its vectors"):
        again.remove(np.array([5]))


def test_removing_from_an_opq_ivf_shard(tmp_path: Path) -> None:
    """The IVF inside a pre-transform (OPQ) gives its vectors back by its direct map too."""
    shards = ShardSet(tmp_path, "image", 8, "OPQ4,IVF4,Flat", shard_size=1_000).load()
    shards.add(_unit(300, 8, 0), np.arange(300))
    shards.flush()
    again = ShardSet(tmp_path, "image", 8, "OPQ4,IVF4,Flat", shard_size=1_000).load(mmap=True, tidy=True)
    assert again.remove(np.array([3, 7])) == 2
    again.flush()
    left = ShardSet(tmp_path, "image", 8, "OPQ4,IVF4,Flat").load().ids()
    assert sorted(left.tolist()) == [i for i in range(300) if i not in (3, 7)]
