"""Words found in media, searched beside the vectors: a text query finds audio and video by what
is said in them, through two more signals than the audio tower's vectors:

- the spans' vectors (``text-segments`` shards: each utterance's text embedded by the text
  tower), which find a paraphrase;
- full-text search over the spans' words (:mod:`indexer.storage.fulltext`), which finds an
  exact word or a name that no vector would, and a quoted phrase exactly.

The three ranked lists of files are fused by rank, not by score, because the three scores live
on scales no fixed weighting maps onto each other (cosine similarities of two towers, BM25 or
``ts_rank``). Each list gives a file ``weight / (60 + its rank there)`` (reciprocal-rank
fusion's terms); the file's score is the best of its terms (a file is as good as its strongest
signal), ties broken by their sum (signals that agree). The audio tower and the spans' vectors
weigh 1; full text weighs 2 times the share of the query's words the span holds (a span holding
every word asked for is the strongest evidence; one holding fewer than half is not counted).
Summing the terms instead (plain RRF) let files that every weak list holds win over the one that
two lists ranked first; on ``xmr bench speech``'s sets the best term found more (see
``benchmarks/README.md``). Where no words match, a query's hits stay as the vectors ranked them.
A hit won by words carries ``track`` "speech", the matched words' times as ``start``/``end``
(the span's when the words have no times of their own) and ``snippet``: the span's text with a
little context.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from indexer.storage.constants import INDEXED, OCR, SPEECH, VIDEO
from indexer.storage.fulltext import WORD, Terms, parse_terms
from indexer.storage.paths import escape_path

from .query import Hit, QueryError
from .selection import OVERFETCH, id_selector

RRF_K = 60
TEXT_WEIGHT = 2.0  # full text's weight, times the share of the query's words a span holds
MIN_COVERAGE = 0.5  # of the query's words (common ones left out) a full-text match must hold
# A span's vector counts only this close to the query (cosine, xmr-mini's text tower): on eight
# queries against five transcribed sentences, related pairs scored 0.30-0.59, unrelated ones at
# most 0.24 (measured here; ``xmr bench speech`` measures it on real sets).
VECTOR_FLOOR = 0.25
FETCH = 8  # span candidates per hit asked for (many spans of one file must not crowd out others)
SNIPPET_CHARS = 200
MAX_IN = 20_000  # filtered files passed to full-text search (more: its answers filtered after)


@dataclass(frozen=True)
class WordsOf:
    """Where the words a target modality's files hold come from: the spans' source, the kinds
    of file they are found in, the hits' track, and whether a query word may be the start of a
    longer one (read text: "7781" finds "Invoice 7781", "refurb" finds "refurbishment")."""

    source: str
    modalities: tuple[str, ...]
    track: str
    prefix: bool = False


WORDS_OF = {"audio": WordsOf(SPEECH, ("audio", VIDEO), SPEECH), "image": WordsOf(OCR, ("image", VIDEO), "text", True)}


def with_words(
    engine: Any,
    queries: np.ndarray,
    words: list[str],
    hits: list[list[Hit]],
    k: int,
    allowed: Any,
    modality: str = "audio",
) -> list[list[Hit]]:
    """``hits`` (the ``modality`` tower's, per query: audio, or image) fused with what the words
    found in those files match (what is said; what is written)."""
    kind = WORDS_OF[modality]
    shards = engine.index.segment_shards("text")
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
        found = engine.index.search_spans(terms, fetch, kind.source, within, kind.prefix) if terms else []
        by_text = [(span, score) for span, _, score in found]
        by_vector = (
            [(int(i), float(s)) for s, i in zip(scores[q], ids[q]) if i >= 0 and s >= VECTOR_FLOOR]
            if scores is not None
            else []
        )
        out.append(_fuse(engine, hits[q], by_vector, by_text, terms, k, allowed_set, kind))
    return out


def _fuse(
    engine: Any,
    hits: list[Hit],
    by_vector: list[tuple[int, float]],
    by_text: list[tuple[int, float]],
    terms: Terms,
    k: int,
    allowed: set[int] | None,
    kind: WordsOf = WORDS_OF["audio"],
) -> list[Hit]:
    spans = engine.index.spans_by_id([s for s, _ in by_vector] + [s for s, _ in by_text])
    items = engine.index.rows(sorted({sp.item_id for sp in spans.values()}))

    def ranked(found: list[tuple[int, float]]) -> list[tuple[int, Any]]:
        """Items in rank order, each with its best span (of the files of the kind allowed)."""
        seen, order = set(), []
        for span_id, _ in found:
            sp = spans.get(span_id)
            row = items.get(sp.item_id) if sp is not None else None
            if row is None or row.status != INDEXED or row.modality not in kind.modalities or row.id in seen:
                continue
            if sp.source != kind.source:  # a video's words heard, among the lines read (and the other way)
                continue
            if allowed is not None and row.id not in allowed:
                continue
            seen.add(row.id)
            order.append((row.id, sp))
        return order

    covered = by_coverage(by_text, spans, terms, kind.prefix)
    held = {span_id: share for span_id, share, _ in covered}
    text_list, vector_list = ranked([(span_id, score) for span_id, _, score in covered]), ranked(by_vector)
    if not text_list and not vector_list:
        return hits
    tower = [h.file_id if h.file_id is not None else h.id for h in hits]
    best: dict[int, float] = {}
    total: dict[int, float] = {}
    signals = (
        [(i, 1.0) for i in tower],
        [(i, 1.0) for i, _ in vector_list],
        [(i, TEXT_WEIGHT * held[sp.id]) for i, sp in text_list],
    )
    for order in signals:
        for rank, (item_id, weight) in enumerate(order, start=1):
            share = weight / (RRF_K + rank)
            best[item_id] = max(best.get(item_id, 0.0), share)
            total[item_id] = total.get(item_id, 0.0) + share
    by_tower = {i: h for i, h in zip(tower, hits)}
    text_span, vector_span = dict(text_list), dict(vector_list)
    vector_rank = {i: n for n, (i, _) in enumerate(vector_list)}
    tower_rank = {i: n for n, i in enumerate(tower)}
    out = []
    for item_id in sorted(best, key=lambda i: (-best[i], -total[i]))[:k]:
        score = best[item_id]
        if item_id in text_span:
            hit = _span_hit(engine, items[item_id], text_span[item_id], score, terms, kind)
        elif item_id in vector_span and (
            item_id not in by_tower or vector_rank[item_id] < tower_rank.get(item_id, len(tower))
        ):
            hit = _span_hit(engine, items[item_id], vector_span[item_id], score, None, kind)
        else:
            hit = dataclasses.replace(by_tower[item_id], score=score)
        out.append(dataclasses.replace(hit, rank=len(out) + 1))
    return out


def by_coverage(
    found: list[tuple[int, float]], spans: dict[int, Any], terms: Terms, prefix: bool = False
) -> list[tuple[int, float, float]]:
    """Full-text matches as ``(span id, coverage, score)``, ordered by coverage (the share of the
    query's words a span holds, a word held as the start of one of its words with ``prefix``; a
    matched phrase holds them all), then by the database's rank, without those that hold fewer
    than half of them: a span that shares one word of a four-word query is no evidence (BM25
    alone ranks a rare word's one match above a span holding three of the four)."""
    wanted = terms.all_words()
    if not wanted:
        return [(span_id, 1.0, score) for span_id, score in found]
    scored = []
    for n, (span_id, score) in enumerate(found):
        sp = spans.get(span_id)
        if sp is None:
            continue
        own = {w.lower() for w in WORD.findall(sp.text)}
        if prefix:
            held = sum(any(o.startswith(w) for o in own) for w in wanted) / len(wanted)
        else:
            held = len(wanted & own) / len(wanted)
        if terms.phrases:  # a phrase matched is matched whole
            held = 1.0
        if held >= MIN_COVERAGE:
            scored.append((-held, n, span_id, score))
    return [(span_id, -neg, score) for neg, _, span_id, score in sorted(scored)]


def _span_hit(engine: Any, row: Any, span: Any, score: float, terms: Terms | None, kind: WordsOf) -> Hit:
    hit = engine.hit_of(0, score, row)
    said = snippet(span.text, terms)
    if kind.source == OCR:  # a line read in a picture: where it is (in a video's frames, when too)
        box = _box_of(span)
        times = {"start": float(span.start), "end": float(span.end)} if span.end > span.start else {}
        return dataclasses.replace(hit, track=kind.track, snippet=said, box=box, **times)
    start, end = matched_times(span, terms) if terms else (span.start, span.end)
    return dataclasses.replace(hit, start=float(start), end=float(end), track=kind.track, snippet=said)


def _box_of(span: Any) -> list | None:
    """A line's box (its ``words`` detail, a dict), or None."""
    detail = json.loads(span.words) if span.words else None
    return detail.get("box") if isinstance(detail, dict) else None


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
    hit = _indexed_file(engine, item)
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


def written(engine: Any, item: int | str | os.PathLike) -> tuple[Hit, list[dict[str, Any]]]:
    """See :meth:`retrieval.search.engine.Engine.text`."""
    hit = _indexed_file(engine, item)
    spans = engine.index.store.spans_of([hit.file_id], OCR)
    return hit, [
        {
            "text": sp.text,
            "box": _box_of(sp),
            "confidence": round(sp.confidence, 3),
        }
        | ({"start": round(sp.start, 3), "end": round(sp.end, 3)} if sp.end > sp.start else {})
        for sp in spans
    ]


def _indexed_file(engine: Any, item: int | str | os.PathLike) -> Hit:
    """The indexed file ``item`` names (its id, or its path).

    Raises:
        QueryError: no such indexed file.
    """
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
    return hit
