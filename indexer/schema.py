"""The SQL schema (SQLAlchemy 2.0 ORM): one row per indexed item; its id is its FAISS id."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, Float, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

SCHEMA_VERSION = 1

# Item.status: "pending" rows still need their vector (re)computed; "indexed" rows have one
# in the shards. A killed run leaves at most some pending rows, which the next run finishes.
PENDING = "pending"
INDEXED = "indexed"

# Item.kind: a file found by the folder walk, or a line of a --texts file.
FILE = "file"
TEXT_LINE = "text-line"


class Base(DeclarativeBase):
    pass


class Item(Base):
    """One indexed item: a media or text file, or one line of a texts file."""

    __tablename__ = "items"
    __table_args__ = (
        UniqueConstraint("path", "line", name="uq_items_path_line"),
        Index("ix_items_modality_status", "modality", "status"),
        Index("ix_items_hash", "content_hash"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
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


class Meta(Base):
    """Key/value facts about the database itself (schema version)."""

    __tablename__ = "meta"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
