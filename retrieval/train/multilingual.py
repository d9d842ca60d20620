"""The data behind text in any language (issue 35): CLDR emoji names in many languages, the
English pivot bank and word list that ship in ``retrieval/models/weights/multilingual/``.

CLDR annotations (npm ``cldr-annotations-full`` and ``cldr-annotations-derived-full``, Unicode
licence) give each emoji a name (``tts``) and keywords in ~170 locales: parallel text whose
English side is the caption of the emoji drawings. Build the shipped files with::

    python -m retrieval.train.multilingual --cldr DIR --derived DIR --wordnet DIR --captions a.jsonl ...
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import logging
import shutil
import tarfile
import unicodedata
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from ..models.multilingual import MULTILINGUAL_DIR, E5Text, PivotBank, words_of
from .multilingual_map import fit_mlp_map

log = logging.getLogger(__name__)
# Languages whose CLDR names train the map (chosen on the validation splits: README).
MAP_LOCALES = ("de", "fr", "es", "it", "pt", "nl", "pl", "tr", "ru", "uk", "ar", "ja", "zh", "ko")
SKIN_TONES = frozenset(chr(c) for c in range(0x1F3FB, 0x1F400))
IGNORED = frozenset("\ufe0f\ufe0e")  # variation selectors: CLDR keys and file names differ in them


def emoji_key(emoji: str) -> str:
    """An emoji without variation selectors (how CLDR keys and drawing file names are matched)."""
    return "".join(c for c in emoji if c not in IGNORED)


def emoji_of_file(path: str) -> str:
    """The emoji a drawing is named after: ``images/1F468-200D-1F373.png`` -> its characters."""
    stem = Path(path).stem.replace("_", "-").lower()
    try:
        return emoji_key("".join(chr(int(part, 16)) for part in stem.split("-") if part))
    except ValueError:
        return ""


def _annotations(root: Path, locale: str) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for sub, key in (("annotations", "annotations"), ("annotationsDerived", "annotationsDerived")):
        file = root / sub / locale / "annotations.json"
        if file.is_file():
            data = json.loads(file.read_text(encoding="utf-8"))[key].get("annotations", {})  # some locales: none
            for emoji, entry in data.items():
                if not SKIN_TONES & set(emoji):
                    out[emoji_key(emoji)] = entry
    return out


def unpack(tgz: Path, into: Path) -> Path:
    """An npm tarball's ``package/`` folder, unpacked once under ``into``."""
    target = into / tgz.name.removesuffix(".tgz")
    if not (target / "package").is_dir():
        target.mkdir(parents=True, exist_ok=True)
        with tarfile.open(tgz) as tar:
            tar.extractall(target, filter="data")
    return target / "package"


def cldr_names(roots: Sequence[Path], locales: Sequence[str]) -> dict[str, dict[str, dict[str, list[str]]]]:
    """``{emoji: {locale: {"name": [tts], "keywords": [...]}}}`` from CLDR annotation packages
    (each root holds ``annotations/`` or ``annotationsDerived/``), skin-tone variants left out."""
    out: dict[str, dict[str, dict[str, list[str]]]] = {}
    for locale in locales:
        for root in roots:
            for emoji, entry in _annotations(root, locale).items():
                names = [n for n in entry.get("tts", []) if n]
                if names:
                    out.setdefault(emoji, {})[locale] = {"name": names[:1], "keywords": entry.get("default", [])}
    return out


TUXPAINT_LOCALES = {"zh": "zh_CN"}  # a CLDR locale -> Tux Paint's, where they differ


def stamp_translations(stamps: Path, locales: Sequence[str]) -> dict[str, dict[str, str]]:
    """``{English caption: {locale: its translation}}`` from Tux Paint's stamp descriptions
    (``stamps/**/*.txt``: the English caption on the first line, as ``benchmarks/datasets/tuxpaint``
    reads it, then ``<locale>.utf8=<text>`` lines); a translation that is the English left out."""
    wanted = {TUXPAINT_LOCALES.get(loc, loc): loc for loc in locales}
    out: dict[str, dict[str, str]] = {}
    for txt in sorted(stamps.rglob("*.txt")):
        lines = txt.read_text(encoding="utf-8", errors="replace").splitlines()
        english = " ".join(lines[0].split()) if lines else ""
        if not english:
            continue
        for line in lines[1:]:
            key, sep, text = line.partition("=")
            loc = wanted.get(key.removesuffix(".utf8"))
            text = " ".join(text.split())
            if sep and loc and text and text != english:
                out.setdefault(english, {})[loc] = text
    return out


def stamp_pairs(
    stamps: dict[str, dict[str, str]], held_out: set[str], locales: Sequence[str]
) -> tuple[list[str], list[str]]:
    """(translated description, its English) for each stamp whose English is not ``held_out``."""
    src, dst = [], []
    for english, by_loc in stamps.items():
        if english not in held_out:
            for loc in locales:
                if loc in by_loc:
                    src.append(by_loc[loc])
                    dst.append(english)
    return src, dst


def keyword_pairs(
    names: dict, emoji: Sequence[str], locales: Sequence[str], min_emoji: int = 2, min_jaccard: float = 0.5
) -> tuple[list[str], list[str]]:
    """Word translations read off CLDR's keywords: a keyword of another language and the English
    keyword tagging nearly the same emoji (Jaccard >= ``min_jaccard`` over ``emoji``, both on at
    least ``min_emoji`` of them): ``Katze`` and ``cat`` both tag the cat emoji. (keyword, English)."""
    english: dict[str, set[str]] = {}
    for e in emoji:
        for word in names[e].get("en", {}).get("keywords", []):
            english.setdefault(word, set()).add(e)
    src, dst = [], []
    for loc in locales:
        tagged: dict[str, set[str]] = {}
        for e in emoji:
            for word in names[e].get(loc, {}).get("keywords", []):
                tagged.setdefault(word, set()).add(e)
        for word, where in sorted(tagged.items()):
            if len(where) < min_emoji:
                continue
            candidates = {w for e in where for w in names[e].get("en", {}).get("keywords", [])}
            best, score = "", 0.0
            for cand in sorted(candidates):
                other = english[cand]
                if len(other) >= min_emoji:
                    jaccard = len(where & other) / len(where | other)
                    if jaccard > score:
                        best, score = cand, jaccard
            if score >= min_jaccard:
                src.append(word)
                dst.append(best)
    return src, dst


def sha256_text(texts: Iterable[str]) -> str:
    return hashlib.sha256("\n".join(texts).encode()).hexdigest()


def e5_cached(texts: Sequence[str], cache: Path | None) -> np.ndarray:
    """e5 vectors of ``texts``, kept in ``cache`` (an ``.npz`` of text -> vector) between runs;
    the cache is written every 500 new texts, so a long run that stops keeps what it did."""
    store: dict[str, np.ndarray] = {}
    if cache is not None and cache.is_file():
        with np.load(cache, allow_pickle=False) as data:
            store = dict(zip(data["texts"].tolist(), data["vectors"]))
    todo = [t for t in dict.fromkeys(texts) if t not in store]
    for start in range(0, len(todo), 500):
        part = todo[start : start + 500]
        store.update(zip(part, E5Text.encode(part)))
        log.info("e5: %d of %d new texts", start + len(part), len(todo))
        if cache is not None:
            _save_store(store, cache)
    return np.stack([store[t] for t in texts]) if texts else np.zeros((0, 384), np.float32)


def _save_store(store: dict[str, np.ndarray], cache: Path) -> None:
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp.npz")
    np.savez(tmp, texts=np.array(list(store)), vectors=np.stack(list(store.values())).astype(np.float32))
    tmp.replace(cache)


def wordnet_lemmas(wordnet: Path) -> list[str]:
    """WordNet lemmas in its sense-tagged corpus (``cntlist.rev``), most used first."""
    counts: dict[str, int] = {}
    for line in (wordnet / "cntlist.rev").read_text(encoding="utf-8").splitlines():
        key, _, count = line.split()
        lemma = key.split("%", 1)[0].replace("_", " ").lower()
        if lemma[0].isalpha():
            counts[lemma] = counts.get(lemma, 0) + int(count)
    return sorted(counts, key=lambda w: -counts[w])


def wordnet_words(wordnet: Path) -> set[str]:
    """Every one-word WordNet lemma (``index.*``) and irregular form (``*.exc``: ``mice``, ``went``)."""
    out: set[str] = set()
    for pos in ("noun", "verb", "adj", "adv"):
        for line in (wordnet / f"index.{pos}").read_text(encoding="utf-8").splitlines():
            if not line.startswith(" "):
                out.add(line.split(" ", 1)[0].lower())
        for line in (wordnet / f"{pos}.exc").read_text(encoding="utf-8").splitlines():
            out.update(line.lower().split())
    return {w for w in out if w.isascii() and w.isalpha()}


# Function words WordNet leaves out (it lists nouns, verbs, adjectives and adverbs only).
FUNCTION_WORDS = """a an the and or but nor of in on at to from by with without for about over under into onto
upon off out up down as than then so if not no yes is are was were be been being am do does did done has have had
having i me my mine we us our ours you your yours he him his she her hers it its they them their theirs this that
these those there here who whom whose which what when where why how all any both each few more most other some such
own same too very can could may might must shall should will would just let's it's i'm we're you're they're isn't
aren't don't doesn't didn't can't won't one two three four five six seven eight nine ten""".split()


def english_lexicon(wordnet: Path, english_texts: Iterable[str]) -> list[str]:
    """The words :func:`retrieval.models.multilingual.is_english` counts as English: WordNet's
    one-word lemmas and irregular forms, function words, and every word of ``english_texts``."""
    words = wordnet_words(wordnet) | set(FUNCTION_WORDS)
    for text in english_texts:
        words.update(w for w in words_of(text) if w.isascii())
    return sorted(words)


ENGLISH_BASED = ("en", "pcm")  # locales whose words are English's (Nigerian Pidgin: English-based)


def foreign_lexicon(roots: Sequence[Path], core_english: Iterable[str]) -> list[str]:
    """Words of CLDR names and keywords in the other locales, in Latin letters, but for the
    ``core_english`` words (the English names, keywords and captions: words of the other locales'
    keywords such as ``ok`` or ``selfie``); ``die`` and ``strand``, which WordNet also lists, stay."""
    words: set[str] = set()
    for root in roots:
        for sub in ("annotations", "annotationsDerived"):
            for folder in sorted((root / sub).glob("*")):
                if folder.name.split("-")[0] in ENGLISH_BASED:
                    continue
                for entry in _annotations(root, folder.name).values():
                    for text in entry.get("tts", []) + entry.get("default", []):
                        words.update(w for w in words_of(text) if _latin(w))
    return sorted(words - set(core_english))


def _latin(word: str) -> bool:
    return all(c.isascii() or unicodedata.name(c, "").startswith("LATIN") for c in word)


def write_words(path: Path, words: Iterable[str]) -> None:
    """One word a line, sorted by their UTF-8 bytes (what ``WordList`` bisects)."""
    data = sorted({w.encode("utf-8") for w in words if w and "\n" not in w})
    path.write_bytes(b"\n".join(data) + b"\n")


def fit_ridge(x: np.ndarray, y: np.ndarray, lam: float) -> np.ndarray:
    """``W`` ``[d + 1, D]`` minimising ``|[x 1] W - y|^2 + lam |W|^2`` (closed form; the last row
    is the bias, as :func:`retrieval.models.multilingual.apply_map` reads it)."""
    xb = np.hstack([x, np.ones((len(x), 1), np.float32)]).astype(np.float64)
    w = np.linalg.solve(xb.T @ xb + lam * np.eye(xb.shape[1]), xb.T @ y.astype(np.float64))
    return w.astype(np.float32)


def map_emoji(names: dict, held_out: set[str], count: int, seed: int = 0) -> list[str]:
    """A seeded sample of ``count`` emoji with an English name and none of ``held_out`` (the test
    splits' emoji: no name of a test emoji, in any language, is trained on)."""
    pool = [e for e in sorted(names) if e not in held_out and "en" in names[e]]
    if len(pool) <= count:
        return pool
    pick = np.random.default_rng(seed).choice(len(pool), count, replace=False)
    return [pool[i] for i in sorted(pick)]


def parallel_names(names: dict, emoji: Sequence[str], locales: Sequence[str]) -> tuple[list[str], list[str]]:
    """(foreign name, its English name) for each emoji and locale that has one."""
    src, dst = [], []
    for e in emoji:
        for loc in locales:
            if loc in names[e] and loc != "en":
                src.append(names[e][loc]["name"][0])
                dst.append(names[e]["en"]["name"][0])
    return src, dst


def held_out_words(names: dict, held: set[str]) -> set[str]:
    """Every name and keyword of the ``held`` emoji, in every locale (lower case, spaces collapsed):
    text that no training pair of a map may hold on either side (the test concepts' words)."""
    return {
        text_key(text)
        for e in held
        if e in names
        for entry in names[e].values()
        for text in entry.get("name", []) + entry.get("keywords", [])
    }


# Leading articles dropped when texts are compared for the hold-out ("A badger." is "badger").
_ARTICLES = frozenset(
    "a an the ein eine einen der die das un une le la les el los las uno una il lo gli i um uma o os as".split()
    + ["de", "het", "een"]
)


def text_key(text: str) -> str:
    """How texts are compared for the hold-out: lower case, punctuation at either end (any
    script's: ``。``, ``！``, Arabic's leading ``.``) and one leading article dropped, spaces collapsed."""
    words = unicodedata.normalize("NFKC", text).lower().split()
    words = [w.strip("".join(c for c in w if unicodedata.category(c)[0] in "PS")) or w for w in words]
    words = [w for w in words if w and not all(unicodedata.category(c)[0] in "PS" for c in w)]
    if len(words) > 1 and words[0] in _ARTICLES:
        words = words[1:]
    return " ".join(words)


def without_held(src: Sequence[str], dst: Sequence[str], held_words: set[str]) -> tuple[list[str], list[str]]:
    """The pairs of which neither side is a held-out word (:func:`held_out_words`)."""
    keep = [i for i, pair in enumerate(zip(src, dst)) if not {text_key(t) for t in pair} & held_words]
    return [src[i] for i in keep], [dst[i] for i in keep]


def held_out_sentences(translations: dict[str, dict[str, str]], held_captions: set[str]) -> set[str]:
    """The held-out stamps' descriptions in English and in every language (as :func:`text_key` reads
    them): no training pair may hold one on either side, whatever stamp or emoji it comes from
    (``Un coniglietto.`` describes two stamps; ``캥거루`` is an emoji's name and a stamp's)."""
    out = {text_key(c) for c in held_captions}
    for english in held_captions:
        out.update(text_key(t) for t in translations.get(english, {}).values())
    return out


# fit_mlp_map's settings, read off its signature (its module imports torch only when it trains)
MLP_SETTINGS = frozenset(inspect.signature(fit_mlp_map).parameters) - {"x", "y", "groups"}


KEEP_FLOAT32 = {"head.mean", "head.std"}


def check_settings(
    k: int,
    tau: float,
    map_weight: float,
    snap: tuple[float, int, float],
    mlp: dict[str, object] | None,
    mlp_seeds: int = 1,
) -> None:
    """Refuse route settings a bank could not answer with (ValueError), before any work."""
    if isinstance(mlp_seeds, bool) or not isinstance(mlp_seeds, int) or mlp_seeds < 1:
        raise ValueError(f"the MLP seeds must be a whole number >= 1, not {mlp_seeds!r}")
    if mlp_seeds > 1 and mlp is None:
        raise ValueError(f"{mlp_seeds} MLP seeds need an MLP map (--mlp)")
    seed = (mlp or {}).get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"the MLP seed must be a whole number >= 0, not {seed!r}")
    empty = np.zeros((1, 1))
    PivotBank(empty, empty, k=k, tau=tau, map_weight=map_weight, snap_weight=snap[0], snap_k=snap[1], snap_tau=snap[2])
    unknown = sorted(set(mlp or {}) - MLP_SETTINGS)
    if unknown:
        raise ValueError(f"unknown MLP settings {', '.join(unknown)}; known: {', '.join(sorted(MLP_SETTINGS))}")


def cldr_pairs(
    names: dict, emoji: Sequence[str], locales: Sequence[str], held_words: set[str], keywords: bool = True
) -> tuple[list[str], list[str], int]:
    """The map's CLDR training pairs (text, its English): the names of ``emoji`` and (with
    ``keywords``) the word translations their keywords give, less every pair with a word of a
    held-out emoji on either side (emoji share keywords: ``Zunge`` tags a face that is not the
    tongue emoji). Returns (sources, English, how many of them are names)."""
    src, dst = without_held(*parallel_names(names, emoji, locales), held_words)
    count = len(src)
    if keywords:
        kw_src, kw_dst = without_held(*keyword_pairs(names, emoji, locales), held_words)
        src, dst = src + kw_src, dst + kw_dst
    return src, dst, count


def held_out_emoji(manifests: Sequence[Path]) -> set[str]:
    """The emoji drawn in the pictures of ``manifests`` (files named by their codepoints)."""
    out: set[str] = set()
    for manifest in manifests:
        with open(manifest, encoding="utf-8") as f:
            out.update(emoji_of_file(json.loads(line)["image"]) for line in f if line.strip())
    return out


def read_captions(manifests: Sequence[Path]) -> list[str]:
    out: list[str] = []
    for manifest in manifests:
        with open(manifest, encoding="utf-8") as f:
            out.extend(json.loads(line)["text"] for line in f if line.strip())
    return list(dict.fromkeys(" ".join(t.split()) for t in out))


def build(
    cldr_roots: Sequence[Path],
    wordnet: Path,
    captions: Sequence[Path],
    encoder: object,
    out_dir: Path = MULTILINGUAL_DIR,
    wordnet_max: int = 8000,
    cache: Path | None = None,
    k: int = 8,
    tau: float = 0.05,
    held_out: Sequence[Path] = (),
    locales: Sequence[str] = MAP_LOCALES,
    map_count: int = 100_000,
    ridge: float = 0.1,
    map_weight: float = 2.0,
    stamps: Path | None = None,
    mlp: dict[str, object] | None = None,
    snap: tuple[float, int, float] = (0.0, 8, 0.05),
    vocabulary: Path | None = None,
    mlp_seeds: int = 1,
) -> dict[str, object]:
    """Write the word lists and ``pivot-bank.npz`` to ``out_dir``: the bank (English CLDR names
    and keywords, the training captions, the ``wordnet_max`` most used WordNet lemmas; float16
    vectors) and the ridge map fitted on the bank's English phrases and the names of
    ``map_count`` emoji (none drawn in the ``held_out`` manifests) in ``locales`` (with ``mlp``,
    their keywords' word translations too, :func:`keyword_pairs`), no pair and no phrase holding a
    name or keyword of a held-out emoji in any language (:func:`held_out_words`); with ``stamps``
    (Tux Paint's stamps folder), their descriptions' translations too (none captioning a picture
    of the ``held_out`` manifests); with ``mlp`` (keyword arguments of
    :func:`~retrieval.train.multilingual_map.fit_mlp_map`), an MLP map on the same pairs beside it;
    ``snap``: the weight, k and temperature of the mapped vector snapped to the bank's phrases;
    ``vocabulary``: a folder of a bank whose phrases and word lists are kept (only the maps are
    made again: the English words, and so which texts are English, do not change);
    ``mlp_seeds``: that many MLP maps fitted alike from seeds ``seed``, ``seed + 1``, ... (their
    mean is the map, :class:`~retrieval.models.multilingual.MeanOfHeads`)."""
    check_settings(k, tau, map_weight, snap, mlp, mlp_seeds)  # before anything is written or embedded
    names = cldr_names(cldr_roots, ["en", *locales])
    en = {e: v for e, v in names.items() if "en" in v}
    cldr_texts = [t for e in en.values() for t in e["en"]["name"] + e["en"]["keywords"]]
    out_dir.mkdir(parents=True, exist_ok=True)
    if vocabulary is not None:  # another bank's phrases and word lists, as they are
        with np.load(vocabulary / "pivot-bank.npz") as data:
            phrases = data["phrases"].tolist()
        for name in ("english-words.txt", "foreign-words.txt"):
            if (vocabulary / name).resolve() != (out_dir / name).resolve():
                shutil.copyfile(vocabulary / name, out_dir / name)
    else:
        caption_texts = read_captions(captions)
        lemmas = wordnet_lemmas(wordnet)[:wordnet_max]
        phrases = list(dict.fromkeys(" ".join(t.split()) for t in cldr_texts + caption_texts + lemmas))
        lexicon = english_lexicon(wordnet, cldr_texts + caption_texts)
        core = {w for t in cldr_texts + caption_texts for w in words_of(t)} | set(FUNCTION_WORDS)
        write_words(out_dir / "english-words.txt", lexicon)
        write_words(out_dir / "foreign-words.txt", foreign_lexicon(cldr_roots, core))
    e5 = e5_cached(phrases, cache)
    target = encoder.encode_text_tower(phrases)
    held = held_out_emoji(held_out)
    held_words = held_out_words(names, held)
    translations = stamp_translations(stamps, locales) if stamps is not None else {}
    held_captions = set(read_captions(held_out))
    held_words |= held_out_sentences(translations, held_captions)
    emoji = map_emoji(names, held, map_count)
    # word translations read off the same emoji's keywords go with the MLP (chosen with it)
    src, dst, name_pairs = cldr_pairs(names, emoji, locales, held_words, keywords=mlp is not None)
    keyword_count = len(src) - name_pairs
    if stamps is not None:
        tux_src, tux_dst = without_held(*stamp_pairs(translations, held_captions, locales), held_words)
        src, dst = src + tux_src, dst + tux_dst
    english = {t: i for i, t in enumerate(dict.fromkeys(dst))}
    english_vec = encoder.encode_text_tower(list(english))
    # the bank's phrases train the maps too (English to itself), but for the held-out emoji's words
    mine = np.array([text_key(p) not in held_words for p in phrases], dtype=bool)
    map_phrases = [p for p, m in zip(phrases, mine) if m]
    x = np.vstack([e5_cached(src, cache), e5[mine]])
    y = np.vstack([english_vec[[english[t] for t in dst]], target[mine]])
    groups = {t: i for i, t in enumerate(dict.fromkeys(dst + map_phrases))}
    mlp_tensors = {}
    if mlp is not None:
        labels, first = np.array([groups[t] for t in dst + map_phrases]), mlp.get("seed", 0)
        for n in range(mlp_seeds):
            tensors = fit_mlp_map(x, y, labels, **{**mlp, "seed": first + n})
            prefix = "mlp." if mlp_seeds == 1 else f"mlp.{n}."  # one head keeps the first layout
            # weights in float16, as the bank's vectors (the mapped vectors move by under 1e-6 in
            # cosine); the input's mean and spread in float32, which a tiny spread needs
            mlp_tensors |= {prefix + k: v if k in KEEP_FLOAT32 else v.astype(np.float16) for k, v in tensors.items()}
    meta = {
        "k": k,
        "tau": tau,
        "text_tower": text_tower_sha256(encoder),
        "phrases": len(phrases),
        "map_weight": map_weight,
        "snap_weight": snap[0],
        "snap_k": snap[1],
        "snap_tau": snap[2],
        "map_pairs": len(x),
        "map_emoji": len(emoji),
        "map_locales": list(locales),
        "ridge": ridge,
        "map_phrases": len(map_phrases),
        "map_name_pairs": name_pairs,
        "map_keyword_pairs": keyword_count,
        "map_stamp_pairs": len(src) - name_pairs - keyword_count,
        "mlp": mlp,
        "mlp_seeds": mlp_seeds,
        "stamps": "/".join(Path(stamps).parts[-4:]) if stamps is not None else None,  # usr/share/tuxpaint/stamps
        "vocabulary": "/".join(Path(vocabulary).parts[-4:]) if vocabulary is not None else None,
        "held_out": [Path(m).parent.name + "/" + Path(m).name for m in held_out],
        "held_out_words": len(held_words),
    }
    tmp = out_dir / "pivot-bank.tmp.npz"  # written whole, then renamed: a killed build leaves the old bank
    np.savez_compressed(
        tmp,
        e5=e5.astype(np.float16),
        target=target.astype(np.float16),
        map=fit_ridge(x, y, ridge),
        **mlp_tensors,
        phrases=np.array(phrases),
        meta=np.array(json.dumps(meta)),
    )
    tmp.replace(out_dir / "pivot-bank.npz")
    (out_dir / "pivot-bank.json").write_text(json.dumps(meta, indent=1) + "\n")
    log.info("bank: %d phrases", len(phrases))
    return meta


def text_tower_sha256(encoder: object) -> str:
    """What a bank's target vectors depend on: the encoder's text tower (``ModelSpec.text_hash``)."""
    spec = getattr(encoder, "spec", None)
    return spec.text_hash() if spec is not None else str(encoder.weights_hash)


def main(argv: Sequence[str] | None = None) -> None:
    from ..models.registry import create_model, inference_runtime

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cldr", type=Path, nargs="+", required=True, help="unpacked CLDR package folders")
    parser.add_argument("--wordnet", type=Path, required=True, help="usr/share/wordnet of Debian wordnet-base")
    parser.add_argument("--captions", type=Path, nargs="*", default=[], help="training manifests (English)")
    parser.add_argument("--cache", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=MULTILINGUAL_DIR)
    parser.add_argument("--model", default="xmr-mini")
    parser.add_argument("--held-out", type=Path, nargs="*", default=[], help="test manifests: their emoji stay out")
    parser.add_argument("--map-emoji", type=int, default=100_000, help="emoji whose names train the map (at most)")
    parser.add_argument("--map-weight", type=float, default=2.0, help="the map's share beside the pivot")
    parser.add_argument("--stamps", type=Path, default=None, help="Tux Paint's stamps: translations for the map")
    parser.add_argument("--vocabulary", type=Path, default=None, help="keep this bank's phrases and word lists")
    parser.add_argument("--snap", type=float, nargs=3, default=(0.0, 8, 0.05), help="snap weight, k, temperature")
    parser.add_argument("--mlp", default=None, help="an MLP map too: fit_mlp_map's arguments as JSON ('{}': defaults)")
    parser.add_argument("--mlp-seeds", type=int, default=1, help="that many MLP maps from successive seeds, averaged")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    encoder = create_model(args.model, runtime=inference_runtime(args.model))
    print(
        json.dumps(
            build(
                args.cldr,
                args.wordnet,
                args.captions,
                encoder,
                args.out,
                cache=args.cache,
                held_out=args.held_out,
                map_count=args.map_emoji,
                map_weight=args.map_weight,
                stamps=args.stamps,
                mlp=json.loads(args.mlp) if args.mlp is not None else None,
                snap=(args.snap[0], int(args.snap[1]) if args.snap[1].is_integer() else args.snap[1], args.snap[2]),
                vocabulary=args.vocabulary,
                mlp_seeds=args.mlp_seeds,
            )
        )
    )


if __name__ == "__main__":
    main()
