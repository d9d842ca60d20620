"""``--to video`` (issue 31, 4): ``xmr info`` counts videos, so a search may ask for them: the
videos' frames and soundtracks are searched, and only videos are found."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from retrieval import Engine
from retrieval.search.query import QueryError
from tests.helpers import make_media, write_video
from tests.test_ingest_indexer import run

RATE = 16_000


def _pictures(n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [np.kron(rng.integers(0, 256, (4, 6, 3), dtype=np.uint8), np.ones((16, 16, 1), np.uint8)) for _ in range(n)]


@pytest.fixture(scope="module")
def with_videos(tmp_path_factory: pytest.TempPathFactory, tiny) -> Path:
    root = make_media(tmp_path_factory.mktemp("videos") / "media", images=4, audio=3, texts=2)
    t = np.arange(6 * RATE) / RATE
    wave = (0.3 * np.sin(2 * np.pi * 330 * t)).astype(np.float32)
    write_video(root / "clips" / "a.mp4", _pictures(3, 1), seconds_each=2.0, fps=10, wave=wave)
    write_video(root / "clips" / "b.webm", _pictures(2, 2), seconds_each=2.0)  # no sound: frames only
    summary = run(root, tiny)
    assert summary.counts.get("video") == 2, summary.counts
    return root


def test_to_video_finds_only_videos_through_their_frames_and_soundtracks(with_videos: Path, tiny) -> None:
    with Engine.open(with_videos, model=tiny) as engine:
        hits = engine.search(text="a red bicycle", to="video", k=5)
        assert hits and {h.modality for h in hits} == {"video"}
        assert {h.track for h in hits} == {"image", "audio"}  # a.mp4's soundtrack; both videos' frames
        assert {Path(h.path).name for h in hits if h.track == "image"} == {"a.mp4", "b.webm"}
        assert [Path(h.path).name for h in hits if h.track == "audio"] == ["a.mp4"]
        # Against the slow reference: the image search's own video hits, in its order.
        every = engine.search(text="a red bicycle", to="image", k=100)
        assert [h.path for h in hits if h.track == "image"] == [h.path for h in every if h.modality == "video"]
        # With a modality asked for itself, that one is not restricted to videos.
        both = engine.search(text="a red bicycle", to=["video", "image"], k=10)
        assert {h.modality for h in both} == {"image", "video"}
        filtered = engine.search(text="a red bicycle", to="video", ext=["webm"], k=5)
        assert {Path(h.path).name for h in filtered} == {"b.webm"}
        batch = engine.search_batch([{"text": "a red bicycle", "to": "video"}], k=5)[0]
        assert [h.id for h in batch] == [h.id for h in hits]


def test_to_video_on_a_model_without_image_or_audio_is_refused_with_the_reason(with_videos: Path) -> None:
    from retrieval.search.engine import video_targets

    with pytest.raises(QueryError, match="no image or audio tower"):
        video_targets(["video"], ("text",))


def test_the_cli_takes_to_video(with_videos: Path) -> None:
    from cli import app

    result = CliRunner().invoke(app, ["search", "a red bicycle", "--index", str(with_videos), "--to", "video"])
    assert result.exit_code == 0, result.output
    assert "a.mp4" in result.output and "b.webm" in result.output and "img" not in result.output
    import typer

    (to,) = [p for p in typer.main.get_command(app).commands["search"].params if p.name == "to"]
    assert "image, audio, video (videos alone, by their frames and soundtracks), text or all" in to.help
