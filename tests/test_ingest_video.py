"""Video (issue 21): frames sampled every N seconds as image segments, the soundtrack's windows
as audio segments, both in the index with exact times; mp4 and webm made here with PyAV."""

from __future__ import annotations

import json
import logging
import os
import pickle
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from indexer import IndexOptions, index_folder
from indexer.ingest.segments import SEGMENTS_KEY
from indexer.ingest.video import Frames, SegmentingVideo, VideoDecodeError, sample_frames
from retrieval import Engine
from retrieval.models.audio import AudioPreprocessor
from retrieval.models.image import ImagePreprocessor
from retrieval.search.query import QueryError
from tests.helpers import write_video

pytestmark = pytest.mark.slow  # minutes of kills, rebuilds, clusters or training: left out by -m "not slow"

RATE = 16_000
IMAGE = ImagePreprocessor(64)
AUDIO = AudioPreprocessor()


def _pictures(n: int, seed: int = 0, size: tuple[int, int] = (64, 96)) -> list[np.ndarray]:
    """``n`` pictures unlike one another: blocky random colours (H.264 keeps them recognisable)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        blocks = rng.integers(0, 256, (size[0] // 16, size[1] // 16, 3), dtype=np.uint8)
        out.append(np.kron(blocks, np.ones((16, 16, 1), np.uint8)))
    return out


def _tone(seconds: float, freq: float, seed: int = 0) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    noise = 0.02 * np.random.default_rng(seed).standard_normal(t.size)
    return (0.3 * np.sin(2 * np.pi * freq * t) + noise).astype(np.float32)


def _reference_frames(path: Path) -> dict[float, np.ndarray]:
    """The slow reference: every frame decoded in order, by its time."""
    import av

    out: dict[float, np.ndarray] = {}
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        base = stream.start_time or 0
        for frame in c.decode(stream):
            out[float((frame.pts - base) * stream.time_base)] = np.asarray(frame.to_image())
    return out


@pytest.mark.parametrize(
    ("name", "gop", "every"),
    [
        ("keyframes.mp4", None, 2.0),  # a keyframe a picture: pass 1 alone
        ("longgop.mp4", 50, 2.0),  # a keyframe every 5 s: the slots between are sought
        ("dense.webm", None, 0.5),  # VP9, four slots a keyframe
        ("keyframes.mkv", 10, 1.0),
    ],
)
def test_sampled_frames_equal_the_first_frame_of_each_slot_decoded_in_order(
    tmp_path: Path, name: str, gop: int | None, every: float
) -> None:
    path = write_video(tmp_path / name, _pictures(5), seconds_each=2.0, fps=10, gop=gop)
    info = Frames()
    got = list(sample_frames(path, every, info))
    ref = _reference_frames(path)
    assert sorted(slot for slot, _, _ in got) == list(range(int(10 / every))), "every slot once"
    for slot, time, image in got:
        assert slot * every <= time < (slot + 1) * every
        assert np.array_equal(np.asarray(image), ref[time]), (slot, time)
    assert (info.width, info.height) == (96, 64) and info.duration == pytest.approx(10.0, abs=0.05)


def test_a_rotated_phone_video_is_sampled_upright(tmp_path: Path) -> None:
    import av

    picture = np.zeros((64, 96, 3), np.uint8)
    picture[:, :16] = 255  # a white band on the left, which a clockwise turn puts on top
    with av.open(str(tmp_path / "portrait.mp4"), "w") as out:
        stream = out.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        stream.set_display_rotation(-90)
        for i in range(10):
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    info = Frames()
    ((_, _, image),) = list(sample_frames(tmp_path / "portrait.mp4", 2.0, info))
    pixels = np.asarray(image)
    assert image.size == (64, 96) and (info.width, info.height) == (64, 96)
    assert pixels[:12].mean() > 200 and pixels[-40:].mean() < 20


def test_segmenting_a_video_writes_its_frames_and_soundtrack(tmp_path: Path) -> None:
    pictures = _pictures(4)
    wave = np.concatenate([np.zeros(3 * RATE, np.float32), _tone(3.0, 660), np.zeros(2 * RATE, np.float32)])
    path = write_video(tmp_path / "clip.mp4", pictures, seconds_each=2.0, fps=10, wave=wave)
    pre = pickle.loads(pickle.dumps(SegmentingVideo(IMAGE, AUDIO, str(tmp_path / "scratch"))))  # as a worker gets it
    features, meta = pre.process(path)
    assert features is None
    frames, sound = meta.pop(SEGMENTS_KEY)
    assert meta == {"width": 96, "height": 64, "duration": pytest.approx(8.0, abs=0.1), "sample_rate": RATE}
    assert frames.modality == "image" and frames.starts == [0.0, 2.0, 4.0, 6.0] and frames.ends[:3] == [2.0, 4.0, 6.0]
    ref = _reference_frames(path)
    crops = frames.features()
    assert crops.dtype == np.uint8 and crops.shape == (4, 64, 64, 3)
    for k in range(4):  # each frame through the image preprocessor, as an image file would go
        assert np.array_equal(IMAGE.normalize(crops[k : k + 1])[0], IMAGE.from_rgb(Image.fromarray(ref[2.0 * k])))
    # Silence is no moment: the windows that hear the tone (3-6 s) only, and the tone alone.
    assert sound.modality == "audio" and sound.starts == [0.0, 2.5, 2.9, 5.0] and sound.ends[2] == 6.1
    for seg in (frames, sound):
        seg.discard()
    assert not os.listdir(tmp_path / "scratch")


def test_a_video_without_sound_or_with_a_silent_one_has_frames_only(tmp_path: Path) -> None:
    pre = SegmentingVideo(IMAGE, AUDIO, str(tmp_path / "scratch"))
    mute = write_video(tmp_path / "mute.webm", _pictures(2), seconds_each=2.0)
    silent = write_video(tmp_path / "silent.mp4", _pictures(2), seconds_each=2.0, wave=np.zeros(4 * RATE, np.float32))
    for path in (mute, silent):
        _, meta = pre.process(path)
        (frames,) = meta[SEGMENTS_KEY]
        assert frames.modality == "image" and frames.count == 2 and meta["sample_rate"] is None
        frames.discard()
    assert not os.listdir(tmp_path / "scratch")


def test_an_mp4_of_sound_alone_is_indexed_by_its_soundtrack(tmp_path: Path) -> None:
    import av

    with av.open(str(tmp_path / "talk.mp4"), "w") as out:
        stream = out.add_stream("aac", rate=RATE, layout="mono")
        wave = _tone(12.0, 440)
        for start in range(0, wave.size, 1024):
            frame = av.AudioFrame.from_ndarray(wave[None, start : start + 1024], format="fltp", layout="mono")
            frame.sample_rate = RATE
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    _, meta = SegmentingVideo(IMAGE, AUDIO, str(tmp_path / "scratch")).process(tmp_path / "talk.mp4")
    (sound,) = meta[SEGMENTS_KEY]
    assert sound.modality == "audio" and sound.count == 4 and meta["width"] is None and meta["sample_rate"] == RATE
    sound.discard()


def test_a_video_that_is_not_one_is_refused_with_its_reason(tmp_path: Path) -> None:
    (tmp_path / "fake.mp4").write_bytes(b"not a video at all" * 100)
    with pytest.raises(VideoDecodeError, match="cannot open video"):
        SegmentingVideo(IMAGE, AUDIO, str(tmp_path / "scratch")).process(tmp_path / "fake.mp4")
    assert not os.listdir(tmp_path / "scratch")


def test_a_truncated_video_keeps_what_decoded_and_says_so(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # Matroska carries its index up front, so a cut file still opens (an mp4 whose index was cut
    # off cannot be read at all, and is skipped with FFmpeg's reason).
    path = write_video(tmp_path / "cut.mkv", _pictures(10), seconds_each=2.0, fps=10, wave=_tone(20.0, 440))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with caplog.at_level(logging.WARNING):
        _, meta = SegmentingVideo(IMAGE, AUDIO, str(tmp_path / "scratch")).process(path)
    frames = next(s for s in meta[SEGMENTS_KEY] if s.modality == "image")
    assert 2 <= frames.count < 10 and max(frames.ends) <= meta["duration"] < 20.0
    assert "the video stream ends near 10.0 s, before the 20.1 s its header promises" in caplog.text
    for seg in meta[SEGMENTS_KEY]:
        seg.discard()
    cut_mp4 = write_video(tmp_path / "cut.mp4", _pictures(10), seconds_each=2.0, fps=10)
    cut_mp4.write_bytes(cut_mp4.read_bytes()[:5000])
    with pytest.raises(VideoDecodeError, match="cannot open video"):
        SegmentingVideo(IMAGE, AUDIO, str(tmp_path / "scratch")).process(cut_mp4)


@pytest.mark.parametrize("gop", [None, 50])
def test_frames_stop_at_the_limit_of_segments_and_say_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, gop: int | None
) -> None:
    """The first slots are kept, whichever pass finds their frames, and the log says from when on
    the frames are not indexed."""
    path = write_video(tmp_path / "long.mp4", _pictures(6), seconds_each=2.0, gop=gop)
    with caplog.at_level(logging.WARNING):
        _, meta = SegmentingVideo(IMAGE, None, str(tmp_path / "scratch"), max_segments=3).process(path)
    (frames,) = meta[SEGMENTS_KEY]
    assert frames.count == 3 and frames.truncated and sorted(frames.starts) == [0.0, 2.0, 4.0]
    assert "more than 3 segments; the frames after 6 s are not indexed" in caplog.text
    assert meta["duration"] == pytest.approx(12.0, abs=0.1)
    frames.discard()


# --- through the index ------------------------------------------------------------------------


@pytest.fixture()
def videos(tmp_path: Path) -> dict:
    """A folder with a 12 s mp4 (six pictures, a tone from 6 s to 9 s) and a mute 6 s webm; the
    fourth picture and the tone as query files outside it."""
    root = tmp_path / "media"
    pictures = _pictures(9, seed=3)
    tone = _tone(3.0, 880, seed=1)
    wave = np.zeros(12 * RATE, np.float32)
    wave += 0.001 * np.random.default_rng(2).standard_normal(wave.size).astype(np.float32)
    wave[6 * RATE : 9 * RATE] = tone
    write_video(root / "film.mp4", pictures[:6], seconds_each=2.0, fps=10, wave=wave)
    write_video(root / "clips" / "mute.webm", pictures[6:9], seconds_each=2.0, fps=10)
    Image.fromarray(pictures[3]).save(tmp_path / "picture3.png")
    sf.write(tmp_path / "tone.wav", tone, RATE)
    return {"root": root, "picture": tmp_path / "picture3.png", "tone": tmp_path / "tone.wav", "pictures": pictures}


def _segments(root: Path) -> list[tuple]:
    with sqlite3.connect(root / ".xmr" / "items.db") as db:
        return db.execute(
            'SELECT items.path, segments.modality, segments."start", segments."end", segments.id '
            "FROM segments JOIN items ON items.id = segments.item_id ORDER BY 1, 2, 3"
        ).fetchall()


def test_videos_index_with_their_moments_and_file_vectors_are_the_means(tiny, videos: dict) -> None:
    root = videos["root"]
    summary = index_folder(root, tiny, IndexOptions(workers=1))
    assert summary.added == 2 and summary.counts == {"video": 2} and not summary.skipped
    rows = _segments(root)
    frames = [(p, a, b) for p, m, a, b, _ in rows if m == "image"]
    assert frames == [("clips/mute.webm", a, a + 2.0) for a in (0.0, 2.0, 4.0)] + [
        ("film.mp4", a, a + 2.0) for a in (0.0, 2.0, 4.0, 6.0, 8.0, 10.0)
    ]
    sound = [(p, a) for p, m, a, _, _ in rows if m == "audio"]
    assert {p for p, _ in sound} == {"film.mp4"}, "the mute video has no soundtrack moments"
    with Engine.open(root, model=tiny) as engine:
        film = next(h for h in engine.search(vector=np.ones(tiny.embed_dim), to="image", k=5) if "film" in h.path)
        assert film.modality == "video" and film.track == "image"
        assert film.metadata["width"] == 96 and film.metadata["sample_rate"] == RATE
        for track in ("image", "audio"):
            seg_ids = [i for p, m, _, _, i in rows if p == "film.mp4" and m == track]
            shards = engine.index.segment_shards(track)
            mean = shards.reconstruct(np.array(seg_ids)).astype(np.float64).mean(axis=0)
            own = engine.shards(track).reconstruct(np.array([film.file_id]))[0]
            assert np.allclose(own, mean / np.linalg.norm(mean), atol=1e-5)
        assert engine.shards("audio").ntotal == 1, "the mute video has no audio vector"
        assert np.array_equal(
            engine.vector(film.file_id), engine.shards("image").reconstruct(np.array([film.file_id]))[0]
        )
        sound = engine.vector(film.file_id, track="audio")
        assert np.array_equal(sound, engine.shards("audio").reconstruct(np.array([film.file_id]))[0])
        mute = next(h for h in engine.search(vector=np.ones(tiny.embed_dim), to="image", k=5) if "mute" in h.path)
        with pytest.raises(QueryError, match="has no audio vector"):
            engine.vector(mute.file_id, track="audio")


def test_an_image_finds_the_frame_and_a_sound_finds_the_soundtrack_moment(tiny, videos: dict) -> None:
    root = videos["root"]
    index_folder(root, tiny, IndexOptions(workers=1))
    with Engine.open(root, model=tiny) as engine:
        (hit,) = engine.search(image=videos["picture"], to="image", k=1, segments=True)
        assert hit.path.endswith("film.mp4") and (hit.start, hit.end) == (6.0, 8.0) and hit.track == "image"
        assert hit.file_id != hit.id and engine.item(hit.id).start == 6.0
        grouped = engine.search(image=videos["picture"], to="image", k=5)
        assert [h.path.rsplit("/", 1)[-1] for h in grouped] == ["film.mp4", "mute.webm"], "a file once"
        assert (grouped[0].start, grouped[0].end) == (6.0, 8.0)
        hits = engine.search(audio=videos["tone"], to="audio", k=1, segments=True)
        assert hits[0].track == "audio" and 4.0 <= hits[0].start <= 6.0 and hits[0].end <= 11.0
        # Filters apply to the file: the 6 s webm is too short for this one.
        long_only = engine.search(image=videos["picture"], to="image", k=5, min_duration=10)
        assert [h.path.rsplit("/", 1)[-1] for h in long_only] == ["film.mp4"]
        short = engine.search(image=videos["picture"], to="image", k=5, max_duration=7)
        assert [h.path.rsplit("/", 1)[-1] for h in short] == ["mute.webm"]


def test_a_changed_video_replaces_its_moments_a_moved_one_keeps_them_a_deleted_one_loses_them(
    tiny, videos: dict
) -> None:
    root = videos["root"]
    index_folder(root, tiny, IndexOptions(workers=1))
    before = _segments(root)
    # Moved: the same segment ids and times under the new path.
    (root / "moved").mkdir()
    shutil.move(root / "film.mp4", root / "moved" / "film.mp4")
    summary = index_folder(root, tiny, IndexOptions(workers=1))
    assert summary.moved == 1 and summary.added == 0
    assert [r[1:] for r in _segments(root) if r[0] == "moved/film.mp4"] == [r[1:] for r in before if r[0] == "film.mp4"]
    # Changed: now mute and shorter; its old frames, soundtrack and audio vector all go.
    write_video(root / "moved" / "film.mp4", videos["pictures"][:2], seconds_each=2.0, fps=10)
    summary = index_folder(root, tiny, IndexOptions(workers=1))
    assert summary.updated == 1
    after = [r for r in _segments(root) if r[0] == "moved/film.mp4"]
    assert [(m, a) for _, m, a, _, _ in after] == [("image", 0.0), ("image", 2.0)]
    with Engine.open(root, model=tiny) as engine:
        assert engine.shards("audio").ntotal == 0 and engine.index.segment_shards("audio").ntotal == 0
        assert engine.index.segment_shards("image").ntotal == 5
    # Deleted: its moments go with it.
    (root / "moved" / "film.mp4").unlink()
    assert index_folder(root, tiny, IndexOptions(workers=1)).removed == 1
    assert {r[0] for r in _segments(root)} == {"clips/mute.webm"}
    with Engine.open(root, model=tiny) as engine:
        assert engine.index.segment_shards("image").ntotal == 3 and engine.shards("image").ntotal == 1


def test_bad_and_cut_videos_are_reported_and_the_rest_indexed(tiny, videos: dict) -> None:
    root = videos["root"]
    (root / "broken.mov").write_bytes(b"\x00\x00\x00\x18ftypqt  " + bytes(4000))
    summary = index_folder(root, tiny, IndexOptions(workers=1))
    assert summary.added == 2
    (reason,) = [s["reason"] for s in summary.skipped if s["path"].endswith("broken.mov")]
    assert reason.startswith("cannot open video")


def test_the_cli_prints_a_video_moment_with_its_times_and_url(tiny, videos: dict) -> None:
    import subprocess
    import sys

    root = videos["root"]
    index_folder(root, tiny, IndexOptions(workers=1))
    repo = Path(__file__).resolve().parent.parent
    base = [sys.executable, "-m", "cli", "search", "--image", str(videos["picture"]), "--to", "image", "-k", "1"]
    base += ["--index", str(root / ".xmr")]

    def run(*args: str) -> str:
        done = subprocess.run(
            [*base, *args],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(repo)},
            cwd=repo,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    table = run().splitlines()
    assert table[0] == "== image ==" and table[1].endswith("film.mp4  00:00:06-00:00:08"), table
    assert run("--urls").split() == [f"file://{root / 'film.mp4'}#t=6,8"]
    (hit,) = json.loads(run("--json"))
    assert hit["modality"] == "video" and hit["track"] == "image" and (hit["start"], hit["end"]) == (6.0, 8.0)


def test_a_new_frame_interval_embeds_the_videos_again_and_is_kept(tiny, videos: dict) -> None:
    root = videos["root"]
    index_folder(root, tiny, IndexOptions(workers=1))
    frames = lambda: [(p, a) for p, m, a, _, _ in _segments(root) if m == "image"]  # noqa: E731
    assert len(frames()) == 9
    summary = index_folder(root, tiny, IndexOptions(workers=1, frame_seconds=1.0))
    assert summary.updated == 2 and len(frames()) == 18
    again = index_folder(root, tiny, IndexOptions(workers=1))  # not given: as the index was built
    assert again.updated == 0 and again.unchanged == 2 and len(frames()) == 18
    assert json.loads((root / ".xmr" / "manifest.json").read_text())["options"]["frame_seconds"] == 1.0


VIDEO_CHILD = """
import sys, indexer, retrieval

enc = retrieval.create_model("xmr-tiny", device="cpu")
root, frame_seconds = sys.argv[1], sys.argv[2]
every = float(frame_seconds) if frame_seconds else None
opts = indexer.IndexOptions(workers=1, checkpoint_items=1, frame_seconds=every)
indexer.index_folder(root, enc, opts)
"""


def _index_child(root: Path, crash: str = "", frame_seconds: str = "") -> int:
    import signal
    import subprocess
    import sys

    repo = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, "-c", VIDEO_CHILD, str(root), frame_seconds],
        cwd=repo,
        env={**os.environ, "XMR_CRASH_AT": crash, "PYTHONPATH": str(repo)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode in (0, -signal.SIGKILL), done.stderr
    return done.returncode


@pytest.mark.parametrize(
    "crash",
    [
        "shard-written:1",  # a new video's frames' vector written, its soundtrack's and its rows not
        "shard-written:3",  # its segments' shards too, rows not committed
        "rows-committed:2",  # after the second video's commit
    ],
)
def test_a_kill_while_indexing_videos_ends_equal_to_a_clean_run(tiny, videos: dict, crash: str) -> None:
    """Killed in the windows between a video's four shard writes and its rows, then run again:
    the same videos, moments and vectors as an index made in one go."""
    from indexer.storage.check import check_index

    root = videos["root"]
    write_video(root / "third.mkv", videos["pictures"][3:5], seconds_each=2.0, wave=_tone(4.0, 330))
    assert _index_child(root, crash=crash) != 0
    assert _index_child(root) == 0
    report = check_index(root / ".xmr")
    assert report.ok, report.problems
    got = _segments(root)
    clean = videos["root"].parent / "clean"
    shutil.copytree(root, clean, ignore=shutil.ignore_patterns(".xmr"))
    index_folder(clean, tiny, IndexOptions(workers=1))
    assert [r[:4] for r in got] == [r[:4] for r in _segments(clean)]
    with Engine.open(root, model=tiny) as a, Engine.open(clean, model=tiny) as b:
        for track in ("image", "audio"):
            assert a.shards(track).ntotal == b.shards(track).ntotal == (3 if track == "image" else 2)
            for hit in b.search(vector=np.ones(tiny.embed_dim), to=track, k=5):
                twin = a.search(vector=b.vector(hit.file_id) if track == "image" else _own(b, hit), to=track, k=1)
                assert twin[0].path.replace(str(root), "") == hit.path.replace(str(clean), "")
                assert twin[0].score == pytest.approx(1.0, abs=1e-5)


def _own(engine: Engine, hit) -> np.ndarray:  # noqa: ANN001 - a Hit
    return engine.shards("audio").reconstruct(np.array([hit.file_id]))[0]


SPANS = """SELECT item_id, max("end" - "start") FROM segments WHERE modality = 'image' GROUP BY 1"""


def test_a_frame_interval_change_cut_short_is_finished_by_the_next_run(tiny, videos: dict) -> None:
    root = videos["root"]
    write_video(root / "third.mkv", videos["pictures"][3:5], seconds_each=2.0)
    assert _index_child(root) == 0
    assert _index_child(root, crash="rows-committed:1", frame_seconds="1.0") != 0  # one video redone, then killed
    with sqlite3.connect(root / ".xmr" / "items.db") as db:
        spans = dict(db.execute(SPANS))
    assert sorted(spans.values()) == [1.0, 2.0, 2.0]
    assert _index_child(root) == 0  # no --frame-seconds: the change asked for is finished
    with sqlite3.connect(root / ".xmr" / "items.db") as db:
        spans = dict(db.execute(SPANS))
    assert sorted(spans.values()) == [1.0, 1.0, 1.0]
    manifest = json.loads((root / ".xmr" / "manifest.json").read_text())
    assert manifest["options"]["frame_seconds"] == 1.0 and "reframing" not in manifest
    summary = index_folder(root, tiny, IndexOptions(workers=1))
    assert summary.updated == 0 and summary.unchanged == 3


def test_the_http_api_groups_video_hits_by_track_and_likes_either(tiny, videos: dict) -> None:
    pytest.importorskip("fastapi", reason="the serve extra is not installed")
    from fastapi.testclient import TestClient

    from retrieval.server.app import create_app

    root = videos["root"]
    index_folder(root, tiny, IndexOptions(workers=1))
    engine = Engine.open(root, model=tiny)
    with TestClient(create_app(engine), base_url="http://localhost") as client:
        upload = {"image": ("p.png", videos["picture"].read_bytes())}
        results = client.post("/api/v1/search", data={"to": "all", "k": "3"}, files=upload).json()["results"]
        top = results["image"][0]
        assert top["modality"] == "video" and top["track"] == "image" and (top["start"], top["end"]) == (6.0, 8.0)
        assert top["media_url"] == f"/api/v1/items/{top['file_id']}/media" and top["thumbnail_url"] is None
        assert all(h["track"] == "audio" for h in results["audio"]), "a soundtrack hit is among the audio"
        media = client.get(top["media_url"])
        assert media.headers["content-type"] == "video/mp4" and media.content == (root / "film.mp4").read_bytes()
        film = top["file_id"]
        for track in ("image", "audio"):
            liked = client.post("/api/v1/search", data={"like": str(film), "like_track": track, "to": track, "k": "1"})
            (same,) = liked.json()["results"][track]
            assert same["file_id"] == film and same["score"] == pytest.approx(1.0, abs=1e-5)
        bad = client.post("/api/v1/search", data={"like": str(film), "like_track": "smell"})
        assert bad.status_code == 400 and bad.json()["error"]["field"] == "like_track"
    engine.close()


def test_a_video_whose_name_is_not_utf8_is_indexed_with_its_moments(tiny, tmp_path: Path) -> None:
    root = tmp_path / "media"
    path = write_video(root / "ok.mp4", _pictures(2), seconds_each=2.0, wave=_tone(4.0, 440))
    odd = os.fsdecode(bytes(root) + b"/caf\xe9.mp4")
    os.rename(path, odd)
    summary = index_folder(root, tiny, IndexOptions(workers=1))
    assert summary.added == 1 and not summary.skipped and summary.segments >= 3
    with Engine.open(root, model=tiny) as engine:
        (hit,) = engine.search(vector=np.ones(tiny.embed_dim), to="image", k=1)
        assert os.fsencode(hit.path).endswith(b"caf\xe9.mp4") and hit.track == "image"
