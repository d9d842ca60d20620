"""An index's manifest: what built it and how its shards are made (``manifest.json``, a backup
beside it, a copy in the database). :class:`Manifest` is the one typed form every room reads;
its JSON is the on-disk format, read through the migrations of :data:`MIGRATIONS`."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .autotype import AUTO, Choice, fixed
from .layout import IndexCorruptError, IndexMismatchError, Layout, write_json_atomic
from .paths import unescape_path

log = logging.getLogger(__name__)

# 1: model, dim, root, shards. 2: index_uuid, index_id and the recorded options. 3: index types
# chosen per modality (--index-type auto, shards under a new prefix after a change of type).
MANIFEST_VERSION = 3


def _from_v1(data: dict[str, Any]) -> dict[str, Any]:
    """A version-1 manifest names no index id and records no options: it finds its rows by its
    root (the database's migration registers them) and records its options at its next run."""
    return data | {"version": 2}


def _from_v2(data: dict[str, Any]) -> dict[str, Any]:
    """Version 3 adds fields only (``types``, ``reindexing``); a version-2 manifest means the same."""
    return data | {"version": 3}


# How a manifest of version N is read as one of version N + 1.
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {1: _from_v1, 2: _from_v2}


@dataclass
class Reindexing:
    """A ``--reindex-type`` under way: the type asked for and the modalities not yet rebuilt."""

    type: str
    left: list[str]


@dataclass
class Manifest:
    """The manifest's fields. ``root`` is the indexed folder as stored (escaped: see
    :mod:`indexer.storage.paths`); ``types`` the index type chosen per modality (auto, or after
    ``--reindex-type``); ``extra`` keeps fields this xmr does not know, written back as read."""

    model: str
    dim: int
    root: str = ""
    weights_hash: str | None = None
    metric: str = "inner_product"
    index_type: str = "Flat"
    shard_size: int = 250_000
    modalities: list[str] | None = None
    index_uuid: str | None = None
    index_id: int | None = None
    created: str | None = None
    db: str | None = None
    max_memory: int | None = None
    options: dict[str, Any] | None = None
    types: dict[str, Choice] = field(default_factory=dict)
    reindexing: Reindexing | None = None
    reframing: bool = False
    last_run: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def version(self) -> int:
        """3 when the manifest says what an xmr before version 3 would misread (auto, or a type
        per modality: shard files under another prefix), so that it refuses the index; else 2."""
        return 3 if self.index_type == AUTO or self.types else 2

    @property
    def root_path(self) -> Path:
        return Path(unescape_path(self.root))

    @property
    def recorded(self) -> dict[str, Any]:
        """The options recorded by the last run that planned (empty before any)."""
        return self.options or {}

    @property
    def auto(self) -> bool:
        return self.index_type == AUTO

    def choice(self, modality: str) -> Choice:
        """How ``modality``'s shards are made: the recorded choice (auto, or a type change under
        way), else the index's one fixed type (under auto, before any choice: Flat)."""
        if modality in self.types:
            return self.types[modality]
        if self.auto:
            return Choice("Flat", reason="exact search: no vectors yet", prefix=modality)
        return fixed(self.index_type or "Flat", modality)

    def __getitem__(self, key: str) -> Any:
        """A field as the JSON has it (``engine.manifest["model"]``, as when the manifest was a
        dict); KeyError when the JSON has no such field."""
        return self.to_json()[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.to_json().get(key, default)

    @classmethod
    def from_json(cls, data: Any) -> Manifest:
        """The manifest in ``data`` (as read from JSON), migrated to this version.

        Raises:
            ValueError: not a manifest (required fields missing or of the wrong type).
            IndexMismatchError: written by a newer xmr.
        """
        if not isinstance(data, dict) or "model" not in data or "dim" not in data:
            raise ValueError("required fields missing")
        try:
            version = int(data.get("version", 1))
        except (TypeError, ValueError):
            raise ValueError(f"version {data.get('version')!r} is not a number") from None
        if version > MANIFEST_VERSION:
            raise IndexMismatchError(
                f"written by a newer xmr (manifest version {version}, this xmr reads up to {MANIFEST_VERSION}): "
                "upgrade xmr"
            )
        if version < 1:
            raise ValueError(f"version {version} is not a manifest version")
        while version < MANIFEST_VERSION:
            data = MIGRATIONS[version](data)
            version = int(data["version"])
        known = {f.name for f in fields(cls)} - {"extra"}
        values = {k: v for k, v in data.items() if k in known}
        extra = {k: v for k, v in data.items() if k not in known and k != "version"}
        try:
            manifest = cls(**values, extra=extra)
            manifest.dim = int(manifest.dim)
            manifest.shard_size = int(manifest.shard_size)
            if manifest.max_memory is not None:
                manifest.max_memory = int(manifest.max_memory)
            if isinstance(manifest.reindexing, dict):
                manifest.reindexing = Reindexing(str(manifest.reindexing["type"]), list(manifest.reindexing["left"]))
            manifest.types = {m: Choice.from_json(c) for m, c in (manifest.types or {}).items() if c}
            manifest.reframing = bool(manifest.reframing)
        except (TypeError, KeyError, AttributeError) as exc:
            raise ValueError(f"a field is of the wrong type ({exc})") from exc
        return manifest

    def to_json(self) -> dict[str, Any]:
        """The on-disk form: the fields set, under their names (none that is empty or off)."""
        out: dict[str, Any] = {"version": self.version}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "extra":
                continue
            if f.name in ("types", "reframing", "reindexing", "db", "max_memory") and not value:
                continue
            if f.name in ("index_uuid", "index_id", "created", "options", "last_run", "modalities") and value is None:
                continue
            if f.name == "types":
                value = {m: c.to_json() for m, c in value.items()}
            elif isinstance(value, Reindexing):
                value = {"type": value.type, "left": list(value.left)}
            out[f.name] = value
        return out | self.extra


def read_manifest(layout: Layout) -> Manifest | None:
    """The manifest (its backup when the manifest file is gone), or None when there is neither.

    Raises:
        IndexCorruptError: unreadable. IndexMismatchError: written by a newer xmr.
    """
    try:
        text = layout.manifest.read_text(encoding="utf-8")
    except FileNotFoundError:
        backup = read_manifest_backup(layout)
        if backup is not None:
            log.warning("%s is missing: reading the backup beside it", layout.manifest)
        return backup
    try:
        return Manifest.from_json(json.loads(text))
    except IndexMismatchError as exc:
        raise IndexMismatchError(f"the index at {layout.dir} was {exc}") from None
    except ValueError as exc:
        raise IndexCorruptError(
            f"manifest {layout.manifest} is damaged ({exc}); `xmr doctor --fix` rebuilds it"
        ) from exc


def read_manifest_backup(layout: Layout) -> Manifest | None:
    """The copy :func:`write_manifest` keeps beside the manifest, or None when it is missing or damaged."""
    try:
        return manifest_of_text(layout.manifest_backup.read_text(encoding="utf-8"))
    except OSError:
        return None
    except IndexMismatchError as exc:
        raise IndexMismatchError(f"the index at {layout.dir} (its manifest's backup) was {exc}") from None


def manifest_of_text(text: str | None) -> Manifest | None:
    """A manifest from its JSON text (a backup, a database's copy), or None when damaged.

    Raises:
        IndexMismatchError: written by a newer xmr.
    """
    try:
        return Manifest.from_json(json.loads(text)) if text else None
    except ValueError:
        return None


def write_manifest(layout: Layout, manifest: Manifest) -> None:
    """The one writer of an index's manifest: the manifest and a backup copy beside it (which
    also names the database, so a damaged manifest of a PostgreSQL index can be restored)."""
    data = manifest.to_json()
    write_json_atomic(layout.manifest, data)
    write_json_atomic(layout.manifest_backup, data)
