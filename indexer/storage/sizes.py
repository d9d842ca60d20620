"""Sizes as people write them (``500K``, ``2M``, ``1.5GB``, ``512MiB``, plain bytes): the one
parser behind ``--max-memory``, ``--min-size``/``--max-size`` and the API's size filters."""

from __future__ import annotations

import re

UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
MAX_BYTES = 2**63 - 1  # the largest size a database column holds
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?\s*")


class SizeError(ValueError):
    """Not a size, or one out of range."""


def parse_size(value: str | int, name: str = "size", positive: bool = False) -> int:
    """``value`` in bytes (binary units, case-insensitive).

    Raises:
        SizeError: not a size, larger than any file can be, or 0 where ``positive``.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        size = float(value)
    else:
        found = _SIZE.fullmatch(str(value).upper())
        if found is None:
            raise SizeError(f"{name} takes a size such as 500K, 2M or 1.5G (bytes, or K, M, G, T), not {value!r}")
        size = float(found.group(1)) * UNITS[found.group(2)]
    if size > MAX_BYTES:
        raise SizeError(f"{name}: {value!r} is larger than any file can be (at most 8E bytes)")
    if size < 0 or (positive and size <= 0):
        raise SizeError(f"{name} takes a size above 0, not {value!r}")
    return int(size)
