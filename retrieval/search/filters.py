"""Metadata filters of a search, as SQL conditions with bound parameters (never string-built SQL).

- ``path``: a glob over the path relative to the indexed folder; ``*`` crosses ``/``, ``?`` is
  one character; case-sensitive. Other characters, ``%`` and ``_`` included, are literal.
- ``ext``: one or more extensions, case-insensitive, with or without the dot.
- ``min_size`` / ``max_size``: bytes. ``after`` / ``before``: ISO dates or datetimes (local
  time when no zone is given), or ``datetime`` / ``date`` objects, on the file's mtime.
- ``min_duration`` / ``max_duration``: seconds of audio (items without a duration never match).
- ``has_speech``: True, only files in which speech was heard (transcribed, with words); False,
  only files without (not transcribed, or nothing heard).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import date, datetime, time
from typing import Any

from indexer.storage import sizes
from indexer.storage.paths import escape_path

from .query import QueryError

LIKE_ESCAPE = "\\"


@dataclass(frozen=True)
class Filters:
    path: str | None = None
    ext: tuple[str, ...] = ()
    min_size: int | None = None
    max_size: int | None = None
    after: Any = None
    before: Any = None
    min_duration: float | None = None
    max_duration: float | None = None
    has_speech: bool | None = None

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> "Filters":
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(kwargs) - names)
        if unknown:
            raise QueryError(f"unknown search option(s) {', '.join(unknown)}; filters are {', '.join(sorted(names))}")
        ext = kwargs.get("ext")
        if ext is not None:
            kwargs["ext"] = tuple([ext] if isinstance(ext, str) else ext)
        return cls(**kwargs)

    def __bool__(self) -> bool:
        return any(getattr(self, f.name) not in (None, ()) for f in fields(self))

    def conditions(self) -> list:
        """SQLAlchemy conditions on :class:`indexer.storage.schema.Item`."""
        from indexer.storage.schema import Item  # SQLAlchemy only when a query filters

        out = []
        if self.path is not None:
            if not isinstance(self.path, str) or not self.path:
                raise QueryError("path filter must be a non-empty glob")
            out.append(Item.path.like(glob_to_like(self.path), escape=LIKE_ESCAPE))
        if self.ext:
            exts = [e.lower().lstrip(".") for e in self.ext]
            if not all(exts):
                raise QueryError("ext filter holds an empty extension")
            out.append(Item.ext.in_(exts))
        for name, column, op in (
            ("min_size", Item.size, ">="),
            ("max_size", Item.size, "<="),
            ("min_duration", Item.duration, ">="),
            ("max_duration", Item.duration, "<="),
        ):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise QueryError(f"{name} must be a non-negative number, not {value!r}")
            out.append(column >= value if op == ">=" else column <= value)
        if self.after is not None:
            out.append(Item.mtime_ns >= to_ns(self.after, "after"))
        if self.before is not None:
            out.append(Item.mtime_ns < to_ns(self.before, "before"))
        if self.has_speech is not None:
            if not isinstance(self.has_speech, bool):
                raise QueryError(f"has_speech must be True or False, not {self.has_speech!r}")
            from sqlalchemy import select

            from indexer.storage.constants import SPEECH
            from indexer.storage.schema import Reading

            heard = select(Reading.item_id).where(Reading.source == SPEECH, Reading.spans > 0)
            out.append(Item.id.in_(heard) if self.has_speech else Item.id.not_in(heard))
        return out


# An mtime is stored in ns as a signed 64-bit number: 1677-09-21 to 2262-04-11.
EARLIEST, LATEST = "1677-09-22", "2262-04-10"


def parse_size(value: str | None, name: str = "size") -> int | None:
    """``500K``, ``2M``, ``1.5G`` or plain bytes as bytes (None stays None).

    Raises:
        QueryError: not a size, or larger than any file can be.
    """
    if value is None:
        return None
    try:
        return sizes.parse_size(value, name)
    except sizes.SizeError as exc:
        raise QueryError(str(exc)) from None


def glob_to_like(glob: str) -> str:
    """A path glob as a LIKE pattern over stored (escaped) paths."""
    escaped = escape_path(glob)  # stored paths escape %, and surrogates as %XX
    out = []
    for ch in escaped:
        if ch == "*":
            out.append("%")
        elif ch == "?":
            out.append("_")
        elif ch in ("%", "_", LIKE_ESCAPE):
            out.append(LIKE_ESCAPE + ch)
        else:
            out.append(ch)
    return "".join(out)


def to_ns(value: Any, name: str) -> int:
    """An ISO date/datetime string, ``date`` or ``datetime`` as ns since the epoch (local time if naive)."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime.combine(value, time())
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            raise QueryError(
                f"{name} must be an ISO date or datetime such as 2024-06-01 or 2024-06-01T12:30, not {value!r}"
            ) from None
    else:
        raise QueryError(f"{name} must be a date, datetime or ISO string, not {type(value).__name__}")
    try:
        ns = int(moment.timestamp() * 1_000_000_000)  # naive datetimes are local time for timestamp()
    except (OverflowError, OSError, ValueError):
        ns = None
    if ns is None or not -(2**63) <= ns < 2**63:
        raise QueryError(f"{name}: {value!s} is out of range: give a date from {EARLIEST} to {LATEST}")
    return ns
