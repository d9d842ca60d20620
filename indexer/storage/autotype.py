"""``--index-type auto``: the FAISS index type of each modality, chosen from how many vectors it
holds and the RAM search may use, in the spirit of autofaiss's rules:

- exact ``Flat`` while small (at most ``FLAT_MAX`` vectors) and its float32 vectors fit;
- ``IVF{nlist},Flat`` (inverted lists of float32 vectors) while those still fit;
- ``IVF{nlist},PQ{m}`` once they do not: ``m`` bytes a vector in RAM, the candidates re-scored
  exactly from the stored vectors (float16, on disk, see :mod:`indexer.storage.vectors`).

``nlist`` is the power of two nearest ``4 * sqrt(n)``, so that every list gets enough training
vectors. One IVF serves a whole modality (no shard split). The manifest keeps the choice and why
(``Manifest.types``); the indexer re-chooses after each checkpoint and rebuilds
from the stored vectors when the choice moves up or an IVF has grown ``RETRAIN_GROWTH`` times
past the vectors its lists were trained for (:mod:`indexer.storage.retype`).
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import asdict, dataclass

from .sizes import parse_size

AUTO = "auto"
FLAT_MAX = 200_000  # exact search of 200k x 384 float32 is ~10 ms a query on two cores
RETRAIN_GROWTH = 10
MIN_NLIST, MAX_NLIST = 256, 8192
# An id costs 8 bytes in the id map, 8 in an IVF's lists and about 44 in IndexIDMap2's reverse
# map (IndexIDMap2 over 1-byte codes took 52.7 bytes a vector at 2M, IndexIDMap 9.3).
ID_BYTES = 64
PQ_MIN = 1_000  # fewer vectors cannot train PQ codes (256 centroids a sub-vector): Flat, over the budget
SEGMENT_FACTORY = "Flat"  # moments of long files, under auto: searched exactly


@dataclass(frozen=True)
class Choice:
    """One modality's index type: the factory string, how search uses it, and why."""

    factory: str
    nprobe: int | None = None  # IVF lists probed a query
    rerank: bool = False  # candidates re-scored exactly from the stored vectors
    trained_for: int = 0  # vectors the choice was made for (an IVF's lists were trained on them)
    budget: int = 0  # the search-memory budget in bytes it was made under
    reason: str = ""
    prefix: str = ""  # the shard files' name prefix (``image``, ``image.e2`` after a rebuild)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "Choice":
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})

    @property
    def kind(self) -> int:
        """0 Flat, 1 IVF-Flat, 2 IVF-PQ: auto only ever moves up."""
        return 2 if self.rerank else 1 if self.factory.startswith("IVF") else 0


def default_budget() -> int:
    """A quarter of the machine's RAM."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 4
    except (ValueError, OSError):
        return 2 << 30


def parse_memory(text: str | int) -> int:
    """``"2G"``, ``"512M"``, ``"1.5GB"`` or a number of bytes (above 0).

    Raises:
        ValueError: not a size.
    """
    return parse_size(text, "--max-memory", positive=True)


def _gib(n: float) -> str:
    return f"{n / (1 << 30):.2f} GiB"


def nlist_for(n: int) -> int:
    """Lists of an IVF over ``n`` vectors: the power of two nearest ``4 * sqrt(n)``, within
    [256, 8192], and at most ``n / 39`` (k-means wants 39 training vectors a centroid)."""
    nlist = 2 ** round(math.log2(max(4 * math.sqrt(max(n, 1)), 1)))
    nlist = min(max(nlist, MIN_NLIST), MAX_NLIST)
    while nlist > 16 and nlist * 39 > n:
        nlist //= 2
    return nlist


def pq_bytes(dim: int, budget: int, n: int) -> int:
    """PQ code bytes a vector: the largest of 64, 48, 32, 24, 16, 8 that divides ``dim`` into
    sub-vectors of at least 4 dimensions and whose codes fit the budget (else the smallest)."""
    options = [m for m in (64, 48, 32, 24, 16, 8) if dim % m == 0 and dim // m >= 4] or [1]
    for m in options:
        if n * (m + ID_BYTES) <= budget:
            return m
    return options[-1]


def choose(n: int, dim: int, budget: int) -> Choice:
    """The index type for ``n`` vectors of ``dim`` dimensions under ``budget`` bytes of RAM."""
    flat = n * (dim * 4 + ID_BYTES)
    if n <= FLAT_MAX and flat <= budget:
        return Choice("Flat", trained_for=n, budget=budget, reason=f"exact search: {n:,} vectors <= {FLAT_MAX:,}")
    nlist = nlist_for(n)
    nprobe = max(16, min(64, nlist // 64))
    if flat <= budget:
        return Choice(
            f"IVF{nlist},Flat",
            nprobe=nprobe,
            trained_for=n,
            budget=budget,
            reason=f"{n:,} vectors > {FLAT_MAX:,}: inverted lists ({nlist}, {nprobe} probed a query) of float32 "
            f"vectors, {_gib(flat)} within the search-memory budget of {_gib(budget)}",
        )
    if n < PQ_MIN:
        return Choice(
            "Flat",
            trained_for=n,
            budget=budget,
            reason=f"exact search, OVER the search-memory budget of {_gib(budget)}: {n:,} vectors are too few "
            "to train compressed codes",
        )
    m = pq_bytes(dim, budget, n)
    codes = n * (m + ID_BYTES)
    fits = "within" if codes <= budget else "OVER (the smallest codes offered)"
    return Choice(
        f"IVF{nlist},PQ{m}",
        nprobe=nprobe,
        rerank=True,
        trained_for=n,
        budget=budget,
        reason=f"{n:,} float32 vectors ({_gib(flat)}) exceed the search-memory budget of {_gib(budget)}: "
        f"inverted lists ({nlist}, {nprobe} probed) of {m}-byte PQ codes ({_gib(codes)}, {fits} the budget), "
        "candidates re-scored exactly from the stored float16 vectors on disk",
    )


def estimate(choice: Choice, n: int, dim: int) -> int:
    """Bytes of RAM ``choice``'s index takes for ``n`` vectors (codes and ids)."""
    found = re.search(r"PQ(\d+)", choice.factory)
    return n * ((int(found.group(1)) if found else dim * 4) + ID_BYTES)


def fixed(factory: str, prefix: str) -> Choice:
    """A type given by name (not auto): how the shards of an index built before auto, or with
    ``--index-type FACTORY``, are read."""
    return Choice(factory, reason="given (--index-type)", prefix=prefix)
