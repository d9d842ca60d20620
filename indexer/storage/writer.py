"""The one write path of an index, shared by ``xmr index`` (:mod:`indexer.ingest.build`) and
bulk loads (:mod:`indexer.ingest.bulk`): opening it for writing (the index registered in its
database, the manifest published), its shards as the manifest says they are made, vectors
without rows dropped, and checkpoints.

A checkpoint writes in the order that makes a kill at any point harmless: the vectors first
(shard files replaced atomically, stored copies fsynced), then the rows that point at them in
one transaction. Killed in between, the next writer finds vectors without rows and drops them
(:meth:`IndexWriter.drop_orphans`); rows never point at vectors that are not there.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from . import retype
from .faults import crash_point
from .layout import Layout
from .manifest import Manifest, write_manifest
from .paths import escape_path
from .shards import ShardSet
from .store import Store

log = logging.getLogger(__name__)


@dataclass
class VectorChange:
    """One shard set's part of a checkpoint: ``remove`` ids (updated or stale items: their old
    vectors go), then ``vectors`` added under ``ids``."""

    remove: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    vectors: np.ndarray | None = None
    ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def __bool__(self) -> bool:
        return bool(len(self.remove) or len(self.ids))


@dataclass
class RowChange:
    """One checkpoint's rows: items inserted (with their ids) and updated, segments replaced,
    fingerprints, words found in media (see :meth:`indexer.storage.store.Store.save_items`)."""

    new: Sequence[dict] = ()
    changed: Sequence[tuple[int, dict]] = ()
    drop_segments: Sequence[int] = ()
    new_segments: Sequence[tuple[int, int, str, float, float]] = ()
    spans: Sequence[dict] = ()  # words found in media (Span columns)
    readings: Sequence[dict] = ()  # the files they were read from (Reading columns)
    drop_readings: Sequence[int] = ()  # files whose words go (changed, or read again)
    fingerprints: Sequence[dict] = ()  # perceptual hashes, acoustic fingerprints (Fingerprint columns)

    def __bool__(self) -> bool:
        return bool(
            self.new or self.changed or self.drop_segments or self.new_segments or self.readings or self.fingerprints
        )


class IndexWriter:
    """An index open for writing: its layout, manifest and database. The caller holds the
    index's lock (:class:`indexer.storage.layout.IndexLock`)."""

    def __init__(self, layout: Layout, manifest: Manifest, store: Store) -> None:
        self.layout, self.manifest, self.store = layout, manifest, store

    @classmethod
    def open(cls, layout: Layout, manifest: Manifest, store: Store, rebuild: bool = False) -> IndexWriter:
        """Register the index in ``store`` (its id into the manifest); with ``rebuild`` drop its
        old rows and vectors (:meth:`wipe`) *before* the manifest names the new model: killed in
        between, the index still says which model its (fewer) vectors came from. Then publish
        the manifest, only once its database exists: a reader that finds the manifest can
        always open the database."""
        writer = cls(layout, manifest, store)
        manifest.index_id = store.register_index(manifest.index_uuid, manifest.root, escape_path(str(layout.dir)))
        crash_point("index-registered")
        if rebuild:
            writer.wipe()
        # The database's copy too, before files the manifest does not name are removed: a copy
        # left naming an older type (a run killed mid-switch) must not bring it back later.
        writer.publish()
        return writer

    def publish(self) -> None:
        """Write the manifest (and its backup) and its copy in the database."""
        write_manifest(self.layout, self.manifest)
        self.store.save_manifest_copy(self.manifest)

    def wipe(self) -> None:
        """Drop every row and vector of the index (``--rebuild``): rows first, so vectors left
        without a row by a kill in between are dropped by the next run."""
        log.info("rebuilding: dropping every stored vector and row of this index")
        self.store.delete_all()
        crash_point("rebuild-rows-deleted")
        shutil.rmtree(self.layout.shards, ignore_errors=True)
        crash_point("rebuild-wiped")

    def shards(self, modality: str, mmap: bool = False) -> ShardSet:
        """``modality``'s shards as the manifest says they are made, loaded; the files of another
        type that a cut-short change of type left are removed first."""
        shards = retype.shard_set(self.layout.shards, self.manifest, modality, self.manifest.dim)
        retype.remove_others(self.layout.shards, modality, keep=shards.modality)
        return shards.load(mmap=mmap, tidy=True)

    def segment_shards(self, modality: str, factory: str, mmap: bool = False) -> ShardSet:
        """The shards of ``modality``'s segments (moments of long files), loaded."""
        name = f"{modality}-segments"
        return ShardSet(self.layout.shards, name, self.manifest.dim, factory, self.manifest.shard_size).load(
            mmap=mmap, tidy=True
        )

    @staticmethod
    def drop_orphans(
        shards: ShardSet, rows: np.ndarray, what: str = "vectors", present: np.ndarray | None = None
    ) -> int:
        """Remove the vectors of ``shards`` whose id is not in ``rows`` (sorted, unique): a
        checkpoint killed after its vectors, before its rows. ``present``: the ids the shards
        hold (sorted, unique), when the caller has them. Returns how many went."""
        present = np.unique(shards.ids()) if present is None else present
        orphans = np.setdiff1d(present, rows, assume_unique=True)
        if len(orphans):
            log.info("dropping %d %s with no committed row (interrupted run)", len(orphans), what)
            shards.remove(orphans)
            shards.flush()
        return len(orphans)

    def checkpoint(self, vectors: dict[str, tuple[ShardSet, VectorChange]], rows: RowChange) -> None:
        """Vectors written and flushed, shard set by shard set; then the rows committed."""
        for shards, change in vectors.values():
            if not change:
                continue
            if len(change.remove):
                shards.remove(change.remove)
            if change.vectors is not None and len(change.ids):
                shards.add(change.vectors, change.ids)
            shards.flush()
        crash_point("vectors-written")
        self.store.save_items(
            rows.new,
            rows.changed,
            drop_segments=rows.drop_segments,
            new_segments=rows.new_segments,
            spans=rows.spans,
            readings=rows.readings,
            drop_readings=rows.drop_readings,
            fingerprints=rows.fingerprints,
        )
        crash_point("rows-committed")

    def follow(self, shard_sets: dict[str, ShardSet], budget: int) -> list[str]:
        """Under auto, each modality of ``shard_sets`` rebuilt (replaced in it) as its size and
        share of ``budget`` now call for; returns the modalities rebuilt."""
        return retype.follow(self.layout.shards, self.manifest, shard_sets, budget, self.publish)
