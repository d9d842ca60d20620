"""``--texts FILE``: a list of texts (captions, labels, tags) indexed as text items."""

from __future__ import annotations

import json
import os

from .decode import clean_text, decode_text


def read_texts(path: str | os.PathLike) -> list[tuple[int, str]]:
    """``(line number, text)`` pairs of a texts file: one text per line, or JSONL objects with
    a ``text`` field (a file whose first non-blank line is a JSON object is read as JSONL).
    Blank lines are left out; numbering is 1-based and counts every line. The file is decoded
    by its byte-order mark, else as UTF-8, else cp1252, and NUL characters are dropped.

    Raises:
        FileNotFoundError: no such file. ValueError: a JSONL line without a ``text`` string.
    """
    with open(path, "rb") as f:
        lines = decode_text(f.read()).splitlines()
    first = next((line.strip() for line in lines if line.strip()), "")
    jsonl = first.startswith("{")
    out = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if jsonl:
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{n}: not a JSON object: {exc.msg}") from exc
            if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
                raise ValueError(f"{path}:{n}: a JSONL texts line needs a string 'text' field")
            text = clean_text(obj["text"]).strip()
        else:
            text = line.strip()
        if text:
            out.append((n, text))
    return out
