"""The pure parts of the dataset scripts (the rest needs the package registries)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from benchmarks.datasets.common import caption_key, split_of
from benchmarks.datasets.emoji_styles import _codepoints, _icon_name, icon_svg
from benchmarks.datasets.flite_speech import VOICES, plan, shift
from benchmarks.datasets.wordnet_speech import phrases


def test_wordnet_phrases_are_distinct_training_captions() -> None:
    by_pos = {
        "n": Counter({f"noun{i}": i + 1 for i in range(60)}),
        "a": Counter({f"adj{i}": 1 for i in range(30)}),
        "v": Counter({"run": 5}),
        "r": Counter({"fast": 2}),
    }
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

    by_pos = {
        "n": Counter({f"noun{i}": i * i + 1 for i in range(80)}),
        "a": Counter({f"adj{i}": 3 * i + 1 for i in range(40)}),
        "v": Counter(),
        "r": Counter(),
    }
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
    icons = {
        "width": 32,
        "height": 32,
        "icons": {"dog": {"body": '<path d="M0 0h8v8z"/>'}, "wide": {"body": "<g/>", "width": 64, "left": -2}},
    }
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


# --- sound sets: rendered GM instruments, sample libraries, game sounds, mixtures ---

from benchmarks.datasets import game_sounds, gm_instruments, gm_names, sample_libraries, sound_common, sound_mixes  # noqa: E402


def test_gm_captions_are_made_human_and_group_aware() -> None:
    table = gm_names.captions()
    assert gm_names.article("electric piano") == "an electric piano" and gm_names.article("violin") == "a violin"
    assert table["a violin"] == ((40,), "note") and table["a violin playing a low note"] == ((40,), "low")
    assert table["a grand piano"][0] == (0,) and "a chord on a church organ" in table
    assert 128 + 38 in table["a snare drum"][0] and table["a drum beat"] == ((128,), "beat")
    assert table["a slap bass"][0] == (36, 37)  # programs that sound alike share a caption
    assert "waves on a seashore" in table and "a telephone ringing" in table and table["a gunshot"] == ((127,), "short")
    # effect programs are never wrapped in instrument templates, monophonic ones get no chords
    assert not any(t.startswith(("a seashore", "a chord on a flute", "a gunshot playing")) for t in table)
    assert all(t == " ".join(t.split()) and t == t.lower() for t in table)


def test_gm_notes_stay_in_range_and_fit_a_clip() -> None:
    import random

    rng = random.Random(0)
    for text, (sources, kind) in gm_names.captions().items():
        for source in sources:
            notes = gm_instruments.clip_notes(kind, source, rng)
            assert notes and max(s + d for s, d, _, _ in notes) <= gm_instruments.MAX_S
            assert all(0 <= k <= 127 and 1 <= v <= 127 for _, _, k, v in notes)
            if source < 128:
                lo, hi = gm_names.note_range(source)
                assert all(lo <= k <= hi + 12 for _, _, k, _ in notes), text
    assert len({s for s, _, _, _ in gm_instruments.melodic_notes("chord", 0, rng)}) == 1  # a chord: notes at once
    lows = [gm_instruments.melodic_notes("low", 40, rng)[0][2] for _ in range(20)]
    highs = [gm_instruments.melodic_notes("high", 40, rng)[0][2] for _ in range(20)]
    assert max(lows) < min(highs)


def test_gm_plan_splits_by_caption_and_holds_one_font_out() -> None:
    every = set(range(129)) | {128 + k for k in range(35, 82)}
    available = {font: every for font in gm_instruments.FONTS}
    available["freepats"] = {0, 40, 128, 128 + 38}
    specs = gm_instruments.plan(available)
    by_split: dict[str, set[str]] = {}
    for s in specs:
        by_split.setdefault(s["split"], set()).add(caption_key(s["text"]))
        assert (s["font"] == gm_instruments.UNSEEN_FONT) == (s["split"] == "test-unseen-font")
        assert s["font"] != "freepats" or s["source"] in available["freepats"]
    assert (
        not by_split["train"] & by_split["val"]
        and not by_split["train"] & by_split["test"]
        and not by_split["val"] & by_split["test"]
    )
    assert by_split["test-unseen-font"] == by_split["train"]  # the unseen font voices training captions only
    assert all(split_of(k) == split for split in ("train", "val", "test") for k in by_split[split])
    assert len({s["audio"] for s in specs}) == len(specs)
    assert gm_instruments.plan(available) == specs  # seeded


def test_gm_midi_file_and_slots() -> None:
    assert (
        gm_instruments.vlq(0) == b"\x00"
        and gm_instruments.vlq(127) == b"\x7f"
        and gm_instruments.vlq(128) == b"\x81\x00"
    )
    assert gm_instruments.vlq(0x0FFFFFFF) == b"\xff\xff\xff\x7f"
    specs = [{"notes": [(0.0, 1.0, 60, 100)]}, {"notes": [(0.0, 0.2, 62, 90), (0.3, 0.2, 64, 90)]}]
    events, windows = gm_instruments.slot_events(specs, "p040")
    assert windows[0][0] == 0.0 and windows[0][1] < windows[1][0]  # clips never share a window
    assert windows[0][1] - windows[0][0] == pytest.approx(1.0 + gm_instruments.TAIL_S)
    silences = sorted(t for t, _, msg in events if msg[:2] == bytes([0xB0, 120]))
    assert len(silences) == 2 and windows[0][1] < silences[0] < windows[1][0]
    midi = gm_instruments.midi_file(events)
    assert midi[:4] == b"MThd" and midi[14:18] == b"MTrk" and int.from_bytes(midi[18:22], "big") == len(midi) - 22
    assert midi.endswith(b"\xff\x2f\x00") and bytes([0xC0, 40]) in midi
    drums, _ = gm_instruments.slot_events([{"notes": [(0.0, 0.1, 38, 100)]}], "drums")
    assert any(msg[0] == 0x99 for _, _, msg in drums)  # the percussion channel


def test_freepats_configuration_is_read(tmp_path: Path) -> None:
    cfg = tmp_path / "freepats.cfg"
    cfg.write_text(
        "dir /usr/share/midi/freepats\n\ndrumset 0\n\n 38\tDrum_000/038_Snare.pat\n\nbank 0\n\n "
        "0\tTone_000/000_Piano.pat amp=120\n 40\tTone_000/040_Violin.pat\n"
    )
    assert gm_instruments.freepats_sources(cfg) == {0, 40, 128, 128 + 38}


def test_write_clip_trims_scales_and_caps(tmp_path: Path) -> None:
    rate = sound_common.RATE
    tone = 0.1 * np.sin(2 * np.pi * 440 * np.arange(rate) / rate).astype(np.float32)
    wave = np.concatenate([np.zeros(rate // 2, np.float32), tone, np.zeros(rate, np.float32)])
    assert sound_common.write_clip(tmp_path / "a.wav", wave, max_s=4.0) is None
    out, out_rate = sf.read(tmp_path / "a.wav", dtype="float32")
    assert (
        out_rate == rate
        and abs(len(out) - rate) <= 0.03 * rate
        and np.abs(out).max() == pytest.approx(sound_common.PEAK, abs=1e-3)
    )
    assert sound_common.write_clip(tmp_path / "b.wav", np.tile(tone, 5), max_s=2.0) is None
    assert len(sf.read(tmp_path / "b.wav")[0]) == 2 * rate
    assert sound_common.write_clip(tmp_path / "c.wav", np.zeros(rate, np.float32), max_s=2.0) == "silent"
    assert not (tmp_path / "c.wav").exists()


def test_debian_copyright_stanzas(tmp_path: Path) -> None:
    text = (
        "Format: x\n\nFiles: *\nCopyright: someone\nLicense: MIT\n\nFiles: etc/samples/a.flac\n etc/samples/b.flac\n"
        "Copyright: other\nLicense: CC0\n\nLicense: MIT\n text of the licence\n"
    )
    (tmp_path / "copyright").write_text(text)
    stanzas = sound_common.dep5_licences(tmp_path / "copyright")
    assert stanzas == [(["*"], "MIT"), (["etc/samples/a.flac", "etc/samples/b.flac"], "CC0")]
    assert (
        sound_common.licence_of("etc/samples/b.flac", stanzas) == "CC0"
        and sound_common.licence_of("etc/x.flac", stanzas) == "MIT"
    )


def test_sample_library_names_are_captioned_by_the_sound() -> None:
    dc = sample_libraries.drum_caption
    assert dc("Snare Rimshot (Pearl Free Floating Maple 14x3.5)") == "a snare drum rimshot"
    assert dc('Hi-Hat Open (Paiste Alpha Metal edge 14")') == "an open hi-hat" and dc("Closed HH") == "a closed hi-hat"
    assert dc("b3 - low tom") == "a low tom" and dc("Floor Tom") == "a low tom" and dc("Tom Hi") == "a high tom"
    assert (
        dc("Kick Hard 1", electronic=True) == "an electronic kick drum"
        and dc("Cowbell", electronic=True) == "a cowbell"
    )
    assert dc("Sabian Hat Choke") is None and dc("Sample: beats_01-10.flac") is None and dc("23") is None
    assert (
        sample_libraries.sonic_pi_caption("tabla_ghe3") == "a tabla"
        and sample_libraries.sonic_pi_caption("bd_klub") == "an electronic kick drum"
    )
    assert sample_libraries.sonic_pi_caption("glitch_perc4") == "glitchy electronic percussion"
    assert sample_libraries.sonic_pi_caption("mehackit_robot3") is None  # no name that says what it sounds like
    assert sample_libraries.lmms_caption("drums", "hihat_opened02") == "an open hi-hat"
    assert sample_libraries.lmms_caption("instruments", "violin_pizzicato01") == "a violin played pizzicato"
    assert (
        sample_libraries.lmms_caption("waveforms", "saw1") is None
        and sample_libraries.lmms_caption("effects", "start01") is None
    )


def test_game_sound_names_drop_mechanics() -> None:
    zc = game_sounds.zero_ad_caption
    assert zc("ambient/weather/rain_1.ogg") == "rain" and zc("actor/fauna/animal/horse_select_2.ogg") is None
    assert zc("actor/fauna/animal/elephant_attack_1.ogg") == "an elephant trumpeting"
    assert zc("interface/alarm/alarm_alert_1.ogg") is None and zc("voice/greek/civ/civ_male_attack_1.ogg") is None
    assert (
        zc("resource/lumbering/lumber_treeexpire_1.ogg") is None
        and zc("resource/lumbering/lumber_tree_3.ogg") == "an axe chopping wood"
    )
    assert zc("actor/singlesteps/fs_snow_4.ogg") == "a footstep in snow"
    assert (
        game_sounds.widelands_caption("bird2_03") == "a bird singing" and game_sounds.widelands_caption("click") is None
    )
    assert (
        game_sounds.widelands_caption("inn_01") == "food frying in a pan"
        and game_sounds.widelands_caption("message_00") is None
    )
    assert all(t == t.lower() for t in list(game_sounds.WARZONE.values()) + list(game_sounds.OPENTTD.values()))


def test_opensfx_catalogue_is_read(tmp_path: Path) -> None:
    import io
    import struct

    buf = io.BytesIO()
    sf.write(buf, np.zeros(100, np.float32), 11025, format="WAV", subtype="PCM_16")
    wav = buf.getvalue()
    entries = [b'"Cow". License: Creative Commons Zero 1.0.\x00', b'"Unused". License: x.\x00']
    datas = [bytes([len(entries[0])]) + entries[0] + wav, bytes([len(entries[1])]) + entries[1]]
    offset, table, body = 16, b"", b""
    for d in datas:
        table += struct.pack("<II", (offset + len(body)) | 0x80000000, len(d))
        body += d
    (tmp_path / "x.cat").write_bytes(table + body)
    sounds = game_sounds.opensfx_sounds(tmp_path / "x.cat")
    assert list(sounds) == [0] and sounds[0][1] == wav  # the empty entry is skipped
    assert game_sounds._licence_in(sounds[0][0]) == "Creative Commons Zero 1.0"


def _tone_rows(tmp_path: Path, texts: list[str], seconds: float = 0.5, prefix: str = "") -> list[dict]:
    rows = []
    for i, text in enumerate(texts):
        path = tmp_path / f"{prefix}{i}.wav"
        rate = sound_common.RATE
        sf.write(
            path,
            (0.2 * np.sin(2 * np.pi * (200 + 50 * i) * np.arange(int(seconds * rate)) / rate)).astype(np.float32),
            rate,
        )
        rows.append({"audio": str(path), "text": text})
    return rows


def test_sound_mixes_plan_keeps_captions_in_training(tmp_path: Path) -> None:
    fg = [t for t in (f"a sound number {i}" for i in range(80)) if split_of(caption_key(t)) == "train"][:20]
    sets = {
        "a": _tone_rows(tmp_path, fg[:10], prefix="a"),
        "b": _tone_rows(tmp_path, fg[10:], prefix="b")
        + _tone_rows(tmp_path, ["rain", "wind in the leaves"], prefix="bg"),
    }
    jobs = sound_mixes.plan(sets, 50, 50)
    bgs = [j for j in jobs if j["kind"] == "background"]
    pairs = [j for j in jobs if j["kind"] == "pair"]
    assert len(bgs) == 50 and 0 < len(pairs) <= 50
    assert all(j["text"] in fg and not sound_mixes.is_background(j["text"]) for j in bgs)  # captioned by the foreground
    assert all(split_of(caption_key(j["text"])) == "train" and " and " in j["text"] for j in pairs)
    assert all(
        j["parts"][1] == sound_mixes.ROOM_TONE or Path(j["parts"][1]).name in ("bg0.wav", "bg1.wav") for j in bgs
    )
    assert sound_mixes.plan(sets, 50, 50) == jobs
    for job in bgs[:3] + pairs[:3]:
        wave = sound_mixes.mix(job)
        assert 0.5 * sound_common.RATE <= len(wave) <= sound_mixes.MAX_S * sound_common.RATE and np.isfinite(wave).all()


def test_background_mix_snr(tmp_path: Path) -> None:
    rows = _tone_rows(tmp_path, ["a beep", "rain"], seconds=1.0)
    job = {
        "kind": "background",
        "parts": [rows[0]["audio"], rows[1]["audio"]],
        "text": "a beep",
        "snr_db": 10.0,
        "seed": 1,
    }
    wave = sound_mixes.mix(job)
    fg = sound_mixes.load(rows[0]["audio"])
    bg_only = wave[:3000]  # the foreground starts 0.2-1 s in: before that, the background alone
    assert sound_mixes.rms(fg) / sound_mixes.rms(bg_only) == pytest.approx(10**0.5, rel=0.1)
    assert sound_mixes.is_background("waves on a seashore") and sound_mixes.is_background("wind in the leaves")
    assert not sound_mixes.is_background("a square wave synth lead") and not sound_mixes.is_background("wind chimes")
    tone = sound_mixes.room_tone(16000, np.random.default_rng(0))
    assert tone.shape == (16000,) and np.isfinite(tone).all()
