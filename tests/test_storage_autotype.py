"""--index-type auto: each branch of the choice, the type moving up and re-training as the
collection grows (rebuilt from stored vectors, never re-embedded), --reindex-type, stored
vectors, crash safety of a type change, and IVF removal in place against a rebuild."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import indexer
from indexer.storage import autotype
from indexer.storage.autotype import choose, nlist_for, parse_memory
from indexer.storage.check import check_index
from indexer.storage.shards import ShardSet
from indexer.storage.vectors import StoredVectors, StoredVectorsError
from retrieval import Engine

pytestmark = pytest.mark.slow  # minutes of kills, rebuilds, clusters or training: left out by -m "not slow"

ROOT = Path(__file__).resolve().parent.parent


def _unit(n: int, dim: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


# --- the choice ------------------------------------------------------------------------------
def test_each_branch_of_the_choice() -> None:
    gib = 1 << 30
    small = choose(1_000, 384, 2 * gib)
    assert small.factory == "Flat" and not small.rerank and "1,000 vectors" in small.reason
    # Past FLAT_MAX, float32 vectors within the budget: inverted lists of them.
    mid = choose(1_000_000, 384, 2 * gib)
    assert mid.factory == "IVF4096,Flat" and mid.nprobe == 64 and not mid.rerank
    # The same count under a budget float32 vectors exceed: PQ codes, re-ranked.
    big = choose(1_000_000, 384, gib // 2)
    assert big.factory == "IVF4096,PQ64" and big.rerank and "re-scored exactly" in big.reason
    assert choose(10_000_000, 384, 2 * gib).factory == "IVF8192,PQ64"  # 64 + 64 bytes a vector: 1.19 GiB
    assert choose(10_000_000, 384, gib).factory == "IVF8192,PQ32"  # 32 + 64 bytes: 0.89 GiB
    few = choose(500, 384, 1_000)  # too few to train codes: exact, and says it is over the budget
    assert few.factory == "Flat" and "OVER" in few.reason
    tiny_budget = choose(10_000_000, 384, 1 << 20)
    assert tiny_budget.factory.endswith("PQ8") and "OVER" in tiny_budget.reason
    # A small collection over a small budget goes straight to codes.
    assert choose(5_000, 32, 100_000).rerank
    assert [c.kind for c in (small, mid, big)] == [0, 1, 2]


def test_lists_have_training_vectors_enough() -> None:
    for n in (300, 5_000, 200_001, 1_000_000, 10**8):
        nlist = nlist_for(n)
        assert nlist & (nlist - 1) == 0 and 16 <= nlist <= 8192
        assert nlist == 16 or nlist * 39 <= n


def test_memory_sizes_parse_and_refuse() -> None:
    assert parse_memory("2G") == 2 << 30 and parse_memory("512MiB") == 512 << 20 and parse_memory("1.5gb") == 3 << 29
    for bad in ("lots", "-1G", "0", "2X"):
        with pytest.raises(ValueError, match="--max-memory takes a size"):
            parse_memory(bad)


def test_cli_refuses_a_bad_type_or_size(tmp_path: Path) -> None:
    from cli import app

    (tmp_path / "media").mkdir()
    runner = CliRunner()
    out = runner.invoke(app, ["index", str(tmp_path / "media"), "--model", "xmr-tiny", "--max-memory", "lots"])
    assert out.exit_code == 2 and "--max-memory takes a size" in out.output
    out = runner.invoke(app, ["index", str(tmp_path / "media"), "--model", "xmr-tiny", "--index-type", "IVFbogus"])
    assert out.exit_code == 2 and "--index-type 'IVFbogus' is not an index type FAISS knows" in out.output
    assert not (tmp_path / "media" / ".xmr" / "manifest.json").exists()


# --- stored vectors --------------------------------------------------------------------------
def test_stored_vectors_newest_row_wins_and_a_cut_tail_is_ignored(tmp_path: Path) -> None:
    stored = StoredVectors(tmp_path, "image", 8)
    v = _unit(10, 8, 0)
    stored.append(v, np.arange(10))
    stored.flush()
    stored.append(-v[:3], np.array([2, 0, 1]))  # updated files: appended again
    stored.flush()
    got = stored.get(np.array([0, 1, 2, 3]))
    np.testing.assert_allclose(got, np.stack([-v[1], -v[2], -v[0], v[3]]), atol=1e-3)
    with open(stored.ids_path, "ab") as f:  # a kill mid-append: ids written, rows not
        f.write(np.array([99], np.int64).tobytes())
    with open(stored.rows_path, "ab") as f:
        f.write(b"\0" * 5)
    again = StoredVectors(tmp_path, "image", 8)
    assert again.count() == 13
    with pytest.raises(StoredVectorsError, match="1 ids .first 99. have no stored vector"):
        again.get(np.array([5, 99]))
    again.append(v[:1], np.array([50]))
    again.flush()  # the tail cut first
    assert again.count() == 14 and np.allclose(again.get(np.array([50, 3])), v[[0, 3]], atol=1e-3)


def test_stored_vectors_read_incrementally_equal_a_full_read_and_views_stay_put(tmp_path: Path) -> None:
    stored, rng = StoredVectors(tmp_path, "image", 4), np.random.default_rng(0)
    for _ in range(6):
        ids = rng.integers(0, 40, 25)  # ids again and again: the newest row of each wins
        stored.append(rng.standard_normal((25, 4)).astype(np.float32), ids)
        stored.flush()
        view, fresh = stored.lookup(), StoredVectors(tmp_path, "image", 4).lookup()
        np.testing.assert_array_equal(view.sorted_ids, fresh.sorted_ids)
        np.testing.assert_array_equal(view.order, fresh.order)
    known = np.unique(view.sorted_ids)
    before = view.get(known)
    stored.append(np.ones((len(known), 4), np.float32), known)  # a writer appends newer rows
    stored.flush()
    np.testing.assert_array_equal(view.get(known), before)  # an earlier view answers as it did
    assert np.all(stored.get(known) == 1)


def test_ivf_removal_in_place_equals_a_fresh_index(tmp_path: Path) -> None:
    """Removal renumbers the IVF's lists instead of re-encoding every vector; searched with every
    list probed it must give what an index built without the removed ids gives."""
    v, ids = _unit(3000, 16, 0), np.arange(100, 3100)
    for factory, rerank in (("IVF8,Flat", False), ("IVF8,PQ4", True)):
        folder = tmp_path / factory.replace(",", "_")
        shards = ShardSet(folder, "image", 16, factory, 10**9, nprobe=8, rerank=rerank)
        shards.add(v[:2000], ids[:2000])
        shards.flush()
        shards.add(v[2000:], ids[2000:])  # a delta: removal crosses parts
        shards.flush()
        gone = np.random.default_rng(1).choice(ids, 500, replace=False)
        loaded = ShardSet(folder, "image", 16, factory, 10**9, nprobe=8, rerank=rerank).load()
        assert len(loaded.shards) == 2 and loaded.remove(gone) == 500
        loaded.flush()
        after = ShardSet(folder, "image", 16, factory, 10**9, nprobe=8, rerank=rerank).load()
        keep = ~np.isin(ids, gone)
        assert sorted(after.ids().tolist()) == sorted(ids[keep].tolist())
        _, got = after.search(v[:100], 5)
        exact = ids[keep][np.argsort(-(v[:100] @ v[keep].T), axis=1)[:, :5]]
        if rerank:  # re-scored from the stored vectors: exact
            assert (got == exact).mean() > 0.97
        else:  # IVF-Flat with every list probed: exact
            np.testing.assert_array_equal(got, exact)
        np.testing.assert_allclose(after.reconstruct(ids[keep][:50]), v[keep][:50], atol=1e-3)


# --- auto over runs --------------------------------------------------------------------------
def _texts(path: Path, n: int, start: int = 0) -> Path:
    words = ["red", "green", "blue", "apple", "river", "stone", "cloud", "engine", "violin", "garden"]
    lines = [f"{words[i % 10]} {words[(i // 10) % 10]} {words[(i // 100) % 10]} number {i}" for i in range(start, n)]
    path.write_text("\n".join(lines) + "\n")
    return path


def _manifest(index_dir: Path) -> dict:
    return json.loads((index_dir / "manifest.json").read_text())


def _top(index_dir: Path, queries: list[str], tiny, k: int = 5) -> list[list[str]]:
    with Engine.open(index_dir, model=tiny) as engine:
        return [[h.text for h in hits] for hits in engine.search_batch([{"text": q} for q in queries], to="text", k=k)]


@pytest.fixture
def small_thresholds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(autotype, "FLAT_MAX", 300)


def test_auto_moves_up_retrains_and_matches_exact(tmp_path: Path, tiny, small_thresholds: None) -> None:
    root = tmp_path / "media"
    root.mkdir()
    texts = _texts(tmp_path / "lines.txt", 400)
    opts = dict(workers=0, index_dir=str(tmp_path / "ix"), texts=[str(texts)], checkpoint_items=200)
    indexer.index_folder(root, tiny, indexer.IndexOptions(**opts))
    chosen = _manifest(tmp_path / "ix")["types"]["text"]
    assert chosen["factory"] == "IVF16,Flat" and chosen["trained_for"] == 400 and chosen["prefix"] == "text.e1"
    # Grown 10x: re-trained for the new size; nothing embedded again.
    _texts(texts, 4200)
    summary = indexer.index_folder(root, tiny, indexer.IndexOptions(**opts))
    assert summary.added == 3800 and summary.updated == 0
    chosen = _manifest(tmp_path / "ix")["types"]["text"]
    assert chosen["factory"] == "IVF64,Flat" and chosen["trained_for"] >= 4000 and "re-trained" in chosen["reason"]
    # A smaller budget: float32 vectors no longer fit, PQ codes re-ranked from stored vectors.
    indexer.index_folder(root, tiny, indexer.IndexOptions(**opts, max_memory=200_000))
    chosen = _manifest(tmp_path / "ix")["types"]["text"]
    assert chosen["factory"] == "IVF64,PQ8" and chosen["rerank"] and _manifest(tmp_path / "ix")["max_memory"] == 200_000
    names = sorted(p.name for p in (tmp_path / "ix" / "shards").iterdir())
    prefix = chosen["prefix"]
    assert f"{prefix}-vectors.f16" in names and all(n.startswith(prefix) for n in names if n.startswith("text"))
    assert check_index(tmp_path / "ix").ok
    # Against an exact index of the same items: the re-ranked top 5 are the exact top 5.
    indexer.index_folder(
        root, tiny, indexer.IndexOptions(**{**opts, "index_dir": str(tmp_path / "flat")}, index_type="Flat")
    )
    queries = [f"apple river number {i}" for i in range(0, 4000, 97)]
    got, exact = _top(tmp_path / "ix", queries, tiny), _top(tmp_path / "flat", queries, tiny)
    assert np.mean([g == e for g, e in zip(got, exact)]) >= 0.9
    assert np.mean([g[0] == e[0] for g, e in zip(got, exact)]) >= 0.95


def test_reindex_type_rebuilds_from_stored_vectors(tmp_path: Path, tiny, small_thresholds: None) -> None:
    root = tmp_path / "media"
    root.mkdir()
    texts = _texts(tmp_path / "lines.txt", 1500)
    opts = dict(workers=0, index_dir=str(tmp_path / "ix"), texts=[str(texts)])
    indexer.index_folder(root, tiny, indexer.IndexOptions(**opts, max_memory=100_000))
    assert _manifest(tmp_path / "ix")["types"]["text"]["rerank"]
    with Engine.open(tmp_path / "ix", model=tiny) as engine:
        before = {i: engine.vector(i) for i in range(1, 1501, 50)}
        reader = engine  # kept open across the type change: it must follow it
        queries = ["blue stone number 12"]
        first = [h.text for h in reader.search(text=queries[0], to="text", k=3)]
        summary = indexer.index_folder(root, tiny, indexer.IndexOptions(**opts, reindex_type="Flat"))
        assert summary.added == summary.updated == 0 and summary.unchanged == 1500
        manifest = _manifest(tmp_path / "ix")
        assert manifest["index_type"] == "Flat" and manifest["types"]["text"]["factory"] == "Flat"
        assert not any("vectors" in p.name for p in (tmp_path / "ix" / "shards").iterdir())
        assert [h.text for h in reader.search(text=queries[0], to="text", k=3)] == first
    with Engine.open(tmp_path / "ix", model=tiny) as engine:
        for i, v in before.items():  # float16 copies became the Flat vectors
            np.testing.assert_allclose(engine.vector(i), v, atol=2e-3)
    # And back to auto, with the CLI; info says what and why.
    from cli import app

    out = CliRunner().invoke(
        app,
        [
            "index",
            str(root),
            "--index",
            str(tmp_path / "ix"),
            "--texts",
            str(texts),
            "--model",
            "xmr-tiny",
            "--reindex-type",
            "auto",
            "--max-memory",
            "100K",
            "--workers",
            "0",
        ],
    )
    assert out.exit_code == 0, out.output
    info = CliRunner().invoke(app, ["info", "--index", str(tmp_path / "ix")])
    assert "chosen by size within a search-memory budget" in info.output and "PQ8" in info.output, info.output
    assert "re-scored exactly" in info.output and "stored (float16" in info.output
    assert "lists trained for 1,500 vectors; again past 15,000" in info.output


CHILD = """
import sys
from pathlib import Path
import indexer
from indexer.storage import autotype
from retrieval import create_model
autotype.FLAT_MAX = 300
root, index_dir, texts, budget = sys.argv[1:5]
reindex = sys.argv[5] if len(sys.argv) > 5 else None
indexer.index_folder(Path(root), create_model("xmr-tiny"), indexer.IndexOptions(
    workers=0, index_dir=index_dir, texts=[texts], max_memory=int(budget) or None, reindex_type=reindex))
"""


def _child_indexed(tmp_path: Path) -> tuple[Path, Path, Path, list[str]]:
    """1,500 text items indexed in a child process (auto, FLAT_MAX 300): the media folder, the
    texts file, the index and the command that runs the child again (budget, reindex type)."""
    root = tmp_path / "media"
    root.mkdir()
    texts = _texts(tmp_path / "lines.txt", 1500)
    ix = tmp_path / "ix"
    run = [sys.executable, "-c", CHILD, str(root), str(ix), str(texts)]
    assert subprocess.run([*run, "0"], cwd=ROOT, check=False).returncode == 0
    return root, texts, ix, run


@pytest.mark.parametrize("point", ["retype-built", "retype-switched"])
def test_a_kill_during_a_type_change_loses_nothing(tmp_path: Path, tiny, small_thresholds: None, point: str) -> None:
    _, _, ix, run = _child_indexed(tmp_path)
    assert _manifest(ix)["types"]["text"]["factory"] == "IVF32,Flat"
    env = {**__import__("os").environ, "XMR_CRASH_AT": point}
    assert subprocess.run([*run, "100000"], cwd=ROOT, env=env, check=False).returncode == -9
    prefixes = {p.name.split("-")[0] for p in (ix / "shards").iterdir() if p.name.startswith("text")}
    assert len(prefixes) == 2  # old and new side by side
    with Engine.open(ix, model=tiny) as engine:  # readable as it was left: the manifest's files
        assert engine.index.shards("text").ntotal == 1500
    assert subprocess.run([*run, "100000"], cwd=ROOT, check=False).returncode == 0
    manifest = _manifest(ix)
    assert manifest["types"]["text"]["rerank"]
    prefixes = {p.name.split("-")[0] for p in (ix / "shards").iterdir() if p.name.startswith("text")}
    assert prefixes == {manifest["types"]["text"]["prefix"]}
    report = check_index(ix)
    assert report.ok, report.problems
    with Engine.open(ix, model=tiny) as engine:
        assert engine.index.shards("text").ntotal == 1500 and engine.info()["counts"]["text"] == 1500


def test_lost_stored_copies_are_scored_from_codes_then_embedded_again(
    tmp_path: Path, tiny, small_thresholds: None
) -> None:
    root = tmp_path / "media"
    root.mkdir()
    texts = _texts(tmp_path / "lines.txt", 1500)
    opts = dict(workers=0, index_dir=str(tmp_path / "ix"), texts=[str(texts)], max_memory=100_000)
    indexer.index_folder(root, tiny, indexer.IndexOptions(**opts))
    prefix = _manifest(tmp_path / "ix")["types"]["text"]["prefix"]
    ids_file = tmp_path / "ix" / "shards" / f"{prefix}-vectors.ids"
    with open(ids_file, "r+b") as f:  # the last 100 copies cut off (a damaged file)
        f.truncate(ids_file.stat().st_size - 800)
    report = check_index(tmp_path / "ix")
    assert [p.kind for p in report.problems] == ["stored-vector"] and report.problems[0].count == 100
    with Engine.open(tmp_path / "ix", model=tiny) as engine:  # searches on, those scored from codes
        assert len(engine.search(text="violin cloud number 1499", to="text", k=20)) == 20
    summary = indexer.index_folder(root, tiny, indexer.IndexOptions(**opts))
    assert summary.updated + summary.added == 100
    assert check_index(tmp_path / "ix").ok


def test_filtered_search_on_ivf_equals_exact_over_the_allowed_ids(tmp_path: Path) -> None:
    """An id selector through an IVF (FAISS wants IVF search parameters, with the lists to
    probe: the plain ones were refused) and through a re-ranked IVF-PQ."""
    import faiss

    v, ids = _unit(3000, 16, 0), np.arange(1, 3001)
    allowed = ids[::7]
    for factory, rerank in (("IVF8,Flat", False), ("IVF8,PQ4", True), ("HNSW8", False)):
        shards = ShardSet(tmp_path / factory.replace(",", "_"), "image", 16, factory, 10**9, nprobe=8, rerank=rerank)
        shards.add(v, ids)
        shards.flush()
        shards = ShardSet(tmp_path / factory.replace(",", "_"), "image", 16, factory, 10**9, nprobe=8, rerank=rerank)
        shards.load()
        _, got = shards.search(v[:50], 5, selector=faiss.IDSelectorBatch(allowed))
        keep = np.isin(ids, allowed)
        exact = ids[keep][np.argsort(-(v[:50] @ v[keep].T), axis=1)[:, :5]]
        assert np.isin(got, allowed).all()
        assert (got[:, 0] == exact[:, 0]).mean() >= (0.9 if factory == "HNSW8" else 0.98), factory


def test_a_reader_keeps_the_parts_an_indexer_did_not_replace(tmp_path: Path) -> None:
    """A checkpoint adds a delta: a reader open beside the indexer reads the delta, not the
    whole base again (a 10M IVF base is gigabytes); a base replaced (a merge) is read anew."""
    from indexer.ingest.bulk import BulkIndex, IndexSpec
    from indexer.storage.reader import IndexReader

    spec = IndexSpec(model="m", weights_hash="h", dim=8, index_type="IVF4,Flat", modalities=("image",))
    v = _unit(3000, 8, 0)
    rows = [{"path": f"p{i}.png"} for i in range(3000)]
    with BulkIndex(tmp_path / "ix", spec, "image") as index:
        index.add(v[:1000], rows[:1000])
    reader = IndexReader.open(tmp_path / "ix")
    first = reader.shards("image")
    with BulkIndex(tmp_path / "ix", spec, "image") as index:
        index.add(v[1000:1200], rows[1000:1200])  # a delta beside the base
    second = reader.shards("image")
    assert second is not first and second.ntotal == 1200 and len(second.shards) == 2
    assert second.shards[0] is first.shards[0]  # the base: not read again
    _, got = second.search(v[1100:1101], 1)
    assert got[0, 0] == 1101
    with BulkIndex(tmp_path / "ix", spec, "image") as index:
        index.add(v[1200:3000], rows[1200:3000])  # deltas outgrow the base: merged into a new one
    third = reader.shards("image")
    assert third.ntotal == 3000 and third.shards[0] is not first.shards[0]
    _, got = third.search(v[2999:3000], 1)
    assert got[0, 0] == 3000
    reader.close()


def test_reindex_refuses_an_untrainable_type_first_and_a_killed_one_is_finished(
    tmp_path: Path, tiny, small_thresholds: None
) -> None:
    root, texts, ix, run = _child_indexed(tmp_path)
    before = _manifest(ix)
    with pytest.raises(ValueError, match="the text shards hold 1500 vectors, too few to train it .at least 2048"):
        indexer.index_folder(
            root,
            tiny,
            indexer.IndexOptions(workers=0, index_dir=str(ix), texts=[str(texts)], reindex_type="IVF2048,Flat"),
        )
    after = _manifest(ix)
    assert after["types"] == before["types"] and after["index_type"] == "auto" and "reindexing" not in after
    env = {**__import__("os").environ, "XMR_CRASH_AT": "retype-built:3"}  # image and audio (empty) done
    assert subprocess.run([*run, "0", "IVF8,PQ4"], cwd=ROOT, env=env, check=False).returncode == -9
    assert _manifest(ix)["reindexing"] == {"type": "IVF8,PQ4", "left": ["text"]}
    assert subprocess.run([*run, "0"], cwd=ROOT, check=False).returncode == 0  # no flag: finished anyway
    done = _manifest(ix)
    assert (
        "reindexing" not in done and done["index_type"] == "IVF8,PQ4" and done["types"]["text"]["factory"] == "IVF8,PQ4"
    )
    assert check_index(ix).ok


def test_when_a_modality_is_rebuilt() -> None:
    from indexer.storage.manifest import Manifest
    from indexer.storage.retype import due, share

    gib = 1 << 30
    manifest = Manifest(root="", model="m", dim=384, index_type="auto")
    assert due(manifest, "image", 150_000, gib) is None  # Flat and small: nothing to do
    assert due(manifest, "image", 300_000, gib).factory == "IVF2048,Flat"  # past FLAT_MAX: up a kind
    manifest.types["image"] = replace(choose(300_000, 384, gib), prefix="image.e1")
    assert due(manifest, "image", 2_000_000, 4 * gib) is None  # grown less than 10x
    assert "re-trained" in due(manifest, "image", 3_000_000, 8 * gib).reason  # 10x: lists trained again
    assert due(manifest, "image", 1_000_000, gib).rerank  # float32 over the budget: codes
    manifest.types["image"] = replace(choose(1_000_000, 384, gib // 4), prefix="image.e2")
    assert manifest.types["image"].factory == "IVF4096,PQ64"
    smaller = due(manifest, "image", 2_500_000, gib // 4)  # its codes outgrew the budget: smaller ones
    assert smaller.factory == "IVF8192,PQ32" and "outgrew" in smaller.reason
    assert due(manifest, "image", 1_200_000, gib // 4) is None
    compact = due(manifest, "image", 1_200_000, gib // 4, stored_rows=2_500_000)  # updates left rows behind
    assert compact.factory == "IVF4096,PQ64" and "compacted" in compact.reason
    shrunk = due(manifest, "image", 500, gib // 4, stored_rows=65_000)  # chosen again: 500 cannot train 4096 lists
    assert shrunk.factory == "Flat" and "compacted" in shrunk.reason
    assert due(replace(manifest, index_type="Flat"), "image", 10**7, gib) is None  # a fixed type stays
    assert share(gib, 250, 1000) == gib // 4 and share(gib, 0, 0) == gib


def test_an_empty_modality_reindexed_takes_the_new_type(tmp_path: Path, tiny) -> None:
    """Its old type's files (an emptied IVF base, its template) are not taken for the new type."""
    import faiss

    root = tmp_path / "media"
    root.mkdir()
    texts = _texts(tmp_path / "lines.txt", 300)
    opts = dict(workers=0, index_dir=str(tmp_path / "ix"), allow_mass_removal=True)
    indexer.index_folder(root, tiny, indexer.IndexOptions(**opts, texts=[str(texts)], index_type="IVF8,Flat"))
    indexer.index_folder(root, tiny, indexer.IndexOptions(**opts, texts=[]))  # the texts cleared: emptied
    summary = indexer.index_folder(root, tiny, indexer.IndexOptions(**opts, texts=[str(texts)], reindex_type="Flat"))
    assert summary.added == 300
    with Engine.open(tmp_path / "ix", model=tiny) as engine:
        shards = engine.shards("text")
        assert shards.ntotal == 300 and shards.modality != "text"  # under a new prefix
        assert all(isinstance(faiss.downcast_index(s.index), faiss.IndexFlat) for s in shards.shards)
    assert check_index(tmp_path / "ix").ok


def _in_fours(shards: ShardSet, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Answers to ``queries`` asked a few at a time, as one asks them."""
    found = [shards.search(queries[a : a + 4], 10) for a in range(0, len(queries), 4)]
    return np.concatenate([d for d, _ in found]), np.concatenate([i for _, i in found])


def test_parts_searched_with_one_coarse_assignment_equal_each_searched_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A base and its deltas share their centroids: searched with one coarse assignment they
    must answer exactly as each part searched through FAISS on its own."""
    v, ids = _unit(4000, 16, 0), np.arange(1, 4001)
    for factory, rerank in (("IVF8,Flat", False), ("IVF8,PQ4", True)):
        folder = tmp_path / factory.replace(",", "_")
        shards = ShardSet(folder, "image", 16, factory, 10**9, nprobe=3, rerank=rerank)
        for a, b in ((0, 2500), (2500, 3000), (3000, 3500), (3500, 4000)):  # a base and three deltas
            shards.add(v[a:b], ids[a:b])
            shards.flush()
        loaded = ShardSet(folder, "image", 16, factory, 10**9, nprobe=3, rerank=rerank).load(mmap=True)
        assert len(loaded.shards) == 4 and len(loaded._shared_lists()[2]) == 4  # the four parts share

        shared = _in_fours(loaded, v[:200])
        monkeypatch.setattr(ShardSet, "_shared_lists", lambda self: (None, 0, {}))
        alone = _in_fours(loaded, v[:200])
        monkeypatch.undo()
        np.testing.assert_array_equal(shared[1], alone[1])
        np.testing.assert_allclose(shared[0], alone[0], rtol=1e-5)
        loaded.remove(ids[:10])  # a part changed: the shared lists are made again, not read freed
        _, got = loaded.search(v[:20], 1)
        assert not np.isin(got, ids[:10]).any()


LIMITED = """
import resource, signal, sys
from pathlib import Path
import indexer
from retrieval import create_model

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead of killing us
root, index_dir, texts, limit = sys.argv[1:5]
resource.setrlimit(resource.RLIMIT_FSIZE, (int(limit), int(limit)))
try:
    indexer.index_folder(Path(root), create_model("xmr-tiny"), indexer.IndexOptions(
        workers=0, index_dir=index_dir, texts=[texts]))
except Exception as exc:
    print(type(exc).__name__ + ": " + str(exc))
    sys.exit(3)
"""


def test_a_full_disk_while_storing_vectors_loses_nothing(tmp_path: Path, tiny, small_thresholds: None) -> None:
    """The stored copies cannot grow (the disk is full): the run stops with the reason before
    any row points at vectors without a copy; the index answers as before; the next run ends it."""
    root = tmp_path / "media"
    root.mkdir()
    texts = _texts(tmp_path / "lines.txt", 1500)
    ix = tmp_path / "ix"
    opts = dict(workers=0, index_dir=str(ix), texts=[str(texts)])
    indexer.index_folder(root, tiny, indexer.IndexOptions(**opts, max_memory=100_000))
    prefix = _manifest(ix)["types"]["text"]["prefix"]
    rows_file = ix / "shards" / f"{prefix}-vectors.f16"
    before = check_index(ix).counts
    _texts(texts, 2500)
    limit = rows_file.stat().st_size + 4096
    proc = subprocess.run(
        [sys.executable, "-c", LIMITED, str(root), str(ix), str(texts), str(limit)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout.startswith("StoredVectorsError: cannot append to") and "File too large" in proc.stdout
    report = check_index(ix)
    assert report.ok, report.problems
    assert report.counts == before
    summary = indexer.index_folder(root, tiny, indexer.IndexOptions(**opts))
    assert summary.added == 1000 and check_index(ix).ok
