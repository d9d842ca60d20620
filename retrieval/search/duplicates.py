"""Copies in an index (``xmr duplicates``, :meth:`retrieval.search.engine.Engine.duplicates`).

Two files are copies when one of these says so (each a similarity, 0..1, against one threshold):

- the same bytes (their content hashes are equal): always;
- pictures: their perceptual hashes (:mod:`retrieval.models.fingerprint`: the share of the 64
  bits equal, against the closest of the other's eight turned and mirrored hashes, found
  through a binary FAISS range search; each picture has two, whole and with its flat borders
  trimmed), which find resized, re-saved, grey, turned, mirrored and framed copies; and their
  thumbnails, one found inside the other (normalised cross-correlation, unless their colours
  differ there), which find cropped and captioned copies among each picture's nearest
  neighbours by stored vector (a FAISS k-nearest search, not all pairs). The vectors alone are no evidence:
  a weak model puts two sunsets as close as a sunset and its copy;
- recordings: their Chromaprint fingerprints (the share of bits equal at the best offset, pairs
  tried when they share fingerprint words);
- videos: their frame vectors in order (the best diagonal of the frames' similarity matrix,
  pairs tried when their mean frame vectors are close);
- texts: their stored vectors.

Copies of copies join one group (union-find). In each group one file is suggested to keep (the
most pixels, then the longest, then the oldest, then the first path), and ``why`` states the
evidence. Nothing is ever deleted: a group is a suggestion.
"""

from __future__ import annotations

import logging
import math
import os
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from indexer.storage.constants import FILE, TEXT_LINE, VIDEO
from indexer.storage.paths import unescape_path

from ..models.fingerprint import HASH_MAX_BITS

log = logging.getLogger(__name__)

MODALITIES = ("image", "audio", VIDEO, "text")
# The default similarity of each kind of file (chosen from `xmr bench duplicates`, see benchmarks/README.md).
DEFAULT_THRESHOLDS: dict[str, float] = {"image": 0.97, "audio": 0.85, VIDEO: 0.96, "text": 0.97}
NEIGHBOURS = 8  # nearest pictures by vector whose thumbnails are compared
VECTOR_FLOOR = 0.5  # of those, the ones at least this close
# Perceptual hashes: copies at most HASH_MAX_BITS of the 64 bits apart, whatever the threshold,
# which the other evidence takes (retrieval.models.fingerprint says why).
HASH_FLOOR = 1.0 - HASH_MAX_BITS / 64
FLAT_LIMIT = 20_000  # vectors searched exactly; above, an IVF search (approximate, fast)
MIN_SHARED_WORDS = 3  # Chromaprint words two recordings share before they are compared
COMMON_WORD = 200  # a fingerprint word in more recordings than this (silence, a hum) aligns nothing


@dataclass
class Copy:
    """One file of a group of copies."""

    id: int
    path: str
    size: int
    width: int | None
    height: int | None
    duration: float | None
    mtime_ns: int = 0
    rel: str = ""  # the path under the indexed folder

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "path": self.path,
            "size": self.size,
            "width": self.width,
            "height": self.height,
            "duration": self.duration,
        }


@dataclass
class DuplicateGroup:
    """Files that are copies of each other: ``keep`` the id of the one suggested to keep,
    ``why`` the evidence."""

    modality: str
    items: list[Copy]
    keep: int
    why: str

    def to_dict(self) -> dict[str, Any]:
        return {"items": [c.to_dict() for c in self.items], "keep": self.keep, "why": self.why}

    @property
    def extra(self) -> list[Copy]:
        """The files of the group other than the one to keep."""
        return [c for c in self.items if c.id != self.keep]


@dataclass(frozen=True)
class Edge:
    """Evidence that two files (ids ``a`` < ``b``) are copies: ``kind`` ("bytes", "hash",
    "vector", "audio", "frames") and its similarity (0..1)."""

    a: int
    b: int
    kind: str
    score: float


def check_threshold(threshold: Any) -> float | None:
    """``threshold`` as a float in (0, 1], or None (each modality's default).

    Raises:
        ValueError: not a number, not finite, or outside (0, 1].
    """
    if threshold is None:
        return None
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.integer, np.floating)):
        raise ValueError(f"threshold must be a number between 0 and 1, not {threshold!r}")
    value = float(threshold)
    if not math.isfinite(value) or not 0.0 < value <= 1.0:
        raise ValueError(
            f"threshold must be a similarity above 0 and at most 1 (higher finds fewer, closer copies; "
            f"the defaults are {', '.join(f'{m} {t}' for m, t in DEFAULT_THRESHOLDS.items())}), not {threshold!r}"
        )
    return value


def check_modality(modality: str) -> list[str]:
    """The modalities ``modality`` names ("all": every one).

    Raises:
        ValueError: not one of image, audio, video, text, all.
    """
    if modality == "all":
        return list(MODALITIES)
    if modality not in MODALITIES:
        raise ValueError(f"modality must be one of {', '.join(MODALITIES)} or all, not {modality!r}")
    return [modality]


# --- evidence ------------------------------------------------------------------------------
def same_bytes(rows: Sequence[Any]) -> list[Edge]:
    """Files with equal content hashes."""
    by_hash: dict[str, list[int]] = defaultdict(list)
    for r in rows:
        if r.content_hash:
            by_hash[r.content_hash].append(int(r.id))
    return [Edge(ids[0], other, "bytes", 1.0) for ids in by_hash.values() for other in sorted(ids)[1:]]


def vector_edges(ids: np.ndarray, vectors: np.ndarray, floor: float, kind: str = "vector") -> list[Edge]:
    """Pairs whose vectors' inner product is at least ``floor``: a FAISS range search, exact up
    to :data:`FLAT_LIMIT` vectors, an IVF one above."""
    import faiss

    n = len(ids)
    if n < 2:
        return []
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    faiss.normalize_L2(x)
    lims, scores, found = _index(x).range_search(x, float(floor))
    edges = []
    for q in range(n):
        for score, j in zip(scores[lims[q] : lims[q + 1]], found[lims[q] : lims[q + 1]]):
            if j > q:
                edges.append(Edge(int(ids[q]), int(ids[j]), kind, min(1.0, float(score))))
    return edges


def _index(x: np.ndarray) -> Any:
    """A FAISS inner-product index over ``x``: exact up to :data:`FLAT_LIMIT` rows, IVF above."""
    import faiss

    n, dim = x.shape
    if n <= FLAT_LIMIT:
        index = faiss.IndexFlatIP(dim)
    else:
        # Copies lie very close: few cells need searching (100,000 vectors: 632 cells, 4 searched).
        nlist = int(2 * math.sqrt(n))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
        sample = np.random.default_rng(0).choice(n, size=min(n, 40 * nlist), replace=False)
        index.train(x[np.sort(sample)])
        index.nprobe = 4
    index.add(x)
    return index


def neighbour_pairs(ids: np.ndarray, vectors: np.ndarray, k: int, floor: float) -> list[tuple[int, int, float]]:
    """``(a, b, similarity)``, a < b, of each row's ``k`` nearest rows by vector at least ``floor`` alike."""
    import faiss

    if len(ids) < 2:
        return []
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    faiss.normalize_L2(x)
    scores, found = _index(x).search(x, min(k + 1, len(ids)))
    pairs: dict[tuple[int, int], float] = {}
    for q in range(len(ids)):
        for score, j in zip(scores[q], found[q]):
            if j >= 0 and j != q and score >= floor:
                a, b = sorted((int(ids[q]), int(ids[j])))
                pairs[(a, b)] = float(score)
    return [(a, b, s) for (a, b), s in sorted(pairs.items())]


def pixel_edges(pairs: Sequence[tuple[int, int, float]], stored: dict[int, bytes]) -> list[Edge]:
    """Of candidate ``pairs``, how well one's thumbnail lies inside the other's (colours agreeing)."""
    from ..models.fingerprint import contained

    edges = []
    for a, b, _ in pairs:
        if a not in stored or b not in stored:
            continue
        score = max(contained(stored[a], stored[b]), contained(stored[b], stored[a]))
        edges.append(Edge(a, b, "pixels", max(0.0, min(1.0, score))))
    return edges


def hash_edges(ids: np.ndarray, hashes: np.ndarray, floor: float) -> list[Edge]:
    """Pairs of pictures whose perceptual hashes agree in at least ``floor`` of their 64 bits,
    each compared with the other's eight turned and mirrored hashes
    (:func:`retrieval.models.fingerprint.hash_pairs`). ``hashes``: ``[N, 8]`` uint8, or
    ``[N, M, 8]`` for M hashes a picture (whole, borders trimmed), any of one against any of the other's."""
    from ..models.fingerprint import hash_pairs

    radius = int(math.floor((1.0 - floor) * 64 + 1e-9))
    best = hash_pairs(hashes, radius)
    return [Edge(int(ids[a]), int(ids[b]), "hash", 1.0 - d / 64) for (a, b), d in sorted(best.items())]


def audio_edges(fingerprints: dict[int, np.ndarray], floor: float) -> list[Edge]:
    """Pairs of recordings whose Chromaprint fingerprints agree in at least ``floor`` of their
    bits at the best offset; compared when they share :data:`MIN_SHARED_WORDS` words' top bits."""
    from ..models.fingerprint import audio_similarity

    ids = sorted(fingerprints)
    holders: dict[int, list[int]] = defaultdict(list)
    for item in ids:
        for word in np.unique(fingerprints[item] >> 12).tolist():
            holders[word].append(item)
    shared: dict[tuple[int, int], int] = defaultdict(int)
    for items in holders.values():
        if 1 < len(items) <= COMMON_WORD:
            for i, a in enumerate(items):
                for b in items[i + 1 :]:
                    shared[(a, b)] += 1
    edges = []
    for (a, b), count in sorted(shared.items()):
        if count >= MIN_SHARED_WORDS:
            score, _ = audio_similarity(fingerprints[a], fingerprints[b])
            if score >= floor:
                edges.append(Edge(a, b, "audio", score))
    return edges


def frame_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """How alike two videos' frame sequences (rows in time order, unit vectors) are in order:
    the best mean similarity along a diagonal of their similarity matrix (one shifted against
    the other, each frame matched within one frame either side), over at least half the
    shorter one."""
    if not len(a) or not len(b):
        return 0.0
    if len(a) > len(b):
        a, b = b, a
    sims = a @ b.T
    padded = np.pad(sims, ((0, 0), (1, 1)), constant_values=-1.0)
    near = np.maximum(np.maximum(padded[:, :-2], padded[:, 1:-1]), padded[:, 2:])  # within a frame
    best, need = 0.0, max(1, (len(a) + 1) // 2)
    for shift in range(-len(a) + need, len(b) - need + 1):
        rows = np.arange(len(a))
        cols = rows + shift
        ok = (cols >= 0) & (cols < len(b))
        if ok.sum() >= need:
            best = max(best, float(near[rows[ok], cols[ok]].mean()))
    return best


# --- groups --------------------------------------------------------------------------------
def group(edges: Sequence[Edge], rows: dict[int, Any], root: str, modality: str) -> list[DuplicateGroup]:
    """Union-find over ``edges``: the groups of copies, each with its file to keep and why,
    in the order of their first path (stable across runs)."""
    strongest: dict[tuple[int, int], Edge] = {}  # a pair's one piece of evidence: same bytes, else the best
    for e in edges:
        held = strongest.get((e.a, e.b))
        if held is None or (held.kind != "bytes" and (e.kind == "bytes" or e.score > held.score)):
            strongest[(e.a, e.b)] = e
    edges = list(strongest.values())
    parent: dict[int, int] = {}

    def find(x: int) -> int:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for e in edges:
        ra, rb = find(e.a), find(e.b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    members: dict[int, list[int]] = defaultdict(list)
    for x in list(parent):
        members[find(x)].append(x)
    evidence: dict[int, list[Edge]] = defaultdict(list)
    for e in edges:
        evidence[find(e.a)].append(e)
    groups = []
    for head, ids in members.items():
        copies = sorted((_copy(rows[i], root) for i in ids), key=lambda c: (c.path, c.id))
        keep = min(copies, key=lambda c: (-(c.width or 0) * (c.height or 0), -(c.duration or 0.0), c.mtime_ns, c.path))
        groups.append(DuplicateGroup(modality, copies, keep.id, _why(evidence[head])))
    return sorted(groups, key=lambda g: (g.items[0].path, g.items[0].id))


def _copy(row: Any, root: str) -> Copy:
    stored = unescape_path(row.path)
    path = stored if row.kind == TEXT_LINE else os.path.join(root, stored)
    rel = os.path.basename(stored) if row.kind == TEXT_LINE else stored
    return Copy(int(row.id), path, int(row.size or 0), row.width, row.height, row.duration, int(row.mtime_ns or 0), rel)


WHY = {
    "bytes": "same bytes",
    "hash": "perceptual hash {:.0%} alike (closest turn or mirror)",
    "pixels": "thumbnail {:.3f} alike inside the other",
    "vector": "vector similarity {:.3f}",
    "audio": "acoustic fingerprint {:.0%} alike",
    "frames": "frames {:.3f} alike in order",
}


def _why(edges: Sequence[Edge]) -> str:
    """The evidence that joined a group, each kind with its weakest link."""
    weakest: dict[str, float] = {}
    for e in edges:
        weakest[e.kind] = min(weakest.get(e.kind, 1.0), e.score)
    return "; ".join(
        WHY[kind].format(score) for kind, score in sorted(weakest.items(), key=lambda kv: list(WHY).index(kv[0]))
    )


# --- one modality ----------------------------------------------------------------------------
@dataclass
class Sources:
    """What finding copies reads from an index: its store, its shards by name (``"image"``,
    ``"image-segments"``, ...; None when absent) and its media folder."""

    store: Any
    shards: Callable[[str], Any]
    root: str


def edges_of(src: Sources, modality: str, floor: float) -> tuple[list[Edge], dict[int, Any]]:
    """Every piece of evidence of at least ``floor`` between files of ``modality``, and their rows."""
    from ..models.fingerprint import AUDIO_METHOD, HEADER, IMAGE_METHOD, hashes

    rows = {int(r.id): r for r in src.store.facts_of(modality) if r.kind == FILE}
    edges = same_bytes(rows.values())
    if modality == "text":
        ids, vectors = _vectors(src.shards(modality), rows)
        edges += vector_edges(ids, vectors, floor)
    if modality == "image":
        stored = {i: v for i, v in src.store.fingerprints(IMAGE_METHOD).items() if i in rows and len(v) > HEADER}
        if len(stored) < len(rows):
            log.info("%d of %d pictures have no fingerprint yet", len(rows) - len(stored), len(rows))
        ids = np.array(sorted(stored), dtype=np.int64)
        if len(ids):
            both = np.frombuffer(b"".join(hashes(stored[int(i)]) for i in ids), dtype=np.uint8).reshape(-1, 2, 8)
            edges += hash_edges(ids, both, min(floor, HASH_FLOOR))
        ids, vectors = _vectors(src.shards(modality), rows)
        edges += pixel_edges(neighbour_pairs(ids, vectors, NEIGHBOURS, VECTOR_FLOOR), stored)
    if modality == "audio":
        stored = src.store.fingerprints(AUDIO_METHOD)
        prints = {i: np.frombuffer(v, dtype=np.uint32) for i, v in stored.items() if i in rows and v}
        if len(prints) < sum(1 for r in rows.values()):
            log.info("%d of %d recordings have no fingerprint yet", len(rows) - len(prints), len(rows))
        edges += audio_edges(prints, floor)
    if modality == VIDEO:
        edges += _video_edges(src, rows, floor)
    return edges, rows


def _vectors(shards: Any, rows: dict[int, Any]) -> tuple[np.ndarray, np.ndarray]:
    if shards is None or not rows:
        return np.zeros(0, np.int64), np.zeros((0, 1), np.float32)
    ids = np.intersect1d(np.unique(shards.ids()), np.fromiter(rows, dtype=np.int64, count=len(rows)))
    if not len(ids):
        return ids, np.zeros((0, 1), np.float32)
    return ids, shards.reconstruct(ids)


def _video_edges(src: Sources, rows: dict[int, Any], floor: float) -> list[Edge]:
    """Videos whose frames are alike in order; tried when their mean frame vectors are close."""
    ids, means = _vectors(src.shards("image"), rows)
    candidates = vector_edges(ids, means, max(0.0, floor - 0.15))
    if not candidates:
        return []
    frames_of = _frames(src, sorted({e.a for e in candidates} | {e.b for e in candidates}))
    edges = []
    for e in candidates:
        score = frame_similarity(frames_of.get(e.a, np.zeros((0, 1))), frames_of.get(e.b, np.zeros((0, 1))))
        if score >= floor:
            edges.append(Edge(e.a, e.b, "frames", min(1.0, score)))
    return edges


def _frames(src: Sources, video_ids: list[int]) -> dict[int, np.ndarray]:
    """Each video's frame vectors in time order (unit length)."""
    shards = src.shards("image-segments")
    if shards is None:
        return {}
    of = src.store.segment_ids(video_ids, modality="image")
    if not of:
        return {}
    segments = src.store.segment_rows(sorted(of))
    ids = np.array(sorted(segments), dtype=np.int64)
    vectors = shards.reconstruct(ids)
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    by_video: dict[int, list[tuple[float, int]]] = defaultdict(list)
    for n, segment_id in enumerate(ids.tolist()):
        seg = segments[segment_id]
        by_video[int(seg.item_id)].append((float(seg.start), n))
    return {v: vectors[[n for _, n in sorted(frames)]] for v, frames in by_video.items()}


def accepted(edges: Sequence[Edge], threshold: float) -> list[Edge]:
    """The evidence that makes copies at ``threshold``: a perceptual hash at most
    :data:`HASH_MAX_BITS` apart, anything else at least ``threshold`` alike."""
    return [e for e in edges if e.score >= (HASH_FLOOR if e.kind == "hash" else threshold)]


def find_duplicates(src: Sources, modality: str = "all", threshold: float | None = None) -> list[DuplicateGroup]:
    """The groups of copies among the files of ``modality`` ("all": each modality in turn).

    Raises:
        ValueError: an unknown modality, or a threshold that is not a similarity in (0, 1].
    """
    chosen = check_threshold(threshold)
    out = []
    for m in check_modality(modality):
        floor = chosen if chosen is not None else DEFAULT_THRESHOLDS[m]
        edges, rows = edges_of(src, m, floor)
        out += group(accepted(edges, floor), rows, src.root, m)
    return out
