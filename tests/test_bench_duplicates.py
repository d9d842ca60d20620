"""``xmr bench duplicates`` (retrieval/bench/duplicates.py) on media made here (the photo-like
pictures, melodies and clips CI can make): it writes its JSON, Markdown and plot, every kind of
copy is scored, and the planted copies among synthetic vectors are found."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from retrieval.bench.duplicates import AUDIO_KINDS, IMAGE_KINDS, run_duplicates, run_scale, score


def test_pair_precision_and_recall_by_hand() -> None:
    source = {"a": "a", "a1": "a", "a2": "a", "b": "b"}
    kind = {"a": "original", "a1": "half", "a2": "grey", "b": "other"}
    got = score([["a", "a1"], ["a2", "b"]], source, kind)
    assert got["overall"] == {"precision": 0.5, "recall": round(1 / 3, 4), "pairs": 3, "found": 2}
    assert got["half"]["recall"] == 0.5 and got["grey"]["precision"] == 0.0


def test_planted_copies_among_synthetic_vectors_are_found() -> None:
    result = run_scale(3000, dim=32, planted=50)
    assert result["recall"] == 1.0 and result["groups"] == 50


@pytest.mark.slow  # xmr-mini over 60 pictures, 8 recordings: about 30 s
def test_the_bench_writes_its_results_and_finds_the_copies(tmp_path: Path) -> None:
    audio = 2 if shutil.which("fpcalc") else 0
    result = run_duplicates(str(tmp_path), originals=5, others=5, audio=audio, videos=0, scale=2000)
    saved = json.loads(Path(result["files"]["json"]).read_text())
    assert set(IMAGE_KINDS) <= set(saved["image"]) and saved["image"]["overall"]["pairs"] == 5 * 11 * 10 // 2
    assert saved["image"]["overall"]["precision"] >= 0.9 and saved["image"]["overall"]["recall"] >= 0.8
    if audio:
        assert set(AUDIO_KINDS) <= set(saved["audio"]) and saved["audio"]["overall"]["recall"] >= 0.9
    assert saved["scale"]["recall"] == 1.0
    assert "precision" in Path(result["files"]["md"]).read_text()


def test_a_photo_held_twice_in_the_folder_counts_as_one_original_and_its_copy() -> None:
    from PIL import Image

    from retrieval.bench.duplicates import _same_pictures, synthetic_photo

    a, b = synthetic_photo(1, scene=0), synthetic_photo(2, scene=0)  # one scene: alike, not the same
    again = Image.fromarray(np.clip(np.asarray(a, dtype=np.int16) + 1, 0, 255).astype(np.uint8))  # re-saved
    assert _same_pictures([a, b, again]) == [0, 1, 0]
