"""Lossless, SQL-safe text for file paths that may not be valid UTF-8.

Python gives undecodable bytes of a file name as lone surrogates (``\\udcff``), which neither
SQLite nor PostgreSQL will store. A stored path escapes them as ``%XX`` and escapes ``%``
itself as ``%25``, so every file name round-trips exactly and stays readable.
"""

from __future__ import annotations

import re

_SURROGATE = re.compile("[\udc80-\udcff%]")
_ESCAPE = re.compile("%([0-9A-F]{2})")


def escape_path(path: str) -> str:
    """A file path (possibly holding surrogate escapes) as valid UTF-8 text."""
    return _SURROGATE.sub(lambda m: "%25" if m.group() == "%" else f"%{ord(m.group()) - 0xDC00:02X}", path)


def unescape_path(text: str) -> str:
    """Inverse of :func:`escape_path`."""
    return _ESCAPE.sub(lambda m: "%" if m.group(1) == "25" else chr(0xDC00 + int(m.group(1), 16)), text)
