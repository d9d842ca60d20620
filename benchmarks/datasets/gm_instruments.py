"""Rendered instruments: every General MIDI program and the GM percussion map, played from
four GM sound sets at many pitches, lengths and velocities (single notes, chords, scales,
melodies, rhythms, drum beats), captioned from templates around the instrument's name
("a violin playing a low note", "a chord on a church organ", "a snare drum") and GM's effect
programs by what they are ("waves on a seashore", "a telephone ringing").

Sound sets (fetched with ``fetch_deb``): FluidR3 GM (``fluid-soundfont-gm``, MIT), MuseScore
General Lite (``musescore-general-soundfont-small``, MIT, parts PD/CC0), FreePats
(``freepats``, GPL-2+ with a rendering exception; 73 programs and a drum kit) for
train/val/test, split by caption; TimGM6mb (``timgm6mb-soundfont``, GPL-2) is never trained
on: ``test-unseen-font.jsonl`` holds its renderings of the *training* captions, another
"voice" of the same instruments.

Needs the Debian packages ``fluidsynth`` (SF2/SF3) and ``timidity`` (FreePats' GUS patches)
installed: ``apt-get install -y fluidsynth timidity``. Each sound set renders one MIDI file
per program (written here by hand), every clip in its own time slot (silenced with "all
sound off" before the next), then cut into 16 kHz mono WAV clips of at most 4 s.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf

from .common import caption_key, fetch_deb, split_of, write_manifests
from .gm_names import captions, note_range
from .sound_common import RATE, deb_version, to_mono_16k, write_clip, write_licences

log = logging.getLogger(__name__)
MAX_S = 4.0
TAIL_S = 1.5  # release kept after the last note-off
RENDER_RATE = 32000
TICKS = 960  # MIDI ticks per second (480 per beat at 120 bpm)


@dataclass(frozen=True)
class Font:
    package: str
    path: str  # inside the package
    renderer: str  # "fluidsynth" or "timidity"
    licence: str


FONTS = {
    "fluid": Font("fluid-soundfont-gm", "usr/share/sounds/sf2/FluidR3_GM.sf2", "fluidsynth", "MIT"),
    "musescore": Font(
        "musescore-general-soundfont-small",
        "usr/share/sounds/sf3/MuseScore_General_Lite.sf3",
        "fluidsynth",
        "MIT (parts public domain / CC0)",
    ),
    "freepats": Font("freepats", "etc/timidity/freepats.cfg", "timidity", "GPL-2+ (with an exception for renderings)"),
    "timgm6mb": Font("timgm6mb-soundfont", "usr/share/sounds/sf2/TimGM6mb.sf2", "fluidsynth", "GPL-2"),
}
TRAIN_FONTS = ("fluid", "musescore", "freepats")
UNSEEN_FONT = "timgm6mb"
COUNTS = {"train": 5, "val": 1, "test": 1}  # clips per caption and training font
UNSEEN_COUNT = 1  # clips per training caption in the unseen font

Note = tuple[float, float, int, int]  # start s, duration s, MIDI key, velocity
MAJOR, MINOR, PENTA = (0, 2, 4, 5, 7, 9, 11), (0, 2, 3, 5, 7, 8, 10), (0, 2, 4, 7, 9)
CHORDS = ((0, 4, 7), (0, 3, 7), (0, 4, 7, 11), (0, 3, 7, 10), (0, 4, 7, 10), (0, 7, 12), (0, 3, 6))


def _scale_run(rng: random.Random, lo: int, hi: int, length: int, step_s: float, vel: int, down: bool) -> list[Note]:
    scale = rng.choice((MAJOR, MINOR))
    root = rng.randint(lo, max(lo, hi - 12))
    keys = [root + 12 * (i // 7) + scale[i % 7] for i in range(length)]
    keys = [k for k in keys if k <= hi] or [root]
    if down:
        keys = keys[::-1]
    return [(i * step_s, step_s * 0.95, k, max(1, min(127, vel + rng.randint(-8, 8)))) for i, k in enumerate(keys)]


def melodic_notes(kind: str, program: int, rng: random.Random) -> list[Note]:
    """The notes of one clip of ``kind`` on ``program`` (see ``gm_names`` for the kinds)."""
    lo, hi = note_range(program)
    third = max(1, (hi - lo) // 3)
    vel = rng.randint(50, 120)
    mid = rng.randint(lo + third // 2, hi - third // 2)
    if kind == "note":
        return [(0.0, rng.uniform(0.6, 2.0), mid, vel)]
    if kind == "low":
        return [(0.0, rng.uniform(0.5, 1.8), rng.randint(lo, lo + third), vel)]
    if kind == "high":
        return [(0.0, rng.uniform(0.5, 1.8), rng.randint(hi - third, hi), vel)]
    if kind == "short":
        return [(0.0, rng.uniform(0.12, 0.35), mid, vel)]
    if kind == "long":
        return [(0.0, rng.uniform(2.5, 3.4), mid, vel)]
    if kind in ("rising", "falling"):
        return _scale_run(rng, lo, hi, rng.randint(5, 8), rng.uniform(0.15, 0.32), vel, kind == "falling")
    if kind == "melody":
        scale, step = rng.choice((MAJOR, MINOR, PENTA)), rng.uniform(0.2, 0.42)
        degree, root, out, t = 0, rng.randint(lo, max(lo, hi - 14)), [], 0.0
        for _ in range(rng.randint(4, 7)):
            key = min(hi, root + 12 * (degree // len(scale)) + scale[degree % len(scale)])
            dur = step * rng.choice((1, 1, 1, 2))
            out.append((t, dur * 0.95, key, max(1, min(127, vel + rng.randint(-12, 12)))))
            t += dur
            degree = max(0, degree + rng.choice((-2, -1, -1, 1, 1, 2, 3)))
        return out
    if kind == "repeat":
        step = rng.uniform(0.18, 0.45)
        return [(i * step, step * 0.7, mid, vel) for i in range(rng.randint(3, 6))]
    if kind == "arpeggio":
        chord, step = rng.choice(CHORDS), rng.uniform(0.1, 0.25)
        root = rng.randint(lo, max(lo, hi - 14))
        keys = [root + c for c in chord] + [root + 12] * (root + 12 <= hi)
        if rng.random() < 0.5:
            keys = keys + keys[-2::-1]
        return [(i * step, step * 1.5, k, vel) for i, k in enumerate(keys)]
    if kind == "chord":
        chord, root = rng.choice(CHORDS), rng.randint(lo, max(lo, hi - 12))
        dur = rng.uniform(1.0, 2.5)
        return [(0.0, dur, root + c, vel) for c in chord]
    if kind == "chords":
        out, t, dur = [], 0.0, rng.uniform(0.4, 0.8)
        root = rng.randint(lo + 5, max(lo + 5, hi - 17))
        for _ in range(rng.randint(2, 4)):
            shift, chord = rng.choice((-5, -3, 0, 2, 4, 5, 7)), rng.choice(CHORDS[:5])
            out.extend((t, dur * 0.95, root + shift + c, vel) for c in chord)
            t += dur
        return out
    if kind == "rhythm":
        step = rng.uniform(0.12, 0.22)
        hits = [i for i in range(16) if i == 0 or rng.random() < 0.45]
        return [(i * step, step * 0.8, mid, min(127, vel + (20 if i % 4 == 0 else 0))) for i in hits]
    raise ValueError(f"unknown clip kind {kind!r}")


def drum_notes(kind: str, key: int | None, rng: random.Random) -> list[Note]:
    """The notes (on the percussion channel) of one clip: ``key`` a drum of the GM map, or
    None for whole-kit kinds (beats, fills, rolls)."""
    vel = rng.randint(60, 120)
    if key is not None:
        if kind == "hit":
            return [(0.0, 0.3, key, vel)]
        if kind == "repeat":
            step = rng.uniform(0.15, 0.5)
            return [(i * step, 0.1, key, vel) for i in range(rng.randint(3, 6))]
        if kind == "rhythm":
            step = rng.uniform(0.11, 0.2)
            return [
                (i * step, 0.1, key, min(127, vel + (20 if i % 4 == 0 else -10)))
                for i in range(16)
                if i == 0 or rng.random() < 0.5
            ]
        raise ValueError(f"unknown drum kind {kind!r}")
    if kind in ("beat", "fast-beat", "slow-beat"):
        bpm = {"beat": (90, 130), "fast-beat": (150, 190), "slow-beat": (62, 80)}[kind]
        eighth = 30.0 / rng.uniform(*bpm)
        bars = 2 if kind == "fast-beat" else 1
        hat = rng.choice((42, 42, 46, 51))
        out = []
        for i in range(8 * bars):
            out.append((i * eighth, 0.1, hat, 70 + 20 * (i % 2 == 0)))
            if i % 4 == 0 or (i % 8 == 5 and rng.random() < 0.4):
                out.append((i * eighth, 0.1, rng.choice((35, 36)), 110))
            if i % 4 == 2:
                out.append((i * eighth, 0.1, 38, 105))
        return out
    if kind == "fill":
        step, toms = rng.uniform(0.09, 0.15), [50, 48, 47, 45, 43, 41]
        out = [(i * step, 0.1, toms[min(5, i * 6 // 12)], vel) for i in range(12)]
        return out + [(12 * step, 0.5, 49, 120), (12 * step, 0.3, 36, 115)]
    if kind == "roll":
        step, n = rng.uniform(0.045, 0.07), rng.randint(16, 30)
        return [(i * step, 0.05, 38, int(50 + 70 * i / n)) for i in range(n)]
    raise ValueError(f"unknown kit kind {kind!r}")


def clip_notes(kind: str, source: int, rng: random.Random) -> list[Note]:
    """Notes for a caption's ``source``: a program (0-127), a drum (128 + key) or the kit (128)."""
    if source < 128:
        return melodic_notes(kind, source, rng)
    return drum_notes(kind, source - 128 if source > 128 else None, rng)


def plan(available: dict[str, set[int]], seed: int = 0) -> list[dict]:
    """Every clip to render: for each caption, :data:`COUNTS` clips per training font (its
    split by caption) and, for training captions, :data:`UNSEEN_COUNT` by the unseen font.
    ``available[font]`` names the sources (programs, 128 + drum key, 128 for the kit) a font
    has. Seeded per caption and font, so a clip never depends on what else is planned."""
    specs = []
    for text, (sources, kind) in sorted(captions().items()):
        split = split_of(caption_key(text))
        per_font = {f: COUNTS[split] for f in TRAIN_FONTS}
        if split == "train":
            per_font[UNSEEN_FONT] = UNSEEN_COUNT
        for font, n in per_font.items():
            usable = [s for s in sources if s in available[font]]
            if not usable:
                continue
            rng = random.Random(f"{seed}|{font}|{text}")
            for i in range(n):
                source = rng.choice(usable)
                group = f"p{source:03d}" if source < 128 else "drums"
                rel = Path("clips") / font / group / f"{caption_key(text)[:60].replace(' ', '_')}-{i}.wav"
                specs.append(
                    {
                        "audio": str(rel),
                        "text": text,
                        "font": font,
                        "source": source,
                        "kind": kind,
                        "split": "test-unseen-font" if font == UNSEEN_FONT else split,
                        "notes": clip_notes(kind, source, rng),
                    }
                )
    return specs


def vlq(n: int) -> bytes:
    """A MIDI variable-length quantity."""
    out = [n & 0x7F]
    while n > 127:
        n >>= 7
        out.append(0x80 | (n & 0x7F))
    return bytes(reversed(out))


def midi_file(events: list[tuple[float, int, bytes]]) -> bytes:
    """A format-0 standard MIDI file of ``(time s, order, message)`` events at 120 bpm."""
    track, now = bytearray(b"\x00\xff\x51\x03\x07\xa1\x20"), 0  # tempo: 500,000 us a beat
    for t, _, msg in sorted(events, key=lambda e: (e[0], e[1])):
        tick = round(t * TICKS)
        track += vlq(tick - now) + msg
        now = tick
    track += b"\x00\xff\x2f\x00"
    return (
        b"MThd"
        + (6).to_bytes(4, "big")
        + (0).to_bytes(2, "big")
        + (1).to_bytes(2, "big")
        + (TICKS // 2).to_bytes(2, "big")
        + b"MTrk"
        + len(track).to_bytes(4, "big")
        + bytes(track)
    )


def slot_events(
    specs: list[dict], source_group: str
) -> tuple[list[tuple[float, int, bytes]], list[tuple[float, float]]]:
    """MIDI events playing ``specs`` one after another, each in its own slot, and the
    (start, end) seconds of each clip's window in the rendering."""
    drums = source_group == "drums"
    ch = 9 if drums else 0
    events: list[tuple[float, int, bytes]] = [(0.0, 0, bytes([0xC0 | ch, 0 if drums else int(source_group[1:])]))]
    windows, t = [], 0.0  # no lead-in: TiMidity skips the silence before the first note
    for spec in specs:
        end = max(s + d for s, d, _, _ in spec["notes"])
        for start, dur, key, vel in spec["notes"]:
            events.append((t + start, 2, bytes([0x90 | ch, key, vel])))
            events.append((t + start + dur, 1, bytes([0x80 | ch, key, 0])))
        stop = t + min(end + TAIL_S, MAX_S + 0.5)
        windows.append((t, stop))
        events.append((stop + 0.02, 0, bytes([0xB0 | ch, 120, 0])))  # all sound off: nothing bleeds into the next slot
        events.append((stop + 0.02, 0, bytes([0xB0 | ch, 123, 0])))
        t = stop + 0.4
    events.append((t + 0.5, 0, bytes([0xB0 | ch, 7, 100])))  # keeps the player running past the last slot
    return events, windows


def render(font: str, root: Path, midi: Path, wav: Path) -> None:
    """Render ``midi`` with ``font`` (unpacked at ``root``) to ``wav``."""
    spec = FONTS[font]
    if spec.renderer == "fluidsynth":
        cmd = [
            "fluidsynth",
            "-n",
            "-i",
            "-q",
            "-R",
            "0",
            "-C",
            "0",
            "-g",
            "0.3",
            "-r",
            str(RENDER_RATE),
            "-T",
            "wav",
            "-F",
            str(wav),
            str(root / spec.path),
            str(midi),
        ]
    else:  # timidity with a configuration pointing at the unpacked patches
        cfg = midi.with_suffix(".cfg")
        body = (
            (root / spec.path)
            .read_text()
            .replace("dir /usr/share/midi/freepats", f"dir {root}/usr/share/midi/freepats")
        )
        cfg.write_text(body)
        cmd = [
            "timidity",
            "-c",
            str(cfg),
            "-Ow",
            "--output-mono",
            "-s",
            str(RENDER_RATE),
            "-EFreverb=0",
            "-EFchorus=0",
            "-A100",
            "-o",
            str(wav),
            str(midi),
        ]
    subprocess.run(cmd, check=True, capture_output=True, timeout=1800)


def render_group(out: Path, font: str, root: Path, group: str, specs: list[dict]) -> int:
    """Render and cut the clips of one font and program group; returns how many failed."""
    done = out / "clips" / font / group / ".done"
    if done.exists():
        return 0
    events, windows = slot_events(specs, group)
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        midi, wav = Path(tmp) / f"{group}.mid", Path(tmp) / f"{group}.wav"
        midi.write_bytes(midi_file(events))
        try:
            render(font, root, midi, wav)
            data, rate = sf.read(wav, dtype="float32", always_2d=True)
        except (subprocess.SubprocessError, OSError, RuntimeError) as exc:
            log.warning("%s %s: rendering failed, %d clips skipped: %s", font, group, len(specs), str(exc)[:120])
            return len(specs)
    wave = to_mono_16k(data, rate)
    for spec, (start, stop) in zip(specs, windows):
        reason = write_clip(out / spec["audio"], wave[int(start * RATE) : int(stop * RATE)], MAX_S)
        if reason:
            failed += 1
            log.debug("%s %s: %s", font, spec["audio"], reason)
    done.parent.mkdir(parents=True, exist_ok=True)
    done.touch()
    if failed:
        log.warning("%s %s: %d of %d clips not written (silent or shorter than 40 ms)", font, group, failed, len(specs))
    return failed


def freepats_sources(cfg: Path) -> set[int]:
    """The programs (bank 0) and drums (128 + key, drumset 0) a FreePats configuration maps."""
    out, section = set(), None
    for line in cfg.read_text().splitlines():
        words = line.split()
        if words[:1] in (["bank"], ["drumset"]):
            section = (words[0], int(words[1]))
        elif len(words) >= 2 and words[0].isdigit():
            if section == ("bank", 0):
                out.add(int(words[0]))
            elif section == ("drumset", 0):
                out.add(128 + int(words[0]))
    return out | {128} if out else out


def build(out: Path, cache: Path, seed: int = 0) -> dict[str, int]:
    """Fetch the sound sets, render every planned clip (resumable per font and program) and
    write ``train/val/test.jsonl``, ``test-unseen-font.jsonl`` and ``licences.json``."""
    roots = {font: fetch_deb(spec.package, cache) for font, spec in FONTS.items()}
    everything = set(range(129)) | {128 + k for k in range(35, 82)}
    available = {font: everything for font in FONTS}
    available["freepats"] = freepats_sources(roots["freepats"] / FONTS["freepats"].path)
    specs = plan(available, seed)
    groups: dict[tuple[str, str], list[dict]] = {}
    for spec in specs:
        groups.setdefault((spec["font"], Path(spec["audio"]).parent.name), []).append(spec)
    log.info("%d clips in %d renderings", len(specs), len(groups))
    for i, ((font, group), members) in enumerate(sorted(groups.items())):
        render_group(out, font, roots[font], group, members)
        if i % 50 == 0:
            log.info("rendered %d of %d groups", i + 1, len(groups))
    rows = [
        {
            "audio": s["audio"],
            "text": s["text"],
            "source": f"gm-{s['font']}",
            "font": s["font"],
            "program": s["source"],
            "kind": s["kind"],
            "split": s["split"],
        }
        for s in specs
        if (out / s["audio"]).exists()
    ]
    unseen = [r for r in rows if r["split"] == "test-unseen-font"]
    counts = write_manifests(out, [r for r in rows if r["split"] != "test-unseen-font"], lambda r: r.pop("split"))
    (out / "test-unseen-font.jsonl").write_text(
        "".join(json.dumps({k: v for k, v in r.items() if k != "split"}) + "\n" for r in unseen), encoding="utf-8"
    )
    counts["test-unseen-font"] = len(unseen)
    write_licences(
        out,
        [
            {
                "package": spec.package,
                "version": deb_version(roots[f], spec.package),
                "licence": spec.licence,
                "clips": sum(r["font"] == f for r in rows),
            }
            for f, spec in FONTS.items()
        ],
    )
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--cache", type=Path, required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    print(build(args.out, args.cache))


if __name__ == "__main__":
    main()
