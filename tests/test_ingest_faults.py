"""Faults that used to hang a run or lose index data (issue "Reliability II"): dying and hung
decoders, NUL bytes, indexes sharing a database, unreadable folders, mass removals, repairs
that forget the options, rebuilds cut short, duplicate hits, absurd headers, links."""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import indexer
from indexer.ingest.decode import decode, decode_text
from indexer.storage.check import check_index
from indexer.storage.layout import Layout
from indexer.storage.manifest import read_manifest
from indexer.storage.paths import unescape_path
from indexer.storage.schema import FILE, TEXT_LINE
from indexer.storage.shards import ShardSet
from indexer.storage.store import Store
from retrieval import Engine
from tests.helpers import CountedJobs, WithFaults, make_media, touch_later, write_image, write_text
from tests.test_ingest_indexer import assert_consistent, run

ROOT = Path(__file__).parent.parent


def _cli(*args: str):
    from cli import app

    return CliRunner().invoke(app, list(args))


def _skipped(summary: indexer.Summary, root: Path) -> dict[str, str]:
    return {os.path.relpath(s["path"], root): s["reason"] for s in summary.skipped}


def _decode_workers() -> list[int]:
    """Pids of this process's decode workers."""
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == os.getpid() and b"indexer.ingest.workers" in cmd:
            out.append(int(pid))
    return out


# --- 1. decoders that die, hang or raise -------------------------------------------------
def test_a_killed_decode_worker_is_replaced_and_the_run_completes(tmp_path: Path, tiny) -> None:
    root = make_media(tmp_path / "media", images=300, audio=4, texts=2)
    result: dict = {}
    killed: list[int] = []

    def progress(done: int, total: int) -> None:
        if done >= 40 and not killed:
            pids = _decode_workers()
            if pids:
                os.kill(pids[0], signal.SIGKILL)  # what the OOM killer does
                killed.append(pids[0])

    def work() -> None:
        result["summary"] = indexer.index_folder(
            root, tiny, indexer.IndexOptions(workers=1, batch_size=8), progress=progress
        )

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    thread.join(timeout=240)
    assert not thread.is_alive(), "the run hangs after its decode worker was killed"
    assert killed, "no decode worker was seen"
    summary = result["summary"]
    assert summary.skipped == []  # the file in flight decoded fine when retried alone
    assert summary.counts == {"image": 300, "audio": 4, "text": 2}
    assert_consistent(root / ".xmr")


def test_a_decoder_that_crashes_hangs_or_raises_skips_only_its_file(tmp_path: Path, tiny) -> None:
    root = make_media(tmp_path / "media", images=12, audio=2, texts=1)
    for name in ("crash.png", "hang.png", "raise.png", "slow.png"):
        write_image(root / "bad" / name, seed=len(name))
    enc = WithFaults(tiny, slow_seconds=5.0)
    started = time.monotonic()
    summary = indexer.index_folder(root, enc, indexer.IndexOptions(workers=2, decode_timeout=2.5))
    assert time.monotonic() - started < 120
    reasons = _skipped(summary, root)
    assert reasons["bad/crash.png"] == "decoder crashed (signal 11)"
    assert reasons["bad/hang.png"] == "decoder made no progress for 2.5 s"
    assert reasons["bad/raise.png"].startswith("decoder error: KeyError")
    assert "bad/slow.png" not in reasons  # 5 s of decoding, but reading all along: never cut
    assert summary.counts == {"image": 13, "audio": 2, "text": 1}
    assert_consistent(root / ".xmr")

    # Crashed and hung files are remembered: not tried again until they change.
    again = indexer.index_folder(root, enc, indexer.IndexOptions(workers=1, decode_timeout=2.5))
    reasons = _skipped(again, root)
    assert "not tried again until the file changes" in reasons["bad/crash.png"]
    assert "not tried again until the file changes" in reasons["bad/hang.png"]
    assert reasons["bad/raise.png"].startswith("decoder error")  # a plain error is cheap: tried each run
    touch_later(root / "bad/crash.png")
    changed = indexer.index_folder(root, enc, indexer.IndexOptions(workers=1, decode_timeout=2.5))
    assert _skipped(changed, root)["bad/crash.png"] == "decoder crashed (signal 11)"
    # --retry-failed: the real decoder now reads them (a fixed codec), and they are indexed.
    fixed = indexer.index_folder(root, tiny, indexer.IndexOptions(workers=1, retry_failed=True))
    assert fixed.added == 3 and fixed.skipped == []
    assert fixed.counts["image"] == 16


def test_readme_snippet_runs_as_a_plain_script(tmp_path: Path) -> None:
    """Workers never re-run the caller's script (no ``if __name__ == "__main__":`` needed)."""
    import subprocess
    import sys

    root = make_media(tmp_path / "media", images=4, audio=1, texts=1)
    script = tmp_path / "snippet.py"
    script.write_text(
        "import indexer, retrieval\n"
        "model = retrieval.create_model('xmr-tiny', device='cpu')\n"
        f"summary = indexer.index_folder({str(root)!r}, model, indexer.IndexOptions(workers=2))\n"
        "print(summary.counts)\n"
    )
    proc = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 0, proc.stderr
    assert "'image': 4" in proc.stdout


# --- 2. text with NUL bytes, any encoding ------------------------------------------------
@pytest.mark.parametrize(
    "data, expected",
    [
        ("a note about rain".encode("utf-16"), "a note about rain"),
        (
            "a note about rain".encode("utf-16-be"),
            "a note about rain",
        ),  # no BOM, NULs: UTF-8 with NULs dropped would garble
        (b"\xef\xbb\xbfcaf\xc3\xa9", "café"),
        ("café".encode("utf-32"), "café"),
        ("naïve résumé".encode("cp1252"), "naïve résumé"),
        (b"nul\x00in\x00utf8", "nulinutf8"),
    ],
)
def test_text_is_decoded_by_its_bom_and_loses_nul_bytes(data: bytes, expected: str) -> None:
    got = decode_text(data)
    assert got == expected and "\x00" not in got


def test_utf16_notes_and_texts_index_on_every_backend(tmp_path: Path, tiny, db_url: str) -> None:
    root = make_media(tmp_path / "media", images=2, audio=0, texts=0)
    (root / "notes").mkdir()
    (root / "notes/windows.txt").write_bytes("a windows note about lighthouses\r\n".encode("utf-16"))
    labels = tmp_path / "labels.txt"
    labels.write_bytes("first label\nsecond\x00 label\n".encode("utf-16"))
    summary = run(root, tiny, db_url=db_url, texts=[str(labels)])
    assert summary.skipped == [] and summary.counts == {"image": 2, "text": 3}
    again = run(root, tiny, db_url=db_url, texts=[str(labels)])
    assert (again.added, again.unchanged) == (0, 5)
    with Engine.open(root, model=tiny) as engine:
        hits = engine.search(text="a windows note about lighthouses", to="text", k=1)
        assert hits[0].path.endswith("windows.txt") and hits[0].text == "a windows note about lighthouses"
        lines = engine.search(text="second label", to="text", k=1)
        assert (lines[0].text, lines[0].line) == ("second label", 2)


# --- 3. several indexes in one database --------------------------------------------------
def test_indexes_sharing_a_database_keep_their_own_rows(tmp_path: Path, tiny, db_url: str) -> None:
    a = make_media(tmp_path / "a", images=4, audio=1, texts=1, seed=1)
    b = make_media(tmp_path / "b", images=3, audio=2, texts=0, seed=2)
    first = run(a, tiny, db_url=db_url)
    second = run(b, tiny, db_url=db_url)
    assert second.removed == 0 and second.counts == {"image": 3, "audio": 2}
    assert run(a, tiny).counts == {"image": 4, "audio": 1, "text": 1}  # the manifest remembers the database
    for root, counts in ((a, first.counts), (b, second.counts)):
        assert_consistent(root / ".xmr")
        with Engine.open(root, model=tiny) as engine:
            assert engine.info()["counts"] == {m: counts.get(m, 0) for m in ("image", "audio", "text")}
            hits = engine.search(text="x", to="image", k=50)
            assert {Path(h.path).parent.parent for h in hits} == {root}
    rebuilt = run(b, tiny, rebuild=True)
    assert rebuilt.added == 5 and run(a, tiny).unchanged == 6  # a rebuild of b leaves a alone
    store = Store(db_url)
    roots = sorted(unescape_path(i["root"]) for i in store.indexes())
    store.close()
    assert roots == sorted([str(a), str(b)])


# --- 4. folders that cannot be read; mass removals ---------------------------------------
# Permission faults need a user that permissions bind: root without its overrides
# (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH) is refused what its files' modes refuse, as their
# owner would be, and still reaches pytest's private temporary folders.
UNPRIVILEGED = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--inh-caps=-dac_override,-dac_read_search"]


INDEX_AS_NOBODY = """
import json, sys, indexer, retrieval
enc = retrieval.create_model("xmr-tiny", device="cpu")
try:
    s = indexer.index_folder(sys.argv[1], enc, indexer.IndexOptions(workers=0, allow_mass_removal=sys.argv[2] == "1"))
    print(json.dumps(s.to_dict()))
except indexer.XmrIndexError as exc:
    print("ERROR " + str(exc))
"""


def test_a_folder_that_cannot_be_listed_keeps_its_rows(tmp_path: Path) -> None:
    import subprocess
    import sys

    root = make_media(tmp_path / "media", images=8, audio=2, texts=2)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def index(allow: bool = False) -> str:
        proc = subprocess.run(
            [*UNPRIVILEGED, sys.executable, "-c", INDEX_AS_NOBODY, str(root), "1" if allow else "0"],
            capture_output=True,
            text=True,
            timeout=180,
            cwd=ROOT,
            env=env,
        )
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.strip().splitlines()[-1]

    assert json.loads(index())["counts"] == {"image": 8, "audio": 2, "text": 2}
    os.chmod(root / "photos", 0o000)  # EACCES: the 4 photos cannot be seen
    try:
        summary = json.loads(index())
    finally:
        os.chmod(root / "photos", 0o755)
    assert summary["removed"] == 0 and summary["kept"] == 4
    assert any(
        s["path"].endswith("photos") and "cannot list folder: Permission denied" in s["reason"]
        for s in summary["skipped"]
    )
    assert summary["counts"] == {"image": 8, "audio": 2, "text": 2}


def test_a_run_that_would_remove_most_of_the_index_refuses(tmp_path: Path, tiny) -> None:
    root = make_media(tmp_path / "media", images=20, audio=4, texts=2)
    run(root, tiny)
    (root / "pics").rename(tmp_path / "elsewhere-pics")
    (root / "photos").rename(tmp_path / "elsewhere-photos")  # 20 of 26 gone: an unmounted drive?
    with pytest.raises(indexer.MassRemovalError, match="would remove 20 of the 26 indexed files.*--allow-mass-removal"):
        run(root, tiny)
    refused = _cli("index", str(root), "--model", "xmr-tiny", "--workers", "0")
    assert refused.exit_code == 1 and "Nothing was removed" in refused.output
    assert check_index(root / ".xmr", check_files=False).counts == {"image": 20, "audio": 4, "text": 2}
    allowed = run(root, tiny, allow_mass_removal=True)
    assert allowed.removed == 20 and allowed.counts == {"audio": 4, "text": 2}


# --- 5. doctor --fix replays the recorded options ----------------------------------------
def test_doctor_fix_replays_the_options_the_index_was_built_with(tmp_path: Path, tiny, db_url: str) -> None:
    root = make_media(tmp_path / "media", images=4, audio=1, texts=1)
    write_image(root / "private/secret.png", seed=99)
    labels = write_text(tmp_path / "labels.txt", "a dog\na cat\n")
    run(root, tiny, db_url=db_url, exclude=["private/*"], texts=[str(labels)])
    manifest = read_manifest(Layout(root / ".xmr"))
    assert manifest.options == {
        "exclude": ["private/*"],
        "texts": [str(labels)],
        "links": "inside",
        "frame_seconds": 2.0,
    }
    for shard in ("image-00000.faiss", "text-00000.faiss"):
        path = root / ".xmr/shards" / shard
        path.write_bytes(path.read_bytes()[:64])
    (root / ".xmr/manifest.json").write_text("{damaged")
    fixed = _cli("doctor", "--index", str(root / ".xmr"), "--fix", "--json")
    assert fixed.exit_code == 0, fixed.output
    report = check_index(root / ".xmr")
    assert report.ok and report.counts == {
        "image": 4,
        "audio": 1,
        "text": 3,
    }  # secret.png still left out, the labels back
    rows = Store.of_index(db_url, read_manifest(Layout(root / ".xmr")))
    assert not [r for r in rows.items(FILE) if "private" in r.path]
    assert sorted(r.text for r in rows.items(TEXT_LINE)) == ["a cat", "a dog"]
    rows.close()


# --- 6. a rebuild cut short --------------------------------------------------------------
def test_a_rebuild_cut_short_never_leaves_old_vectors_under_the_new_model(tmp_path: Path, tiny, monkeypatch) -> None:
    from retrieval import create_model

    root = make_media(tmp_path / "media", images=4, audio=1, texts=1)
    run(root, tiny)
    other = create_model("xmr-tiny", device="cpu", seed=1)
    assert other.weights_hash != tiny.weights_hash

    def interrupted(*args, **kwargs):  # noqa: ANN002, ANN003
        raise KeyboardInterrupt  # Ctrl-C just as the old rows were to go

    monkeypatch.setattr(Store, "delete_all", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run(root, other, rebuild=True)
    monkeypatch.undo()
    manifest = read_manifest(Layout(root / ".xmr"))
    if manifest.weights_hash == other.weights_hash:  # the new model's name: no old vector may be left
        assert check_index(root / ".xmr", check_files=False).counts == {}
    with pytest.raises(indexer.IndexMismatchError):
        run(root, other)  # the half-done rebuild is not silently accepted
    assert run(root, other, rebuild=True).counts == {"image": 4, "audio": 1, "text": 1}


# --- 7. a search between two shard renames -----------------------------------------------
def test_hits_are_unique_even_when_an_id_is_in_two_shards(tmp_path: Path, tiny) -> None:
    root = make_media(tmp_path / "media", images=9, audio=0, texts=0)
    run(root, tiny, shard_size=4)
    layout = Layout(root / ".xmr")
    shards = ShardSet(layout.shards, "image", tiny.embed_dim, shard_size=4).load()
    assert len(shards.shards) == 3
    twice = int(shards.ids()[0])
    shards.add(shards.reconstruct(np.array([twice])) * 0.99, np.array([twice]))  # its "new" vector in the last shard
    shards.flush()
    with Engine.open(root, model=tiny) as engine:
        vector = shards.reconstruct(np.array([twice]))[0]
        hits = engine.search(vector=vector, to="image", k=9)
    assert [h.id for h in hits].count(twice) == 1 and len(hits) == 9


# --- 8. absurd headers cost a header read ------------------------------------------------
def test_absurd_headers_are_refused_before_the_samples_are_read(tmp_path: Path, tiny) -> None:
    import struct

    import soundfile as sf

    wide = tmp_path / "wide.wav"
    sf.write(wide, np.zeros((100, 1024), np.float32), 8000, subtype="PCM_16")
    fast = tmp_path / "fast.wav"
    body = b"\x00\x00" * 1000
    fast.write_bytes(
        b"RIFF"
        + struct.pack("<I", 36 + len(body))
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, 50_000_000, 100_000_000, 2, 16)
        + b"data"
        + struct.pack("<I", len(body))
        + body
    )
    for path, fragment in ((wide, "1024 channels"), (fast, "sample rate of 50000000 Hz")):
        result = decode((0, str(path), "audio", tiny.preprocess_audio))
        assert not result.ok and fragment in result.reason, result.reason


def test_a_huge_image_file_is_not_read_whole(tmp_path: Path, tiny) -> None:
    """A 2 GB sparse ``.png`` whose header promises 100000 x 100000 pixels: refused by its header,
    with the decoding process never near the file's size in memory."""
    import resource
    import subprocess
    import sys

    write_image(tmp_path / "small.png", seed=1, size=8)
    import zlib

    data = bytearray((tmp_path / "small.png").read_bytes())
    data[16:24] = (100_000).to_bytes(4, "big") * 2  # IHDR width and height, and its checksum
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")
    huge = tmp_path / "huge.png"
    with open(huge, "wb") as f:
        f.write(data)
        f.truncate(2 << 30)
    child = (
        "import sys, resource, retrieval; from indexer.ingest.decode import decode\n"
        "pre = retrieval.create_model('xmr-tiny', device='cpu').preprocess_image\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "r = decode((0, sys.argv[1], 'image', pre))\n"
        "print(r.ok, r.reason, (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", child, str(huge)], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    ok, *words = out.stdout.split()
    assert ok == "False" and "image too large" in " ".join(words), out.stdout + out.stderr
    assert int(words[-1]) < 200, f"grew {words[-1]} MB decoding a refused image"
    del resource


# --- 9. symbolic links -------------------------------------------------------------------
def test_links_stay_inside_the_folder_unless_asked(tmp_path: Path, tiny) -> None:
    outside = make_media(tmp_path / "outside", images=3, audio=0, texts=0, seed=4)
    secret = write_text(tmp_path / "srv/secret.txt", "the secret password\n")
    root = make_media(tmp_path / "media", images=2, audio=0, texts=0)
    os.symlink(outside, root / "x")
    os.symlink(secret, root / "notes.txt")
    os.symlink(root / "pics/img0.jpg", root / "photos/alias.jpg")  # inside: followed
    inside = run(root, tiny)
    reasons = _skipped(inside, root)
    assert "outside the indexed folder" in reasons["x"] and "outside the indexed folder" in reasons["notes.txt"]
    assert inside.counts == {"image": 3}
    followed = run(root, tiny, links="follow")
    assert followed.counts == {"image": 6, "text": 1}
    assert check_index(root / ".xmr").ok  # asked for
    # Back to inside, asked for: the links are no longer followed; their rows are kept, not
    # removed, and the doctor names the files that lie outside.
    back = run(root, tiny, links="inside")
    assert back.removed == 0 and back.kept == 4 and back.counts == {"image": 6, "text": 1}
    doctor = check_index(root / ".xmr")
    assert not doctor.ok and [p.kind for p in doctor.problems] == ["outside-root"] and doctor.problems[0].count == 4
    assert run(root, tiny, links="none").counts == {"image": 6, "text": 1}


@pytest.mark.parametrize("factory", ["Flat", "IVF4,Flat", "HNSW16", "SQ8"])
def test_removing_vectors_leaves_every_other_id_on_its_own_vector(tmp_path: Path, factory: str) -> None:
    """Checked against the vectors themselves: after removals (an update removes the old vector),
    each remaining id still finds its own vector first. IVF used to shift ids by one."""
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((200, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = np.arange(1000, 1200, dtype=np.int64)
    shards = ShardSet(tmp_path, "image", 32, factory, shard_size=64)
    shards.add(vectors, ids)
    shards.flush()
    shards.remove(ids[::3])
    shards.flush()
    loaded = ShardSet(tmp_path, "image", 32, factory, shard_size=64).load()
    keep = np.setdiff1d(np.arange(200), np.arange(200)[::3])
    assert sorted(loaded.ids().tolist()) == ids[keep].tolist()
    _, found = loaded.search(vectors[keep], 1)
    assert (found[:, 0] == ids[keep]).mean() >= 0.99


def test_decoded_results_never_pile_up_ahead_of_a_slow_encoder(tmp_path: Path, tiny) -> None:
    """The pool takes a job from the source only when one of its few slots is free: however slow
    the consumer, at most ``workers x depth`` decoded items wait (old Pool.imap: all of them)."""
    from indexer.ingest.workers import DecodePool

    files = [write_image(tmp_path / f"{n}.png", seed=n) for n in range(40)]
    jobs = CountedJobs(files, tiny.preprocess_image)

    ahead = []
    with DecodePool(2, depth=2) as pool:
        for done, result in enumerate(pool.map(jobs), 1):
            assert result.ok
            time.sleep(0.05)  # a slow encoder
            ahead.append(jobs.taken - done)
    assert done == 40 and max(ahead) <= 2 * 2


# --- found by a fresh read of the change -------------------------------------------------
MAIN_CLASS_SCRIPT = """
import sys, indexer, retrieval
class MyImages:  # defined in the script: decode workers never import it
    def __init__(self, inner):
        self.inner = inner
    def process(self, source):
        return self.inner.process(source)
class Wrapped:
    def __init__(self, model):
        self._model = model
        self.preprocess_image = MyImages(model.preprocess_image)
    def __getattr__(self, name):
        return getattr(self._model, name)
enc = Wrapped(retrieval.create_model("xmr-tiny", device="cpu"))
s = indexer.index_folder(sys.argv[1], enc, indexer.IndexOptions(workers=1))
print(sorted({x["reason"] for x in s.skipped}))
"""


def test_a_job_a_worker_cannot_load_is_reported_not_remembered(tmp_path: Path, tiny) -> None:
    import subprocess
    import sys

    root = make_media(tmp_path / "media", images=3, audio=0, texts=0)
    proc = subprocess.run(
        [sys.executable, "-c", MAIN_CLASS_SCRIPT, str(root)],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 0, proc.stderr
    assert "cannot be loaded in a decode worker" in proc.stdout and "importable module" in proc.stdout
    assert "crashed" not in proc.stdout
    assert run(root, tiny, workers=1).added == 3  # nothing was remembered against the files


def test_a_link_that_loops_on_itself_is_skipped_not_fatal(tmp_path: Path, tiny) -> None:
    root = make_media(tmp_path / "media", images=2, audio=0, texts=0)
    os.symlink("selfloop", root / "selfloop")
    summary = run(root, tiny)
    assert summary.counts == {"image": 2}
    assert "cannot stat" in _skipped(summary, root)["selfloop"]


def test_a_lost_manifest_costs_nothing(tmp_path: Path, tiny) -> None:
    root = make_media(tmp_path / "media", images=3, audio=1, texts=1)
    run(root, tiny)
    (root / ".xmr/manifest.json").unlink()  # the backup beside it remains
    assert "backup is intact" in _cli("doctor", "--index", str(root / ".xmr")).output
    assert _cli("doctor", "--index", str(root / ".xmr"), "--fix").exit_code == 0
    assert (root / ".xmr/manifest.json").is_file()
    (root / ".xmr/manifest.json").unlink()
    again = run(root, tiny)
    assert (again.added, again.unchanged) == (0, 5)
    for name in ("manifest.json", "manifest.backup.json"):
        (root / ".xmr" / name).unlink()  # both gone: the copy in the database is found by the folder
    third = run(root, tiny)
    assert (third.added, third.unchanged) == (0, 5)
    store = Store(f"sqlite:///{root / '.xmr/items.db'}")
    assert len(store.indexes()) == 1
    store.close()


def test_two_indexers_start_at_once_on_a_new_database(tmp_path: Path, db_url: str) -> None:
    import subprocess
    import sys

    child = (
        "import sys, indexer, retrieval\nenc = retrieval.create_model('xmr-tiny', device='cpu')\n"
        "print(indexer.index_folder(sys.argv[1], enc, indexer.IndexOptions(workers=0, db_url=sys.argv[2])).counts)\n"
    )
    roots = [make_media(tmp_path / f"m{n}", images=4 + n, audio=1, texts=0, seed=n) for n in range(2)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", child, str(r), db_url],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for r in roots
    ]
    outs = [p.communicate(timeout=180) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [e for _, e in outs]
    ids = []
    for n, r in enumerate(roots):
        reader = Store.of_index(db_url, read_manifest(Layout(r / ".xmr")))
        assert reader.counts() == {"image": 4 + n, "audio": 1}
        ids.append(reader.ids())
        reader.close()
    assert not ids[0] & ids[1]


def test_a_texts_line_with_a_lone_surrogate_is_kept_readable(tmp_path: Path, tiny, db_url: str) -> None:
    root = make_media(tmp_path / "media", images=1, audio=0, texts=0)
    labels = tmp_path / "labels.jsonl"
    labels.write_text('{"text": "bad \\ud800 line"}\n{"text": "good line"}\n', encoding="utf-8")
    summary = run(root, tiny, db_url=db_url, texts=[str(labels)])
    assert summary.counts == {"image": 1, "text": 2}
    store = Store(db_url)
    assert sorted(r.text for r in store.items(TEXT_LINE)) == ["bad \ufffd line", "good line"]
    store.close()


def test_doctor_fix_can_be_allowed_a_mass_removal(tmp_path: Path, tiny) -> None:
    root = make_media(tmp_path / "media", images=22, audio=0, texts=0)
    run(root, tiny)
    shard = root / ".xmr/shards/image-00000.faiss"
    shard.write_bytes(shard.read_bytes()[:64])
    shutil.rmtree(root / "pics")
    sorted((root / "photos").iterdir())[0].unlink()  # 12 of 22 gone
    refused = _cli("doctor", "--index", str(root), "--fix")
    assert refused.exit_code == 1 and "--allow-mass-removal" in refused.output
    assert _cli("doctor", "--index", str(root), "--fix", "--allow-mass-removal").exit_code == 0
    assert check_index(root / ".xmr").counts == {"image": 10}


@pytest.mark.parametrize("keep", [0, 41, 64, 200])
def test_a_truncated_shard_is_refused_never_a_crash(tmp_path: Path, tiny, keep: int) -> None:
    """Memory-mapped, a shard shorter than its header says used to kill the reading process
    (a segfault in FAISS): the engine, the doctor and a server with it. Checked in a child."""
    import subprocess
    import sys

    root = make_media(tmp_path / "media", images=22, audio=0, texts=0)
    run(root, tiny)
    shard = root / ".xmr/shards/image-00000.faiss"
    shard.write_bytes(shard.read_bytes()[:keep])
    child = (
        "import sys\nfrom retrieval import Engine\n"
        "try:\n    Engine.open(sys.argv[1])\nexcept Exception as exc:\n    print(exc)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", child, str(root)], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr[-500:]
    assert "image-00000.faiss is unreadable" in proc.stdout
