"""General MIDI made human: instrument names, note ranges and caption templates.

Programs are captioned by what they sound like ("Acoustic Grand Piano" -> "grand piano");
programs that GM numbers apart but sound alike share a name (and so a caption). The
effect programs (120-127) are captioned by the sound itself ("waves on a seashore"), the
percussion map (channel 10) by the drum ("a snare drum").
"""

from __future__ import annotations

# program -> human name (without article); None: captioned from EFFECTS instead
PROGRAMS: tuple[str | None, ...] = (
    # piano
    "grand piano",
    "bright piano",
    "electric grand piano",
    "honky-tonk piano",
    "electric piano",
    "fm electric piano",
    "harpsichord",
    "clavinet",
    # chromatic percussion
    "celesta",
    "glockenspiel",
    "music box",
    "vibraphone",
    "marimba",
    "xylophone",
    "tubular bell",
    "dulcimer",
    # organ
    "electric organ",
    "percussive organ",
    "rock organ",
    "church organ",
    "reed organ",
    "accordion",
    "harmonica",
    "bandoneon",
    # guitar
    "classical guitar",
    "acoustic guitar",
    "jazz guitar",
    "clean electric guitar",
    "muted electric guitar",
    "overdriven electric guitar",
    "distorted electric guitar",
    "guitar harmonic",
    # bass
    "acoustic bass",
    "electric bass",
    "picked electric bass",
    "fretless bass",
    "slap bass",
    "slap bass",
    "synth bass",
    "synth bass",
    # strings
    "violin",
    "viola",
    "cello",
    "double bass",
    "tremolo string section",
    "pizzicato string section",
    "harp",
    "timpani",
    # ensemble
    "string section",
    "slow string section",
    "synth strings",
    "synth strings",
    "choir",
    "soft choir",
    "synth choir",
    "orchestra hit",
    # brass
    "trumpet",
    "trombone",
    "tuba",
    "muted trumpet",
    "french horn",
    "brass section",
    "synth brass",
    "synth brass",
    # reed
    "soprano saxophone",
    "alto saxophone",
    "tenor saxophone",
    "baritone saxophone",
    "oboe",
    "english horn",
    "bassoon",
    "clarinet",
    # pipe
    "piccolo",
    "flute",
    "recorder",
    "pan flute",
    "blown bottle",
    "shakuhachi",
    "whistle",
    "ocarina",
    # synth lead
    "square wave synth lead",
    "sawtooth synth lead",
    "calliope",
    "chiff synth lead",
    "distorted synth guitar",
    "synth voice lead",
    "synth lead in fifths",
    "layered synth lead",
    # synth pad
    "new age synth pad",
    "warm synth pad",
    "polysynth",
    "choir synth pad",
    "bowed synth pad",
    "metallic synth pad",
    "halo synth pad",
    "sweeping synth pad",
    # synth effects: synthesizer sounds, not the things GM names them after ("rain", "goblins")
    "shimmering synth",
    "soundtrack synth pad",
    "crystal synth",
    "atmospheric synth pad",
    "bright synth",
    "eerie synth",
    "echoing synth voice",
    "sci-fi synth",
    # ethnic
    "sitar",
    "banjo",
    "shamisen",
    "koto",
    "kalimba",
    "bagpipe",
    "fiddle",
    "shehnai",
    # percussive
    "small bell",
    "agogo bell",
    "steel drum",
    "wood block",
    "taiko drum",
    "tom drum",
    "electronic drum",
    "reversed cymbal",
    # sound effects
    None,
    None,
    None,
    None,
    None,
    None,
    None,
    None,
)
assert len(PROGRAMS) == 128

# effect program -> (caption, clip kind) pairs: the sound itself, never the GM event name
EFFECTS: dict[int, tuple[tuple[str, str], ...]] = {
    120: (("fingers sliding on guitar strings", "note"), ("a squeak of guitar strings", "short")),
    121: (("someone breathing", "long"), ("a breath", "note")),
    122: (("waves on a seashore", "long"), ("the sound of the sea", "note")),
    123: (("a bird chirping", "note"), ("birds tweeting", "long")),
    124: (
        ("a telephone ringing", "long"),
        ("a short telephone ring", "short"),
        ("a telephone ringing twice", "repeat"),
    ),
    125: (("a helicopter", "note"), ("a helicopter flying", "long")),
    126: (("applause", "long"), ("a crowd clapping", "note")),
    127: (("a gunshot", "short"), ("several gunshots", "repeat")),
}

# GM percussion key -> the drum, with its article ("maracas" take none)
DRUMS: dict[int, str] = {
    35: "a bass drum",
    36: "a kick drum",
    37: "a rim click",
    38: "a snare drum",
    39: "a hand clap",
    40: "an electronic snare drum",
    41: "a low floor tom",
    42: "a closed hi-hat",
    43: "a high floor tom",
    44: "a pedal hi-hat",
    45: "a low tom",
    46: "an open hi-hat",
    47: "a low mid tom",
    48: "a high mid tom",
    49: "a crash cymbal",
    50: "a high tom",
    51: "a ride cymbal",
    52: "a china cymbal",
    53: "a ride cymbal bell",
    54: "a tambourine",
    55: "a splash cymbal",
    56: "a cowbell",
    57: "a crash cymbal",
    58: "a vibraslap",
    59: "a ride cymbal",
    60: "a high bongo",
    61: "a low bongo",
    62: "a muted high conga",
    63: "an open high conga",
    64: "a low conga",
    65: "a high timbale",
    66: "a low timbale",
    67: "a high agogo bell",
    68: "a low agogo bell",
    69: "a cabasa",
    70: "maracas",
    71: "a short whistle",
    72: "a long whistle",
    73: "a short guiro scrape",
    74: "a long guiro scrape",
    75: "claves",
    76: "a high wood block",
    77: "a low wood block",
    78: "a muted cuica",
    79: "an open cuica",
    80: "a muted triangle",
    81: "a triangle",
}
# whole-kit captions -> clip kind (see gm_instruments.drum_notes)
BEATS: dict[str, str] = {
    "a drum beat": "beat",
    "a fast drum beat": "fast-beat",
    "a slow drum beat": "slow-beat",
    "a drum fill on toms": "fill",
    "a snare drum roll": "roll",
    "a drum kit": "beat",
}

# lowest and highest MIDI note of each program (a playable, typical range)
_RANGES = {
    range(0, 8): (36, 96),
    range(8, 9): (60, 103),
    range(9, 10): (72, 105),
    range(10, 11): (60, 96),
    range(11, 12): (53, 89),
    range(12, 13): (45, 96),
    range(13, 14): (65, 105),
    range(14, 15): (60, 77),
    range(15, 16): (48, 84),
    range(16, 21): (36, 96),
    range(21, 22): (53, 89),
    range(22, 23): (60, 84),
    range(23, 24): (53, 89),
    range(24, 32): (40, 84),
    range(32, 40): (28, 55),
    range(40, 41): (55, 100),
    range(41, 42): (48, 84),
    range(42, 43): (36, 76),
    range(43, 44): (28, 60),
    range(44, 47): (36, 96),
    range(47, 48): (40, 55),
    range(48, 56): (40, 84),
    range(56, 57): (55, 82),
    range(57, 58): (40, 72),
    range(58, 59): (28, 58),
    range(59, 60): (55, 82),
    range(60, 61): (41, 77),
    range(61, 64): (41, 82),
    range(64, 65): (56, 87),
    range(65, 66): (49, 81),
    range(66, 67): (44, 76),
    range(67, 68): (36, 69),
    range(68, 69): (58, 91),
    range(69, 70): (52, 81),
    range(70, 71): (34, 72),
    range(71, 72): (50, 91),
    range(72, 73): (74, 103),
    range(73, 76): (60, 96),
    range(76, 77): (60, 84),
    range(77, 78): (55, 84),
    range(78, 79): (72, 96),
    range(79, 80): (60, 84),
    range(80, 104): (40, 84),
    range(104, 105): (48, 77),
    range(105, 106): (48, 84),
    range(106, 107): (50, 79),
    range(107, 108): (55, 91),
    range(108, 109): (60, 84),
    range(109, 110): (60, 77),
    range(110, 111): (55, 96),
    range(111, 112): (60, 84),
    range(112, 113): (72, 96),
    range(113, 114): (60, 84),
    range(114, 115): (52, 84),
    range(115, 116): (60, 84),
    range(116, 117): (36, 60),
    range(117, 119): (40, 65),
    range(119, 120): (60, 72),
    range(120, 128): (60, 72),
}
# programs that play chords (keyboards, mallets, organs, guitars, harp, ensembles, pads)
POLYPHONIC = (
    set(range(0, 22))
    | set(range(24, 32))
    | {44, 45, 46, 48, 49, 50, 51, 52, 53, 54, 61, 62, 63}
    | set(range(88, 104))
    | {105, 107}
)
PERCUSSIVE = set(range(112, 120))

# caption template -> clip kind; {a} is the name with its article, {name} the bare name
MELODIC_TEMPLATES = {
    "{a}": "note",
    "{a} {verb} a low note": "low",
    "{a} {verb} a high note": "high",
    "a short {name} note": "short",
    "a long {name} note": "long",
    "a short melody on {a}": "melody",
    "{a} {verb} a rising scale": "rising",
    "{a} {verb} a falling scale": "falling",
    "{a} {verb} the same note several times": "repeat",
    "an arpeggio on {a}": "arpeggio",
}
VERBS = {52: "singing", 53: "singing", 54: "singing"}
CHORD_TEMPLATES = {"a chord on {a}": "chord", "chords played on {a}": "chords"}
PERCUSSIVE_TEMPLATES = {
    "{a}": "short",
    "{a} {verb} a low note": "low",
    "{a} {verb} a high note": "high",
    "{a} played several times": "repeat",
    "a rhythm on {a}": "rhythm",
}
DRUM_TEMPLATES = {"{d}": "hit", "{d} played several times": "repeat", "a rhythm on {d}": "rhythm"}


def article(name: str) -> str:
    """``name`` with "a" or "an" in front (by its first letter; "fm" is read "ef-em")."""
    return f"an {name}" if name[0] in "aeiou" or name.startswith("fm ") else f"a {name}"


def note_range(program: int) -> tuple[int, int]:
    """The lowest and highest MIDI note a clip of ``program`` may use."""
    for span, bounds in _RANGES.items():
        if program in span:
            return bounds
    raise ValueError(f"no range for program {program}")


def captions() -> dict[str, tuple[tuple[int, ...], str]]:
    """Every caption -> (the programs that may voice it, clip kind). Drum captions carry the
    keys of the percussion map as ``128 + key``; whole-kit beats carry ``(128,)``."""
    out: dict[str, tuple[tuple[int, ...], str]] = {}

    def add(text: str, source: int, kind: str) -> None:
        sources, _ = out.get(text, ((), kind))
        out[text] = (tuple(sorted(set(sources) | {source})), kind)

    for program, name in enumerate(PROGRAMS):
        if name is None:
            for text, kind in EFFECTS[program]:
                add(text, program, kind)
            continue
        templates = (
            PERCUSSIVE_TEMPLATES
            if program in PERCUSSIVE
            else {**MELODIC_TEMPLATES, **(CHORD_TEMPLATES if program in POLYPHONIC else {})}
        )
        for template, kind in templates.items():
            add(template.format(a=article(name), name=name, verb=VERBS.get(program, "playing")), program, kind)
    for key, drum in DRUMS.items():
        for template, kind in DRUM_TEMPLATES.items():
            add(template.format(d=drum), 128 + key, kind)
    for text, kind in BEATS.items():
        add(text, 128, kind)
    return out
