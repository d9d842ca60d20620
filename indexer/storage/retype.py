"""A modality's shards as the manifest says they are made, and changing how they are made by
rebuilding them from the vectors they hold (never by embedding again).

A rebuild writes the new shards under a new name prefix (``image.e2-...``) beside the old ones;
the manifest naming the new prefix is the switch; the old files go after. Killed before the
switch, the next writer removes the half-built files; after it, the old ones.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np

from .autotype import RETRAIN_GROWTH, Choice, choose, estimate
from .faults import crash_point
from .manifest import Manifest
from .shards import TRAIN_SAMPLE, ShardError, ShardSet, faiss_module, flat_vectors, shard_ids

log = logging.getLogger(__name__)
ONE_SHARD = 1 << 40  # auto's IVF: one index a modality, never split
BATCH = 100_000


def shard_set(folder: Path, manifest: Manifest, modality: str, dim: int, choice: Choice | None = None) -> ShardSet:
    """``modality``'s shards (not loaded) as ``choice`` (default: the manifest's) makes them."""
    choice = choice or manifest.choice(modality)
    size = ONE_SHARD if manifest.auto and choice.kind else manifest.shard_size
    return ShardSet(folder, choice.prefix or modality, dim, choice.factory, size, choice.nprobe, choice.rerank)


def _files_of(folder: Path, modality: str) -> dict[str, list[Path]]:
    """The files of ``modality``'s own shards in ``folder`` by name prefix (``image``, ``image.e2``)."""
    pattern = re.compile(re.escape(modality) + r"((?:\.e\d+)?)-(?:\d{5}\S*\.faiss|trained\.faiss|vectors\.(?:f16|ids))")
    out: dict[str, list[Path]] = {}
    for path in folder.iterdir() if folder.is_dir() else []:
        found = pattern.fullmatch(path.name)
        if found:
            out.setdefault(modality + found.group(1), []).append(path)
    return out


def remove_others(folder: Path, modality: str, keep: str) -> None:
    """Remove the files of ``modality``'s shards under any prefix but ``keep``: what a rebuild
    left (before its switch: the new files; after it: the old)."""
    for prefix, paths in _files_of(folder, modality).items():
        if prefix != keep:
            log.info("removing %d files of %s shards (%s), replaced by %s", len(paths), modality, prefix, keep)
            for path in paths:
                path.unlink(missing_ok=True)


def share(budget: int, n: int, total: int) -> int:
    """A modality's share of the search-memory budget: in proportion to its vectors."""
    return budget if total <= 0 else max(1, budget * n // max(total, n))


def due(manifest: Manifest, modality: str, n: int, budget: int, stored_rows: int = 0) -> Choice | None:
    """The type ``modality`` should move to now that it holds ``n`` vectors under ``budget``
    (its share; auto only), or None: up a kind (Flat -> IVF -> IVF-PQ); the same kind trained
    again once the IVF has grown ``RETRAIN_GROWTH`` times past the vectors its lists were
    trained for; smaller codes when its codes outgrew the budget (or the budget shrank); rebuilt
    as chosen for its size when its stored vectors hold more than twice as many rows as it has
    vectors (updated and removed files leave their rows behind)."""
    if not manifest.auto:
        return None
    dim = manifest.dim
    current = manifest.choice(modality)
    want = choose(n, dim, budget)
    if want.kind > current.kind:
        return want
    if current.kind and estimate(current, n, dim) > budget and want.factory != current.factory:
        return replace(want, reason=want.reason + f"; {current.factory} outgrew the budget")
    if stored_rows > 2 * n + 10_000:  # chosen again for n: a shrunken modality may not train its old lists
        return replace(
            want,
            reason=want.reason + f"; compacted: {stored_rows:,} stored rows for {n:,} vectors",
        )
    if current.kind and n >= RETRAIN_GROWTH * max(current.trained_for, 1):
        return replace(
            want,
            reason=want.reason + f"; re-trained: {n:,} vectors, over {RETRAIN_GROWTH}x the "
            f"{current.trained_for:,} its lists were trained for",
        )
    return None


def next_prefix(folder: Path, modality: str) -> str:
    epochs = [int(p.rsplit(".e", 1)[1]) for p in _files_of(folder, modality) if ".e" in p]
    return f"{modality}.e{max(epochs, default=0) + 1}"


def iter_vectors(shards: ShardSet, batch: int = BATCH) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Every vector ``shards`` holds with its id, in batches: the stored float16 copies where
    there are any, flat vectors as they are, other types as FAISS gives them back (for the
    vectors whose stored copy is lost, too).

    Raises:
        ShardError: a type that cannot give its vectors back (fast-scan PQ without stored ones).
    """
    faiss = faiss_module()
    lookup = shards.stored.lookup() if shards.stored is not None and shards.stored.exists() else None
    for part in shards.shards:
        ids = shard_ids(part)
        stored = lookup.has(ids) if lookup is not None else np.zeros(len(ids), bool)
        view = None if stored.all() else flat_vectors(part)
        inner = faiss.downcast_index(part.index)
        if view is None and not stored.all():
            ivf = faiss.try_extract_index_ivf(inner)
            if isinstance(inner, faiss.IndexFastScan) or (
                ivf is not None and isinstance(faiss.downcast_index(ivf), faiss.IndexIVFFastScan)
            ):
                raise ShardError(f"index type {shards.factory!r} cannot give back its vectors to rebuild")
            if ivf is not None:
                ivf.make_direct_map()
        for a in range(0, len(ids), batch):
            chunk, have = ids[a : a + batch], stored[a : a + batch]
            if have.all():
                yield lookup.get(chunk), chunk
                continue
            if view is not None:
                vectors = np.array(view[a : a + batch])
            else:
                vectors = inner.reconstruct_batch(np.arange(a, a + len(chunk), dtype=np.int64))
            if have.any():
                vectors[have] = lookup.get(chunk[have])
            yield vectors, chunk


def rebuild(folder: Path, manifest: Manifest, modality: str, old: ShardSet, choice: Choice) -> ShardSet:
    """New shards of ``modality`` made as ``choice`` says, from ``old``'s vectors, under a new
    prefix; written and flushed, but not yet named by the manifest (the caller's switch).
    Memory: the new index, a training sample and one batch (stored vectors are appended and
    flushed batch by batch)."""
    dim = manifest.dim
    choice = replace(choice, prefix=next_prefix(folder, modality))
    remove_others(folder, modality, keep=old.modality)  # a killed rebuild's half-built files
    new = shard_set(folder, manifest, modality, dim, choice)
    n = old.ntotal
    log.info("rebuilding %d %s vectors as %s (%s): %s", n, modality, choice.factory, choice.prefix, choice.reason)
    if new.needs_training() and n:
        new.train(_sample(old, n, sample_size(new.factory, n)))
    for vectors, ids in iter_vectors(old):
        new.add(vectors, ids)
        if new.stored is not None:
            new.stored.flush()  # batch by batch: the float16 copies never all in memory
    new.flush()
    crash_point("retype-built")
    return new


def training_minimum(factory: str) -> int:
    """The fewest vectors FAISS trains ``factory`` on: an IVF's lists, a PQ's centroids."""
    need = 1
    if found := re.search(r"IVF(\d+)", factory):
        need = max(need, int(found.group(1)))
    if found := re.search(r"PQ\d+(?:x(\d+))?", factory):
        need = max(need, 2 ** int(found.group(1) or 8))
    return need


def sample_size(factory: str, n: int) -> int:
    """Training vectors for ``factory``: 30 a list of an IVF (k-means), at least TRAIN_SAMPLE."""
    found = re.search(r"IVF(\d+)", factory)
    return min(n, max(TRAIN_SAMPLE, 30 * int(found.group(1)) if found else 0))


def _sample(shards: ShardSet, n: int, size: int) -> np.ndarray:
    chosen = np.sort(np.random.default_rng(0).choice(n, size, replace=False)) if size < n else np.arange(n)
    out, seen = [], 0
    for vectors, ids in iter_vectors(shards):
        inside = chosen[(chosen >= seen) & (chosen < seen + len(ids))] - seen
        out.append(vectors[inside])
        seen += len(ids)
    return np.concatenate(out) if out else np.zeros((0, shards.dim), np.float32)


def switch(
    folder: Path, manifest: Manifest, modality: str, old: ShardSet, choice: Choice, publish: Callable[[], None]
) -> ShardSet:
    """Rebuild ``modality``'s shards as ``choice``, make ``manifest`` (updated in place, then
    written everywhere by ``publish``) name them: the switch; then remove the old files."""
    started = time.monotonic()
    new = rebuild(folder, manifest, modality, old, choice)
    manifest.types[modality] = replace(choice, prefix=new.modality)
    publish()
    crash_point("retype-switched")
    remove_others(folder, modality, keep=new.modality)
    log.info("%s: %d vectors now %s (%.1f s)", modality, new.ntotal, choice.factory, time.monotonic() - started)
    return new


def follow(
    folder: Path, manifest: Manifest, shard_sets: dict[str, ShardSet], budget: int, publish: Callable[[], None]
) -> list[str]:
    """Under auto, rebuild each modality of ``shard_sets`` (replaced in it) that :func:`due` says
    should change now, its budget its share of ``budget``; returns the modalities rebuilt."""
    total = sum(s.ntotal for s in shard_sets.values())
    rebuilt = []
    for modality, shards in shard_sets.items():
        rows = shards.stored.count() if shards.stored is not None else 0
        choice = due(manifest, modality, shards.ntotal, share(budget, shards.ntotal, total), rows)
        if choice is not None:
            shard_sets[modality] = switch(folder, manifest, modality, shards, choice, publish)
            rebuilt.append(modality)
    return rebuilt
