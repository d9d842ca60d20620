"""The read interface of an index: its manifest, its rows (by id, by filter), its shards.

The engine, ``xmr doctor``, the benchmarks and the server read an index through this one
class and nothing else. It is read-only and safe beside a running indexer: shard files are
replaced atomically and reloaded when they change, and rows are read committed.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from .autotype import Choice, choose, default_budget
from .constants import MODALITIES, OCR, SPEECH, VIDEO
from .layout import IndexNotFoundError, Layout
from .manifest import Manifest, read_manifest
from .retype import shard_set
from .shards import ShardSet, faiss_build, part_of
from .sqlite_rows import SqliteRows

log = logging.getLogger(__name__)


class IndexReader:
    """One index, open for reading. Build with :meth:`open`; close when done."""

    def __init__(self, layout: Layout, manifest: Manifest, store: Any = None, fast: SqliteRows | None = None) -> None:
        self.layout, self.manifest = layout, manifest
        self._store, self._fast = store, fast
        self._store_lock = threading.Lock()
        self.root = manifest.root_path
        self.dim = manifest.dim
        self.modalities = tuple(m for m in MODALITIES if m in (manifest.modalities or MODALITIES))
        self.use_gpu = False
        self._shards: dict[str, tuple[tuple, ShardSet]] = {}
        self._manifest_stamp = self._stamp()

    @classmethod
    def open(cls, index_dir: str | os.PathLike) -> "IndexReader":
        """Open the index in ``index_dir`` (the folder holding ``manifest.json``).

        Raises:
            IndexNotFoundError: no manifest there. IndexCorruptError: a damaged manifest.
            IndexMismatchError: a manifest of a newer xmr. StoreError: the database.
        """
        layout = Layout(Path(index_dir))
        manifest = read_manifest(layout)
        if manifest is None:
            raise IndexNotFoundError(f"no manifest in {layout.dir}")
        url = layout.db_url(manifest.db)
        # Plain row reads of a current SQLite database skip SQLAlchemy (a quarter of a cold
        # query); everything else, and every other database, goes through the Store.
        fast = SqliteRows.open(url, manifest)
        if fast is not None:
            return cls(layout, manifest, fast=fast)
        from .store import Store

        return cls(layout, manifest, Store.of_index(url, manifest))

    @property
    def store(self) -> Any:  # indexer.storage.store.Store, opened on first use (once, whatever the threads)
        with self._store_lock:
            if self._store is None:
                from .store import Store

                self._store = Store.of_index(self.layout.db_url(self.manifest.db), self.manifest)
        return self._store

    # --- rows ----------------------------------------------------------------------------
    def rows(self, ids: Any) -> dict[int, Any]:
        """Rows (plain, attribute access) of the given ids that belong to this index."""
        ids = [int(i) for i in ids]
        return self._fast.rows_by_ids(ids) if self._fast is not None else self.store.rows_by_ids(ids)

    def matching_ids(self, modality: str, conditions: list) -> np.ndarray:
        """Ids of indexed ``modality`` rows meeting SQL ``conditions`` on :class:`indexer.storage.schema.Item`."""
        return np.array(self.store.matching_ids(modality, conditions), dtype=np.int64)

    def counts(self) -> dict[str, int]:
        """Indexed items per modality (every modality of the index, zeros included; videos when
        there are any)."""
        counts = self._fast.counts() if self._fast is not None else self.store.counts()
        return {m: counts.get(m, 0) for m in self.modalities} | ({VIDEO: counts[VIDEO]} if counts.get(VIDEO) else {})

    def segment_rows(self, ids: Any) -> dict[int, Any]:
        """Segment rows (id, item_id, modality, start, end) of the given segment ids."""
        ids = [int(i) for i in ids]
        return self._fast.segment_rows(ids) if self._fast is not None else self.store.segment_rows(ids)

    def segment_ids_of(self, item_ids: Any, modality: str | None = None) -> dict[int, int]:
        """``{segment id: item id}`` of the segments of ``item_ids`` (of ``modality`` only, when given)."""
        ids = [int(i) for i in item_ids]
        if self._fast is not None:
            return self._fast.segment_ids_of(ids, modality)
        return self.store.segment_ids(ids, modality=modality)

    def spans_by_id(self, span_ids: Any) -> dict[int, Any]:
        """Spans (words found in media) of ``span_ids`` that belong to this index."""
        ids = [int(i) for i in span_ids]
        return self._fast.spans_by_id(ids) if self._fast is not None else self.store.spans_by_id(ids)

    def search_spans(
        self, terms: Any, limit: int, source: str | None = None, item_ids: Any = None, prefix: bool = False
    ) -> list[tuple[int, int, float]]:
        """``(span id, item id, score)`` of the spans matching ``terms`` (full text), best first."""
        reader = self._fast if self._fast is not None else self.store
        return reader.search_spans(terms, limit, source, item_ids, prefix)

    # --- vectors -------------------------------------------------------------------------
    def segment_shards(self, modality: str) -> ShardSet | None:
        """The shards of ``modality``'s segments (moments of long files), None when it has none."""
        return self.shards(f"{modality}-segments")

    def _stamp(self) -> tuple[int, int, int]:
        try:
            st = self.layout.manifest.stat()  # replaced atomically: a new inode each write
            return st.st_ino, st.st_mtime_ns, st.st_size
        except FileNotFoundError:
            return (0, 0, 0)

    def _refresh_manifest(self) -> None:
        """Read the manifest again when an indexer rewrote it (an index type changed: the
        shards are then under another name)."""
        stamp = self._stamp()
        if stamp != self._manifest_stamp:
            manifest = read_manifest(self.layout)
            if manifest is not None:
                self.manifest = manifest
            self._manifest_stamp = stamp

    def shards(self, modality: str) -> ShardSet | None:
        """The memory-mapped shards of ``modality`` (None when it has none yet), reloaded when
        an indexer has replaced a shard file (or rebuilt them as another type) since the last
        call; the parts it did not replace are kept, not read again."""
        for attempt in range(5):  # an indexer merging or retyping may remove files as they are listed
            self._refresh_manifest()
            stamp = self._manifest_stamp
            probe = shard_set(self.layout.shards, self.manifest, modality, self.dim)
            paths = probe.existing_paths()
            try:
                signature = tuple((p.name, *_file_stamp(p)) for p in paths)
            except FileNotFoundError:
                if attempt == 4:
                    raise
                continue
            if self._stamp() == stamp:  # the listing belongs to the manifest read
                break
        cached = self._shards.get(modality)
        if cached is None or cached[0] != signature:
            if not paths:
                return None
            reuse = {}
            if cached is not None and not self.use_gpu and cached[1].modality == probe.modality:
                old = cached[1]
                reuse = {path: (st, shard) for path, st, shard in zip(old.paths, old.stats, old.shards)}
                if old.stored is not None and probe.stored is not None:
                    probe.stored = old.stored  # its view of the stored vectors grows by what was added
            shards = probe.load(mmap=True, reuse=reuse)
            if self.use_gpu:
                shards.to_gpu()
            self._shards[modality] = (signature, shards)
        return self._shards[modality][1]

    # --- facts ---------------------------------------------------------------------------
    def facts(self) -> dict[str, Any]:
        """What ``xmr info`` shows: model, counts per modality, sizes, index type, last run."""
        self._refresh_manifest()
        shard_files = sorted(self.layout.shards.glob("*.faiss")) if self.layout.shards.exists() else []
        stored = sorted(self.layout.shards.glob("*-vectors.*")) if self.layout.shards.exists() else []
        db = self.layout.database
        return {
            "index": str(self.layout.dir),
            "root": str(self.root),
            "model": self.manifest.model,
            "weights_hash": self.manifest.weights_hash,
            "dim": self.dim,
            "metric": self.manifest.metric,
            "index_type": self.manifest.index_type,
            "shard_size": self.manifest.shard_size,
            # Per modality: the type its shards are (auto: chosen, and why), its files' prefix.
            "types": {m: self._choice(m).to_json() for m in self.modalities},
            "max_memory": (self.manifest.max_memory or default_budget()) if self.manifest.auto else None,
            "counts": self.counts(),
            "shards": {
                m: _shards_of([p.name for p in shard_files], self.manifest.choice(m).prefix or m)
                for m in self.modalities
            },
            "segments": self.segment_counts(),
            "speech": self.speech_facts(),
            "text": self.words_facts(OCR),
            "bytes": {
                "shards": sum(_size(p) for p in shard_files),
                "stored_vectors": sum(_size(p) for p in stored),
                "database": db.stat().st_size if db.exists() else None,
            },
            "database": self.store.safe_url,
            "index_id": self.store.index_id,
            "indexes_in_database": len(self.store.indexes()),
            "options": self.manifest.options,
            "faiss": faiss_build(),
            "last_run": self.manifest.last_run,
        }

    def _choice(self, modality: str) -> Choice:
        """How ``modality``'s shards are made; under auto before any change of type, why Flat."""
        choice = self.manifest.choice(modality)
        if self.manifest.auto and modality not in self.manifest.types:
            shards = self.shards(modality)
            budget = self.manifest.max_memory or default_budget()
            now = choose(shards.ntotal if shards is not None else 0, self.dim, budget)
            choice = now if now.kind == 0 else choice
        return choice

    def speech_facts(self) -> dict[str, Any] | None:
        """What transcription read (files, seconds, with words, failures, utterances), None
        before any."""
        return self.words_facts(SPEECH)

    def words_facts(self, source: str) -> dict[str, Any] | None:
        """What ``source`` read (files, seconds, with words, failures, spans), None before any."""
        if self.segment_shards("text") is None and not self.layout.database.exists():
            return None
        facts = self.store.readings(source)
        return facts if facts["files"] else None

    def segment_counts(self) -> dict[str, int]:
        """Segments (moments of long files) per modality that has any (spans: :meth:`speech_facts`)."""
        out = {}
        for m in self.modalities:
            if m == "text":
                continue
            shards = self.segment_shards(m)
            if shards is not None and shards.ntotal:
                out[m] = int(shards.ntotal)
        return out

    def close(self) -> None:
        if self._fast is not None:
            self._fast.close()
        if self._store is not None:
            self._store.close()
        self._shards.clear()

    def __enter__(self) -> "IndexReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _shards_of(names: list[str], modality: str) -> int:
    """How many shards of ``modality``'s own (not its template or segments) the files make (a
    shard's base and its deltas are one)."""
    return len({part[0] for part in (part_of(name, modality) for name in names) if part is not None})


def _size(path: Path) -> int:
    """A file's size, 0 when an indexer merging shard files removed it since it was listed."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _file_stamp(path: Path) -> tuple[int, int, int]:
    """(inode, mtime, size): a file replaced atomically is another inode, whatever its clock."""
    st = path.stat()
    return st.st_ino, st.st_mtime_ns, st.st_size
