"""What the moment benchmarks share (long audio, :mod:`.moments`; video, :mod:`.video_moments`):
the captions drawn, and how a search for each is scored against where it was placed."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .recall import load_captioned

RATE = 16_000
NEAR = 5.0  # seconds: a moment is found when the segment's centre lies this close to the clip


def _decode(path: str) -> np.ndarray:
    import soundfile as sf

    from ..models.audio import resample, to_mono

    data, rate = sf.read(path, dtype="float32", always_2d=True)
    return resample(to_mono(data), int(rate), RATE)


def _found(hit: Any, span: tuple[float, float]) -> bool:
    """The hit's moment overlaps ``span`` and its centre lies within NEAR seconds of it."""
    if hit.start is None:
        return False
    lo, hi = span
    centre = (hit.start + hit.end) / 2
    distance = 0.0 if lo <= centre <= hi else min(abs(centre - lo), abs(centre - hi))
    return hit.start < hi and hit.end > lo and distance <= NEAR


def choose_captions(manifests: list[str], modality: str, count: int, seed: int, what: str) -> list[tuple[str, str]]:
    """``count`` distinct captions of ``modality`` items in the manifests, each with one item's
    path, drawn with ``seed``.

    Raises:
        ValueError: fewer distinct captions than ``count`` (``what`` says what they are for).
    """
    by_caption: dict[str, str] = {}
    for it in (it for m in manifests for it in load_captioned(m) if it.modality == modality):
        by_caption.setdefault(it.captions[0], it.path)
    captions = sorted(by_caption)
    chosen = [captions[i] for i in np.random.default_rng(seed).permutation(len(captions))[:count]]
    if len(chosen) < count:
        raise ValueError(f"{len(chosen)} distinct captions, {count} needed ({what})")
    return [(c, by_caption[c]) for c in chosen]


def score(
    long_index: Path, pieces_index: Path, truth: list[tuple[str, str, float, float]], to: str, piece: Any, encoder: Any
) -> dict[str, Any]:
    """File R@1/R@5 and moment accuracy of each caption searched in ``long_index`` (truth:
    caption, file name, start, end), against clip R@1 in ``pieces_index``, where the n-th
    caption's own piece is the file named ``piece(n)``."""
    from ..search.engine import Engine

    file_r1 = file_r5 = moment = clip_r1 = 0
    with Engine.open(long_index, model=encoder) as engine:
        for caption, name, lo, hi in truth:
            hits = engine.search(text=caption, to=to, k=5)
            names = [os.path.basename(h.path) for h in hits]
            file_r1 += bool(names) and names[0] == name
            file_r5 += name in names
            moment += bool(hits) and names[0] == name and _found(hits[0], (lo, hi))
    with Engine.open(pieces_index, model=encoder) as engine:
        for n, (caption, *_) in enumerate(truth):
            hits = engine.search(text=caption, to=to, k=1)
            clip_r1 += bool(hits) and os.path.basename(hits[0].path) == piece(n)
    n = len(truth)
    part: dict[str, Any] = {
        "file_R@1": round(100 * file_r1 / n, 1),
        "file_R@5": round(100 * file_r5 / n, 1),
        "moment_accuracy": round(100 * moment / n, 1),
        "clip_R@1": round(100 * clip_r1 / n, 1),
    }
    part["moment_vs_clip"] = round(part["moment_accuracy"] / part["clip_R@1"], 3) if clip_r1 else None
    return part
