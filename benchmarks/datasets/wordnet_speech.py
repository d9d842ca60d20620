"""More spoken text for the audio tower: espeak-ng readings of English words and short phrases
from WordNet 3.0 (Debian ``wordnet-base``; WordNet licence, permissive).

The speech set speaks only the captions of the image and sound sets (about 7,700 in its
training split), and a tower trained on them memorises them: it must hear words it was never
taught in unseen captions. This set adds the WordNet lemmas that occur in its sense-tagged
corpus (``cntlist.rev``) and two-word phrases made of them (adjective + noun, noun + noun),
one reading each. Only phrases whose caption key falls in the *training* split are kept, so no
validation or test caption of any set is ever spoken here.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
from collections import Counter, defaultdict
from itertools import accumulate
from pathlib import Path

from .common import caption_key, fetch_deb, split_of
from .speech import speak

log = logging.getLogger(__name__)
PACKAGE = "wordnet-base"


def lemmas(cache: Path) -> dict[str, Counter]:
    """Tagged WordNet lemmas by part of speech (``n``, ``a``, ``v``, ``r``) with their counts."""
    root = fetch_deb(PACKAGE, cache) / "usr/share/wordnet"
    by_pos: dict[str, Counter] = defaultdict(Counter)
    for line in (root / "cntlist.rev").read_text(encoding="utf-8").splitlines():
        key, _, count = line.split()
        lemma, sense = key.split("%", 1)
        if not lemma[0].isalpha():
            continue
        by_pos["nvara"[int(sense[0]) - 1]][lemma.replace("_", " ")] += int(count)
    return by_pos


def phrases(by_pos: dict[str, Counter], n: int, seed: int = 0) -> dict[str, str]:
    """Every tagged lemma once, then random adjective + noun and noun + noun pairs (words drawn
    by the square root of their counts), up to ``n`` distinct training-split captions."""
    rng = random.Random(seed)
    out: dict[str, str] = {}

    def add(text: str) -> None:
        key = caption_key(text)
        if key and split_of(key) == "train":
            out.setdefault(key, text)

    for pos in sorted(by_pos):
        for lemma in sorted(by_pos[pos]):
            add(lemma)
    nouns, adjs = list(by_pos["n"]), list(by_pos["a"])
    # cumulative weights, computed once: the same draws as weights= (which sums them every call)
    noun_w = list(accumulate(by_pos["n"][w] ** 0.5 for w in nouns))
    adj_w = list(accumulate(by_pos["a"][w] ** 0.5 for w in adjs))
    while len(out) < n:
        first = (
            rng.choices(adjs, cum_weights=adj_w)[0] if rng.random() < 0.6 else rng.choices(nouns, cum_weights=noun_w)[0]
        )
        add(f"{first} {rng.choices(nouns, cum_weights=noun_w)[0]}")
    return out


def build(out: Path, cache: Path, n: int = 24000, exclude: list[Path] | None = None) -> dict[str, int]:
    """Speak the first ``n`` texts of :func:`phrases`, leaving out those the ``exclude``
    manifests already hold (a second set extends a first without repeating it)."""
    captions = phrases(lemmas(cache), n)
    done = {
        caption_key(json.loads(line)["text"])
        for m in exclude or []
        for line in m.read_text(encoding="utf-8").splitlines()
        if line.strip()
    }
    captions = {k: v for k, v in captions.items() if k not in done}
    log.info("speaking %d WordNet words and phrases (%d left out as already spoken)", len(captions), len(done))
    return speak(out, captions, per_caption=1, seed=1, source="espeak-wordnet")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--cache", type=Path, required=True)
    parser.add_argument(
        "-n", type=int, default=24000, help="distinct texts to draw (those in --exclude are then left out)"
    )
    parser.add_argument("--exclude", type=Path, nargs="*", default=[], help="manifests whose texts are already spoken")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    print(build(args.out, args.cache, args.n, args.exclude))


if __name__ == "__main__":
    main()
