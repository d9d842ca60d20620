"""The SQL schema (SQLAlchemy 2.0 ORM): one row per indexed item; its id is its FAISS id.

One database may serve several indexes (``xmr index a --db URL`` and ``xmr index b --db URL``):
every item belongs to the index in ``items.index_id``, and each index allocates its ids in a
range of its own (``index_id << ID_BITS`` upwards), so two indexers never collide.

Schema versions: 1 (xmr <= 0.1, one index per database), 2 (``indexes``, ``items.index_id``,
``failures``), 3 (``segments``: the moments of long files), 4 (``spans`` and ``readings``: words
found in media, with a full-text index), 5 (``fingerprints``: a perceptual hash of each picture,
an acoustic fingerprint of each recording, for finding copies). :mod:`indexer.storage.migrate`
upgrades a database in place.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    DateTime,
    Float,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    and_,
    or_,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from .constants import (
    FILE,
    ID_BITS,
    INDEXED,
    MODALITIES,
    PENDING,
    SCHEMA_VERSION,
    SEGMENT_BIT,
    TEXT_LINE,
    VIDEO,
    vector_modalities,
)

__all__ = [
    "FILE",
    "ID_BITS",
    "INDEXED",
    "MODALITIES",
    "PENDING",
    "SCHEMA_VERSION",
    "SEGMENT_BIT",
    "TEXT_LINE",
    "VIDEO",
    "vector_modalities",
]


class Base(DeclarativeBase):
    pass


class IndexRow(Base):
    """One index served by this database: its folder and the media folder it indexes."""

    __tablename__ = "indexes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    uuid: Mapped[str | None] = mapped_column(String(36), unique=True, nullable=True)  # None: migrated, not yet claimed
    root: Mapped[str] = mapped_column(Text, default="")  # escaped (see paths.py)
    dir: Mapped[str] = mapped_column(Text, default="")  # the index folder, escaped
    created: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class Item(Base):
    """One indexed item: a media or text file, or one line of a texts file."""

    __tablename__ = "items"
    __table_args__ = (
        UniqueConstraint("index_id", "path", "line", name="uq_items_index_path_line"),
        Index("ix_items_modality_status", "modality", "status"),
        Index("ix_items_hash", "content_hash"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False)
    index_id: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    kind: Mapped[str] = mapped_column(String(16))
    path: Mapped[str] = mapped_column(Text)  # relative to the indexed folder, escaped (see paths.py)
    line: Mapped[int] = mapped_column(Integer, default=0)  # line number for text-line items, else 0
    ext: Mapped[str] = mapped_column(String(32), default="")  # lower-case, no dot
    modality: Mapped[str] = mapped_column(String(8))
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    mtime_ns: Mapped[int] = mapped_column(BigInteger, default=0)  # st_mtime_ns
    content_hash: Mapped[str] = mapped_column(String(64), default="")
    width: Mapped[int | None] = mapped_column(Integer, nullable=True)
    height: Mapped[int | None] = mapped_column(Integer, nullable=True)
    duration: Mapped[float | None] = mapped_column(Float, nullable=True)
    sample_rate: Mapped[int | None] = mapped_column(Integer, nullable=True)
    text: Mapped[str | None] = mapped_column(Text, nullable=True)
    model: Mapped[str] = mapped_column(String(200), default="")
    indexed_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    status: Mapped[str] = mapped_column(String(16), default=PENDING)


class Failure(Base):
    """A file whose decoder crashed or hung: not tried again until it changes (size or mtime)
    or ``--retry-failed`` is given."""

    __tablename__ = "failures"

    index_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    path: Mapped[str] = mapped_column(Text, primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    mtime_ns: Mapped[int] = mapped_column(BigInteger, default=0)
    reason: Mapped[str] = mapped_column(Text, default="")
    failed_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class Segment(Base):
    """One moment of a long file: a window of its audio (or a frame of its video), with its own
    vector (in the ``<modality>-segments`` shards) under this id. The file's own row and vector
    stay as they are; a file has segments only when it is longer than one window."""

    __tablename__ = "segments"
    __table_args__ = (Index("ix_segments_item", "item_id"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False)
    index_id: Mapped[int] = mapped_column(Integer, default=0)
    item_id: Mapped[int] = mapped_column(BigInteger)  # the file's row (items.id)
    modality: Mapped[str] = mapped_column(String(8))
    start: Mapped[float] = mapped_column(Float)  # seconds
    end: Mapped[float] = mapped_column(Float)


class Span(Base):
    """Words found in a file (heard: ``source`` speech; read: later sources), with their times
    in seconds (0 and 0 for a picture) and how sure the model was (0..1). A span is also a
    segment of its file: ``id`` is the segment's, its text's vector in the ``text-segments``
    shards. ``words`` holds ``[[start, end, word, probability], ...]`` as JSON when the model
    gives each word's times. A full-text index covers ``text`` (:mod:`indexer.storage.fulltext`)."""

    __tablename__ = "spans"
    __table_args__ = (Index("ix_spans_item", "item_id"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False)
    index_id: Mapped[int] = mapped_column(Integer, default=0)
    item_id: Mapped[int] = mapped_column(BigInteger)
    source: Mapped[str] = mapped_column(String(16))
    start: Mapped[float] = mapped_column(Float)
    end: Mapped[float] = mapped_column(Float)
    text: Mapped[str] = mapped_column(Text)
    confidence: Mapped[float] = mapped_column(Float, default=1.0)
    words: Mapped[str | None] = mapped_column(Text, nullable=True)


class Reading(Base):
    """A file read for words by one source (speech, ...) with one model: kept when nothing was
    found too (``spans`` 0), and when reading failed (``reason``), so that it is not read again
    until the file changes."""

    __tablename__ = "readings"

    index_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    item_id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    source: Mapped[str] = mapped_column(String(16), primary_key=True)
    model: Mapped[str] = mapped_column(String(200), default="")
    spans: Mapped[int] = mapped_column(Integer, default=0)
    seconds: Mapped[float] = mapped_column(Float, default=0.0)  # media read
    found_seconds: Mapped[float] = mapped_column(Float, default=0.0)  # of it, where words were looked for
    reason: Mapped[str] = mapped_column(Text, default="")  # why reading failed; "" when it did not
    read_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class Fingerprint(Base):
    """A file's fingerprint by one ``method`` (a picture's perceptual hash, a recording's
    acoustic fingerprint), made once from the file whose content hash it keeps: a file whose
    content changed has a stale one, made again by the next run. Kept when the file could not
    be fingerprinted too (``value`` empty, ``reason`` why), so that it is not tried again
    until it changes."""

    __tablename__ = "fingerprints"

    index_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    item_id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    method: Mapped[str] = mapped_column(String(32))
    content_hash: Mapped[str] = mapped_column(String(64), default="")  # the file's, when fingerprinted
    value: Mapped[bytes] = mapped_column(LargeBinary, default=b"")
    reason: Mapped[str] = mapped_column(Text, default="")  # why it failed; "" when it did not
    made_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class Meta(Base):
    """Key/value facts about the database itself (schema version, each index's manifest copy)."""

    __tablename__ = "meta"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


def holds_vector(modality: str) -> Any:
    """SQL condition on :class:`Item`: the row has a vector in ``modality``'s shards (its own
    modality's, or a video's frames in the image shards and soundtrack in the audio ones)."""
    track = {"image": Item.width, "audio": Item.sample_rate}.get(modality)
    if track is None:
        return Item.modality == modality
    return or_(Item.modality == modality, and_(Item.modality == VIDEO, track.isnot(None)))
