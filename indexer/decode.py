"""Decode workers: read a file, hash it, and run the model's torch-free preprocessor.

Runs in worker processes, so it imports neither torch nor the model classes: the
preprocessors arrive pickled, as plain callables with a ``process(source)`` method.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

MAX_TEXT_BYTES = 200_000  # a text file's first 200 kB are embedded (in chunks, averaged)
HASH_BLOCK = 1 << 20


@dataclass
class Decoded:
    """What a worker returns for one file."""

    key: Any
    ok: bool
    reason: str = ""
    content_hash: str = ""
    features: np.ndarray | None = None
    text: str | None = None
    meta: dict | None = None


def file_hash(path: str) -> str:
    """sha256 of a file, read in blocks (a huge file is never held whole)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(HASH_BLOCK), b""):
            h.update(block)
    return h.hexdigest()


def decode(job: tuple[Any, str, str, Any]) -> Decoded:
    """Decode one file. ``job`` is (key, path, modality, preprocessor or None for text)."""
    key, path, modality, pre = job
    try:
        if os.path.getsize(path) == 0:
            return Decoded(key, False, "empty file (0 bytes)")
        if modality == "image":
            with open(path, "rb") as f:
                data = f.read()
            features, meta = pre.process(data)
            return Decoded(key, True, content_hash=hashlib.sha256(data).hexdigest(), features=features, meta=meta)
        if modality == "audio":
            digest = file_hash(path)
            features, meta = pre.process(path)
            return Decoded(key, True, content_hash=digest, features=features, meta=meta)
        with open(path, "rb") as f:
            head = f.read(MAX_TEXT_BYTES)
        digest = file_hash(path)
        text = head.decode("utf-8", errors="replace").strip()
        if not text:
            return Decoded(key, False, "text file holds no text")
        return Decoded(key, True, content_hash=digest, text=text, meta={})
    except FileNotFoundError:
        return Decoded(key, False, "file vanished before it could be read")
    except PermissionError:
        return Decoded(key, False, "permission denied")
    except IsADirectoryError:
        return Decoded(key, False, "is a folder")
    except (ValueError, OSError, EOFError, SyntaxError) as exc:
        return Decoded(key, False, _reason(exc))
    except MemoryError:
        return Decoded(key, False, "out of memory while decoding")


def _reason(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:300]
