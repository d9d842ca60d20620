"""Queries in other languages (issue 35): text->image R@10 per language beside English, on the
same pictures, for each route a text may take into the English tower's space.

The pictures are emoji drawings (test splits, named ``<codepoints>.png``); each one's CLDR name
in a language is its query in that language. Routes, for the names in a language:
  * ``tower``: the English text tower reading the foreign name (what xmr did before issue 35);
  * ``pivot``: e5 -> nearest phrases of the shipped English bank -> their tower vectors,
    softmax-weighted (:class:`retrieval.models.multilingual.PivotBank`);
  * ``pivot-heldout``: the same with every bank phrase that is an English name or keyword of a
    test emoji removed: how the pivot does on words the bank does not hold verbatim;
  * ``map``: a ridge map e5 -> tower space, fitted on the CLDR names of emoji in no test split
    (split by concept: no name of a test emoji in any language is seen) and the bank's English
    phrases that are not test names;
  * ``fused``: ``pivot-heldout`` + ``map`` (at the shipped map's weight), renormalised;
  * ``xmr``: what ``encode_text`` does now (per text: English -> tower, else the shipped bank's
    route: its pivot, its map (an MLP trained on no test emoji's name or keyword and no test
    stamp's description) and the map's vector snapped to the bank's phrases);
  * ``xmr-heldout``: the same route with the bank's phrases that name a test emoji removed
    (for the pivot and the snap).
English rows: the manifests' own captions through the tower (today) and through ``xmr``.
Text->text: English notes found by queries in each language, and the other way round.
Times: a cold ``xmr search`` in a new process (English and not) and warm queries in one process.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..models.multilingual import BANK_FILE, E5Text, PivotBank, apply_map, is_english
from ..train.metrics import first_relevant_ranks, summarize
from ..train.multilingual import (
    cldr_names,
    cldr_pairs,
    e5_cached,
    emoji_of_file,
    fit_ridge,
    held_out_words,
    map_emoji,
    stamp_translations,
    text_key,
    unpack,
)
from .recall import load_captioned

log = logging.getLogger(__name__)
LOCALES = ("de", "fr", "es", "it", "pt", "nl", "pl", "tr", "ru", "uk", "ar", "ja", "zh", "ko")
ROUTES = ("tower", "pivot", "pivot-heldout", "map", "fused", "xmr", "xmr-heldout")


@dataclass
class MultilingualConfig:
    manifests: list[str]
    cldr: list[str]  # CLDR annotation packages: npm .tgz files or unpacked package folders
    locales: tuple[str, ...] = LOCALES
    model: str = "xmr-mini"
    cache: str | None = None  # where e5 vectors and unpacked packages are kept between runs
    ridge: float = 0.1
    map_emoji: int = 100_000  # training emoji for the map, at most (a seeded sample when fewer; as shipped: all)
    english: list[str] = field(default_factory=list)  # manifests of every modality: English today vs now
    cold_runs: int = 3  # 0: no query times
    warm_runs: int = 20
    sentences: list[str] = field(default_factory=list)  # manifests of Tux Paint stamps, queried by ...
    stamps: str | None = None  # ... their translated descriptions (``usr/share/tuxpaint/stamps``)
    extra: dict[str, Any] = field(default_factory=dict)


def _roots(cfg: MultilingualConfig, cache: Path) -> list[Path]:
    out = []
    for item in map(Path, cfg.cldr):
        out.append(unpack(item, cache / "npm") if item.suffix == ".tgz" else item)
    return out


def _recall10(queries: np.ndarray, gallery: np.ndarray, relevant: list[list[int]]) -> dict[str, float]:
    ranks = first_relevant_ranks(queries, gallery, relevant)
    return summarize(ranks, np.array([len(r) for r in relevant]), len(gallery))


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def run_multilingual(cfg: MultilingualConfig, out_dir: str | None = None, encoder: Any = None) -> dict[str, Any]:
    """Measure every route on every manifest; write ``multilingual.{json,md}`` to ``out_dir``."""
    from ..models.registry import create_model, inference_runtime
    from .report import machine_info, markdown_table, write_outputs

    cache = Path(cfg.cache or tempfile.mkdtemp(prefix="xmr-multilingual-"))
    e5_cache = cache / "e5-vectors.npz"
    if cfg.sentences and not (cfg.stamps and Path(cfg.stamps).is_dir()):
        raise ValueError(f"sentences need Tux Paint's stamps folder (usr/share/tuxpaint/stamps), not {cfg.stamps!r}")
    if encoder is None:
        encoder = create_model(cfg.model, runtime=inference_runtime(cfg.model))
    if encoder.multilingual is None:
        raise RuntimeError(f"{cfg.model} has no multilingual route (no shipped pivot bank fits its text tower)")
    locales = tuple(cfg.locales)
    names = cldr_names(_roots(cfg, cache), ("en", *locales))
    sets = {m: [it for it in load_captioned(m) if it.modality == "image"] for m in cfg.manifests}
    test_emoji = {emoji_of_file(it.path) for items in sets.values() for it in items}
    complete = {e for e in test_emoji if e in names and all(loc in names[e] for loc in ("en", *locales))}

    bank = PivotBank.load(BANK_FILE)
    with np.load(BANK_FILE) as data:
        phrases = data["phrases"].tolist()
    held = {p.lower() for e in test_emoji if e in names and "en" in names[e] for p in _all_words(names[e]["en"])}
    keep = np.array([p.lower() not in held for p in phrases])
    heldout = replace(bank, e5=bank.e5[keep], target=bank.target[keep])  # the shipped route, on fewer phrases

    # The map: foreign names of emoji in no test split -> their English name's tower vector (no
    # pair with a test emoji's name or keyword on either side).
    train = map_emoji(names, test_emoji, cfg.map_emoji)
    held_words = held_out_words(names, test_emoji)
    src, dst, _ = cldr_pairs(names, train, locales, held_words, keywords=False)
    mine = np.array([text_key(p) not in held_words for p in phrases], dtype=bool)  # every language's words
    kept_phrases = [p for p, k in zip(phrases, mine) if k]
    x = np.vstack([e5_cached(src, e5_cache), bank.e5[mine]])
    y = np.vstack([encoder.encode_text_tower(list(dict.fromkeys(dst)))[_positions(dst)], bank.target[mine]])
    w = fit_ridge(x, y, cfg.ridge)
    log.info(
        "map: %d pairs (%d foreign names of %d emoji, %d English phrases)",
        len(x),
        len(src),
        len(train),
        len(kept_phrases),
    )

    rows: list[dict[str, Any]] = []
    t2t: list[dict[str, Any]] = []
    for manifest, items in sets.items():
        items = [it for it in items if emoji_of_file(it.path) in complete]
        if not items:
            continue
        label = Path(manifest).parent.name + "/" + Path(manifest).stem
        gallery = encoder.encode_image([it.path for it in items])
        captions = list(dict.fromkeys(c for it in items for c in it.captions))
        rel = [[n for n, it in enumerate(items) if c in it.captions] for c in captions]
        today = _recall10(encoder.encode_text_tower(captions), gallery, rel)
        routed = _recall10(encoder.encode_text(captions), gallery, rel)
        img2t_today = _image_to_text(gallery, encoder.encode_text_tower(captions), items, captions)
        img2t_routed = _image_to_text(gallery, encoder.encode_text(captions), items, captions)
        english_share = float(np.mean([is_english(c) for c in captions]))
        base = today["R@10"]
        rows.append(
            {
                "set": label,
                "kind": "names",
                "language": "en (captions)",
                "tower": base,
                "xmr": routed["R@10"],
                "image->text tower": img2t_today["R@10"],
                "image->text xmr": img2t_routed["R@10"],
                "queries": today["queries"],
                "gallery": len(items),
                "chance@10": today["chance@10"],
                "routed English": english_share,
            }
        )
        for loc in ("en", *locales):
            texts = list(dict.fromkeys(names[emoji_of_file(it.path)][loc]["name"][0] for it in items))
            rel = [
                [n for n, it in enumerate(items) if names[emoji_of_file(it.path)][loc]["name"][0] == t] for t in texts
            ]
            q = e5_cached(texts, e5_cache)
            E5Text.remember(texts, q)  # so the xmr route below reads the cache too
            vecs = {
                "tower": encoder.encode_text_tower(texts),
                "pivot": bank.pivot(q),
                "pivot-heldout": heldout.pivot(q),
                "map": apply_map(w, q),
            }
            vecs["fused"] = _unit(vecs["pivot-heldout"] + bank.map_weight * vecs["map"])
            vecs["xmr"] = encoder.encode_text(texts)
            vecs["xmr-heldout"] = heldout.project(q)
            row: dict[str, Any] = {"set": label, "kind": "names", "language": loc}
            for route, v in vecs.items():
                row[route] = _recall10(v, gallery, rel)["R@10"]
            row["xmr / en captions"] = row["xmr"] / base if base else None
            row.update(
                queries=len(texts), gallery=len(items), routed_english=float(np.mean([is_english(t) for t in texts]))
            )
            rows.append(row)
        t2t.extend(_text_to_text(encoder, names, sorted({emoji_of_file(it.path) for it in items}), locales, label))
    if cfg.sentences:
        rows.extend(_sentence_rows(cfg, encoder, bank, w, e5_cache))

    parity = english_parity(cfg.english, encoder)
    times = _times(encoder, sets, cfg) if cfg.cold_runs > 0 else {}
    payload: dict[str, Any] = {
        "pooled": pooled(rows),
        "machine": machine_info(),
        "model": cfg.model,
        "weights_hash": encoder.weights_hash,
        "locales": list(locales),
        "bank": {
            "phrases": len(phrases),
            "heldout_phrases": int(keep.sum()),
            "k": bank.k,
            "tau": bank.tau,
            "bytes": BANK_FILE.stat().st_size,
        },
        "map": {"pairs": int(len(x)), "train_emoji": len(train), "ridge": cfg.ridge},
        "test_emoji": len(test_emoji),
        "complete_emoji": len(complete),
        "text_to_image": rows,
        "text_to_text": t2t,
        "english_parity": parity,
        "times": times,
    }
    if out_dir:
        cols = ["set", "language", *ROUTES, "xmr / en captions", "queries", "gallery"]
        table = "## text->image R@10 (%), the emoji sets pooled\n\n" + markdown_table(
            payload["pooled"], ["language", *ROUTES, "xmr / English", "queries"]
        )
        table += "\n## text->image R@10 (%)\n\n" + markdown_table(rows, cols)
        table += "\n## English: today's tower and xmr now (R@10, both directions)\n\n" + markdown_table(
            [r for r in rows if r["language"] == "en (captions)"],
            ["set", "tower", "xmr", "image->text tower", "image->text xmr", "routed English", "chance@10"],
        )
        table += "\n## text->text (R@1 / R@10, %): English notes found in another language and back\n\n"
        table += markdown_table(
            t2t, ["set", "language", "to en R@1", "to en R@10", "from en R@1", "from en R@10", "notes"]
        )
        if parity:
            table += "\n## English on every test split: R@10 (%) today and now, captions routed away\n\n"
            table += markdown_table(parity, ["set", "direction", "today", "now", "change", "routed away", "captions"])
        table += "\n## query time (s)\n\n" + markdown_table(
            [{"what": k, **({"median_s": v} if isinstance(v, float) else v)} for k, v in times.items()],
            ["what", "median_s", "runs"],
        )
        payload["files"] = {k: str(v) for k, v in write_outputs(out_dir, "multilingual", payload, table).items()}
    return payload


def pooled(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per language, each route's R@10 over the emoji sets pooled (weighted by their queries),
    and the shipped route's share of English's (the sets' own captions through the tower)."""
    names = [r for r in rows if r.get("kind", "names") == "names"]
    out = []
    for language in dict.fromkeys(r["language"] for r in names):
        mine = [r for r in names if r["language"] == language]
        weights = np.array([r["queries"] for r in mine], dtype=float)
        row: dict[str, Any] = {"language": language, "queries": int(weights.sum())}
        for route in ROUTES:
            values = [r.get(route) for r in mine]
            if all(v is not None for v in values):
                row[route] = float(np.dot(weights, values) / weights.sum())
        out.append(row)
    english = next((r["tower"] for r in out if r["language"] == "en (captions)"), None)
    for row in out:
        row["xmr / English"] = row["xmr"] / english if english else None
    return out


def _sentence_rows(cfg: MultilingualConfig, encoder: Any, bank: PivotBank, w: np.ndarray, e5_cache: Path) -> list:
    """Stamps queried by their descriptions (sentences) in each language, beside the English
    caption: pictures whose description has a translation in every language measured."""
    locales = tuple(cfg.locales)
    stamps = stamp_translations(Path(cfg.stamps or ""), locales)
    rows: list[dict[str, Any]] = []
    for manifest in cfg.sentences:
        items = [it for it in load_captioned(manifest) if it.modality == "image"]
        items = [it for it in items if all(loc in stamps.get(it.captions[0], {}) for loc in locales)]
        if not items:
            log.warning("%s: no picture with a description in all of %s", manifest, ", ".join(locales))
            continue
        label = Path(manifest).parent.name + "/" + Path(manifest).stem + " (sentences)"
        gallery = encoder.encode_image([it.path for it in items])
        base = 0.0
        for loc in ("en", *locales):
            text_of = [it.captions[0] if loc == "en" else stamps[it.captions[0]][loc] for it in items]
            texts = list(dict.fromkeys(text_of))
            rel = [[n for n, t in enumerate(text_of) if t == text] for text in texts]
            q = e5_cached(texts, e5_cache)
            E5Text.remember(texts, q)
            vecs = {"tower": encoder.encode_text_tower(texts), "pivot": bank.pivot(q), "map": apply_map(w, q)}
            vecs["fused"] = _unit(vecs["pivot"] + bank.map_weight * vecs["map"])
            vecs["xmr"] = encoder.encode_text(texts)
            row: dict[str, Any] = {"set": label, "kind": "sentences", "language": loc}
            for route, v in vecs.items():
                row[route] = _recall10(v, gallery, rel)["R@10"]
            base = row["tower"] if loc == "en" else base
            row["xmr / en captions"] = row["xmr"] / base if base else None
            row.update(
                queries=len(texts), gallery=len(items), routed_english=float(np.mean([is_english(t) for t in texts]))
            )
            rows.append(row)
    return rows


def english_parity(manifests: list[str], encoder: Any) -> list[dict[str, Any]]:
    """R@10 in both directions on each manifest with the captions through the tower alone
    (before issue 35) and through ``encode_text`` (now), with the same item vectors."""
    from .recall import directions

    out = []
    for manifest in manifests:
        items = load_captioned(manifest)
        for modality in ("image", "audio"):
            mine = [it for it in items if it.modality == modality]
            if not mine:
                continue
            texts = list(dict.fromkeys(c for it in mine for c in it.captions))
            paths = [it.path for it in mine]
            vecs = encoder.encode_image(paths) if modality == "image" else encoder.encode_audio(paths)
            before = directions(mine, vecs, texts, encoder.encode_text_tower(texts))
            after = directions(mine, vecs, texts, encoder.encode_text(texts))
            away = sum(not is_english(t) for t in texts)
            for direction in before:
                b, a = before[direction]["R@10"], after[direction]["R@10"]
                label = Path(manifest).parent.name + "/" + Path(manifest).stem
                out.append(
                    {
                        "set": label,
                        "direction": direction,
                        "today": b,
                        "now": a,
                        "change": a - b,
                        "routed away": away,
                        "captions": len(texts),
                    }
                )
    return out


def _all_words(entry: dict[str, list[str]]) -> list[str]:
    return entry["name"] + entry["keywords"]


def _positions(texts: list[str]) -> np.ndarray:
    first = {t: i for i, t in enumerate(dict.fromkeys(texts))}
    return np.array([first[t] for t in texts], dtype=np.int64)


def _image_to_text(gallery: np.ndarray, text_vecs: np.ndarray, items: list, captions: list[str]) -> dict[str, float]:
    index = {c: i for i, c in enumerate(captions)}
    return _recall10(gallery, text_vecs, [[index[c] for c in it.captions] for it in items])


def _text_to_text(encoder: Any, names: dict, emoji: list[str], locales: tuple[str, ...], label: str) -> list[dict]:
    """Notes in English (the emoji's English names) found by its name in each language, and back."""
    english = encoder.encode_text([names[e]["en"]["name"][0] for e in emoji])
    rel = [[i] for i in range(len(emoji))]
    out = []
    for loc in locales:
        other = encoder.encode_text([names[e][loc]["name"][0] for e in emoji])
        to_en, from_en = _recall10(other, english, rel), _recall10(english, other, rel)
        out.append(
            {
                "set": label,
                "language": loc,
                "to en R@1": to_en["R@1"],
                "to en R@10": to_en["R@10"],
                "from en R@1": from_en["R@1"],
                "from en R@10": from_en["R@10"],
                "notes": len(emoji),
            }
        )
    return out


def _times(encoder: Any, sets: dict[str, list], cfg: MultilingualConfig) -> dict[str, Any]:
    """Cold ``xmr search`` (a new process) and warm ``Engine.search`` for an English, a German and
    a Japanese query on a small index of the first manifest's pictures; ``import torch`` beside."""
    import indexer

    from ..search.engine import Engine

    items = next(iter(sets.values()))[:50]
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="xmr-multilingual-") as tmp:
        root = Path(tmp) / "media"
        root.mkdir()
        for n, it in enumerate(items):
            os.symlink(os.path.abspath(it.path), root / f"{n:04d}.png")
        index = Path(tmp) / "index"
        indexer.index_folder(root, encoder, indexer.IndexOptions(index_dir=str(index), links="follow"))
        exe = Path(sys.executable).parent / "xmr"
        command = [str(exe)] if exe.exists() else [sys.executable, "-m", "cli"]
        queries = {"en": "airplane", "de": "Flugzeug", "ja": "飛行機"}
        cold: dict[str, list[float]] = {lang: [] for lang in queries}
        for _ in range(cfg.cold_runs):  # alternated, so no language pays the first run's disk reads alone
            for lang, query in queries.items():
                start = time.perf_counter()
                proc = subprocess.run(
                    [*command, "search", query, "--index", str(index), "--json", "--to", "image"],
                    capture_output=True,
                    text=True,
                    timeout=300,
                )
                cold[lang].append(time.perf_counter() - start)
                if proc.returncode != 0:
                    raise RuntimeError(f"cold query failed: {proc.stderr.strip()}")
        for lang, query in queries.items():
            out[f"cold xmr search {query!r} ({lang})"] = {
                "median_s": float(np.median(cold[lang])),
                "runs": cfg.cold_runs,
            }
        times = []
        for _ in range(cfg.cold_runs):
            start = time.perf_counter()
            proc = subprocess.run([sys.executable, "-c", "import torch"], capture_output=True, timeout=300)
            times.append(time.perf_counter() - start)
        if proc.returncode == 0:
            out["python -c 'import torch'"] = {"median_s": float(np.median(times)), "runs": cfg.cold_runs}
        with Engine.open(index, model=encoder) as engine:
            for lang, query in queries.items():
                engine.search(text=query, to="image", k=10)  # first query loads what it needs
                times = []
                for n in range(cfg.warm_runs):
                    start = time.perf_counter()
                    engine.search(text=f"{query} {n}", to="image", k=10)  # a new text each time: no cache
                    times.append(time.perf_counter() - start)
                out[f"warm search ({lang})"] = {"median_s": float(np.median(times)), "runs": cfg.warm_runs}
    return out
