"""Full-text search over the words found in media (``spans.text``): SQLite FTS5 (an external-
content table kept in step by triggers) or PostgreSQL's text search (a GIN index on
``to_tsvector('simple', text)``), so an exact word or a name is found even when no vector would.

A query is read as words and phrases in double quotes, nothing else: every character that is
not a letter or a digit separates words, so FTS syntax typed into a query (``NEAR``, ``*``,
``^``, ``col:``, unbalanced quotes) is text, never an operator, and the words reach the
database as one bound parameter. Without phrases a span matches any of the words (ranked by
BM25 on SQLite, ``ts_rank`` on PostgreSQL), but for the most common English words (``STOP``),
which alone would match nearly every span; with phrases it must hold every phrase (common
words in a phrase count).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy import Connection

WORD = re.compile(r"\w+", re.UNICODE)
MAX_TERMS = 32  # words and phrases a query is read as (the rest ignored)
STOP = frozenset(
    "a an and are as at be but by for from had has have he her his i if in into is it its me my no not of on or "
    "our she so that the their them then there these they this to was we were what when where which who will "
    "with you your".split()
)

_SQLITE = (
    "CREATE VIRTUAL TABLE IF NOT EXISTS spans_fts USING fts5("
    "text, content='spans', content_rowid='id', tokenize='unicode61 remove_diacritics 2')",
    "CREATE TRIGGER IF NOT EXISTS spans_fts_insert AFTER INSERT ON spans BEGIN "
    "INSERT INTO spans_fts(rowid, text) VALUES (new.id, new.text); END",
    "CREATE TRIGGER IF NOT EXISTS spans_fts_delete AFTER DELETE ON spans BEGIN "
    "INSERT INTO spans_fts(spans_fts, rowid, text) VALUES ('delete', old.id, old.text); END",
    "CREATE TRIGGER IF NOT EXISTS spans_fts_update AFTER UPDATE ON spans BEGIN "
    "INSERT INTO spans_fts(spans_fts, rowid, text) VALUES ('delete', old.id, old.text); "
    "INSERT INTO spans_fts(rowid, text) VALUES (new.id, new.text); END",
)
_POSTGRES = ("CREATE INDEX IF NOT EXISTS ix_spans_fulltext ON spans USING GIN (to_tsvector('simple', text))",)


@dataclass(frozen=True)
class Terms:
    """A query as full-text search reads it: its phrases (each a list of words, lower case) and
    its words outside quotes."""

    phrases: tuple[tuple[str, ...], ...]
    words: tuple[str, ...]

    def __bool__(self) -> bool:
        return bool(self.phrases or self.words)

    def all_words(self) -> set[str]:
        return set(self.words) | {w for p in self.phrases for w in p}


def parse_terms(query: str) -> Terms:
    """Words and quoted phrases of ``query`` (an unbalanced quote runs to the end)."""
    phrases, words = [], []
    for n, part in enumerate(query.split('"')):
        found = tuple(w.lower() for w in WORD.findall(part))
        if n % 2 and len(found) > 1:
            phrases.append(found)
        else:
            words.extend(found)
    seen: set[str] = set()
    words = [w for w in words if not (w in seen or seen.add(w))]
    if any(w not in STOP for w in words):
        words = [w for w in words if w not in STOP]
    return Terms(tuple(phrases[:MAX_TERMS]), tuple(words[: max(0, MAX_TERMS - len(phrases))]))


def create_fulltext(conn: Connection) -> None:
    """The full-text index over ``spans`` (idempotent; the table must exist)."""
    for statement in _SQLITE if conn.dialect.name == "sqlite" else _POSTGRES if _is_pg(conn) else ():
        conn.exec_driver_sql(statement)


def search_spans(
    conn: Connection,
    index_id: int,
    terms: Terms,
    limit: int,
    source: str | None = None,
    item_ids: Sequence[int] | None = None,
    prefix: bool = False,
) -> list[tuple[int, int, float]]:
    """``(span id, item id, score)`` of the spans of index ``index_id`` that match ``terms``
    (of the files ``item_ids`` only, when given), best first (a larger score is better). With
    ``prefix``, a word outside a phrase also matches the words it begins ("refurb" finds
    "refurbishment")."""
    if not terms or limit <= 0 or (item_ids is not None and not len(item_ids)):
        return []
    source_clause = " AND s.source = :source" if source else ""
    if item_ids is not None:
        source_clause += " AND s.item_id IN :items"
    params = {"ix": index_id, "n": int(limit), "source": source, "items": [int(i) for i in item_ids or ()]}
    if conn.dialect.name == "sqlite":
        params["q"] = fts5_match(terms, prefix)
        sql = (
            "SELECT s.id, s.item_id, -bm25(spans_fts) FROM spans_fts JOIN spans s ON s.id = spans_fts.rowid "
            f"WHERE spans_fts MATCH :q AND s.index_id = :ix{source_clause} ORDER BY bm25(spans_fts) LIMIT :n"
        )
    elif _is_pg(conn):
        star = ":*" if prefix else ""
        lexemes = [" <-> ".join(f"'{w}'" for w in p) for p in terms.phrases] or [f"'{w}'{star}" for w in terms.words]
        params["q"] = (" & " if terms.phrases else " | ").join(f"({t})" for t in lexemes)
        sql = (
            "SELECT s.id, s.item_id, ts_rank(to_tsvector('simple', s.text), q) AS r "
            "FROM spans s, to_tsquery('simple', :q) q "
            f"WHERE to_tsvector('simple', s.text) @@ q AND s.index_id = :ix{source_clause} ORDER BY r DESC LIMIT :n"
        )
    else:
        return []
    from sqlalchemy import bindparam, text

    statement = text(sql)
    if item_ids is not None:
        statement = statement.bindparams(bindparam("items", expanding=True))
    else:
        params.pop("items")
    return [(int(a), int(b), float(c)) for a, b, c in conn.execute(statement, params)]


def fts5_match(terms: Terms, prefix: bool = False) -> str:
    """The FTS5 MATCH expression of ``terms``: each word or phrase in double quotes (they hold
    letters and digits only), phrases joined by AND, words by OR (each a prefix query with
    ``prefix``: ``"refurb"*``)."""
    if terms.phrases:
        return " AND ".join(f'"{" ".join(p)}"' for p in terms.phrases)
    return " OR ".join(f'"{w}"' + ("*" if prefix else "") for w in terms.words)


def _is_pg(conn: Connection) -> bool:
    return conn.dialect.name == "postgresql"
