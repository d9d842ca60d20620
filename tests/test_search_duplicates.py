"""Copies found (retrieval/search/duplicates.py, Engine.duplicates): each kind of copy of a photo
(resized, re-saved, cropped, turned, mirrored, grey, captioned, framed), of a recording (MP3,
OGG, resampled, trimmed) and of a video (smaller) grouped with its original; distinct photos of
the same scene are not; groups stable; hostile thresholds refused. Real images, audio, FAISS,
fpcalc and SQLite."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import indexer
from retrieval import Engine
from retrieval.bench.duplicates import IMAGE_KINDS, image_copy, make_audio, make_videos
from retrieval.models.fingerprint import Fingerprinter
from retrieval.search.duplicates import DEFAULT_THRESHOLDS, frame_similarity
from tests.helpers import write_photo

FPCALC = shutil.which("fpcalc") is not None


def _index(root: Path, model) -> None:  # noqa: ANN001
    indexer.index_folder(root, model, indexer.IndexOptions(workers=0, fingerprinter=Fingerprinter()))


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory, tiny) -> Path:
    """One photo and its ten kinds of copy; two other photos of its scene; two of other scenes."""
    root = tmp_path_factory.mktemp("photos")
    original = write_photo(root / "beach.png", seed=1, scene=0)
    img = Image.open(original).convert("RGB")
    for kind in IMAGE_KINDS:
        image_copy(img, kind).save(_at(root, kind), quality=15 if kind == "jpeg15" else 90)
    write_photo(root / "beach-other-day.png", seed=2, scene=0)
    write_photo(root / "beach-evening.png", seed=3, scene=0)
    write_photo(root / "forest.png", seed=4, scene=1)
    write_photo(root / "city.png", seed=5, scene=2)
    _index(root, tiny)
    return root


def _at(root: Path, kind: str) -> Path:
    (root / "copies").mkdir(exist_ok=True)
    return root / "copies" / f"beach-{kind}.jpg"


def test_each_kind_of_copy_of_a_photo_is_grouped_with_it_and_other_photos_of_its_scene_are_not(
    photos: Path, tiny
) -> None:
    with Engine.open(photos / ".xmr", model=tiny) as engine:
        groups = engine.duplicates(modality="image")
    assert len(groups) == 1, [[Path(c.path).name for c in g.items] for g in groups]
    names = {Path(c.path).name for c in groups[0].items}
    assert names == {"beach.png"} | {f"beach-{k}.jpg" for k in IMAGE_KINDS}
    group = groups[0]
    kept = next(c for c in group.items if c.id == group.keep)
    assert kept.width * kept.height == max(c.width * c.height for c in group.items)  # most pixels
    assert group.why and all(c.size > 0 for c in group.items)


def test_groups_are_the_same_run_after_run_and_after_the_index_is_updated(photos: Path, tiny) -> None:
    with Engine.open(photos / ".xmr", model=tiny) as engine:
        first = [g.to_dict() for g in engine.duplicates()]
        assert [g.to_dict() for g in engine.duplicates()] == first
    _index(photos, tiny)  # nothing changed: nothing made again
    with Engine.open(photos / ".xmr", model=tiny) as engine:
        assert [g.to_dict() for g in engine.duplicates()] == first


@pytest.mark.parametrize("threshold", [-0.5, 0, math.nan, math.inf, 1e9, 1.01, "high", True])
def test_a_hostile_threshold_is_a_clear_error(photos: Path, tiny, threshold: object) -> None:
    with Engine.open(photos / ".xmr", model=tiny) as engine:
        with pytest.raises(ValueError, match="threshold must be"):
            engine.duplicates(threshold=threshold)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="modality must be one of"):
            engine.duplicates(modality="pictures")


def test_same_bytes_are_copies_whatever_the_threshold(tmp_path: Path, tiny) -> None:
    root = tmp_path / "media"
    write_photo(root / "a.png", seed=7)
    shutil.copy(root / "a.png", root / "b.png")
    write_photo(root / "c.png", seed=8)
    _index(root, tiny)
    with Engine.open(root / ".xmr", model=tiny) as engine:
        (group,) = engine.duplicates(threshold=1.0)
    assert [Path(c.path).name for c in group.items] == ["a.png", "b.png"] and group.why == "same bytes"
    assert group.keep == group.items[0].id  # equal pixels, equal length: the oldest, then the first path


@pytest.mark.skipif(not FPCALC, reason="fpcalc (Debian libchromaprint-tools) is not installed")
def test_a_recording_re_encoded_resampled_or_trimmed_is_grouped_with_it(tmp_path: Path, tiny) -> None:
    root = tmp_path / "media"
    source, kind = make_audio(root, originals=2, others=2, seed=3)
    _index(root, tiny)
    with Engine.open(root / ".xmr", model=tiny) as engine:
        groups = engine.duplicates(modality="audio")
    found = sorted(sorted(Path(c.path).name for c in g.items) for g in groups)
    expected = sorted(
        sorted(n for n in source if source[n] == o) for o in set(source.values()) if kind[o] == "original"
    )
    assert found == expected
    for g in groups:  # the original: the longest (the trimmed copy is shorter)
        kept = next(c for c in g.items if c.id == g.keep)
        assert kept.duration == max(c.duration for c in g.items)
        assert "acoustic fingerprint" in g.why


# xmr-mini: a random tower sees all clips alike
def test_a_video_re_encoded_smaller_or_cut_is_grouped_with_it(tmp_path: Path) -> None:
    from retrieval import create_model

    mini = create_model("xmr-mini")
    root = tmp_path / "media"
    make_videos(root, originals=1, others=1, seed=5)
    _index(root, mini)
    with Engine.open(root / ".xmr", model=mini) as engine:
        groups = engine.duplicates(modality="video")
    assert [sorted(Path(c.path).name for c in g.items) for g in groups] == [
        ["v0000-cut.mp4", "v0000-smaller.mp4", "v0000.mp4"]
    ]
    assert "frames" in groups[0].why


def test_frames_alike_in_order_against_the_full_matrix() -> None:
    """The diagonal score against a slow reference: every shift, every frame, by hand."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((9, 16))
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    b = np.concatenate([rng.standard_normal((3, 16)), a[:6]])
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    slow = 0.0
    for shift in range(-9, 10):
        pairs = [(i, i + shift) for i in range(len(a)) if 0 <= i + shift < len(b)]
        if len(pairs) >= 5:
            near = [max(float(a[i] @ b[j]) for j in (k - 1, k, k + 1) if 0 <= j < len(b)) for i, k in pairs]
            slow = max(slow, float(np.mean(near)))
    assert frame_similarity(a, b) == pytest.approx(slow, abs=1e-6)
    assert frame_similarity(a, b) > 0.99 > DEFAULT_THRESHOLDS["video"]
