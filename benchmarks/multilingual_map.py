"""How the multilingual map was chosen (issue 35): on *validation* splits only, text->image R@10
in 14 languages for the pivot, today's ridge map, MLP maps (:mod:`retrieval.train.multilingual_map`)
and each fused with the pivot, trained on CLDR emoji names and Tux Paint's stamp descriptions.

    PYTHONPATH=. python benchmarks/multilingual_map.py DATA CLDR_FULL CLDR_DERIVED STAMPS \
        --cache CACHE/e5-vectors.npz [--out benchmarks/results]

DATA holds the prepared sets; CLDR_* are the unpacked npm packages' ``package/`` folders; STAMPS is
Tux Paint's ``usr/share/tuxpaint/stamps``. Queries: the validation emoji drawings (four styles) by
their CLDR name in each language, and Tux Paint's validation stamps by their translated
descriptions (sentences). Training pairs hold no name or keyword of an emoji of a test or
validation split, in any language, on either side, and no stamp of Tux Paint's validation or test
split (split by concept); the bank's phrases that are such words are out of the maps' training and
of the pivot's and snap's lookups.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from retrieval.bench.recall import load_captioned
from retrieval.models.heads import MlpHead
from retrieval.models.multilingual import BANK_FILE, MeanOfHeads, PivotBank, apply_map
from retrieval.models.registry import create_model
from retrieval.train.metrics import first_relevant_ranks
from retrieval.train.multilingual import (
    MAP_LOCALES,
    cldr_names,
    cldr_pairs,
    e5_cached,
    emoji_of_file,
    fit_ridge,
    held_out_emoji,
    held_out_sentences,
    held_out_words,
    keyword_pairs,
    map_emoji,
    read_captions,
    stamp_pairs,
    stamp_translations,
    text_key,
    without_held,
)
from retrieval.train.multilingual_map import fit_mlp_map

TESTS = ["twemoji/test-unseen", "noto-emoji/test", "fluent-emoji/test", "emojione/test", "fxemoji/test"]
VALS = ["noto-emoji/val", "fluent-emoji/val", "emojione/val", "fxemoji/val"]


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def recall10(q: np.ndarray, gallery: np.ndarray, rel: list[list[int]]) -> float:
    return float((first_relevant_ranks(unit(q), gallery, rel) <= 10).mean() * 100)


def query_sets(args: argparse.Namespace, names: dict, stamps: dict, encoder) -> list[dict]:  # noqa: ANN001
    """Each validation gallery with its queries per language (``texts``, ``rel``)."""
    locales = list(MAP_LOCALES)
    out = []

    def complete(it) -> bool:  # noqa: ANN001
        e = emoji_of_file(it.path)
        return e in names and all(loc in names[e] for loc in ["en", *locales])

    for split in VALS:
        items = [it for it in load_captioned(args.data / f"{split}.jsonl") if complete(it)]
        gallery = encoder.encode_image([it.path for it in items])
        queries = {}
        for loc in ["en", *locales]:
            name_of = [names[emoji_of_file(it.path)][loc]["name"][0] for it in items]
            texts = list(dict.fromkeys(name_of))
            queries[loc] = (texts, [[n for n, t in enumerate(name_of) if t == text] for text in texts])
        out.append({"set": split, "kind": "emoji names", "gallery": gallery, "queries": queries})
    items = [it for it in load_captioned(args.data / "tuxpaint/val.jsonl") if it.modality == "image"]
    items = [it for it in items if all(loc in stamps.get(it.captions[0], {}) for loc in locales)]
    gallery = encoder.encode_image([it.path for it in items])
    queries = {}
    for loc in ["en", *locales]:
        text_of = [it.captions[0] if loc == "en" else stamps[it.captions[0]][loc] for it in items]
        texts = list(dict.fromkeys(text_of))
        queries[loc] = (texts, [[n for n, t in enumerate(text_of) if t == text] for text in texts])
    out.append({"set": "tuxpaint/val", "kind": "stamp descriptions", "gallery": gallery, "queries": queries})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("cldr", type=Path, nargs=2)
    parser.add_argument("stamps", type=Path)
    parser.add_argument("--cache", type=Path, required=True, help="e5 vectors (.npz), kept between runs")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--quick", action="store_true", help="fewer MLP settings")
    parser.add_argument("--seeds", type=int, default=1, help="also the shipped setting's MLP averaged over 2..N seeds")
    parser.add_argument(
        "--tower",
        type=float,
        nargs="*",
        default=[],
        help="also the shipped route (the MLP averaged over --seeds) plus the English tower's own vector of the "
        "text at these weights",
    )
    args = parser.parse_args()
    locales = list(MAP_LOCALES)
    names = cldr_names(args.cldr, ["en", *locales])
    stamps = stamp_translations(args.stamps, locales)
    encoder = create_model("xmr-mini", runtime="onnx")
    bank = PivotBank.load(BANK_FILE)
    with np.load(BANK_FILE) as data:
        phrases = data["phrases"].tolist()
    sets = query_sets(args, names, stamps, encoder)

    # Training pairs, split by concept: no validation or test emoji's name or keyword (in any
    # language) on either side of a pair, nor among the bank's phrases the maps train on; the
    # pivot and the snap look up a bank without them too.
    held = held_out_emoji([args.data / f"{t}.jsonl" for t in TESTS + VALS])
    held_captions = set(read_captions([args.data / f"tuxpaint/{s}.jsonl" for s in ("val", "test", "test-raster")]))
    held_words = held_out_words(names, held) | held_out_sentences(stamps, held_captions)
    keep = np.array([text_key(p) not in held_words for p in phrases], dtype=bool)
    bank = replace(bank, e5=bank.e5[keep], target=bank.target[keep])
    phrases = [p for p, k in zip(phrases, keep) if k]
    emoji = map_emoji(names, held, 100_000)
    src, dst, _ = cldr_pairs(names, emoji, locales, held_words, keywords=False)
    tux_src, tux_dst = without_held(*stamp_pairs(stamps, held_captions, locales), held_words)
    print(f"pairs: {len(src)} names of {len(emoji)} emoji, {len(tux_src)} descriptions, {len(phrases)} phrases")
    kw_src, kw_dst = without_held(*keyword_pairs(names, emoji, locales), held_words)
    print(f"keyword translations: {len(kw_src)}, e.g. {list(zip(kw_src, kw_dst))[::997][:8]}")
    english = list(dict.fromkeys(dst + tux_dst + kw_dst))
    eng_vec = dict(zip(english, encoder.encode_text_tower(english)))
    sources = {
        "names": (e5_cached(src, args.cache), np.stack([eng_vec[t] for t in dst]), dst),
        "stamps": (e5_cached(tux_src, args.cache), np.stack([eng_vec[t] for t in tux_dst]), tux_dst),
        "bank": (bank.e5, bank.target, phrases),
        "keywords": (e5_cached(kw_src, args.cache), np.stack([eng_vec[t] for t in kw_dst]), kw_dst),
    }

    def pairs(which: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        xs, ys, ts = zip(*(sources[w] for w in which))
        texts = [t for part in ts for t in part]
        ids = {t: i for i, t in enumerate(dict.fromkeys(texts))}
        return np.vstack(xs), np.vstack(ys), np.array([ids[t] for t in texts])

    for s in sets:  # every query's e5 vector, once
        s["e5"] = {loc: e5_cached(texts, args.cache) for loc, (texts, _) in s["queries"].items()}

    maps: dict[str, object] = {}
    x, y, _ = pairs(("names", "bank"))
    maps["ridge (today)"] = ("ridge", fit_ridge(x, y, 0.1))
    x, y, _ = pairs(("names", "stamps", "bank"))
    maps["ridge +stamps"] = ("ridge", fit_ridge(x, y, 0.1))
    full = ("names", "stamps", "bank")
    settings = [("mlp tau 0.1 +kw", (*full, "keywords"), {"tau": 0.1})]  # shipped
    if not args.quick:
        settings += [
            ("mlp cos", full, {"nce": 0.0}),
            ("mlp cos+0.3 nce", full, {"nce": 0.3, "tau": 0.1}),
            ("mlp cos +kw", (*full, "keywords"), {"nce": 0.0}),
            ("mlp cos+0.3 nce +kw", (*full, "keywords"), {"nce": 0.3, "tau": 0.1}),
            ("mlp cos 10 epochs", full, {"nce": 0.0, "epochs": 10}),
            ("mlp cos wd 0.05", full, {"nce": 0.0, "weight_decay": 0.05}),
        ]
    for label, which, kw in settings:
        x, y, g = pairs(which)
        start = time.perf_counter()
        maps[label] = ("mlp", MlpHead(fit_mlp_map(x, y, g, **kw)))
        print(f"{label}: fitted on {len(x)} pairs in {time.perf_counter() - start:.0f} s", flush=True)
    if args.seeds > 1:  # ensembles: the mean of the unit outputs of MLPs fitted with seeds 0..n-1, n = 2..N
        label, which, kw = settings[0]
        x, y, g = pairs(which)
        heads = [maps[label][1], *(MlpHead(fit_mlp_map(x, y, g, seed=n, **kw)) for n in range(1, args.seeds))]
        for n in range(2, args.seeds + 1):
            maps[f"{label} x{n} seeds"] = ("mlp", MeanOfHeads(heads[:n]))

    shipped = None
    if args.tower:  # the shipped bank's route, built from the held-out bank and the seeds' ensemble
        label = f"{settings[0][0]} x{args.seeds} seeds" if args.seeds > 1 else settings[0][0]
        shipped = replace(bank, mlp=maps[label][1], map_w=None)
        print(
            f"shipped route: {label}, map {shipped.map_weight:g}, snap {shipped.snap_weight:g} "
            f"k={shipped.snap_k} tau={shipped.snap_tau:g}"
        )

    results: dict[str, dict[str, list[float]]] = {}  # route -> set -> R@10 per language
    english_r: dict[str, float] = {}
    for s in sets:
        texts, rel = s["queries"]["en"]
        english_r[s["set"]] = recall10(encoder.encode_text_tower(texts), s["gallery"], rel)
        for loc in locales:
            q = s["e5"][loc]
            rel = s["queries"][loc][1]
            piv = bank.pivot(q)
            routes = {"pivot": piv}
            for label, (kind, m) in maps.items():
                v = apply_map(m, q) if kind == "ridge" else m(q)
                routes[label] = v
                for a in (2.0, 4.0):
                    routes[f"pivot + {a:g} x {label}"] = unit(piv) + a * v
                if kind == "mlp":  # the mapped vector snapped to the bank's nearest English phrases
                    for k, tau in ((8, 0.05), (16, 0.05), (8, 0.02), (8, 0.1), (4, 0.05)):
                        snap = PivotBank(bank.target, bank.target, k, tau).pivot(unit(v))
                        for b in (1.0, 2.0, 3.0, 4.0, 6.0):
                            routes[f"pivot + 2 x {label} + {b:g} x snap k={k} tau={tau}"] = unit(piv) + 2 * v + b * snap
            if shipped is not None:
                projected = shipped.project(q)
                tower = encoder.encode_text_tower(s["queries"][loc][0])
                for t in (0.0, *args.tower):
                    routes[f"shipped + {t:g} x tower"] = projected + t * tower
            for route, v in routes.items():
                results.setdefault(route, {}).setdefault(s["set"], []).append(recall10(v, s["gallery"], rel))
    table = []
    for route, by_set in results.items():
        emoji_mean = float(np.mean([np.mean(v) for k, v in by_set.items() if k != "tuxpaint/val"]))
        ratios = np.mean([np.array(v) / english_r[k] for k, v in by_set.items() if k != "tuxpaint/val"], axis=0)
        tux = by_set["tuxpaint/val"]
        table.append(
            {
                "route": route,
                "emoji R@10": round(emoji_mean, 2),
                "emoji min x en": round(float(ratios.min()), 3),
                "stamps R@10": round(float(np.mean(tux)), 2),
                "stamps min x en": round(float(np.min(tux) / english_r["tuxpaint/val"]), 3),
            }
        )
    table.sort(key=lambda r: -(r["emoji R@10"] + r["stamps R@10"]))
    print(json.dumps({"english": english_r}, indent=1))
    for row in table:
        print(row)
    for route, by_set in results.items():  # per language, the routes with the tower
        if route.startswith("shipped + "):
            per_lang = np.mean([np.array(v) / english_r[k] for k, v in by_set.items() if k != "tuxpaint/val"], axis=0)
            print(route, "emoji x en per language:", dict(zip(locales, per_lang.round(3).tolist())))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "multilingual_map.json").write_text(json.dumps({"english": english_r, "routes": table}, indent=1))


if __name__ == "__main__":
    main()
