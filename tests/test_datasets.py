"""The pure parts of the dataset scripts (the rest needs the package registries)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import Counter

from benchmarks.datasets.common import caption_key, split_of
from benchmarks.datasets.emoji_styles import _codepoints, icon_svg
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


def test_iconify_icons_become_standalone_svgs() -> None:
    icons = {"width": 32, "height": 32, "icons": {"dog": {"body": '<path d="M0 0h8v8z"/>'}, "wide": {"body": "<g/>", "width": 64, "left": -2}}}
    dog = ET.fromstring(icon_svg(icons, "dog"))
    assert dog.get("viewBox") == "0 0 32 32" and dog[0].tag.endswith("path")
    assert ET.fromstring(icon_svg(icons, "wide")).get("viewBox") == "-2 0 64 32"
    assert _codepoints("1F3F3-FE0F-200D-1F308") == "1f3f3-200d-1f308"
