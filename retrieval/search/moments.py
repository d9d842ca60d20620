"""Moments: hits on the segments of long files (``<modality>-segments`` shards), merged with
the file-level hits of the same modality.

By default a file appears once, scored by the best of its file vector and its segments found
for the query, with that segment's times when a segment wins; with ``segments=True`` every
matching segment is a hit of its own (and files without segments, short ones, stay as they
are), and ``k`` counts segments. Segment candidates come from FAISS, over-fetched (``FETCH``
times ``k``) so that many segments of one file do not crowd others out.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from indexer.storage.constants import INDEXED

from .query import Hit
from .selection import OVERFETCH, id_selector

FETCH = 8  # segment candidates per hit asked for


def with_moments(
    engine: Any, modality: str, queries: np.ndarray, hits: list[list[Hit]], k: int, allowed: Any, segments: bool
) -> list[list[Hit]]:
    """``hits`` (file-level, per query, ranked) merged with ``modality``'s segment hits."""

    shards = engine.index.segment_shards(modality)
    if shards is None or shards.ntotal == 0:
        return hits
    selector = None
    if allowed is not None:  # filters apply to the file: its segments pass when it does
        chosen = np.array(sorted(engine.index.segment_ids_of(allowed, modality)), dtype=np.int64)
        if not len(chosen):
            return hits
        selector = id_selector(chosen)
    scores, ids = shards.search(queries, (k + OVERFETCH) * FETCH, selector=selector)
    seg_rows = engine.index.segment_rows(np.unique(ids[ids >= 0]))
    items = engine.index.rows(sorted({r.item_id for r in seg_rows.values()}))
    with_segments: set[int] = set()
    if segments:
        listed = sorted({h.id for q in hits for h in q})
        with_segments = set(engine.index.segment_ids_of(listed, modality).values()) if listed else set()
    out = []
    for q in range(len(queries)):
        found: list[tuple[float, Any, Any]] = []  # (score, item row, segment row), best first
        for score, seg_id in zip(scores[q], ids[q]):
            seg = seg_rows.get(int(seg_id))
            item = items.get(seg.item_id) if seg is not None else None
            if item is not None and item.status == INDEXED:
                found.append((float(score), item, seg))
        if segments:
            ranked = [(h.score, h) for h in hits[q] if h.id not in with_segments]
            ranked += [(s, engine.hit_of(0, s, item, segment=seg)) for s, item, seg in found]
        else:
            merged = {h.file_id if h.file_id is not None else h.id: (h.score, h) for h in hits[q]}
            for s, item, seg in found:
                if item.id not in merged or s > merged[item.id][0]:
                    merged[item.id] = (s, engine.hit_of(0, s, item, segment=seg))
            ranked = list(merged.values())
        ranked.sort(key=lambda pair: -pair[0])
        out.append([dataclasses.replace(h, rank=n + 1) for n, (_, h) in enumerate(ranked[:k])])
    return out
