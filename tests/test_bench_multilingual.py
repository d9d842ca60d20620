"""`xmr bench multilingual` end to end on a small CLDR-shaped package, emoji pictures named by
their code points and Tux Paint-shaped stamp descriptions: every language gets its rows, English
keeps today's vectors, other languages leave the tower, sentences are measured beside names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli import app
from tests.helpers import write_image
from tests.test_models_multilingual import e5_or_skip

# emoji -> names by locale (CLDR's "tts"), with a keyword each
EMOJI = {
    "\u2708": {"en": "airplane", "de": "Flugzeug", "ja": "飛行機"},
    "\U0001f34e": {"en": "red apple", "de": "roter Apfel", "ja": "赤いリンゴ"},
    "\U0001f436": {"en": "dog face", "de": "Hundegesicht", "ja": "犬の顔"},
    "\u2615": {"en": "hot beverage", "de": "Heißgetränk", "ja": "ホット飲料"},
    "\U0001f6b2": {"en": "bicycle", "de": "Fahrrad", "ja": "自転車"},
    "\U0001f3d4": {"en": "snow-capped mountain", "de": "schneebedeckter Berg", "ja": "雪山"},
    "\U0001f697": {"en": "automobile", "de": "Auto", "ja": "自動車"},
    "\U0001f33b": {"en": "sunflower", "de": "Sonnenblume", "ja": "ひまわり"},
    "\U0001f41f": {"en": "fish", "de": "Fisch", "ja": "魚"},
    "\U0001f3b8": {"en": "guitar", "de": "Gitarre", "ja": "ギター"},
    "\U0001f4da": {"en": "books", "de": "Bücher", "ja": "本"},
    "\U0001f30b": {"en": "volcano", "de": "Vulkan", "ja": "火山"},
}
STAMPS = {
    "A red apple.": {"de": "Ein roter Apfel.", "ja": "赤いりんご。"},
    "A dog running on the beach.": {"de": "Ein Hund rennt am Strand.", "ja": "浜辺を走る犬。"},
    "A bicycle.": {"de": "Ein Fahrrad.", "ja": "自転車。"},
}


def _cldr(root: Path) -> Path:
    for loc in ("en", "de", "ja"):
        data = {e: {"default": [names[loc].split()[0]], "tts": [names[loc]]} for e, names in EMOJI.items()}
        folder = root / "annotations" / loc
        folder.mkdir(parents=True)
        (folder / "annotations.json").write_text(json.dumps({"annotations": {"annotations": data}}), encoding="utf-8")
    return root


def test_bench_multilingual_measures_each_language(tmp_path: Path) -> None:
    e5_or_skip()
    cldr = _cldr(tmp_path / "cldr")
    rows = []
    for n, (emoji, names) in enumerate(EMOJI.items()):
        name = "-".join(f"{ord(c):X}" for c in emoji) + ".png"
        write_image(tmp_path / "emoji" / name, seed=n)
        rows.append({"image": name, "text": names["en"]})
    manifest = tmp_path / "emoji" / "test.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    stamps = tmp_path / "stamps"
    tux = []
    for n, (english, by_loc) in enumerate(STAMPS.items()):
        lines = [english, *(f"{loc}.utf8={text}" for loc, text in by_loc.items()), "fr.utf8=Pas mesuré."]
        (stamps / "things").mkdir(parents=True, exist_ok=True)
        (stamps / "things" / f"s{n}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        write_image(tmp_path / "tux" / f"s{n}.png", seed=100 + n)
        tux.append({"image": f"s{n}.png", "text": english})
    sentences = tmp_path / "tux" / "test.jsonl"
    sentences.write_text("".join(json.dumps(r) + "\n" for r in tux), encoding="utf-8")

    args = ["bench", "multilingual", str(manifest), "--cldr", str(cldr), "--locales", "de,ja"]
    args += ["--sentences", str(sentences), "--stamps", str(stamps), "--cold-runs", "0"]
    args += ["--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "out"), "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    by = {(r["set"], r["language"]): r for r in payload["text_to_image"]}
    names = "emoji/test"
    assert set(by) == {
        (names, "en (captions)"),
        *((names, loc) for loc in ("en", "de", "ja")),
        *(("tux/test (sentences)", loc) for loc in ("en", "de", "ja")),
    }
    english = by[(names, "en (captions)")]  # 12 pictures: R@10 is not 100 by construction
    assert english["xmr"] == english["tower"] and english["routed English"] == 1.0
    assert by[(names, "de")]["kind"] == "names" and by[("tux/test (sentences)", "de")]["kind"] == "sentences"
    for loc in ("de", "ja"):  # other languages take e5, not the English tower
        assert by[(names, loc)]["routed_english"] < 0.5
        assert by[("tux/test (sentences)", loc)]["routed_english"] == 0.0
        assert by[(names, loc)]["queries"] == len(EMOJI)
        assert by[("tux/test (sentences)", loc)]["queries"] == len(STAMPS)
    pooled = {r["language"]: r for r in payload["pooled"]}  # one emoji set: the pooled rows are its rows
    assert set(pooled) == {"en (captions)", "en", "de", "ja"}  # sentences are not pooled with names
    assert pooled["de"]["xmr"] == pytest.approx(by[(names, "de")]["xmr"]) and pooled["de"]["queries"] == len(EMOJI)
    assert {r["language"] for r in payload["text_to_text"]} == {"de", "ja"}
    assert payload["times"] == {}
    assert (tmp_path / "out" / "multilingual.md").read_text().count("(sentences)") == 3


def test_sentences_without_stamps_are_refused(tmp_path: Path) -> None:
    manifest = tmp_path / "test.jsonl"
    manifest.write_text("", encoding="utf-8")
    result = CliRunner().invoke(
        app, ["bench", "multilingual", str(manifest), "--cldr", str(tmp_path), "--sentences", str(manifest)]
    )
    assert result.exit_code != 0
    assert "--stamps" in result.output


@pytest.mark.parametrize("missing", ["manifest", "stamps"])
def test_missing_inputs_are_named(tmp_path: Path, missing: str) -> None:
    manifest = tmp_path / "test.jsonl"
    if missing != "manifest":
        manifest.write_text("", encoding="utf-8")
    args = ["bench", "multilingual", str(manifest), "--cldr", str(tmp_path)]
    args += ["--sentences", str(manifest), "--stamps", str(tmp_path / "nowhere")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code != 0
    assert "not found" in result.output
    assert ("nowhere" if missing == "stamps" else "test.jsonl") in result.output


def test_stamps_must_be_a_folder_and_go_with_sentences(tmp_path: Path) -> None:
    manifest = tmp_path / "test.jsonl"
    manifest.write_text("", encoding="utf-8")
    base = ["bench", "multilingual", str(manifest), "--cldr", str(tmp_path)]
    alone = CliRunner().invoke(app, [*base, "--stamps", str(tmp_path)])
    assert alone.exit_code != 0 and "--sentences" in alone.output
    a_file = CliRunner().invoke(app, [*base, "--sentences", str(manifest), "--stamps", str(manifest)])
    assert a_file.exit_code != 0 and "folder" in a_file.output


def test_pooled_weights_each_set_by_its_queries() -> None:
    from retrieval.bench.multilingual import pooled

    rows = [
        {"set": "a", "kind": "names", "language": "en (captions)", "tower": 50.0, "xmr": 50.0, "queries": 10},
        {"set": "a", "kind": "names", "language": "de", "tower": 10.0, "xmr": 40.0, "queries": 10},
        {"set": "b", "kind": "names", "language": "en (captions)", "tower": 80.0, "xmr": 80.0, "queries": 30},
        {"set": "b", "kind": "names", "language": "de", "tower": 20.0, "xmr": 60.0, "queries": 30},
        {"set": "c", "kind": "sentences", "language": "de", "tower": 0.0, "xmr": 0.0, "queries": 100},
    ]
    out = {r["language"]: r for r in pooled(rows)}
    assert out["en (captions)"]["tower"] == pytest.approx((50 * 10 + 80 * 30) / 40)
    assert out["de"]["xmr"] == pytest.approx((40 * 10 + 60 * 30) / 40) and out["de"]["queries"] == 40
    assert out["de"]["xmr / English"] == pytest.approx(55.0 / 72.5)
