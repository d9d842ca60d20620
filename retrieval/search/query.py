"""Query parts and hits: what ``Engine.search`` takes and what it returns.

A query is one or more parts (a text, an image, an audio clip or a raw vector), each with a
weight. Their embeddings combine by late fusion: ``v = normalise(w1 v1 + w2 v2 + ...)``; a
negative weight steers away from a part.
"""

from __future__ import annotations

import io
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..models.encoder import MODALITIES, Encoder, l2_normalize

# A part's weight, in size: a weight of 0 or 1e-320 empties the query, 1e308 overflows the sum.
MIN_WEIGHT = 1e-3
MAX_WEIGHT = 1e3
# ``VALUE^WEIGHT``: a number (signed, decimal, exponent; inf and nan too, to be refused) at the end.
_WEIGHTED = re.compile(r"(.+)\^\s*([+-]?(?:(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|inf|nan))\s*", re.S | re.I)


def check_weight(weight: float) -> float:
    """``weight`` if its size lies in [MIN_WEIGHT, MAX_WEIGHT].

    Raises:
        QueryError: out of range, infinite or not a number.
    """
    if not np.isfinite(weight) or not MIN_WEIGHT <= abs(weight) <= MAX_WEIGHT:
        raise QueryError(f"a weight is a number from {MIN_WEIGHT} to {MAX_WEIGHT:g} (or its negative), not {weight:g}")
    return float(weight)


def split_weight(value: str) -> tuple[str, float] | None:
    """``rain^0.5`` as ``("rain", 0.5)``; None when ``value`` ends in no ``^NUMBER`` (a caret
    that is part of the text). The one parser of weights, for the CLI, the HTTP API and Python.

    Raises:
        QueryError: a weight out of range (``dog^0``, ``a^1e308``).
    """
    found = _WEIGHTED.fullmatch(value)
    if found is None:
        return None
    return found.group(1), check_weight(float(found.group(2)))


class QueryError(ValueError):
    """A query that cannot be answered: empty, a missing or unreadable file, a bad argument."""


@dataclass(frozen=True)
class Weighted:
    """A query part with a weight: ``Weighted("beach.jpg", 0.5)``; negative steers away."""

    value: Any
    weight: float = 1.0


@dataclass
class Hit:
    """One search result. ``rank`` counts from 1 within its target modality."""

    rank: int
    score: float
    id: int
    modality: str
    path: str
    text: str | None = None
    line: int | None = None  # the line of a ``--texts`` file, for text items that came from one
    metadata: dict[str, Any] = field(default_factory=dict)
    # A moment of a long file: its times in seconds, and the file's own id (``id`` is then the
    # segment's). ``start`` and ``end`` are None for a hit on a whole file, whose file_id is its id.
    start: float | None = None
    end: float | None = None
    file_id: int | None = None
    # A video's hit: which of its vectors matched, "image" (its frames) or "audio" (its
    # soundtrack); None for every other item, and for a video fetched by id.
    track: str | None = None
    # The file as indexed: its path under the indexed folder (for a line of a texts file, the
    # texts file's name) and its mtime in ns (what a server checks the file against).
    relpath: str | None = None
    mtime_ns: int | None = None
    # Words found in the file that matched (a hit found by what is said in it: ``track`` is
    # "speech"; by text read in a picture: "text"), with a little context; None otherwise.
    snippet: str | None = None
    # Where the matched line of text is in a picture (``track`` "text"): its box's four corners
    # ``[[x, y], ...]`` in the picture's pixels; None otherwise.
    box: list[list[float]] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def listed_under(self) -> str:
        """The target modality the hit is listed under: a video's by what matched (its frames
        among the images, its soundtrack among the audio), a file found by words in it by its
        kind (what is said among the audio, text read in a picture among the images)."""
        if self.track == "speech":
            return "audio"
        if self.track == "text" and self.modality != "text":
            return "image"
        return self.track or self.modality


@dataclass(frozen=True)
class Part:
    modality: str  # image, audio, text or vector
    value: Any
    weight: float


def collect_parts(text: Any = None, image: Any = None, audio: Any = None, vector: Any = None) -> list[Part]:
    """Flatten the keyword arguments of ``search`` into weighted parts."""
    parts: list[Part] = []
    for modality, given in (("text", text), ("image", image), ("audio", audio), ("vector", vector)):
        if given is None:
            continue
        items = given if isinstance(given, list) else [given]
        if modality == "vector":
            if isinstance(given, list) and given and all(isinstance(x, (int, float, np.number)) for x in given):
                items = [given]  # a list of numbers is one vector
            elif isinstance(given, np.ndarray) and given.ndim == 2:
                items = list(given)  # rows of a matrix are several parts
        for item in items:
            weight = 1.0
            if isinstance(item, Weighted):
                item, weight = item.value, float(item.weight)
            try:
                check_weight(weight)
            except QueryError as exc:
                raise QueryError(f"{modality} part: {exc}") from None
            if modality == "text" and (not isinstance(item, str) or not item.strip()):
                raise QueryError(
                    "empty text query"
                    if isinstance(item, str)
                    else f"a text query must be a string, not {type(item).__name__}"
                )
            parts.append(Part(modality, item, weight))
    if not parts:
        raise QueryError("empty query: give text=, image=, audio= or vector=")
    return parts


def embed_parts(encoder: Encoder, parts: list[Part], dim: int) -> np.ndarray:
    """The fused, unit-length query vector of ``parts``."""
    total = np.zeros(dim, dtype=np.float64)
    for modality in ("text", "image", "audio", "vector"):
        mine = [p for p in parts if p.modality == modality]
        if not mine:
            continue
        vectors = _embed(encoder, modality, [p.value for p in mine], dim)
        for p, v in zip(mine, vectors):
            total += p.weight * v.astype(np.float64)
    norm = np.linalg.norm(total)
    if norm < 1e-5 * sum(abs(p.weight) for p in parts):  # float noise of equal parts cancelling
        raise QueryError("the weighted query parts cancel out (their weighted sum is zero)")
    return (total / norm).astype(np.float32)


def _embed(encoder: Encoder, modality: str, values: list[Any], dim: int) -> np.ndarray:
    if modality == "vector":
        out = []
        for v in values:
            arr = np.asarray(v, dtype=np.float32).reshape(-1)
            if arr.shape != (dim,) or not np.isfinite(arr).all():
                raise QueryError(f"a query vector must hold {dim} finite numbers, got shape {list(np.shape(v))}")
            out.append(arr)
        return l2_normalize(np.stack(out))
    if modality not in encoder.modalities:
        raise QueryError(f"model {encoder.name!r} has no {modality} tower, so it cannot take a {modality} query")
    if modality == "text":
        return encoder.encode_text(values)
    values = [_check_file(modality, v) for v in values]
    try:
        return encoder.encode_image(values) if modality == "image" else encoder.encode_audio(values)
    except ValueError as exc:  # ImageDecodeError / AudioDecodeError
        raise QueryError(f"query {modality} {_describe(values)} cannot be read: {exc}") from exc


def _check_file(modality: str, value: Any) -> Any:
    if isinstance(value, (str, os.PathLike)):
        path = Path(value).expanduser()
        if not path.is_file():
            raise QueryError(f"query {modality} file not found: {path}")
        return str(path)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, io.IOBase):
        return value.read()
    return value


def _describe(values: list[Any]) -> str:
    names = [v if isinstance(v, str) else f"<{type(v).__name__}>" for v in values]
    return ", ".join(names)


def target_modalities(to: str | list[str] | None, parts: list[Part], available: tuple[str, ...]) -> list[str]:
    """Which modalities to search: ``to`` (one, a list, or "all"); by default every modality
    of the index but the query's own (all of them for a raw vector or a query of every kind)."""
    if to is None:
        own = {p.modality for p in parts}
        chosen = [m for m in available if m not in own] or list(available)
    else:
        asked = [to] if isinstance(to, str) else list(to)
        if not asked:
            raise QueryError("to= names no modality")
        chosen = []
        for m in asked:
            if m == "all":
                chosen.extend(available)
            elif m not in MODALITIES:
                raise QueryError(f"unknown target modality {m!r}: choose image, audio, text or all")
            elif m not in available:
                raise QueryError(f"this index's model has no {m} tower, so it holds no {m} items")
            else:
                chosen.append(m)
    return list(dict.fromkeys(chosen))
