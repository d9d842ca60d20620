"""How the shipped multilingual route was chosen: on the *validation* splits of the emoji sets
(never the test ones), text->image R@10 averaged over 14 languages and 4 sets, for the pivot
alone, the ridge map alone (ridge 0.03-1) and the two fused (map weight 0.5, 1, 2).

    python benchmarks/multilingual_select.py DATA CLDR_FULL CLDR_DERIVED [--cache DIR]

DATA holds the prepared sets (``DATA/noto-emoji/val.jsonl``, ...); CLDR_* are the unpacked npm
packages' ``package/`` folders. The map is fitted, as the shipped one, on the names of 500 emoji
of no test split, less those of the validation splits (so a validation concept is never trained on).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from retrieval.bench.recall import load_captioned
from retrieval.models.multilingual import BANK_FILE, PivotBank, apply_map
from retrieval.models.registry import create_model
from retrieval.train.metrics import first_relevant_ranks
from retrieval.train.multilingual import (
    MAP_LOCALES,
    cldr_names,
    e5_cached,
    emoji_of_file,
    fit_ridge,
    held_out_emoji,
    map_emoji,
    parallel_names,
)

TESTS = ["twemoji/test-unseen", "noto-emoji/test", "fluent-emoji/test", "emojione/test", "fxemoji/test"]
VALS = ["noto-emoji/val", "fluent-emoji/val", "emojione/val", "fxemoji/val"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("cldr", type=Path, nargs=2)
    parser.add_argument("--cache", type=Path, default=Path("xmr-results/multilingual-cache"))
    parser.add_argument("--map-emoji", type=int, default=500, help="emoji whose names train the map (a sample)")
    args = parser.parse_args()
    locales = list(MAP_LOCALES)
    names = cldr_names(args.cldr, ["en", *locales])
    encoder = create_model("xmr-mini", runtime="onnx")
    bank = PivotBank.load(BANK_FILE)
    cache = args.cache / "e5-vectors.npz"

    def complete(it) -> bool:  # noqa: ANN001
        e = emoji_of_file(it.path)
        return e in names and all(loc in names[e] for loc in ["en", *locales])

    vals = {s: [it for it in load_captioned(args.data / f"{s}.jsonl") if complete(it)] for s in VALS}
    val_emoji = {emoji_of_file(it.path) for items in vals.values() for it in items}
    train = [e for e in map_emoji(names, held_out_emoji([args.data / f"{t}.jsonl" for t in TESTS]), args.map_emoji)]
    train = [e for e in train if e not in val_emoji]
    src, dst = parallel_names(names, train, locales)
    x, y = np.vstack([e5_cached(src, cache), bank.e5]), np.vstack([encoder.encode_text_tower(dst), bank.target])
    scores: dict[str, list[float]] = {}
    for lam in (0.03, 0.1, 0.3, 1.0):
        w = fit_ridge(x, y, lam)
        for items in vals.values():
            gallery = encoder.encode_image([it.path for it in items])
            for loc in locales:
                name_of = [names[emoji_of_file(it.path)][loc]["name"][0] for it in items]
                texts = list(dict.fromkeys(name_of))
                rel = [[n for n, t in enumerate(name_of) if t == text] for text in texts]
                q = e5_cached(texts, cache)
                pivot, mapped = bank.pivot(q), apply_map(w, q)
                routes = {"pivot": pivot, f"map ridge={lam}": mapped}
                for a in (0.5, 1.0, 2.0):
                    routes[f"fused ridge={lam} weight={a}"] = pivot + a * mapped
                for route, v in routes.items():
                    ranks = first_relevant_ranks(v / np.linalg.norm(v, axis=1, keepdims=True), gallery, rel)
                    scores.setdefault(route, []).append(float((ranks <= 10).mean() * 100))
    table = {route: round(float(np.mean(v)), 2) for route, v in scores.items()}
    print(json.dumps(dict(sorted(table.items(), key=lambda kv: -kv[1])), indent=1))


if __name__ == "__main__":
    main()
