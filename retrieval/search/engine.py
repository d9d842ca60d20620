"""The query layer: open an index made by ``xmr index`` and search it in every direction.

    engine = Engine.open("~/media/.xmr")
    hits = engine.search(text="a dog on a beach", to="image", k=10)

The engine reads the index's storage (manifest, SQL rows, FAISS shards) read-only, so it can
search while an indexer writes: shard files are replaced atomically and vectors whose SQL row
is not yet committed are left out, so a search sees the last complete state.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from indexer.storage.constants import INDEXED, TEXT_LINE, VIDEO
from indexer.storage.layout import INDEX_FOLDER, IndexMismatchError, IndexNotFoundError, Layout, find_index_dir
from indexer.storage.manifest import Manifest
from indexer.storage.paths import unescape_path
from indexer.storage.reader import IndexReader
from indexer.storage.shards import ShardSet

from ..models.encoder import Encoder
from .duplicates import DuplicateGroup, Sources, find_duplicates
from .filters import Filters
from .query import Hit, QueryError, collect_parts, embed_parts, target_modalities
from .selection import OVERFETCH, id_selector

log = logging.getLogger(__name__)


def locate_index(path: str | os.PathLike | None = None) -> Path:
    """The index folder: ``path`` (an index folder, or a folder holding ``.xmr``), else
    ``$XMR_INDEX``, else the nearest ``.xmr`` at or above the current folder.

    Raises:
        IndexNotFoundError: none of these holds an index.
    """
    given = path if path is not None else os.environ.get("XMR_INDEX") or None
    if given is not None:
        folder = Path(given).expanduser().resolve()
        for candidate in (folder, folder / INDEX_FOLDER):
            if Layout(candidate).exists():
                return candidate
        raise IndexNotFoundError(f"no xmr index at {folder} (no manifest.json there or in {folder / INDEX_FOLDER})")
    found = find_index_dir()
    if found is None:
        raise IndexNotFoundError(
            f"no xmr index in {os.getcwd()} or above it: run `xmr index FOLDER`, or pass --index / set XMR_INDEX"
        )
    return found


class Engine:
    """Search one index. Build with :meth:`open`."""

    def __init__(self, index: IndexReader, encoder: Encoder | None) -> None:
        self.index = index
        self.root = index.root
        self._root_str = str(self.root)
        self.dim = index.dim
        self.modalities = index.modalities
        self._encoder = encoder
        self.use_gpu = True  # when FAISS sees a GPU; ShardSet.to_gpu falls back to the CPU on any error

    @property
    def layout(self):  # noqa: ANN201 - indexer.storage.layout.Layout
        return self.index.layout

    @property
    def manifest(self) -> Manifest:
        return self.index.manifest

    @property
    def store(self):  # noqa: ANN201 - indexer.storage.store.Store
        return self.index.store

    @classmethod
    def open(
        cls, path: str | os.PathLike | None = None, model: Encoder | None = None, device: str | None = None
    ) -> "Engine":
        """Open an index (see :func:`locate_index` for how ``path`` is found).

        The index's own model is loaded on the first query that needs it (ONNX Runtime for
        xmr models, no torch import); pass ``model`` to reuse one already built. Its weights
        must be those the index was built with.

        Raises:
            IndexNotFoundError, IndexCorruptError, StoreError, IndexMismatchError.
        """
        engine = cls(IndexReader.open(locate_index(path)), model)
        engine._device = device
        try:
            if model is not None:
                engine._check_model(model)
            for modality in engine.modalities:  # memory-mapped, so cheap; a damaged shard is named now
                engine.shards(modality)
        except Exception:
            engine.close()
            raise
        return engine

    # --- the model -----------------------------------------------------------------------
    @property
    def encoder(self) -> Encoder:
        if self._encoder is None:
            from ..models.registry import create_model, inference_runtime

            name, device = self.manifest.model, getattr(self, "_device", None)
            self._encoder = create_model(name, device=device, runtime=inference_runtime(name, device))
            self._check_model(self._encoder)
        return self._encoder

    def _check_model(self, model: Encoder) -> None:
        if model.weights_hash != self.manifest.weights_hash:
            raise IndexMismatchError(
                f"model {model.name!r} (weights {model.weights_hash[:12]}) is not the one the index "
                f"at {self.layout.dir} "
                f"was built with ({self.manifest.model!r}, weights {str(self.manifest.weights_hash)[:12]}); "
                "re-index with `xmr index --rebuild`"
            )

    # --- searching -----------------------------------------------------------------------
    def search(
        self,
        text: Any = None,
        image: Any = None,
        audio: Any = None,
        vector: Any = None,
        to: str | list[str] | None = None,
        k: int = 10,
        offset: int = 0,
        segments: bool = False,
        **filters: Any,
    ) -> list[Hit]:
        """Search the index. See the README for the query forms; returns ``k`` hits per target
        modality (ranked within it; scores of different modalities are not comparable), the
        first ``offset`` of each modality skipped (pages; ranks keep counting from the top).

        A long file's moments (segments) count: a file is scored by the best of its own vector
        and its segments, and a hit on a segment carries ``start``/``end``; ``segments=True``
        lists every matching segment (``k`` then counts segments).

        Raises:
            QueryError: empty query, bad file, bad option, a modality the model lacks.
        """
        if isinstance(offset, bool) or not isinstance(offset, (int, np.integer)) or offset < 0:
            raise QueryError(f"offset must be a whole number >= 0, not {offset!r}")
        plan = self._plan(text, image, audio, vector, to, k, segments, **filters)
        hits = self._run([plan], plan.k + int(offset))[0]
        return [h for h in hits if h.rank > offset] if offset else hits

    def search_batch(
        self, queries: list[dict[str, Any]], to: str | list[str] | None = None, k: int = 10
    ) -> list[list[Hit]]:
        """Answer several queries (dicts of :meth:`search`'s keywords) in one call; queries
        without filters share one FAISS search per target modality."""
        k = _check_k(k)
        plain: dict[tuple, list[tuple[int, _Plan]]] = {}
        results: list[list[Hit] | None] = [None] * len(queries)
        for n, q in enumerate(queries):
            plan = self._plan(**{"to": to, "k": k, **q})
            if plan.conditions or plan.videos_only:
                results[n] = self._run([plan], plan.k)[0]
            else:
                plain.setdefault((plan.targets, plan.k, plan.segments), []).append((n, plan))
        for group in plain.values():
            answers = self._run([plan for _, plan in group], group[0][1].k)
            for (n, _), hits in zip(group, answers):
                results[n] = hits
        return [r or [] for r in results]

    def _plan(
        self,
        text: Any = None,
        image: Any = None,
        audio: Any = None,
        vector: Any = None,
        to: str | list[str] | None = None,
        k: int = 10,
        segments: bool = False,
        **filters: Any,
    ) -> "_Plan":
        """One query checked and embedded: what :meth:`search` and :meth:`search_batch` share.

        Raises:
            QueryError: as :meth:`search`.
        """
        parts = collect_parts(text, image, audio, vector)
        asked, videos_only = video_targets(to, self.modalities)
        targets = tuple(target_modalities(asked, parts, self.modalities))
        k = _check_k(k)
        conditions = Filters.from_kwargs(**filters)
        encoder = self.encoder if any(p.modality != "vector" for p in parts) else _NoEncoder()
        words = " ".join(p.value for p in parts if p.modality == "text" and p.weight > 0)  # steering away: no words
        vector = embed_parts(encoder, parts, self.dim)
        return _Plan(vector, targets, k, conditions, bool(segments), videos_only, words)

    def _run(self, plans: list["_Plan"], k: int) -> list[list[Hit]]:
        """``plans`` (queries alike but for their vectors and words) searched as the first says."""
        plan = plans[0]
        return self._search_vectors(
            np.stack([p.vector for p in plans]),
            list(plan.targets),
            k,
            plan.conditions,
            plan.segments,
            plan.videos_only,
            [p.words for p in plans],
        )

    def _search_vectors(
        self,
        queries: np.ndarray,
        targets: list[str],
        k: int,
        filters: Filters,
        segments: bool = False,
        videos_only: frozenset[str] = frozenset(),
        words: list[str] | None = None,
    ) -> list[list[Hit]]:
        out: list[list[Hit]] = [[] for _ in range(len(queries))]
        for modality in targets:
            shards = self.shards(modality)
            if shards is None:
                continue
            selector = allowed = None
            if filters or modality in videos_only:
                allowed = self._filtered_ids(modality, filters, modality in videos_only)
                if len(allowed) == 0:
                    continue
                selector = id_selector(allowed)
            scores, ids = shards.search(queries, k + OVERFETCH, selector=selector)
            # Rows of the top k first; the over-fetched ones only for queries that lack rows
            # (vectors an indexer has written but not yet committed).
            top = ids[:, :k]
            rows = self.index.rows(np.unique(top[top >= 0]))
            short = [
                q
                for q in range(len(queries))
                if len({int(i) for i in top[q] if i >= 0} & rows.keys()) < min(k, len(np.unique(ids[q][ids[q] >= 0])))
            ]
            if short:
                extra = ids[short, k:]
                rows.update(self.index.rows(np.unique(extra[extra >= 0])))
            found: list[list[Hit]] = [[] for _ in range(len(queries))]
            for q in range(len(queries)):
                hits = found[q]
                rank = 0
                seen: set[int] = set()  # an updated item's old and new vector, for a moment in two shards
                for score, item_id in zip(scores[q], ids[q]):
                    row = rows.get(int(item_id))
                    if item_id < 0 or row is None or row.status != INDEXED or row.id in seen:
                        continue
                    seen.add(row.id)
                    rank += 1
                    hits.append(self.hit_of(rank, float(score), row, track=modality))
                    if rank == k:
                        break
            if modality != "text":  # the text-segments shards hold words found in media, not moments
                from .moments import with_moments

                found = with_moments(self, modality, queries, found, k, allowed, segments)
            has_words = any(words or []) and self.index.segment_shards("text") is not None
            if modality in ("audio", "image") and not segments and has_words:
                from .words import with_words

                found = with_words(self, queries, words or [""] * len(queries), found, k, allowed, modality)
            for q in range(len(queries)):
                out[q].extend(found[q])
        return out

    def _filtered_ids(self, modality: str, filters: Filters, videos_only: bool = False) -> np.ndarray:
        conditions = filters.conditions()
        if videos_only:
            from indexer.storage.schema import Item  # SQLAlchemy only when a query filters

            conditions = [*conditions, Item.modality == VIDEO]
        return self.index.matching_ids(modality, conditions)

    def shards(self, modality: str) -> ShardSet | None:
        """The (memory-mapped) shards of ``modality``, reloaded when an indexer replaced them."""
        self.index.use_gpu = self.use_gpu
        return self.index.shards(modality)

    def hit_of(self, rank: int, score: float, row: Any, segment: Any = None, track: str | None = None) -> Hit:
        """A hit on ``row`` (on one of its ``segment``s when given), found among ``track``'s vectors."""
        stored = unescape_path(row.path)
        path = stored if row.kind == TEXT_LINE else os.path.join(self._root_str, stored)
        meta = {"ext": row.ext, "size": row.size, "mtime": _iso(row.mtime_ns), "content_hash": row.content_hash}
        if row.modality in ("image", VIDEO):
            meta.update(width=row.width, height=row.height)
        if row.modality in ("audio", VIDEO):
            meta.update(duration=row.duration, sample_rate=row.sample_rate)
        return Hit(
            rank=rank,
            score=score,
            id=segment.id if segment is not None else row.id,
            modality=row.modality,
            path=path,
            text=row.text,
            line=row.line if row.kind == TEXT_LINE else None,
            metadata=meta,
            start=float(segment.start) if segment is not None else None,
            end=float(segment.end) if segment is not None else None,
            file_id=row.id,
            track=(segment.modality if segment is not None else track) if row.modality == VIDEO else None,
            relpath=os.path.basename(stored) if row.kind == TEXT_LINE else stored,
            mtime_ns=row.mtime_ns,
        )

    def item(self, item_id: int) -> Hit | None:
        """An indexed item as a :class:`Hit` (rank 0, score 0), or None when the index has no
        such item."""
        valid = isinstance(item_id, (int, np.integer)) and 0 <= item_id < 2**63
        rows = self.index.rows([item_id]) if valid else {}
        row = rows.get(int(item_id))
        if row is None and valid:  # a segment's id: its file, at its moment
            segment = self.index.segment_rows([item_id]).get(int(item_id))
            row = self.index.rows([segment.item_id]).get(segment.item_id) if segment is not None else None
            return self.hit_of(0, 0.0, row, segment=segment) if row is not None and row.status == INDEXED else None
        return self.hit_of(0, 0.0, row) if row is not None and row.status == INDEXED else None

    def transcript(self, item: int | str | os.PathLike) -> tuple[Hit, list[dict[str, Any]]]:
        """What is said in an indexed file (its id, or its path): the file as a hit, and its
        utterances in order, each ``{start, end, text, confidence, words}`` (``words``: a list
        of ``[start, end, word, probability]``); empty when nothing was heard or it was not
        transcribed.

        Raises:
            QueryError: no such indexed file.
        """
        from .words import transcript

        return transcript(self, item)

    def text(self, item: int | str | os.PathLike) -> tuple[Hit, list[dict[str, Any]]]:
        """What was read in an indexed picture or video (``item``: its id or path): the file's hit
        and its lines, each ``{text, box, confidence}`` (``box``: four corners ``[x, y]`` in the
        picture's pixels), a picture's top to bottom, a video's in the order shown, with the
        ``start`` and ``end`` (seconds) of the frames showing them; empty when no text was read
        or pictures were not read.

        Raises:
            QueryError: no such indexed file.
        """
        from .words import written

        return written(self, item)

    def vector(self, item_id: int, track: str | None = None) -> np.ndarray:
        """The stored vector of an indexed item ("more like this"). A video has two: its frames'
        (``track="image"``, the default when it has frames) and its soundtrack's (``"audio"``).

        Raises:
            QueryError: no such indexed item, or a track it lacks.
        """
        if track not in (None, "image", "audio"):
            raise QueryError(f"track must be image or audio, not {track!r}")
        hit = self.item(item_id)
        shards = None
        if hit is not None and track is not None and hit.modality == VIDEO and hit.start is None:
            hit = dataclasses.replace(hit, track=track)
        if hit is not None:
            moment = hit.start is not None
            # A video's own vector: its frames' (its soundtrack's when it has no frames).
            kind = hit.track or (
                ("image" if hit.metadata.get("width") else "audio") if hit.modality == VIDEO else hit.modality
            )
            shards = self.index.segment_shards(kind) if moment else self.shards(kind)
        if hit is None or shards is None:
            raise QueryError(f"no indexed item with id {item_id}")
        try:
            return shards.reconstruct(np.array([hit.id], dtype=np.int64))[0]
        except (KeyError, RuntimeError):  # a video without that track
            raise QueryError(f"item {item_id} has no {track} vector") from None

    # --- copies --------------------------------------------------------------------------
    def duplicates(self, modality: str = "all", threshold: float | None = None) -> list[DuplicateGroup]:
        """The groups of near-duplicate files of ``modality`` (image, audio, video, text or all):
        each its files, the one suggested to keep (most pixels, then longest, then oldest) and
        the evidence. ``threshold``: a similarity in (0, 1] (None: each modality's default,
        :data:`retrieval.search.duplicates.DEFAULT_THRESHOLDS`). Nothing is deleted.

        Raises:
            ValueError: an unknown modality, or a threshold that is not a similarity in (0, 1].
        """

        def shards(name: str) -> ShardSet | None:
            if name.endswith("-segments"):
                return self.index.segment_shards(name.removesuffix("-segments"))
            return self.shards(name) if name in self.modalities else None

        return find_duplicates(Sources(self.store, shards, self._root_str), modality, threshold)

    # --- facts ---------------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        """What ``xmr info`` shows: model, counts per modality, sizes, index type, last run."""
        return self.index.facts()

    def close(self) -> None:
        self.index.close()

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def video_targets(to: str | list[str] | None, available: tuple[str, ...]) -> tuple[Any, frozenset[str]]:
    """``to`` with ``"video"`` read as the tracks videos are searched by (their frames among the
    images, their soundtracks among the audio), and which of those are searched for videos
    alone (those not also asked for themselves, nor through ``"all"``).

    Raises:
        QueryError: ``"video"`` asked of an index whose model has neither an image nor an audio tower.
    """
    asked = [to] if isinstance(to, str) else list(to) if to is not None else None
    if asked is None or VIDEO not in asked:
        return to, frozenset()
    rest = [m for m in asked if m != VIDEO]
    tracks = [m for m in ("image", "audio") if m in available]
    if not tracks:
        raise QueryError("this index's model has no image or audio tower, so it holds no videos")
    direct = set(available) if "all" in rest else set(rest)
    return rest + [m for m in tracks if m not in rest], frozenset(tracks) - direct


@dataclasses.dataclass(frozen=True)
class _Plan:
    """A query checked and embedded, ready for FAISS."""

    vector: np.ndarray  # [D], unit length
    targets: tuple[str, ...]
    k: int
    conditions: Filters
    segments: bool
    videos_only: frozenset[str]
    words: str = ""  # the query's text parts, for the full-text search of words found in media


class _NoEncoder:
    """Stands in for the model when a query is only raw vectors (no model needs loading)."""

    name = "none"
    modalities: tuple[str, ...] = ()


def _check_k(k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
        raise QueryError(f"k must be a positive whole number, not {k!r}")
    return int(k)


def _iso(mtime_ns: int) -> str | None:
    from datetime import datetime

    return datetime.fromtimestamp(mtime_ns / 1e9).astimezone().isoformat(timespec="seconds") if mtime_ns else None
