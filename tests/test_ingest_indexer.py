"""The indexer on real files: incremental runs, renames, deletions, bad files, texts files,
foreign folders and models, and SQL and FAISS agreeing with each other throughout."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import indexer
from indexer.storage.check import check_index
from indexer.storage.layout import Layout
from indexer.storage.manifest import read_manifest
from indexer.storage.paths import escape_path, unescape_path
from indexer.storage.schema import FILE, TEXT_LINE
from indexer.storage.shards import ShardSet, part_of
from indexer.storage.store import Store
from tests.helpers import make_media, touch_later, write_audio, write_image, write_text


def run(root: Path, model, **options) -> indexer.Summary:
    options.setdefault("workers", 0)
    return indexer.index_folder(root, model, indexer.IndexOptions(**options))


def stored(root: Path, index_dir: Path | None = None, db_url: str | None = None) -> dict[str, tuple[int, np.ndarray]]:
    """{relative path: (id, stored vector)} of every file item, read back from SQL and the shards."""
    layout = Layout(index_dir or root / ".xmr")
    manifest = read_manifest(layout)
    store = Store(db_url or layout.db_url(manifest.db))
    out = {}
    for modality in ("image", "audio", "text"):
        shards = ShardSet(layout.shards, modality, manifest.dim).load()
        rows = [r for r in store.items(FILE) if r.modality == modality]
        vectors = shards.reconstruct(np.array([r.id for r in rows], dtype=np.int64))
        out.update({unescape_path(r.path): (r.id, v) for r, v in zip(rows, vectors)})
    store.close()
    return out


def assert_consistent(index_dir: Path) -> None:
    report = check_index(index_dir)
    assert report.ok, report.problems


def test_first_run_indexes_every_file_and_second_run_changes_nothing(tmp_path: Path, tiny) -> None:
    root = make_media(tmp_path / "media", images=6, audio=4, texts=3)
    first = run(root, tiny)
    assert (first.added, first.unchanged, first.skipped) == (13, 0, [])
    assert first.counts == {"image": 6, "audio": 4, "text": 3}
    assert_consistent(root / ".xmr")
    before = stored(root)
    second = run(root, tiny)
    assert (second.added, second.updated, second.moved, second.removed, second.unchanged) == (0, 0, 0, 0, 13)
    after = stored(root)
    assert {p: i for p, (i, _) in before.items()} == {p: i for p, (i, _) in after.items()}


def test_vectors_are_the_encoders_own(tmp_path: Path, tiny) -> None:
    root = make_media(tmp_path / "media", images=3, audio=2, texts=2)
    run(root, tiny)
    vectors = stored(root)
    image = tiny.encode_image([root / "pics/img0.jpg"])
    np.testing.assert_allclose(vectors["pics/img0.jpg"][1], image[0], atol=1e-5)
    audio = tiny.encode_audio([str(root / "sounds/clip1.wav")])
    np.testing.assert_allclose(vectors["sounds/clip1.wav"][1], audio[0], atol=1e-5)
    text = tiny.encode_text([(root / "notes/note1.txt").read_text().strip()])
    np.testing.assert_allclose(vectors["notes/note1.txt"][1], text[0], atol=1e-5)


def test_changed_renamed_and_deleted_files(tmp_path: Path, tiny) -> None:
    root = make_media(tmp_path / "media", images=6, audio=4, texts=3)
    run(root, tiny)
    before = stored(root)
    write_image(root / "pics/img0.jpg", seed=999)  # new content
    touch_later(root / "pics/img0.jpg")
    touch_later(root / "sounds/clip0.flac")  # touched, same content
    (root / "moved").mkdir()
    shutil.move(root / "photos/img1.png", root / "moved/renamed.png")
    (root / "notes/note2.txt").unlink()
    write_audio(root / "sounds/new.wav", seed=4242)
    summary = run(root, tiny)
    assert (summary.added, summary.updated, summary.moved, summary.removed) == (1, 1, 1, 1)
    assert summary.unchanged == 13 - 3  # 13 files before; one changed, one moved, one deleted
    after = stored(root)
    assert "photos/img1.png" not in after and "notes/note2.txt" not in after
    assert after["moved/renamed.png"][0] == before["photos/img1.png"][0]  # same id, same vector
    np.testing.assert_array_equal(after["moved/renamed.png"][1], before["photos/img1.png"][1])
    assert after["pics/img0.jpg"][0] == before["pics/img0.jpg"][0]
    assert not np.allclose(after["pics/img0.jpg"][1], before["pics/img0.jpg"][1])
    assert summary.counts == {"image": 6, "audio": 5, "text": 2}
    assert_consistent(root / ".xmr")


def test_bad_files_are_skipped_with_reasons_and_the_rest_indexed(tmp_path: Path, tiny) -> None:
    root = make_media(tmp_path / "media", images=3, audio=2, texts=1)
    good = write_image(tmp_path / "good.png", seed=5).read_bytes()
    (root / "truncated.png").write_bytes(good[: len(good) // 2])
    (root / "empty.jpg").write_bytes(b"")
    (root / "text.jpg").write_text("I am not a picture")
    (root / "noise.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    (root / "blank.txt").write_text("   \n")
    (root / "photo.heic").write_bytes(b"\x00" * 64)
    os.symlink(root / "nowhere.png", root / "broken.png")
    summary = run(root, tiny)
    reasons = {Path(s["path"]).name: s["reason"] for s in summary.skipped}
    assert set(reasons) == {
        "truncated.png",
        "empty.jpg",
        "text.jpg",
        "noise.wav",
        "blank.txt",
        "photo.heic",
        "broken.png",
    }
    assert "truncated" in reasons["truncated.png"] or "corrupt" in reasons["truncated.png"]
    assert "0 bytes" in reasons["empty.jpg"]
    assert "not an image" in reasons["text.jpg"]
    assert "broken symbolic link" in reasons["broken.png"]
    assert "unsupported format" in reasons["photo.heic"]
    assert all(Path(s["path"]).is_absolute() for s in summary.skipped)
    assert summary.counts == {"image": 3, "audio": 2, "text": 1}
    assert_consistent(root / ".xmr")


def test_a_file_that_goes_bad_leaves_the_index(tmp_path: Path, tiny) -> None:
    root = make_media(tmp_path / "media", images=2, audio=0, texts=0)
    run(root, tiny)
    (root / "pics/img0.jpg").write_bytes(b"garbage")
    touch_later(root / "pics/img0.jpg")
    summary = run(root, tiny)
    assert [Path(s["path"]).name for s in summary.skipped] == ["img0.jpg"]
    assert summary.counts == {"image": 1}
    assert_consistent(root / ".xmr")


def test_non_utf8_and_odd_file_names_round_trip(tmp_path: Path, tiny, db_url: str) -> None:
    root = tmp_path / "media"
    odd = os.fsdecode(b"caf\xe9 \xff.png")  # Latin-1 bytes: not UTF-8
    names = [odd, "with space.png", "new\nline.png", "100%.png", "ünïcode.png"]
    for i, name in enumerate(names):
        write_image(root / name, seed=i)
    summary = run(root, tiny, db_url=db_url)
    assert summary.counts == {"image": len(names)}
    assert set(stored(root, db_url=db_url)) == set(names)
    assert "\udce9" in odd and escape_path(odd) != odd and unescape_path(escape_path(odd)) == odd
    assert run(root, tiny, db_url=db_url).unchanged == len(names)


def test_excludes_hidden_folders_and_symlink_loops(tmp_path: Path, tiny) -> None:
    root = make_media(tmp_path / "media", images=2, audio=1, texts=1)
    write_image(root / ".hidden/secret.png", seed=7)
    write_image(root / "raw/skip1.png", seed=8)
    os.symlink(root, root / "pics/loop")
    summary = run(root, tiny, exclude=["raw/*", "*.flac"])
    assert summary.counts == {"image": 2, "text": 1}
    paths = set(stored(root))
    assert not any(p.startswith((".hidden", "raw/")) or p.endswith(".flac") for p in paths)


def test_texts_file_items_follow_the_file(tmp_path: Path, tiny) -> None:
    root = make_media(tmp_path / "media", images=2, audio=0, texts=0)
    labels = write_text(tmp_path / "labels.txt", "a dog\n\na cat\na bird\n")
    summary = run(root, tiny, texts=[str(labels)])
    assert summary.counts == {"image": 2, "text": 3}
    store = Store(f"sqlite:///{root / '.xmr/items.db'}")
    lines = {r.line: r.text for r in store.items(TEXT_LINE)}
    assert lines == {1: "a dog", 3: "a cat", 4: "a bird"}
    write_text(labels, "a dog\n\na cow\n")  # line 3 changed, line 4 removed
    summary = run(root, tiny, texts=[str(labels)])
    assert (summary.updated, summary.removed) == (1, 1)
    assert {r.line: r.text for r in store.items(TEXT_LINE)} == {1: "a dog", 3: "a cow"}
    other = write_text(tmp_path / "other.txt", "a fish\n")
    summary = run(root, tiny, texts=[str(other)])  # labels.txt no longer given: its items leave
    assert (summary.added, summary.removed, summary.counts) == (1, 2, {"image": 2, "text": 1})
    assert [r.text for r in store.items(TEXT_LINE)] == ["a fish"]
    other.unlink()
    assert run(root, tiny).counts == {"image": 2}  # none given: none stay
    assert_consistent(root / ".xmr")
    jsonl = write_text(
        tmp_path / "caps.jsonl", json.dumps({"text": "a red car"}) + "\n" + json.dumps({"text": "snow"}) + "\n"
    )
    assert run(root, tiny, texts=[str(jsonl)]).counts == {"image": 2, "text": 2}
    store.close()
    assert_consistent(root / ".xmr")


def test_index_elsewhere_and_foreign_folder_refused(tmp_path: Path, tiny) -> None:
    root = make_media(tmp_path / "media", images=2, audio=1, texts=0)
    other = make_media(tmp_path / "other", images=1, audio=0, texts=0)
    index_dir = tmp_path / "idx"
    run(root, tiny, index_dir=str(index_dir))
    assert not (root / ".xmr").exists() and (index_dir / "manifest.json").exists()
    with pytest.raises(indexer.IndexMismatchError, match="belongs to"):
        run(other, tiny, index_dir=str(index_dir))


def test_other_model_refused_unless_rebuild(tmp_path: Path, tiny) -> None:
    from retrieval import create_model

    root = make_media(tmp_path / "media", images=2, audio=1, texts=1)
    run(root, tiny)
    image_only = create_model("xmr-tiny-image", device="cpu")
    with pytest.raises(indexer.IndexMismatchError, match="--rebuild"):
        run(root, image_only)
    summary = run(root, image_only, rebuild=True)
    assert summary.counts == {"image": 2, "text": 1}  # the model has no audio tower
    assert read_manifest(Layout(root / ".xmr")).model == "xmr-tiny-image"


def test_second_indexer_is_refused(tmp_path: Path, tiny) -> None:
    from indexer.storage.layout import IndexLock

    root = make_media(tmp_path / "media", images=1, audio=0, texts=0)
    with IndexLock(Layout(root / ".xmr")):
        with pytest.raises(indexer.IndexBusyError, match="another xmr process"):
            run(root, tiny)
    assert run(root, tiny).added == 1


def test_decode_workers_give_the_same_vectors(tmp_path: Path, tiny) -> None:
    root = make_media(tmp_path / "media", images=5, audio=3, texts=1)
    run(root, tiny, index_dir=str(tmp_path / "inline"), workers=0)
    run(root, tiny, index_dir=str(tmp_path / "pool"), workers=2, batch_size=3)
    inline, pool = stored(root, tmp_path / "inline"), stored(root, tmp_path / "pool")
    assert set(inline) == set(pool)
    for path in inline:
        np.testing.assert_allclose(inline[path][1], pool[path][1], atol=1e-5)


def test_storage_on_a_real_database(tmp_path: Path, tiny, db_url: str) -> None:
    root = make_media(tmp_path / "media", images=4, audio=2, texts=2)
    first = run(root, tiny, db_url=db_url)
    assert first.counts == {"image": 4, "audio": 2, "text": 2}
    assert read_manifest(Layout(root / ".xmr")).db == db_url
    (root / "notes/note0.txt").unlink()
    second = run(root, tiny)  # the manifest remembers the database
    assert (second.removed, second.unchanged, second.counts["text"]) == (1, 7, 1)
    rows = Store(db_url).items(FILE)
    widths = {unescape_path(r.path): (r.width, r.height) for r in rows if r.modality == "image"}
    assert widths["pics/img0.jpg"] == (48, 48)
    durations = {unescape_path(r.path): (r.duration, r.sample_rate) for r in rows if r.modality == "audio"}
    assert durations["sounds/clip0.flac"] == pytest.approx((1.0, 16000))
    assert_consistent(root / ".xmr")


def test_cli_index_json(tmp_path: Path) -> None:
    from cli import app

    root = make_media(tmp_path / "media", images=2, audio=1, texts=1)
    (root / "bad.png").write_bytes(b"nope")
    result = CliRunner().invoke(app, ["index", str(root), "--model", "xmr-tiny", "--workers", "0", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert {"added", "updated", "moved", "removed", "unchanged", "skipped", "counts"} <= set(summary)
    assert summary["added"] == 4 and summary["counts"] == {"image": 2, "audio": 1, "text": 1}
    assert summary["skipped"] == [
        {"path": str(root / "bad.png"), "reason": "not an image in a known format (unrecognised or damaged header)"}
    ]
    missing = CliRunner().invoke(app, ["index", str(tmp_path / "nope")])
    assert missing.exit_code != 0 and "not a folder" in missing.output


CHILD = """
import sys, indexer, retrieval
enc = retrieval.create_model("xmr-tiny", device="cpu")
opts = indexer.IndexOptions(workers=0, batch_size=8, checkpoint_items=16, index_dir=sys.argv[2])
def progress(done, total):
    print(done, total, flush=True)
indexer.index_folder(sys.argv[1], enc, opts, progress=progress)
print("finished", flush=True)
"""


def _index_and_kill(root: Path, index_dir: Path, after: int) -> bool:
    """Index in a subprocess and SIGKILL it once ``after`` items are embedded; False if it finished first."""
    import signal
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(root), str(index_dir)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parent.parent,
    )
    killed = False
    for line in proc.stdout:
        if line.startswith("finished"):
            break
        done = int(line.split()[0])
        if done >= after:
            proc.send_signal(signal.SIGKILL)
            killed = True
            break
    proc.wait(timeout=120)
    return killed


def test_sigkill_then_resume_loses_and_duplicates_nothing(tmp_path: Path, tiny) -> None:
    root = make_media(tmp_path / "media", images=60, audio=12, texts=8)
    index_dir = tmp_path / "killed"
    kills = sum(_index_and_kill(root, index_dir, after) for after in (20, 45))
    assert kills >= 1
    resumed = run(root, tiny, index_dir=str(index_dir))
    assert resumed.counts == {"image": 60, "audio": 12, "text": 8}
    assert resumed.added < 80  # the killed runs' checkpoints were kept
    assert_consistent(index_dir)
    run(root, tiny, index_dir=str(tmp_path / "clean"))
    killed, clean = stored(root, index_dir), stored(root, tmp_path / "clean")
    assert set(killed) == set(clean)
    ids = [i for i, _ in killed.values()]
    assert len(ids) == len(set(ids))
    for path in clean:
        np.testing.assert_allclose(killed[path][1], clean[path][1], atol=1e-5)


def test_sharded_search_equals_one_flat_index(tmp_path: Path) -> None:
    import faiss

    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((503, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = rng.permutation(10_000)[:503].astype(np.int64)
    shards = ShardSet(tmp_path, "image", 16, "Flat", shard_size=50)
    for start in range(0, 503, 37):
        shards.add(vectors[start : start + 37], ids[start : start + 37])
    shards.flush()
    assert len(shards.existing_paths()) == 11
    reloaded = ShardSet(tmp_path, "image", 16, "Flat", shard_size=50).load()
    flat = faiss.IndexIDMap2(faiss.IndexFlatIP(16))
    flat.add_with_ids(vectors, ids)
    queries = rng.standard_normal((20, 16)).astype(np.float32)
    single = reloaded.search(queries[:1], 5)
    np.testing.assert_array_equal(single[1], flat.search(queries[:1], 5)[1])
    d_ref, i_ref = flat.search(queries, 25)
    d, i = reloaded.search(queries, 25)  # numpy BLAS path over the shards' own memory
    np.testing.assert_allclose(d, d_ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(i, i_ref)
    mapped = ShardSet(tmp_path, "image", 16, "Flat", shard_size=50).load(mmap=True)
    for _ in range(2):  # memory-mapped: FAISS reads the mapping first, then an aligned copy goes to BLAS
        d_map, i_map = mapped.search(queries, 25)
        np.testing.assert_allclose(d_map, d_ref, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(i_map, i_ref)
    assert mapped._views and all(v is not False for v in mapped._views.values())
    d_sel, i_sel = reloaded.search(queries, 25, selector=faiss.IDSelectorBatch(ids))  # FAISS path
    np.testing.assert_allclose(d_sel, d_ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(i_sel, i_ref)
    odd = ids[ids % 2 == 1]
    d_odd, i_odd = reloaded.search(queries, 10, selector=faiss.IDSelectorBatch(odd))
    ref_odd = faiss.IndexIDMap2(faiss.IndexFlatIP(16))
    ref_odd.add_with_ids(vectors[ids % 2 == 1], odd)
    np.testing.assert_array_equal(i_odd, ref_odd.search(queries, 10)[1])
    gone = ids[:100]
    assert reloaded.remove(gone) == 100
    d, i = reloaded.search(queries, 503)
    assert not np.isin(i, gone).any() and (i >= 0).sum() == 20 * 403


@pytest.mark.parametrize("factory", ["IVF4,Flat", "HNSW8"])
def test_other_index_types(tmp_path: Path, factory: str) -> None:
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((300, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = np.arange(1, 301, dtype=np.int64)
    shards = ShardSet(tmp_path, "audio", 8, factory, shard_size=120)
    shards.add(vectors[:200], ids[:200])
    shards.flush()
    shards.add(vectors[200:], ids[200:])
    shards.flush()
    numbers = {part_of(p.name, "audio")[0] for p in shards.existing_paths()}
    assert numbers == {0, 1, 2} and len(shards.existing_paths()) == (4 if factory.startswith("IVF") else 3)
    assert shards.template_path.exists() == factory.startswith("IVF")
    assert shards.remove(ids[:10]) == 10
    shards.flush()
    reloaded = ShardSet(tmp_path, "audio", 8, factory, shard_size=120).load()
    assert sorted(reloaded.ids().tolist()) == list(range(11, 301))
    _, found = reloaded.search(vectors[50:51], 1)
    assert found[0, 0] == 51 or factory.startswith("IVF")  # IVF probes one list: approximate


def test_exact_topk_matches_full_sort() -> None:
    from indexer.storage import exact

    rng = np.random.default_rng(3)
    xb = rng.standard_normal((5000, 12)).astype(np.float32)
    queries = rng.standard_normal((7, 12)).astype(np.float32)
    old = exact.SCORE_BUDGET
    exact.SCORE_BUDGET = 7 * 300  # many chunks
    try:
        scores, rows = exact.topk_inner_product(xb, queries, 40)
    finally:
        exact.SCORE_BUDGET = old
    full = queries @ xb.T
    ref = np.argsort(-full, axis=1, kind="stable")[:, :40]
    np.testing.assert_array_equal(rows, ref)
    np.testing.assert_allclose(scores, np.take_along_axis(full, ref, 1), rtol=1e-6)
    assert exact.topk_inner_product(xb[:3], queries, 10)[1].shape == (7, 3)


def test_block_selection_matches_argpartition() -> None:
    from indexer.storage.exact import BLOCK, _block_topk

    rng = np.random.default_rng(9)
    scores = rng.standard_normal((6, 40 * BLOCK + 77)).astype(np.float32)
    scores[0, -3:] = 50.0  # winners in the ragged tail
    scores[1, ::40] = 40.0  # winners spread over many groups
    scores[2, :BLOCK] = 30.0  # a contiguous run of winners
    got_s, got_c = _block_topk(scores, 12)
    ref = np.argsort(-scores, axis=1, kind="stable")[:, :12]
    np.testing.assert_array_equal(np.sort(got_s, axis=1), np.sort(np.take_along_axis(scores, ref, 1), axis=1))
    np.testing.assert_array_equal(np.take_along_axis(scores, got_c, 1), got_s)


def test_decode_workers_never_import_torch(tmp_path: Path, tiny) -> None:
    import os

    from indexer.ingest.workers import DecodePool
    from tests.helpers import heavy_modules_loaded

    image = write_image(tmp_path / "a.png", seed=1)
    audio = write_audio(tmp_path / "a.wav", seed=2)
    jobs = [(0, str(image), "image", tiny.preprocess_image), (1, str(audio), "audio", tiny.preprocess_audio)]
    before = os.environ.get("OPENBLAS_NUM_THREADS")
    with DecodePool(1) as pool:  # as the indexer starts its workers
        decoded = list(pool.map(jobs))
        loaded = pool.call(heavy_modules_loaded)
        threads = pool.call(os.getenv, "OPENBLAS_NUM_THREADS")
    assert sorted(d.key for d in decoded) == [0, 1] and all(d.ok for d in decoded)
    assert loaded == []
    assert threads == "1", "a worker's log-mel must not spread over the encoder's cores"
    assert os.environ.get("OPENBLAS_NUM_THREADS") == before, "the parent's setting stays"


def test_native_decoder_chatter_goes_to_the_log_not_the_terminal(tmp_path: Path) -> None:
    """libmpg123 writes ``Note: Illegal Audio-MPEG-Header`` to its process's stderr when it
    tries to sync to a file that is no MP3: shown with -v as a log line, else not at all."""
    import subprocess
    import sys

    root = tmp_path / "media"
    write_audio(root / "real.wav", seed=5)
    (root / "fake.mp3").write_text("hello, I am text\n")
    repo = Path(__file__).parent.parent

    def xmr(*extra: str) -> subprocess.CompletedProcess:
        args = ["index", str(root), "--model", "xmr-tiny", "--workers", "1", "--retry-failed", *extra]
        return subprocess.run(
            [sys.executable, "-m", "cli", *args], capture_output=True, text=True, cwd=repo, timeout=300
        )

    quiet = xmr()
    assert quiet.returncode == 0, quiet.stderr
    assert "skipped fake.mp3" in quiet.stderr  # the skip is still said
    assert "Illegal Audio-MPEG-Header" not in quiet.stderr and "Note:" not in quiet.stderr, quiet.stderr
    verbose = xmr("-v")
    chatter = [line for line in verbose.stderr.splitlines() if "Illegal Audio-MPEG-Header" in line]
    assert chatter and all(line.startswith("DEBUG indexer.ingest.workers: decode worker ") for line in chatter), chatter
