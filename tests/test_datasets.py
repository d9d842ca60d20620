"""The pure parts of the dataset scripts (the rest needs the package registries)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import numpy as np
import soundfile as sf

from benchmarks.datasets.common import caption_key, split_of
from benchmarks.datasets.emoji_styles import _codepoints, _icon_name, icon_svg
from benchmarks.datasets.flite_speech import VOICES, plan, shift
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


def test_flite_readings_keep_test_voices_and_captions_apart(tmp_path: Path) -> None:
    captions = {caption_key(t): t for t in (f"a {w} number {i}" for w in ("red", "blue", "small") for i in range(60))}
    rows, jobs = plan(captions, tmp_path, {"train": 2})
    by_split = Counter(split_of(caption_key(r["text"])) for r in rows)
    assert by_split["val"] == 0 and by_split["train"] > 0 and by_split["test"] > 0
    assert by_split["train"] == 2 * sum(split_of(k) == "train" for k in captions)
    for row, job in zip(rows, jobs, strict=True):
        assert row["voice"] in VOICES[split_of(caption_key(row["text"]))]
        assert job[-1] == tmp_path / row["audio"]
    assert len({r["audio"] for r in rows}) == len(rows)


def test_flite_shift_scales_pitch_and_length(tmp_path: Path) -> None:
    rate, tone = 16000, 200.0
    t = np.arange(rate) / rate
    sf.write(tmp_path / "a.wav", np.sin(2 * np.pi * tone * t).astype(np.float32), rate)
    shift(tmp_path / "a.wav", 1.25)
    wave, out_rate = sf.read(tmp_path / "a.wav", dtype="float32")
    assert out_rate == rate and abs(len(wave) - rate / 1.25) <= 2
    peak = np.argmax(np.abs(np.fft.rfft(wave))) * rate / len(wave)
    assert abs(peak - tone * 1.25) < 3
