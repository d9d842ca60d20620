"""Words found in media, searched beside the vectors: a text query finds audio and video by what
is said in them, through two more signals than the audio tower's vectors:

- the spans' vectors (``text-segments`` shards: each utterance's text embedded by the text
  tower), which find a paraphrase;
- full-text search over the spans' words (:mod:`indexer.storage.fulltext`), which finds an
  exact word or a name that no vector would, and a quoted phrase exactly.

The three ranked lists of files are fused by reciprocal-rank fusion (RRF, k = 60): a file's
score is the sum over the lists of ``1 / (60 + its rank there)``. Ranks, not scores, because
the three scores live on different scales (cosine similarities of two towers, BM25 or
``ts_rank``) that no fixed weighting maps onto each other; RRF needs no tuning and a file found
by two signals rises above one found by a single signal. Where no words were found for a
query, its hits are left exactly as the vectors ranked them. A hit won by words carries
``track`` "speech", the matched words' times as ``start``/``end`` (the span's when the words
have no times of their own) and ``snippet``: the span's text with a little context.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import numpy as np

from indexer.storage.constants import INDEXED, SPEECH, VIDEO
from indexer.storage.fulltext import WORD, Terms, parse_terms
from indexer.storage.paths import escape_path

from .query import Hit, QueryError
from .selection import OVERFETCH, id_selector

RRF_K = 60
# A span's vector counts only this close to the query (cosine, xmr-mini's text tower): on eight
# queries against five transcribed sentences, related pairs scored 0.30-0.59, unrelated ones at
# most 0.24 (measured here; ``xmr bench speech`` measures it on real sets).
VECTOR_FLOOR = 0.25
FETCH = 8  # span candidates per hit asked for (many spans of one file must not crowd out others)
SNIPPET_CHARS = 200
MAX_IN = 20_000  # filtered files passed to full-text search (more: its answers filtered after)


def with_words(
    engine: Any, queries: np.ndarray, words: list[str], hits: list[list[Hit]], k: int, allowed: Any
) -> list[list[Hit]]:
    """``hits`` (the audio tower's, per query) fused with what the words found in media match."""
    shards = engine.index.segment_shards("text")
    store = engine.index.store
    fetch = (k + OVERFETCH) * FETCH
    selector = None
    if allowed is not None:
        chosen = np.array(sorted(engine.index.segment_ids_of(allowed, "text")), dtype=np.int64)
        selector = id_selector(chosen) if len(chosen) else None
        if selector is None:
            return hits
    scores, ids = shards.search(queries, fetch, selector=selector) if shards.ntotal else (None, None)
    allowed_set = set(int(i) for i in allowed) if allowed is not None else None
    out = []
    for q in range(len(queries)):
        if not words[q]:  # a query without words (an image, a sound): as the vectors ranked it
            out.append(hits[q])
            continue
        terms = parse_terms(words[q])
        within = sorted(allowed_set) if allowed_set is not None and len(allowed_set) <= MAX_IN else None
        found = store.search_spans(terms, fetch, SPEECH, within) if terms else []
        by_text = [(span, score) for span, _, score in found]
        by_vector = (
            [(int(i), float(s)) for s, i in zip(scores[q], ids[q]) if i >= 0 and s >= VECTOR_FLOOR]
            if scores is not None
            else []
        )
        out.append(_fuse(engine, store, hits[q], by_vector, by_text, terms, k, allowed_set))
    return out


def _fuse(
    engine: Any,
    store: Any,
    hits: list[Hit],
    by_vector: list[tuple[int, float]],
    by_text: list[tuple[int, float]],
    terms: Terms,
    k: int,
    allowed: set[int] | None,
) -> list[Hit]:
    spans = store.spans_by_id([s for s, _ in by_vector] + [s for s, _ in by_text])
    items = engine.index.rows(sorted({sp.item_id for sp in spans.values()}))

    def ranked(found: list[tuple[int, float]]) -> list[tuple[int, Any]]:
        """Items in rank order, each with its best span (of the audio and video files allowed)."""
        seen, order = set(), []
        for span_id, _ in found:
            sp = spans.get(span_id)
            row = items.get(sp.item_id) if sp is not None else None
            if row is None or row.status != INDEXED or row.modality not in ("audio", VIDEO) or row.id in seen:
                continue
            if allowed is not None and row.id not in allowed:
                continue
            seen.add(row.id)
            order.append((row.id, sp))
        return order

    text_list, vector_list = ranked(by_text), ranked(by_vector)
    if not text_list and not vector_list:
        return hits
    fused: dict[int, float] = {}
    tower = [h.file_id if h.file_id is not None else h.id for h in hits]
    for order in (tower, [i for i, _ in vector_list], [i for i, _ in text_list]):
        for rank, item_id in enumerate(order, start=1):
            fused[item_id] = fused.get(item_id, 0.0) + 1.0 / (RRF_K + rank)
    by_tower = {i: h for i, h in zip(tower, hits)}
    text_span, vector_span = dict(text_list), dict(vector_list)
    vector_rank = {i: n for n, (i, _) in enumerate(vector_list)}
    tower_rank = {i: n for n, i in enumerate(tower)}
    out = []
    for item_id in sorted(fused, key=lambda i: -fused[i])[:k]:
        score = fused[item_id]
        if item_id in text_span:
            hit = _span_hit(engine, items[item_id], text_span[item_id], score, terms)
        elif item_id in vector_span and (
            item_id not in by_tower or vector_rank[item_id] < tower_rank.get(item_id, len(tower))
        ):
            hit = _span_hit(engine, items[item_id], vector_span[item_id], score, None)
        else:
            hit = dataclasses.replace(by_tower[item_id], score=score)
        out.append(dataclasses.replace(hit, rank=len(out) + 1))
    return out


def _span_hit(engine: Any, row: Any, span: Any, score: float, terms: Terms | None) -> Hit:
    start, end = matched_times(span, terms) if terms else (span.start, span.end)
    hit = engine.hit_of(0, score, row)
    return dataclasses.replace(hit, start=float(start), end=float(end), track=SPEECH, snippet=snippet(span.text, terms))


def matched_times(span: Any, terms: Terms) -> tuple[float, float]:
    """The times of the span's words that the query matched: its first phrase where it has one,
    else every matched word; the span's own times when its words carry none."""
    words = json.loads(span.words) if span.words else []
    plain = [(a, b, "".join(WORD.findall(w.lower()))) for a, b, w, *_ in words]
    if not plain:
        return span.start, span.end
    for phrase in terms.phrases:
        for n in range(len(plain) - len(phrase) + 1):
            if tuple(w for _, _, w in plain[n : n + len(phrase)]) == phrase:
                return plain[n][0], plain[n + len(phrase) - 1][1]
    wanted = terms.all_words()
    hit = [(a, b) for a, b, w in plain if w in wanted]
    return (min(a for a, _ in hit), max(b for _, b in hit)) if hit else (span.start, span.end)


def snippet(text: str, terms: Terms | None) -> str:
    """``text`` cut to about ``SNIPPET_CHARS`` around its first matched word."""
    if len(text) <= SNIPPET_CHARS:
        return text
    at = 0
    if terms:
        wanted = terms.all_words()
        for m in WORD.finditer(text):
            if m.group().lower() in wanted:
                at = m.start()
                break
    begin = max(0, min(at - SNIPPET_CHARS // 3, len(text) - SNIPPET_CHARS))
    part = text[begin : begin + SNIPPET_CHARS]
    return ("…" if begin else "") + part + ("…" if begin + SNIPPET_CHARS < len(text) else "")


def transcript(engine: Any, item: int | str | os.PathLike) -> tuple[Hit, list[dict[str, Any]]]:
    """See :meth:`retrieval.search.engine.Engine.transcript`."""
    item_id: int | None = None
    if isinstance(item, (int, np.integer)) or (isinstance(item, str) and item.isdigit()):
        item_id = int(item)
    else:
        path = os.path.abspath(os.path.expanduser(os.fspath(item)))
        rel = os.path.relpath(path, engine.index.root) if path.startswith(str(engine.index.root) + os.sep) else None
        item_id = engine.index.store.file_id(escape_path(rel)) if rel else None
        if item_id is None:
            raise QueryError(f"{item} is not an indexed file of {engine.index.root}")
    hit = engine.item(item_id)
    if hit is None or hit.start is not None:
        raise QueryError(f"no indexed file has id {item}")
    spans = engine.index.store.spans_of([hit.file_id], SPEECH)
    return hit, [
        {
            "start": round(sp.start, 3),
            "end": round(sp.end, 3),
            "text": sp.text,
            "confidence": round(sp.confidence, 3),
            "words": json.loads(sp.words) if sp.words else [],
        }
        for sp in spans
    ]
