"""The pure parts of the dataset scripts (the rest needs the package registries)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import Counter

from benchmarks.datasets.common import caption_key, split_of
from benchmarks.datasets.emoji_styles import _codepoints, _icon_name, icon_svg
from benchmarks.datasets.wordnet_speech import phrases


def test_wordnet_phrases_are_distinct_training_captions() -> None:
    by_pos = {"n": Counter({f"noun{i}": i + 1 for i in range(60)}), "a": Counter({f"adj{i}": 1 for i in range(30)}),
              "v": Counter({"run": 5}), "r": Counter({"fast": 2})}
    out = phrases(by_pos, 400)
    assert len(out) == 400
    assert all(split_of(key) == "train" and caption_key(text) == key for key, text in out.items())
    # every lemma that falls in the training split is spoken on its own
    assert {caption_key(w) for pos in by_pos.values() for w in pos if split_of(caption_key(w)) == "train"} <= set(out)
    assert phrases(by_pos, 400) == out  # seeded
    longer = phrases(by_pos, 800)
    assert list(longer)[:400] == list(out)  # a longer draw extends a shorter one (speech-wordnet-b relies on it)


def test_wordnet_phrases_draw_as_weights_would() -> None:
    """Cumulative weights computed once give the draws that ``weights=`` gives (the slow way)."""
    import random

    by_pos = {"n": Counter({f"noun{i}": i * i + 1 for i in range(80)}), "a": Counter({f"adj{i}": 3 * i + 1 for i in range(40)}), "v": Counter(), "r": Counter()}
    rng, slow = random.Random(0), {}
    for pos in sorted(by_pos):
        for lemma in sorted(by_pos[pos]):
            if split_of(caption_key(lemma)) == "train":
                slow.setdefault(caption_key(lemma), lemma)
    nouns, adjs = list(by_pos["n"]), list(by_pos["a"])
    noun_w, adj_w = [by_pos["n"][w] ** 0.5 for w in nouns], [by_pos["a"][w] ** 0.5 for w in adjs]
    while len(slow) < 600:
        first = rng.choices(adjs, adj_w)[0] if rng.random() < 0.6 else rng.choices(nouns, noun_w)[0]
        text = f"{first} {rng.choices(nouns, noun_w)[0]}"
        if split_of(caption_key(text)) == "train":
            slow.setdefault(caption_key(text), text)
    assert phrases(by_pos, 600) == slow


def test_iconify_icons_become_standalone_svgs() -> None:
    icons = {"width": 32, "height": 32, "icons": {"dog": {"body": '<path d="M0 0h8v8z"/>'}, "wide": {"body": "<g/>", "width": 64, "left": -2}}}
    dog = ET.fromstring(icon_svg(icons, "dog"))
    assert dog.get("viewBox") == "0 0 32 32" and dog[0].tag.endswith("path")
    assert ET.fromstring(icon_svg(icons, "wide")).get("viewBox") == "-2 0 64 32"
    assert _codepoints("1F3F3-FE0F-200D-1F308") == "1f3f3-200d-1f308"


def test_emoji_found_by_code_point_or_by_caption() -> None:
    icons = {"icons": {"grinning-face": {}, "admissiontickets": {}, "face-1": {}}}
    chars = {"1f600": "face-1"}
    grin = {"hexcode": "1F600", "annotation": "grinning face"}
    tickets = {"hexcode": "1F39F", "annotation": "admission tickets"}
    assert _icon_name(grin, icons, chars, by_caption=False) == "face-1"  # the code point wins
    assert _icon_name(grin, icons, {}, by_caption=True) == "grinning-face"
    assert _icon_name(tickets, icons, chars, by_caption=True) == "admissiontickets"  # older sets squash the words
    assert _icon_name(tickets, icons, chars, by_caption=False) is None
    assert _icon_name({"hexcode": "1F436", "annotation": "dog face"}, icons, chars, by_caption=True) is None
