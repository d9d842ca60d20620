"""``xmr doctor --fix``: a damaged index repaired by replaying its build (the ingest side of the
checks in :mod:`indexer.storage.check`)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..storage.layout import IndexCorruptError, IndexLock, Layout
from ..storage.manifest import Manifest, read_manifest, read_manifest_backup, write_manifest
from ..storage.paths import unescape_path
from ..storage.shards import ShardError, read_index
from ..storage.store import Store, StoreError
from .build import IndexOptions, index_locked

log = logging.getLogger(__name__)


def repair_index(
    index_dir: str | os.PathLike, make_encoder: Callable[[str], Any], allow_mass_removal: bool = False
):  # -> Summary
    """Repair an index from what survives: a damaged manifest is restored from its backup or the
    copy in the database, unreadable shards are set aside (``*.corrupt``), and an indexing run
    with the options the index was last built with (``--exclude``, ``--texts``, ``--links``)
    then drops stray vectors and rows and re-embeds only what has no vector left. All of it
    under the index's lock.

    Args:
        make_encoder: builds the index's model from its name.

    Raises:
        IndexCorruptError: neither the manifest nor a copy of it can be read.
        IndexBusyError: another process is updating the index.
    """
    layout = Layout(Path(index_dir))
    with IndexLock(layout):
        manifest = _manifest_or_copy(layout)
        root = unescape_path(manifest.root)
        if not root or not os.path.isdir(root):
            raise IndexCorruptError(f"the indexed folder {root} is gone; nothing to rebuild from")
        if layout.shards.exists():
            for path in sorted(layout.shards.glob("*.faiss")):
                try:
                    read_index(path)
                except ShardError as exc:
                    aside = path.with_name(path.name + ".corrupt")
                    log.warning("%s; moving it aside to %s, its vectors will be re-embedded", exc, aside.name)
                    os.replace(path, aside)
        _repair_fulltext(layout, manifest)
        # --exclude, --texts and --links left unset: the run takes the recorded ones (a recorded
        # texts file that is gone is dropped with a warning, its items removed).
        options = IndexOptions(index_dir=str(layout.dir), db_url=manifest.db, allow_mass_removal=allow_mass_removal)
        return index_locked(Path(os.path.abspath(root)), layout, make_encoder(manifest.model), options)


def _repair_fulltext(layout: Layout, manifest: Manifest) -> None:
    """The full-text index of the words found in media made again when it disagrees with them."""
    try:
        store = Store.of_index(layout.db_url(manifest.db), manifest)
    except StoreError:
        return  # the run below reports (or re-creates) the database
    try:
        if store.span_problems()["fulltext"]:
            log.warning("rebuilding the full-text index of the words found in media")
            store.rebuild_fulltext()
    finally:
        store.close()


def _manifest_or_copy(layout: Layout) -> Manifest:
    """The manifest; else its backup file; else the copy in the database the backup names (or
    the default SQLite database). A copy found is written back as the manifest."""
    try:
        manifest = read_manifest(layout)
    except IndexCorruptError:
        manifest = None
    if manifest is not None:
        if not layout.manifest.is_file():  # read from the backup: put it back
            log.warning("restoring %s from its backup", layout.manifest)
            write_manifest(layout, manifest)
        return manifest
    copy = read_manifest_backup(layout)
    if copy is None:
        try:
            store = Store(layout.db_url(), create=False)
            try:
                copy = store.manifest_copy()
            finally:
                store.close()
        except StoreError:
            copy = None
    if copy is None:
        raise IndexCorruptError(
            f"the manifest at {layout.manifest} is missing or damaged and no copy of it survives; "
            "index the folder again with `xmr index FOLDER --index ...`"
        )
    log.warning("restoring %s from a copy", layout.manifest)
    write_manifest(layout, copy)
    return copy
