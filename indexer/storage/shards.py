"""FAISS shards of one modality: ``IndexIDMap2`` over a factory-string index, explicit int64
ids (the SQL primary keys), at most ``shard_size`` vectors a shard, written atomically.

Index types that need training are trained once per modality (on a sample of the first
vectors) and saved as a template that every shard of that modality starts from.
"""

from __future__ import annotations

import logging
import os
import re
import struct
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .exact import topk_inner_product, tune_faiss
from .faults import crash_point
from .vectors import StoredVectors

log = logging.getLogger(__name__)
TRAIN_SAMPLE = 100_000
SHARED_BELOW = 16  # queries at once under which an IVF's parts share one coarse assignment
RERANK_FACTOR, RERANK_MIN = 10, 100  # candidates a re-scored search asks its codes for: max(k * 10, 100)


class ShardError(RuntimeError):
    """Raised when a shard file cannot be read, written or trained."""


_tuned = False


def faiss_module():
    global _tuned
    import faiss

    if not _tuned:
        tune_faiss()
        _tuned = True
    return faiss


def faiss_build() -> dict[str, Any]:
    """Which FAISS this process runs: its version, the package it came from (faiss-gpu and
    faiss-cpu both install the one ``faiss`` module: one environment must hold only one), and
    the GPUs it sees."""
    from importlib import metadata

    faiss = faiss_module()
    packages = []
    for dist in ("faiss-gpu", "faiss-cpu", "faiss-gpu-cu12", "faiss-gpu-cu11", "faiss"):
        try:
            packages.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            continue
    gpus = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
    return {
        "version": faiss.__version__,
        "packages": packages,
        "gpu_support": hasattr(faiss, "StandardGpuResources"),
        "gpus": gpus,
        # faiss-gpu and faiss-cpu both write the one `faiss` module: with both, which one runs
        # depends on install order, and an upgrade of either breaks the other.
        "conflict": sum(p.startswith("faiss-") for p in packages) > 1,
    }


def write_atomic(index, path: Path) -> None:
    """Write a FAISS index to ``path`` via a temporary file, fsync and rename."""
    faiss = faiss_module()
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
        os.close(fd)
        faiss.write_index(index, tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except (RuntimeError, OSError) as exc:
        _unlink_quietly(tmp)
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else _faiss_reason(str(exc))
        raise ShardError(
            f"cannot write shard {path} ({reason}); is the disk full? The previous version of the shard is intact"
        ) from exc
    except BaseException:
        _unlink_quietly(tmp)
        raise


def _faiss_reason(message: str) -> str:
    # FAISS puts the system's reason last, in parentheses: "... write error in X: 4051 != 12800 (File too large)"
    found = re.search(r"\(([^()]+)\)\s*$", message.strip())
    return found.group(1) if found else message.strip().splitlines()[-1][-160:]


def _stat(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)  # the inode too: a file replaced (atomically) is another inode
        return st.st_ino, st.st_mtime_ns, st.st_size
    except FileNotFoundError:
        return None


def _unlink_quietly(path: str | None) -> None:
    try:
        if path and os.path.exists(path):
            os.unlink(path)
    except OSError:
        pass


def read_index(path: Path, mmap: bool = False):
    """Read a shard; raises :class:`ShardError` naming the file when it is damaged."""
    faiss = faiss_module()
    check_length(path)
    try:
        if mmap:  # flat codes mapped, not copied: a 100k x 384 shard opens in ms, not 100s of ms
            return faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY)
        return faiss.read_index(str(path))
    except RuntimeError as exc:
        raise ShardError(f"shard {path} is unreadable (truncated or corrupt): {str(exc).splitlines()[0]}") from exc


# FAISS's index header: fourcc, d (int32), ntotal (int64), two int64s, is_trained (1 byte),
# metric type (int32); the wrapped index's fourcc follows (metric types 0 and 1 carry no argument).
_HEADER = struct.Struct("<4siqqqBi")
_FLAT = {b"IxFI", b"IxF2", b"IxFl"}


def check_length(path: Path) -> None:
    """Refuse a shard shorter than its own header says (a truncated file): memory-mapped, FAISS
    would read past its end and kill the process instead of raising.

    Raises:
        ShardError: the file is too short for the vectors and ids it declares.
    """
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(_HEADER.size + 4)
    except OSError as exc:
        raise ShardError(f"shard {path} is unreadable ({exc.strerror or exc})") from exc
    if len(head) < _HEADER.size + 4:
        raise ShardError(f"shard {path} is unreadable (truncated or corrupt): {size} bytes, shorter than a header")
    fourcc, d, ntotal, _, _, _, metric = _HEADER.unpack_from(head)
    if fourcc not in (b"IxM2", b"IxMp") or metric > 1 or d <= 0 or ntotal < 0:
        return  # another layout: FAISS's own checks answer for it
    need = ntotal * 8 + (ntotal * d * 4 if head[_HEADER.size : _HEADER.size + 4] in _FLAT else 0)
    if size < need:
        raise ShardError(
            f"shard {path} is unreadable (truncated or corrupt): {size} bytes for {ntotal} vectors "
            f"that need at least {need}"
        )


def flat_vectors(index) -> np.ndarray | None:
    """A zero-copy ``[n, d]`` view of the vectors of an ``IndexIDMap2`` over a plain inner-product
    ``Flat`` index, or None for any other index type. Valid while ``index`` lives."""
    faiss = faiss_module()
    base = faiss.downcast_index(index.index)
    if not isinstance(base, faiss.IndexFlat) or base.metric_type != faiss.METRIC_INNER_PRODUCT or base.ntotal == 0:
        return None
    return faiss.rev_swig_ptr(base.get_xb(), base.ntotal * base.d).reshape(base.ntotal, base.d)


def _merge_into(into, other) -> None:  # noqa: ANN001 - IndexIDMap2 each
    """Move a delta's vectors into its base, by kind: flat vectors added (FAISS will not merge
    an IndexFlat into the IndexFlatIP a file reads back as), IVF lists moved with their ids
    offset, other flat codes (SQ, PQ) appended."""
    faiss = faiss_module()
    if other.ntotal == 0:
        return
    vectors = flat_vectors(other)
    if vectors is not None:
        into.add_with_ids(np.array(vectors), shard_ids(other))
    elif isinstance(faiss.downcast_index(other.index), faiss.IndexIVF):
        _merge_ivf(into, other)
    else:
        into.merge_from(other)


def _merge_ivf(into, other) -> None:  # noqa: ANN001 - IndexIDMap2 over an IVF index, each
    """Move ``other``'s vectors into ``into`` without re-encoding them. Not through
    ``IndexIDMap2.merge_from``: it merges the inner IVFs without offsetting the delta's internal
    numbers, so its vectors would answer to the base's first ids."""
    faiss = faiss_module()
    inner, theirs = faiss.downcast_index(into.index), faiss.downcast_index(other.index)
    ids = np.concatenate([shard_ids(into), shard_ids(other)])
    for ivf in (inner, theirs):
        if isinstance(ivf, faiss.IndexIVF):
            ivf.make_direct_map(False)  # merging with a direct map is not implemented
    inner.merge_from(theirs, inner.ntotal)
    faiss.copy_array_to_vector(ids, into.id_map)
    into.ntotal = inner.ntotal
    into.construct_rev_map()


def _with_selector(selector, params, shard=None):  # noqa: ANN001, ANN202
    """Search parameters carrying an id ``selector``, of the kind ``shard``'s index takes (an IVF
    refuses plain ones), with its own search knobs (lists probed, beam width) kept."""
    faiss = faiss_module()
    if params is None:
        inner = faiss.downcast_index(shard.index) if shard is not None and hasattr(shard, "id_map") else shard
        ivf = faiss.try_extract_index_ivf(inner) if inner is not None else None
        if ivf is not None:
            params = faiss.SearchParametersIVF()
            params.nprobe = ivf.nprobe
        elif isinstance(inner, faiss.IndexHNSW):
            params = faiss.SearchParametersHNSW()
            params.efSearch = inner.hnsw.efSearch
        else:
            params = faiss.SearchParameters()
    params.sel = selector
    return params


SEARCH_DEFAULTS = {"IndexIVF": "nprobe=16", "IndexHNSW": "efSearch=64"}


def set_search_defaults(index, nprobe: int | None = None) -> None:
    """Search-time knobs of approximate index types (IVF lists probed, HNSW beam width);
    ``nprobe`` overrides the IVF default (auto's choice sets it)."""
    faiss = faiss_module()
    base = faiss.downcast_index(index.index) if hasattr(index, "id_map") else index
    for kind, params in SEARCH_DEFAULTS.items():
        if isinstance(base, getattr(faiss, kind)):
            if nprobe and kind == "IndexIVF":
                params = f"nprobe={nprobe}"
            faiss.ParameterSpace().set_index_parameters(base, params)


def shard_ids(index) -> np.ndarray:
    faiss = faiss_module()
    return faiss.vector_to_array(index.id_map).astype(np.int64) if index.ntotal else np.zeros(0, np.int64)


_PART = r"-(\d{5})(?:\.g(\d{4,}))?(?:\.d(\d{4,}))?\.faiss$"
MERGE_RATIO = 2  # a shard's deltas are merged into its base once they hold twice its vectors...
MAX_DELTAS = 32  # ...or there are this many


def part_of(name: str, modality: str) -> tuple[int, int, int] | None:
    """(shard number, generation, delta number; 0 for the base) of a file of ``modality``'s
    shards, or None for any other file (its template, another modality's, segment shards)."""
    found = re.fullmatch(re.escape(modality) + _PART, name)
    if found is None:
        return None
    return int(found.group(1)), int(found.group(2) or 0), int(found.group(3) or 0)


class ShardSet:
    """The shards of one modality in ``folder``: at most ``shard_size`` vectors a shard.

    A shard on disk is a *base* file (``<modality>-NNNNN.faiss``; ``.gGGGG`` once merged) and
    the *deltas* a checkpoint adds beside it (``...dDDDD.faiss``), so that a checkpoint writes
    the vectors it adds, not the whole shard again. Once a shard's deltas hold ``MERGE_RATIO``
    times its base's vectors (or number ``MAX_DELTAS``), base and deltas are merged into the
    next generation's base: written whole under its new name first, the old files removed
    after, so a kill between the two leaves files that :meth:`load` recognises as merged (a
    lower generation than the newest base) and drops. Index types whose shards cannot be merged
    (HNSW) rewrite their shard at each checkpoint, as before. Every part is searched.
    """

    def __init__(
        self,
        folder: Path,
        modality: str,
        dim: int,
        factory: str = "Flat",
        shard_size: int = 250_000,
        nprobe: int | None = None,
        rerank: bool = False,
    ) -> None:
        self.folder = Path(folder)
        self.modality = modality  # the files' name prefix: a modality, ``image-segments``, ``image.e2``
        self.dim = dim
        self.factory = factory
        self.shard_size = shard_size
        self.nprobe = nprobe
        # Lossy codes (PQ): every vector is also stored (float16, on disk) to re-score candidates.
        self.stored = StoredVectors(self.folder, modality, dim) if rerank else None
        self._warned_unstored = False
        self.shards: list = []  # every part (bases and deltas), searched alike
        self.paths: list[Path] = []
        self.parts: list[tuple[int, int, int]] = []  # (shard number, generation, delta number) of each
        self.stats: list[tuple[int, int, int] | None] = []  # each part's (inode, mtime, size) when it was read
        self.mapped: list[bool] = []  # each part memory-mapped read-only (read again whole to change it)
        self.dirty: set[int] = set()  # parts to write
        self.open_delta: int | None = None  # the part this checkpoint's new vectors go to
        self.stale: list[Path] = []  # files to remove at the next flush (merged, or emptied deltas)
        self._untrained: list[tuple[np.ndarray, np.ndarray]] = []
        self._template = None
        self._views: dict[
            int, tuple[np.ndarray, np.ndarray] | bool
        ] = {}  # part number -> (vectors, ids); False: not flat
        self._searches: dict[int, int] = {}
        self._shared: tuple | None = None  # (the parts it was made for, _shared_lists' answer)
        self._cpu_shards: list | None = None  # on the GPU: the CPU copies, the fallback

    # --- files ---------------------------------------------------------------------------
    def shard_path(self, n: int, generation: int = 0, delta: int = 0) -> Path:
        name = f"{self.modality}-{n:05d}"
        name += f".g{generation:04d}" if generation else ""
        name += f".d{delta:04d}" if delta else ""
        return self.folder / f"{name}.faiss"

    @property
    def template_path(self) -> Path:
        return self.folder / f"{self.modality}-trained.faiss"

    def existing_paths(self) -> list[Path]:
        """The files of the current parts (not those a merge left behind), in order."""
        return [self.shard_path(*part) for part in self._current(self._listed())]

    def _listed(self) -> list[tuple[int, int, int]]:
        if not self.folder.is_dir():
            return []
        return [p for p in (part_of(f.name, self.modality) for f in self.folder.iterdir()) if p is not None]

    @staticmethod
    def _current(parts: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
        """Each shard's newest generation that has a base (its deltas with it); lower ones are
        what a merge replaced."""
        bases: dict[int, int] = {}
        newest: dict[int, int] = {}
        for n, g, d in parts:
            newest[n] = max(newest.get(n, g), g)
            if d == 0:
                bases[n] = max(bases.get(n, g), g)
        chosen = {n: bases.get(n, g) for n, g in newest.items()}
        return sorted(p for p in parts if p[1] == chosen[p[0]])

    def load(self, mmap: bool = False, tidy: bool | None = None, reuse: dict | None = None) -> "ShardSet":
        """Read the current parts (memory-mapped with ``mmap``: a part an indexer changes is then
        read whole first); files a merge left behind are removed when ``tidy`` (default: not
        ``mmap``; readers leave the folder as they find it). A file removed while being listed
        (an indexer merging at that moment) makes the listing start again. ``reuse``: parts
        already read, ``{path: ((inode, mtime, size), index)}`` (a reader's previous load):
        taken again when the file is still that one."""
        for attempt in range(5):
            listed = self._listed()
            current = self._current(listed)
            try:
                known, shards, stats = reuse or {}, [], []
                for path in (self.shard_path(*p) for p in current):
                    stats.append(_stat(path))  # before the read: a file replaced meanwhile looks changed later
                    shards.append(known[path] if path in known and known[path][0] == stats[-1] else None)
                    shards[-1] = shards[-1][1] if shards[-1] is not None else read_index(path, mmap)
                break
            except ShardError:
                if attempt == 4 or all(self.shard_path(*p).exists() for p in current):
                    raise
        self.parts = current
        self.paths = [self.shard_path(*p) for p in current]
        self.shards = shards
        self.stats = stats  # each part's (inode, mtime, size) when it was read
        self.mapped = [mmap] * len(shards)
        if tidy if tidy is not None else not mmap:
            for stale in sorted(set(listed) - set(current)):
                log.info("removing %s, merged into a newer shard file", self.shard_path(*stale).name)
                _unlink_quietly(str(self.shard_path(*stale)))
        for shard in self.shards:
            set_search_defaults(shard, self.nprobe)
        for path, shard in zip(self.paths, self.shards):
            if shard.d != self.dim:
                raise ShardError(f"shard {path} holds {shard.d}-d vectors, the index expects {self.dim}-d")
        return self

    def flush(self) -> None:
        """Write every changed part (atomically), training first if needed; merge the deltas of
        a shard that has enough of them; then remove the files that are no longer parts."""
        self.folder.mkdir(parents=True, exist_ok=True)
        if self.stored is not None:
            self.stored.flush()  # before the shards: a vector FAISS holds always has its stored copy
        if self._untrained:
            self._train_and_add()
        for k in sorted(self.dirty):
            write_atomic(self.shards[k], self.paths[k])
            crash_point("shard-written")
        self.dirty.clear()
        self.open_delta = None
        self._drop_empty_deltas()
        for n in sorted({p[0] for p in self.parts}):
            self._maybe_merge(n)
        for path in self.stale:
            _unlink_quietly(str(path))
        self.stale = []

    def _drop_empty_deltas(self) -> None:
        """Deltas that removals emptied: their files go, and they stop counting as parts."""
        for k in reversed(range(len(self.parts))):
            if self.parts[k][2] and self.shards[k].ntotal == 0:
                self.stale.append(self.paths[k])
                del self.parts[k], self.paths[k], self.shards[k], self.mapped[k], self.stats[k]
                self._forget_views()
                self._searches.clear()

    def _maybe_merge(self, n: int) -> None:
        """Merge shard ``n``'s deltas into its next base when they outgrow it or are too many (a
        full shard keeps the few it has: merging it once more would write it whole again)."""
        mine = [k for k, p in enumerate(self.parts) if p[0] == n]
        base, deltas = mine[0], mine[1:]
        if not deltas or self.parts[base][2]:
            return
        in_deltas = sum(self.shards[k].ntotal for k in deltas)
        if in_deltas < MERGE_RATIO * max(1, self.shards[base].ntotal) and len(deltas) < MAX_DELTAS:
            return
        merged = self._writable(base)
        for k in deltas:
            _merge_into(merged, self._writable(k))
        _, generation, _ = self.parts[base]
        path = self.shard_path(n, generation + 1)
        write_atomic(merged, path)  # first the merged base; a kill now leaves the old files behind it
        crash_point("shard-merged")
        self.stale += [self.paths[k] for k in mine]
        self.parts[base], self.paths[base] = (n, generation + 1, 0), path
        self.stats[base] = None
        for k in reversed(deltas):
            del self.parts[k], self.paths[k], self.shards[k], self.mapped[k], self.stats[k]
        self._forget_views()
        self._searches.clear()

    # --- contents ------------------------------------------------------------------------
    @property
    def ntotal(self) -> int:
        return sum(s.ntotal for s in self.shards) + sum(len(i) for _, i in self._untrained)

    def ids(self) -> np.ndarray:
        parts = [shard_ids(s) for s in self.shards] + [i for _, i in self._untrained]
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)

    def _empty(self):
        faiss = faiss_module()
        if self._template is None and self.template_path.exists():
            self._template = read_index(self.template_path)
        if self._template is None and self.needs_training() is False and self.shards:
            if not faiss.index_factory(self.dim, self.factory, faiss.METRIC_INNER_PRODUCT).is_trained:
                # The trained template is gone (set aside as damaged): an empty copy of a shard's
                # trained index stands in, and is saved as the template again. The shard is read
                # whole for it: a clone of a memory-mapped one would share (and then free) its codes.
                log.warning("%s is missing: rebuilt from shard %s", self.template_path.name, self.paths[0].name)
                source = read_index(self.paths[0])
                template = faiss.clone_index(faiss.downcast_index(source.index))
                template.reset()
                write_atomic(template, self.template_path)
                self._template = template
        if self._template is not None:
            base = faiss.clone_index(self._template)
        else:
            base = faiss.index_factory(self.dim, self.factory, faiss.METRIC_INNER_PRODUCT)
        index = faiss.IndexIDMap2(base)
        index.own_fields = True
        base.this.disown()
        return index

    def _mergeable(self, index) -> bool:
        """Whether ``index``'s type takes deltas: those whose parts merge without re-encoding
        (flat codes, and the IVF kinds whose lists hold plain codes; not fast-scan, whose
        packed lists a merge would corrupt, nor HNSW or pre-transformed indexes)."""
        faiss = faiss_module()
        inner = faiss.downcast_index(index.index)
        if type(inner) in (faiss.IndexIVFFlat, faiss.IndexIVFPQ, faiss.IndexIVFScalarQuantizer):
            return (
                isinstance(inner.invlists, faiss.ArrayInvertedLists)
                or type(faiss.downcast_InvertedLists(inner.invlists)) is faiss.ArrayInvertedLists
            )
        return type(inner) in (faiss.IndexFlat, faiss.IndexFlatIP, faiss.IndexScalarQuantizer, faiss.IndexPQ)

    def _part_for_adding(self) -> int:
        """The part new vectors go to: this checkpoint's delta of the last shard; the base itself
        when it is new or rewritten anyway at this checkpoint, or of a type that cannot merge;
        a new shard's base when the last is full."""
        if self.open_delta is not None and self._shard_count(self.parts[self.open_delta][0]) < self.shard_size:
            return self.open_delta
        last = self.parts[-1][0] if self.parts else None
        if last is None or self._shard_count(last) >= self.shard_size:
            number = last + 1 if last is not None else max([p[0] + 1 for p in self._listed()], default=0)
            return self._append_part((number, 0, 0))
        base = next(k for k, p in enumerate(self.parts) if p[0] == last)
        if base in self.dirty or not self._mergeable(self.shards[base]):
            return base
        _, generation, _ = self.parts[base]
        delta = max(p[2] for p in self.parts if p[0] == last) + 1
        self.open_delta = self._append_part((last, generation, delta))
        return self.open_delta

    def _append_part(self, part: tuple[int, int, int]) -> int:
        self.shards.append(self._empty())
        self.parts.append(part)
        self.paths.append(self.shard_path(*part))
        self.mapped.append(False)
        self.stats.append(None)
        return len(self.shards) - 1

    def _writable(self, k: int):  # noqa: ANN202 - a FAISS index
        """Part ``k`` in memory, to change: a memory-mapped part is read whole first."""
        if self.mapped[k]:
            self.shards[k] = read_index(self.paths[k])
            set_search_defaults(self.shards[k], self.nprobe)
            self.mapped[k] = False
            self._forget_views()
        return self.shards[k]

    def _shard_count(self, n: int) -> int:
        return sum(s.ntotal for s, p in zip(self.shards, self.parts) if p[0] == n)

    def needs_training(self) -> bool:
        faiss = faiss_module()
        if self._template is not None or self.template_path.exists() or self.shards:
            return False
        probe = faiss.index_factory(self.dim, self.factory, faiss.METRIC_INNER_PRODUCT)
        return not probe.is_trained

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        """Add unit vectors with their ids, filling the last shard before opening a new one."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if vectors.shape != (len(ids), self.dim):
            raise ValueError(f"expected [{len(ids)}, {self.dim}] vectors, got {list(vectors.shape)}")
        if self.stored is not None:
            self.stored.append(vectors, ids)
        self._add(vectors, ids)

    def _add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        if self.needs_training():
            self._untrained.append((vectors, ids))  # trained at flush, on everything seen by then
            return
        start = 0
        while start < len(ids):
            k = self._part_for_adding()
            take = min(self.shard_size - self._shard_count(self.parts[k][0]), len(ids) - start)
            self._writable(k).add_with_ids(vectors[start : start + take], ids[start : start + take])
            self.dirty.add(k)
            self._forget_views()
            start += take

    def _train_and_add(self) -> None:
        vectors = np.concatenate([v for v, _ in self._untrained])
        ids = np.concatenate([i for _, i in self._untrained])
        sample = (
            vectors
            if len(vectors) <= TRAIN_SAMPLE
            else vectors[np.random.default_rng(0).choice(len(vectors), TRAIN_SAMPLE, replace=False)]
        )
        self._untrained = []
        self.train(sample)
        self._add(vectors, ids)

    def train(self, sample: np.ndarray) -> None:
        """Train this set's index type on ``sample`` and save it as the template every shard
        starts from.

        Raises:
            ShardError: FAISS cannot train it on so few vectors.
        """
        faiss = faiss_module()
        template = faiss.index_factory(self.dim, self.factory, faiss.METRIC_INNER_PRODUCT)
        sample = np.ascontiguousarray(sample, dtype=np.float32)
        log.info("training %s index for %s on %d vectors", self.factory, self.modality, len(sample))
        try:
            template.train(sample)
        except RuntimeError as exc:
            raise ShardError(
                f"cannot train index type {self.factory!r} on {len(sample)} {self.modality} vectors "
                f"({str(exc).splitlines()[0]}); use 'Flat' for small collections"
            ) from exc
        self.folder.mkdir(parents=True, exist_ok=True)
        write_atomic(template, self.template_path)
        self._template = template

    def remove(self, ids: np.ndarray) -> int:
        """Remove ids from every part (a part is written again at the next flush; an emptied
        delta's file goes); returns how many vectors went."""
        faiss = faiss_module()
        ids = np.ascontiguousarray(np.asarray(ids, dtype=np.int64))
        if len(ids) == 0:
            return 0
        removed = 0
        self._forget_views()
        if self._untrained:
            gone = set(ids.tolist())
            kept = []
            for v, i in self._untrained:
                keep = np.array([x not in gone for x in i.tolist()], dtype=bool)
                removed += int((~keep).sum())
                kept.append((v[keep], i[keep]))
            self._untrained = kept
        for k, shard in enumerate(self.shards):
            present = np.isin(shard_ids(shard), ids)
            if not present.any():
                continue
            shard = self._writable(k)
            if isinstance(faiss.downcast_index(shard.index), faiss.IndexFlatCodes):
                removed += shard.remove_ids(faiss.IDSelectorBatch(ids))
            elif self._array_ivf(shard) is not None:
                removed += self._remove_ivf(shard, present)
            else:
                # IndexIDMap2.remove_ids assumes the inner index renumbers what stays (as the
                # flat-codes indexes do); an IVF keeps its internal numbers, so the id map would
                # shift by one past every removed vector. HNSW cannot remove at all. Rebuild.
                removed += self._rebuild_without(k, present)
            self.dirty.add(k)
        return removed

    @staticmethod
    def _array_ivf(shard):  # noqa: ANN001, ANN205 - an IndexIDMap2; the IVF inside or None
        """The IVF directly inside ``shard`` when its lists are plain arrays (not fast-scan)."""
        faiss = faiss_module()
        inner = faiss.downcast_index(shard.index)
        if type(inner) not in (faiss.IndexIVFFlat, faiss.IndexIVFPQ, faiss.IndexIVFScalarQuantizer):
            return None
        lists = faiss.downcast_InvertedLists(inner.invlists)
        return inner if type(lists) is faiss.ArrayInvertedLists else None

    def _remove_ivf(self, shard, drop: np.ndarray) -> int:  # noqa: ANN001 - IndexIDMap2 over an IVF
        """Remove the vectors at positions ``drop`` of an IVF's id map without re-encoding the
        rest: out of the lists, then every internal number past a removed one renumbered (the
        id map is compacted, and IndexIDMap2.remove_ids alone would leave the lists' numbers
        pointing past their ids)."""
        faiss = faiss_module()
        ivf = self._array_ivf(shard)
        gone = np.flatnonzero(drop).astype(np.int64)
        ivf.make_direct_map(False)
        removed = ivf.remove_ids(faiss.IDSelectorBatch(gone))
        lists = faiss.downcast_InvertedLists(ivf.invlists)
        for number in range(ivf.nlist):
            size = lists.list_size(number)
            if size:
                internal = faiss.rev_swig_ptr(lists.get_ids(number), size)
                internal -= np.searchsorted(gone, internal)
        faiss.copy_array_to_vector(shard_ids(shard)[~drop], shard.id_map)
        shard.ntotal = ivf.ntotal
        shard.construct_rev_map()
        return int(removed)

    def _rebuild_without(self, k: int, drop: np.ndarray) -> int:
        faiss = faiss_module()
        old = self.shards[k]
        keep = np.flatnonzero(~drop)
        keep_ids = shard_ids(old)[keep]
        base = faiss.downcast_index(old.index)
        ivf = faiss.try_extract_index_ivf(base)  # an IVF, also one inside a pre-transform (OPQ)
        if isinstance(base, (faiss.IndexFastScan, faiss.IndexIVFFastScan)) or (
            ivf is not None and isinstance(faiss.downcast_index(ivf), faiss.IndexIVFFastScan)
        ):
            raise ShardError(
                f"index type {self.factory!r} cannot give back its vectors to remove some of them; "
                "rebuild the index with another type (--rebuild --index-type ...)"
            )
        vectors = self._stored_copies(keep_ids)  # exact, not decoded from lossy codes
        if vectors is None:
            if ivf is not None:
                ivf.make_direct_map()  # reconstruction by internal number
            vectors = (
                np.stack([base.reconstruct(int(i)) for i in keep]) if len(keep) else np.zeros((0, self.dim), np.float32)
            )
        fresh = self._empty()
        if len(keep_ids):
            fresh.add_with_ids(vectors, keep_ids)
        self.shards[k] = fresh
        return int(drop.sum())

    def _stored_copies(self, ids: np.ndarray) -> np.ndarray | None:
        """The stored float16 copies of ``ids`` (float32), or None when any is missing (or the
        set keeps none)."""
        if self.stored is None:
            return None
        lookup = self.stored.lookup()
        return lookup.get(ids) if lookup.count and lookup.has(ids).all() else None

    def unstored(self) -> np.ndarray:
        """Ids this set holds without their stored copy (a damaged or cut vectors file); none
        when it keeps no copies."""
        if self.stored is None:
            return np.zeros(0, np.int64)
        ids = self.ids()
        return ids[~self.stored.has(ids)] if len(ids) else ids

    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        """Stored vectors of ``ids`` (each must be present): the float16 copies when the index
        keeps them, else what FAISS gives back."""
        ids = np.asarray(ids, dtype=np.int64)
        if (stored := self._stored_copies(ids)) is not None:
            return stored
        faiss = faiss_module()
        where = {}
        for shard in self.shards:
            base = faiss.downcast_index(shard.index) if hasattr(shard, "index") else None
            if isinstance(base, faiss.IndexIVF) and not base.direct_map.type:
                base.make_direct_map()  # an IVF reconstructs by internal number only through its direct map
            for i in shard_ids(shard):
                where[int(i)] = shard
        return (
            np.stack([where[int(i)].reconstruct(int(i)) for i in ids])
            if len(ids)
            else np.zeros((0, self.dim), np.float32)
        )

    # --- search --------------------------------------------------------------------------
    def search(self, queries: np.ndarray, k: int, selector=None, params=None) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` inner products over every shard, merged (ties broken by smaller id).

        Plain ``Flat`` shards without a ``selector`` are searched exactly with numpy's BLAS
        (:mod:`indexer.storage.exact`); other index types, and id-filtered searches, through FAISS. An
        index of lossy codes with stored vectors asks its codes for ``max(10 k, 100)``
        candidates and re-scores them exactly.
        """
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if self.stored is not None and (lookup := self.stored.lookup()).count:
            return self._reranked(queries, k, selector, params, lookup)
        return self._search(queries, k, selector, params)

    def _reranked(self, queries: np.ndarray, k: int, selector, params, lookup) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001
        """Candidates from the codes, re-scored from one view of the stored vectors (a writer
        may append between two)."""
        coarse, cand = self._search(queries, max(k * RERANK_FACTOR, RERANK_MIN), selector, params)
        nq = len(queries)
        valid = cand >= 0
        unique, where = np.unique(cand[valid], return_inverse=True)
        scores = np.where(valid, coarse, -np.inf).astype(np.float32)
        have = lookup.has(unique)
        if not have.all():  # a lost stored copy: that candidate keeps its code's score (reconcile re-embeds it)
            if not self._warned_unstored:
                log.warning(
                    "%d %s vectors have no stored copy; scored from their codes", int((~have).sum()), self.modality
                )
                self._warned_unstored = True
        vectors = np.zeros((len(unique), self.dim), np.float32)
        if have.any():
            vectors[have] = lookup.get(unique[have])
        rows = np.nonzero(valid)[0]
        exact = np.einsum("ij,ij->i", vectors[where], queries[rows])
        scores[valid] = np.where(have[where], exact, scores[valid])
        order = np.lexsort((cand, -scores), axis=1)[:, :k] if cand.shape[1] else np.zeros((nq, 0), np.int64)
        d = np.take_along_axis(scores, order, axis=1)
        i = np.take_along_axis(cand, order, axis=1)
        return d, np.where(np.isfinite(d), i, -1)

    def _search(self, queries: np.ndarray, k: int, selector, params) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001
        nq = len(queries)
        all_d, all_i = [np.full((nq, 0), -np.inf, np.float32)], [np.zeros((nq, 0), np.int64)]
        # An IVF's base and deltas: one coarse assignment for all of them (a query alone: 1.3x to
        # 1.7x faster over 7 parts; batches of 64 measured 5% slower, so they search each part).
        alone = nq < SHARED_BELOW and selector is None and params is None and not self._cpu_shards
        quantizer, nprobe, shared = self._shared_lists() if alone else (None, 0, {})
        if shared:
            coarse_d, coarse_i = quantizer.search(queries, nprobe)
        for n, shard in enumerate(self.shards):
            if shard.ntotal == 0:
                continue
            kk = min(k, shard.ntotal)
            view = self._view(n) if selector is None and not self._cpu_shards else None
            if n in shared:
                ivf, ids = shared[n]
                d, internal = ivf.search_preassigned(queries, kk, coarse_i, coarse_d)
                i = np.where(internal >= 0, ids[np.maximum(internal, 0)], -1)
            elif self._cpu_shards:  # on the GPU: FAISS searches, the CPU copy is the fallback
                try:
                    d, i = (
                        shard.search(queries, kk)
                        if selector is None
                        else shard.search(queries, kk, params=_with_selector(selector, params, shard))
                    )
                except RuntimeError as exc:
                    self._cpu_fallback(exc)
                    return self._search(queries, k, selector, params)
            elif view is not None:
                d, rows = topk_inner_product(view[0], queries, kk)
                i = view[1][rows]
            elif selector is not None:
                d, i = shard.search(queries, kk, params=_with_selector(selector, params, shard))
            else:
                d, i = shard.search(queries, kk, params=params) if params is not None else shard.search(queries, kk)
            all_d.append(d)
            all_i.append(i)
        d = np.concatenate(all_d, axis=1)
        i = np.concatenate(all_i, axis=1)
        d = np.where(i < 0, -np.inf, d)
        order = np.lexsort((i, -d), axis=1)[:, :k] if d.shape[1] else np.zeros((nq, 0), np.int64)
        d = np.take_along_axis(d, order, axis=1)
        i = np.take_along_axis(i, order, axis=1)
        return d, np.where(np.isfinite(d), i, -1)

    def _forget_views(self) -> None:
        """Parts changed: the numpy views of flat parts and the shared lists go."""
        self._views.clear()
        self._shared = None

    def _shared_lists(self) -> tuple:
        """The IVF parts (plain lists) that share their coarse centroids (a base and its deltas,
        all from one trained template): ``(quantizer, nprobe, {part number: (ivf, ids)})``, the
        dict empty when fewer than two parts qualify."""
        key = tuple(id(s) for s in self.shards)
        if self._shared is None or self._shared[0] != key:
            self._shared = (key, self._find_shared_lists())
        return self._shared[1]

    def _find_shared_lists(self) -> tuple:
        faiss = faiss_module()
        found: dict = {}
        first = None  # (quantizer, its centroids, (IVF type, code size, nprobe)) of the first part
        for n, shard in enumerate(self.shards):
            ivf = self._array_ivf(shard) if hasattr(shard, "id_map") and shard.ntotal else None
            quantizer = faiss.downcast_index(ivf.quantizer) if ivf is not None else None
            if not isinstance(quantizer, faiss.IndexFlat) or quantizer.ntotal == 0:
                continue
            centroids = faiss.rev_swig_ptr(quantizer.get_xb(), quantizer.ntotal * quantizer.d)
            kind = (type(ivf), ivf.code_size, ivf.nprobe)
            if first is None:
                first = (quantizer, centroids, kind)
            elif kind != first[2] or not np.array_equal(centroids, first[1]):
                continue
            ids = faiss.rev_swig_ptr(shard.id_map.data(), shard.id_map.size())  # zero-copy while the part lives
            found[n] = (ivf, ids)
        if len(found) < 2:
            return None, 0, {}
        return first[0], first[2][2], found

    def to_gpu(self) -> bool:
        """Move the shards to the GPUs FAISS sees (spread over all of them); False, and the
        shards stay on the CPU, when there is none or moving fails (with a warning)."""
        faiss = faiss_module()
        try:
            if not hasattr(faiss, "get_num_gpus") or faiss.get_num_gpus() == 0:
                return False
            options = faiss.GpuMultipleClonerOptions()
            options.shard = False
            self._cpu_shards = list(self.shards)
            self.shards = [faiss.index_cpu_to_all_gpus(s, co=options) for s in self.shards]
            self._forget_views()
            return True
        except (RuntimeError, AttributeError) as exc:
            log.warning("cannot move %s shards to the GPU (%s); searching on the CPU", self.modality, exc)
            self.shards, self._cpu_shards = self._cpu_shards or self.shards, None
            return False

    def _cpu_fallback(self, exc: Exception) -> None:
        log.warning("GPU search failed (%s); falling back to the CPU for %s", exc, self.modality)
        self.shards = self._cpu_shards
        self._cpu_shards = None

    def _view(self, n: int) -> tuple[np.ndarray, np.ndarray] | None:
        """The shard's vectors and ids for the numpy path, or None to search through FAISS."""
        cached = self._views.get(n)
        if cached is not None:
            return cached or None
        vectors = flat_vectors(self.shards[n])
        if vectors is None:
            self._views[n] = False  # not a plain flat index
            return None
        if vectors.ctypes.data % 16:
            # Memory-mapped: FAISS's file layout leaves the floats unaligned, and BLAS will not
            # take unaligned data (numpy then falls back to a loop 30x slower). The first query
            # (a cold CLI query) lets FAISS read the mapping in place; from the second on, an
            # aligned copy is searched with BLAS.
            self._searches[n] = self._searches.get(n, 0) + 1
            if self._searches[n] == 1:
                return None
            vectors = np.array(vectors)
        self._views[n] = (vectors, shard_ids(self.shards[n]))
        return self._views[n]
