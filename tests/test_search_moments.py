"""Moments of long audio through the index: segments stored with exact times, found by every
query, grouped by file or listed, kept on a move, replaced on a change, gone with the file."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from indexer import IndexOptions, index_folder
from indexer.storage.constants import SCHEMA_VERSION
from indexer.storage.layout import Layout
from indexer.storage.manifest import read_manifest
from indexer.storage.store import Store
from retrieval import Engine

RATE = 16_000


def _tone(seconds: float, freq: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.3 * np.sin(2 * np.pi * freq * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)


def _long(path: Path, clip: np.ndarray, at: float, seconds: float = 12.0) -> None:
    """``seconds`` of quiet with ``clip`` placed at ``at`` seconds (a multiple of the hop)."""
    wave = (0.001 * np.random.default_rng(9).standard_normal(int(seconds * RATE))).astype(np.float32)
    wave[int(at * RATE) : int(at * RATE) + clip.size] = clip
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, wave, RATE, subtype="FLOAT")


@pytest.fixture()
def media(tmp_path: Path) -> dict:
    """A folder: a 12 s recording holding clip B at 6 s, and two short clips (A, C); B's own
    file lies outside the folder, as a query."""
    root = tmp_path / "media"
    clips = {name: _tone(1.0, freq, seed) for name, freq, seed in (("a", 300, 1), ("b", 1200, 2), ("c", 2500, 3))}
    for name in ("a", "c"):
        root.mkdir(parents=True, exist_ok=True)
        sf.write(root / f"{name}.wav", clips[name], RATE, subtype="FLOAT")
    _long(root / "long" / "rec.wav", clips["b"], 6.0)
    sf.write(tmp_path / "b.wav", clips["b"], RATE, subtype="FLOAT")
    return {"root": root, "query": tmp_path / "b.wav", "clips": clips}


def _segments(index: Path) -> list[tuple]:
    with sqlite3.connect(index / "items.db") as conn:
        return conn.execute('SELECT id, item_id, "start", "end" FROM segments ORDER BY "start"').fetchall()


def test_a_long_file_is_found_at_its_moment(media: dict, tiny) -> None:
    summary = index_folder(media["root"], tiny, IndexOptions(workers=0))
    index = media["root"] / ".xmr"
    rows = _segments(index)
    from indexer.storage.check import check_index

    assert check_index(index).ok, check_index(index).problems
    # xmr-tiny's windows are 1 s: a 12 s file has windows every 0.5 s, the last ending at 12 s.
    assert summary.segments == len(rows) == 23
    assert [(s, e) for _, _, s, e in rows][:3] == [(0.0, 1.0), (0.5, 1.5), (1.0, 2.0)] and rows[-1][2:] == (11.0, 12.0)
    with Engine.open(index, model=tiny) as engine:
        (top, *rest) = engine.search(audio=str(media["query"]), to="audio", k=3)
        assert top.path.endswith("rec.wav") and (top.start, top.end) == (6.0, 7.0)
        assert top.id != top.file_id and top.score == pytest.approx(1.0, abs=1e-5)
        assert len({h.file_id for h in [top, *rest]}) == 3, "each file once"
        whole = [h for h in rest if h.start is None]
        assert whole and all(h.file_id == h.id for h in whole)
        listed = engine.search(audio=str(media["query"]), to="audio", k=5, segments=True)
        assert (listed[0].start, listed[0].end) == (6.0, 7.0) and len(listed) == 5
        assert sum(h.path.endswith("rec.wav") for h in listed) >= 3, "segments of one file, each a hit"
        assert json.loads(json.dumps(top.to_dict()))["start"] == 6.0
        # The segment's own vector, and the hit it names.
        assert engine.item(top.id).start == 6.0
        assert np.allclose(engine.vector(top.id), tiny.encode_audio([media["clips"]["b"]])[0], atol=1e-5)
        # Filters apply to the file: its moments go with it.
        assert all(
            not h.path.endswith("rec.wav") for h in engine.search(audio=str(media["query"]), to="audio", path="a*")
        )


def test_moments_follow_the_file_changed_moved_and_deleted(media: dict, tiny) -> None:
    root, index = media["root"], media["root"] / ".xmr"
    index_folder(root, tiny, IndexOptions(workers=0))
    before = _segments(index)
    (root / "long" / "rec.wav").rename(root / "long" / "moved.wav")
    summary = index_folder(root, tiny, IndexOptions(workers=0))
    assert summary.moved == 1 and _segments(index) == before, "a move keeps its segments, ids and all"

    _long(root / "long" / "moved.wav", media["clips"]["b"], 3.0, seconds=8.0)  # changed: B now at 3 s
    summary = index_folder(root, tiny, IndexOptions(workers=0))
    after = _segments(index)
    assert summary.updated == 1 and len(after) == 15 and not {r[0] for r in after} & {r[0] for r in before}
    with Engine.open(index, model=tiny) as engine:
        top = engine.search(audio=str(media["query"]), to="audio", k=1)[0]
        assert top.path.endswith("moved.wav") and top.start == 3.0
        assert engine.index.segment_shards("audio").ntotal == 15

    (root / "long" / "moved.wav").unlink()
    summary = index_folder(root, tiny, IndexOptions(workers=0))
    assert summary.removed == 1 and summary.segments == 0 and _segments(index) == []
    with Engine.open(index, model=tiny) as engine:
        assert engine.index.segment_shards("audio").ntotal == 0


def test_segment_vectors_lost_in_a_crash_are_made_again(media: dict, tiny) -> None:
    """A run killed after a segment shard was rewritten and before its rows were committed
    leaves rows without vectors: the next run embeds the file again; vectors without rows go."""
    root, index = media["root"], media["root"] / ".xmr"
    index_folder(root, tiny, IndexOptions(workers=0))
    rows = _segments(index)
    from indexer.storage.shards import ShardSet

    shards = ShardSet(Layout(index).shards, "audio-segments", tiny.embed_dim).load()
    shards.remove(np.array([r[0] for r in rows[:5]], dtype=np.int64))
    shards.add(np.ones((1, tiny.embed_dim), np.float32) / np.sqrt(tiny.embed_dim), np.array([rows[-1][0] + 100]))
    shards.flush()
    from indexer.storage.check import check_index

    kinds = sorted(p.kind for p in check_index(index).problems)
    assert kinds == ["missing-vector", "orphan-vector"], kinds  # the doctor sees both
    summary = index_folder(root, tiny, IndexOptions(workers=0))
    assert summary.updated == 1 and summary.segments == len(rows)
    assert check_index(index).ok
    assert [r[2:] for r in _segments(index)] == [r[2:] for r in rows]
    with Engine.open(index, model=tiny) as engine:
        assert engine.index.segment_shards("audio").ntotal == len(rows)
        assert engine.search(audio=str(media["query"]), to="audio", k=1)[0].start == 6.0


def test_segments_through_decode_workers_and_on_postgresql(media: dict, tiny, db_url: str) -> None:
    index_folder(media["root"], tiny, IndexOptions(db_url=db_url, workers=1))
    index = media["root"] / ".xmr"
    with Engine.open(index, model=tiny) as engine:
        top = engine.search(audio=str(media["query"]), to="audio", k=1)[0]
        assert top.path.endswith("rec.wav") and (top.start, top.end) == (6.0, 7.0)
    assert not any((index / "scratch").glob("*")), "scratch files are removed once embedded"


def test_an_index_made_before_segments_upgrades_in_place(media: dict, tiny) -> None:
    root, index = media["root"], media["root"] / ".xmr"
    (root / "long" / "rec.wav").unlink()
    index_folder(root, tiny, IndexOptions(workers=0))
    with sqlite3.connect(index / "items.db") as conn:  # schema 2: all but the segments table
        conn.execute("DROP TABLE segments")
        conn.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    store = Store.of_index(f"sqlite:///{index / 'items.db'}", read_manifest(Layout(index)))
    store.close()
    with sqlite3.connect(index / "items.db") as conn:
        assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (str(SCHEMA_VERSION),)
    _long(root / "long" / "rec.wav", media["clips"]["b"], 6.0)
    assert index_folder(root, tiny, IndexOptions(workers=0)).segments == 23


def test_long_audio_indexed_before_segments_gains_them_at_the_next_run(media: dict, tiny) -> None:
    root, index = media["root"], media["root"] / ".xmr"
    index_folder(root, tiny, IndexOptions(workers=0))
    with sqlite3.connect(index / "items.db") as conn:  # as an index made before segments holds it
        conn.execute("DELETE FROM segments")
    (Layout(index).shards / "audio-segments-00000.faiss").unlink(missing_ok=True)
    summary = index_folder(root, tiny, IndexOptions(workers=0))
    assert summary.updated == 1 and summary.unchanged == 2 and summary.segments == 23
    again = index_folder(root, tiny, IndexOptions(workers=0))
    assert again.updated == 0 and again.unchanged == 3, "once made, nothing more to do"


def test_the_cli_shows_moments_as_times_urls_and_one_path_a_file(media: dict, tiny) -> None:
    import os
    import subprocess
    import sys

    root_dir = Path(__file__).resolve().parent.parent
    index_folder(media["root"], tiny, IndexOptions(workers=0))
    base = [sys.executable, "-m", "cli", "search", "--audio", str(media["query"]), "--to", "audio"]
    base += ["--index", str(media["root"] / ".xmr")]
    env = {**os.environ, "PYTHONPATH": str(root_dir)}

    def run(*args: str) -> str:
        done = subprocess.run([*base, *args], capture_output=True, text=True, env=env, cwd=root_dir, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout

    table = run("-k", "2").splitlines()
    assert table[1].endswith("rec.wav  00:00:06-00:00:07"), table
    urls = run("-k", "1", "--urls").split()
    assert urls == [f"file://{media['root'] / 'long' / 'rec.wav'}#t=6,7"]
    listed = run("-k", "4", "--segments", "--paths").splitlines()
    assert listed.count(str(media["root"] / "long" / "rec.wav")) == 1, "one path a file"
    moments = json.loads(run("-k", "5", "--segments", "--json"))
    assert sum(h["start"] is not None for h in moments) >= 3


def test_the_http_api_carries_moments_and_serves_their_file(media: dict, tiny) -> None:
    pytest.importorskip("fastapi", reason="the serve extra is not installed")
    from fastapi.testclient import TestClient

    from retrieval.server.app import create_app

    index_folder(media["root"], tiny, IndexOptions(workers=0))
    engine = Engine.open(media["root"] / ".xmr", model=tiny)
    with TestClient(create_app(engine), base_url="http://localhost") as client:
        upload = {"audio": ("b.wav", media["query"].read_bytes())}
        top = client.post("/api/v1/search", data={"to": "audio", "k": "2"}, files=upload).json()["results"]["audio"][0]
        assert (top["start"], top["end"]) == (6.0, 7.0) and top["path"] == "long/rec.wav"
        assert top["media_url"] == f"/api/v1/items/{top['file_id']}/media"
        media_bytes = client.get(top["media_url"]).content
        assert media_bytes == (media["root"] / "long" / "rec.wav").read_bytes()
        listed = client.post("/api/v1/search", data={"to": "audio", "k": "5", "segments": "true"}, files=upload)
        assert sum(h["start"] is not None for h in listed.json()["results"]["audio"]) >= 3
        bad = client.post("/api/v1/search", data={"to": "audio", "segments": "maybe"}, files=upload)
        assert bad.status_code == 400 and bad.json()["error"]["field"] == "segments"
    engine.close()


@pytest.mark.parametrize("crash", ["shard-written:1", "shard-written:2", "shard-written:3", "rows-committed:1"])
def test_kills_while_moments_are_written_end_equal_to_a_clean_run(tmp_path: Path, tiny, crash: str) -> None:
    """Long files changed between runs, the second run killed in a window of a checkpoint (item
    shards, segment shards, rows): the next run ends with the moments a clean run makes."""
    import subprocess
    import sys

    from tests.helpers import touch_later
    from tests.test_ingest_crash import WINDOW_CHILD

    root = tmp_path / "media"
    clips = [_tone(1.0, 300 + 200 * n, n) for n in range(6)]
    fresh = {n: _tone(1.0, 3000 + 150 * n, 50 + n) for n in (0, 2, 4)}  # what the changed files hold
    for n in range(6):
        _long(root / f"rec{n}.wav", clips[n], 1.0 + n % 4, seconds=6.0)
    index_dir, root_dir = tmp_path / "index", Path(__file__).resolve().parent.parent

    def child(crash_at: str = "") -> int:
        env = {**__import__("os").environ, "XMR_CRASH_AT": crash_at}
        proc = subprocess.run(
            [sys.executable, "-c", WINDOW_CHILD, str(root), str(index_dir), "", "Flat", "0"],
            cwd=root_dir, env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert proc.returncode in (0, -9), proc.stderr
        return proc.returncode

    assert child() == 0
    for n in range(0, 6, 2):  # three recordings change: their moments must be made anew
        _long(root / f"rec{n}.wav", fresh[n], 3.0, seconds=7.0)
        touch_later(root / f"rec{n}.wav")
    (root / "rec5.wav").unlink()
    assert child(crash) == -9
    assert child() == 0
    index_folder(root, tiny, IndexOptions(workers=0, index_dir=str(tmp_path / "clean")))

    def moments(folder: Path) -> list[tuple[str, float, float]]:
        with sqlite3.connect(folder / "items.db") as conn:
            return sorted(
                conn.execute(
                    'SELECT i.path, s."start", s."end" FROM segments s JOIN items i ON i.id = s.item_id'
                ).fetchall()
            )

    assert moments(index_dir) == moments(tmp_path / "clean")
    with Engine.open(index_dir, model=tiny) as engine:
        assert engine.index.segment_shards("audio").ntotal == len(moments(index_dir))
        for n in (0, 2, 4):  # the changed files' clip is found at its new moment
            top = engine.search(audio=[fresh[n]], to="audio", k=1)[0]
            assert top.path.endswith(f"rec{n}.wav") and top.start == 3.0


def test_an_ivf_index_searches_its_moments_exactly(media: dict, tiny) -> None:
    """Too few segments to train an IVF of their own: they are kept Flat (exact)."""
    (media["root"] / "more").mkdir()
    for n in range(40):  # enough audio files to train the items' IVF4
        sf.write(media["root"] / "more" / f"{n}.wav", _tone(1.0, 100 + 37 * n, 100 + n), RATE)
    summary = index_folder(media["root"], tiny, IndexOptions(workers=0, index_type="IVF4,Flat"))
    assert summary.segments == 23 and summary.skipped == []
    with Engine.open(media["root"] / ".xmr", model=tiny) as engine:
        top = engine.search(audio=str(media["query"]), to="audio", k=1)[0]
        assert top.path.endswith("rec.wav") and top.start == 6.0


def test_a_moment_url_of_a_name_that_is_not_utf8_keeps_its_bytes() -> None:
    import os
    from types import SimpleNamespace
    from urllib.parse import unquote_to_bytes

    from cli import _url

    name = os.fsdecode(b"/m/caf\xe9 rec#1.wav")  # Latin-1 bytes, a space and a '#' in the name
    url = _url(SimpleNamespace(path=name, start=6.0, end=7.0))
    assert url.endswith("#t=6,7") and url.count("#") == 1
    assert unquote_to_bytes(url[len("file://") : url.index("#")]) == b"/m/caf\xe9 rec#1.wav"
    assert _url(SimpleNamespace(path="/m/a.wav", start=None, end=None)) == "file:///m/a.wav"
