"""Retrieval metrics: recall@k, ranks and chance, computed in chunks (CLIP_benchmark protocol).

Queries and gallery items carry caption keys; a gallery item is relevant to a query when
the query's relevant set contains it (text->X: the items with that caption; X->text: the
item's captions). Shared by training validation and ``xmr bench recall``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def first_relevant_ranks(
    queries: np.ndarray, gallery: np.ndarray, relevant: Sequence[Sequence[int]], chunk: int = 1024
) -> np.ndarray:
    """1-based rank of the best-ranked relevant gallery item for each query.

    Ties count against the query (a relevant item ranks after every item with a score at
    least as high), so a constant model cannot score above chance.
    """
    ranks = np.empty(len(queries), dtype=np.int64)
    for start in range(0, len(queries), chunk):
        scores = queries[start : start + chunk] @ gallery.T
        for row, q in enumerate(range(start, min(start + chunk, len(queries)))):
            rel = np.asarray(relevant[q], dtype=np.int64)
            best = scores[row, rel].max()
            ranks[q] = int((scores[row] >= best).sum() - (scores[row, rel] >= best).sum()) + 1
    return ranks


def summarize(
    ranks: np.ndarray, relevant_counts: np.ndarray, gallery: int, ks: Sequence[int] = (1, 5, 10)
) -> dict[str, float]:
    """R@k (percent), median and mean rank, counts and chance@k for one direction."""
    out: dict[str, float] = {f"R@{k}": float(100.0 * (ranks <= k).mean()) for k in ks}
    out.update(
        median_rank=float(np.median(ranks)),
        mean_rank=float(ranks.mean()),
        queries=int(len(ranks)),
        gallery=int(gallery),
    )
    for k in ks:
        out[f"chance@{k}"] = float(100.0 * np.minimum(1.0, k * relevant_counts / gallery).mean())
    return out


def cross_modal_recall(
    item_vecs: np.ndarray, item_captions: Sequence[str], text_vecs: np.ndarray, texts: Sequence[str], modality: str
) -> dict[str, dict[str, float]]:
    """Both directions between items of ``modality`` and their distinct captions.

    Args:
        item_vecs: ``[N, D]`` unit vectors of the items.
        item_captions: the caption key of each item.
        text_vecs: ``[T, D]`` unit vectors of the distinct captions ``texts``.
    Returns:
        ``{"text->M": {...}, "M->text": {...}}`` as :func:`summarize` gives.
    """
    index = {t: i for i, t in enumerate(texts)}
    item_text = np.array([index[c] for c in item_captions])
    items_of_text: list[list[int]] = [[] for _ in texts]
    for item, t in enumerate(item_text):
        items_of_text[t].append(item)
    t2x = first_relevant_ranks(text_vecs, item_vecs, items_of_text)
    x2t = first_relevant_ranks(item_vecs, text_vecs, [[t] for t in item_text])
    return {
        f"text->{modality}": summarize(t2x, np.array([len(r) for r in items_of_text]), len(item_vecs)),
        f"{modality}->text": summarize(x2t, np.ones(len(item_vecs)), len(texts)),
    }


def source_score(by_source: dict[str, dict[str, dict[str, float]]], min_items: int = 20) -> float:
    """Validation score that weighs every source alike: the mean over sources and directions
    of (R@1 + R@10) / 2. R@1 keeps a small gallery in play (among ten digit words R@10 is
    always 100), R@10 a large one; the pooled score hardly sees a source of ten captions.
    Sources of fewer than ``min_items`` items are left out (all are when none is larger): on
    five clips one hit more moves R@1 by 20 points, which says nothing of a checkpoint."""

    def items(directions: dict) -> float:
        return max(r.get("queries", 0) for r in directions.values())

    kept = {s: d for s, d in by_source.items() if d and items(d) >= min_items} or {
        s: d for s, d in by_source.items() if d
    }
    per_source = [np.mean([(r["R@1"] + r["R@10"]) / 2 for r in directions.values()]) for directions in kept.values()]
    return float(np.mean(per_source)) if per_source else 0.0
