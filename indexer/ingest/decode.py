"""Decode workers: read a file, hash it, and run the model's torch-free preprocessor.

Runs in worker processes, so it imports neither torch nor the model classes: the
preprocessors arrive pickled, as plain callables with a ``process(source)`` method.
"""

from __future__ import annotations

import codecs
import hashlib
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

MAX_TEXT_BYTES = 200_000  # a text file's first 200 kB are embedded (in chunks, averaged)
HASH_BLOCK = 1 << 20
BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)  # UTF-32 LE starts like UTF-16 LE: first


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
    remember: bool = False  # the decoder crashed or hung: not tried again until the file changes
    vectors: dict[str, np.ndarray] | None = None  # embedded already (on a Ray worker): by shard modality


def file_hash(path: str) -> str:
    """sha256 of a file, read in blocks (a huge file is never held whole)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(HASH_BLOCK), b""):
            h.update(block)
    return h.hexdigest()


def decode_text(data: bytes) -> str:
    """Text of a file's bytes: by its byte-order mark (UTF-8, UTF-16 LE/BE, UTF-32 LE/BE), else
    UTF-8, else cp1252 (the usual 8-bit text of Windows); NUL characters are dropped (neither
    PostgreSQL nor an embedding has use for them), as is a character cut at the end."""
    for bom, codec in BOMS:
        if data.startswith(bom):
            text = data[len(bom) :].decode(codec, errors="ignore" if codec != "utf-8" else "replace")
            break
    else:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            if exc.start >= len(data) - 3 and exc.reason == "unexpected end of data":  # cut by the read limit
                text = data[: exc.start].decode("utf-8")
            else:
                text = data.decode("cp1252", errors="replace")
    return clean_text(text)


def clean_text(text: str) -> str:
    """Text fit for storage on every backend: without NUL characters, and a lone surrogate (a
    JSON ``"\\ud800"``, never valid UTF-8) replaced by U+FFFD."""
    text = text.replace("\x00", "")
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in text)


@dataclass(frozen=True)
class Crops:
    """An image preprocessor (one with ``process_crop`` and ``normalize``) as decode workers use
    it: they pass on the uint8 crop, a quarter of the bytes of the model's input, and the batch
    is normalised where it is embedded (:func:`indexer.ingest.build.encode_batch`). Measured with
    xmr-mini-photo's 256 px pictures: pickling, reading and stacking float32 pictures took 3 s of
    the main process's 14 s for 1,000 (``benchmarks/results/index_speed-twemoji-*``)."""

    pre: Any

    def process(self, source: Any) -> tuple[np.ndarray, dict]:
        return self.pre.process_crop(source)


def crops_of(pre: Any) -> Any:
    """:class:`Crops` of an image preprocessor whose ``process`` is its class's plain
    crop-then-normalise one (``crops_then_normalize``, retrieval.models.image); any other one
    (a subclass or a wrapper with a ``process`` of its own) as it is."""
    cls = type(pre)
    plain = getattr(cls, "crops_then_normalize", None)
    return Crops(pre) if plain is not None and getattr(cls, "process", None) is plain else pre


def decode(job: tuple[Any, str, str, Any]) -> Decoded:
    """Decode one file. ``job`` is (key, path, modality, preprocessor or None for text).

    Never raises for a bad file: any error becomes a :class:`Decoded` with ``ok=False`` and
    the reason."""
    key, path, modality, pre = job
    try:
        if os.path.getsize(path) == 0:
            return Decoded(key, False, "empty file (0 bytes)")
        if modality in ("image", "audio", "video"):
            # The preprocessor opens the file itself and reads its header first (pixel count,
            # channels, rate), so an absurd file costs a header read, never its whole size.
            features, meta = pre.process(path)
            return Decoded(key, True, content_hash=file_hash(path), features=features, meta=meta)
        with open(path, "rb") as f:
            head = f.read(MAX_TEXT_BYTES)
        text = decode_text(head).strip()
        if not text:
            return Decoded(key, False, "text file holds no text")
        return Decoded(key, True, content_hash=file_hash(path), text=text, meta={})
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
    except Exception as exc:  # noqa: BLE001 - a decoder's bug skips its file, never the run
        return Decoded(key, False, f"decoder error: {type(exc).__name__}: {_reason(exc)}")


def _reason(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:300]
