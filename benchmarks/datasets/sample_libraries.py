"""Named samples of three music programs, captioned by what they sound like:

- Sonic Pi's samples (Debian ``sonic-pi-samples``; CC0, a few MIT): drums, bass, electronic
  blips, guitar, tabla, vinyl, ambient textures; captioned from a table of their names.
- Hydrogen's drum kits (``hydrogen-drumkits``; GPL-2/2+, CC-BY-3.0, CC-BY-SA-3.0, CC0 per
  kit): every layer of every instrument of 14 kits, captioned from the instrument's name in
  ``drumkit.xml`` ("Snare Rimshot (Pearl ...)" -> "a snare drum rimshot").
- LMMS's samples (``lmms-common``; GPL-2+): drums, basses, beats, effects, instruments, pads.

Single-cycle waveforms, unnamed or mechanic-only names are left out. Clips are 16 kHz mono,
at most 10 s; splits by caption; ``licences.json`` lists every package and licence.
"""

from __future__ import annotations

import logging
import re
import xml.etree.ElementTree as ET
from pathlib import Path

from .common import fetch_deb, run_script
from .sound_common import build_named, cap_per_caption, deb_version, dep5_licences, licence_of, write_licences

log = logging.getLogger(__name__)
CAP = 30  # clips of one caption from one library

# Sonic Pi: name (digits stripped) -> caption; None drops it
SONIC_PI = {
    "ambi_choir": "a choir singing",
    "ambi_dark_woosh": "a dark whoosh",
    "ambi_drone": "a low drone",
    "ambi_glass_hum": "a humming wine glass",
    "ambi_glass_rub": "a finger rubbing the rim of a glass",
    "ambi_haunted_hum": "an eerie hum",
    "ambi_lunar_land": "an eerie ambient synth",
    "ambi_piano": "a piano with reverb",
    "ambi_soft_buzz": "a soft buzzing",
    "ambi_swoosh": "a swoosh",
    "bass_dnb_f": "a deep synth bass note",
    "bass_drop_c": "a falling synth bass",
    "bass_hard_c": "a hard synth bass note",
    "bass_hit_c": "a synth bass hit",
    "bass_thick_c": "a thick synth bass note",
    "bass_trance_c": "a trance synth bass note",
    "bass_voxy_c": "a vocal synth bass",
    "bass_voxy_hit_c": "a vocal synth bass hit",
    "bass_woodsy_c": "a woody bass note",
    "bd_808": "an 808 kick drum",
    "bd_boom": "a booming kick drum",
    "bd_fat": "a fat kick drum",
    "drum_bass_hard": "a bass drum",
    "drum_bass_soft": "a soft bass drum",
    "drum_cowbell": "a cowbell",
    "drum_cymbal_closed": "a closed hi-hat",
    "drum_cymbal_open": "an open hi-hat",
    "drum_cymbal_pedal": "a pedal hi-hat",
    "drum_cymbal_hard": "a crash cymbal",
    "drum_cymbal_soft": "a soft cymbal",
    "drum_heavy_kick": "a heavy kick drum",
    "drum_roll": "a drum roll",
    "drum_snare_hard": "a snare drum",
    "drum_snare_soft": "a soft snare drum",
    "drum_splash_hard": "a splash cymbal",
    "drum_splash_soft": "a splash cymbal",
    "drum_tom_hi_hard": "a high tom",
    "drum_tom_hi_soft": "a high tom",
    "drum_tom_lo_hard": "a low tom",
    "drum_tom_lo_soft": "a low tom",
    "drum_tom_mid_hard": "a mid tom",
    "drum_tom_mid_soft": "a mid tom",
    "elec_beep": "an electronic beep",
    "elec_bell": "an electronic bell",
    "elec_blip": "an electronic blip",
    "elec_blup": "an electronic bloop",
    "elec_bong": "an electronic bong",
    "elec_chime": "an electronic chime",
    "elec_cymbal": "an electronic cymbal",
    "elec_filt_snare": "a filtered electronic snare drum",
    "elec_fuzz_tom": "a fuzzy electronic tom",
    "elec_hi_snare": "a high electronic snare drum",
    "elec_hollow_kick": "a hollow electronic kick drum",
    "elec_lo_snare": "a low electronic snare drum",
    "elec_mid_snare": "an electronic snare drum",
    "elec_ping": "an electronic ping",
    "elec_plip": "a short electronic blip",
    "elec_pop": "an electronic pop",
    "elec_snare": "an electronic snare drum",
    "elec_soft_kick": "a soft electronic kick drum",
    "elec_tick": "an electronic tick",
    "elec_triangle": "an electronic triangle",
    "elec_twang": "an electronic twang",
    "elec_twip": "an electronic chirp",
    "elec_wood": "an electronic wood block",
    "glitch_bass_g": "a glitchy synth bass",
    "glitch_perc": "glitchy electronic percussion",
    "glitch_robot": "a glitchy robot voice",
    "guit_e_fifths": "an electric guitar playing fifths",
    "guit_e_slide": "a slide on an electric guitar",
    "guit_em9": "a chord on an electric guitar",
    "guit_harmonics": "guitar harmonics",
    "loop_amen": "a breakbeat drum loop",
    "loop_amen_full": "a breakbeat drum loop",
    "loop_breakbeat": "a breakbeat drum loop",
    "loop_compus": "an electronic drum loop",
    "loop_garzul": "an electronic drum loop",
    "loop_industrial": "an industrial drum loop",
    "loop_mika": "a drum loop",
    "loop_safari": "a percussion loop",
    "loop_tabla": "a tabla loop",
    "loop_3d_printer": "a 3d printer whirring",
    "loop_drone_g_": "a synth drone",
    "loop_perc": "a percussion loop",
    "misc_burp": "a burp",
    "misc_cineboom": "a deep cinematic boom",
    "misc_crow": "a crow cawing",
    "perc_bell": "a bell ringing",
    "perc_impact": "a heavy impact",
    "perc_snap": "a finger snap",
    "perc_swash": "a swish",
    "perc_swoosh": "a swoosh",
    "perc_till": "a cash register",
    "vinyl_backspin": "a vinyl record spun backwards",
    "vinyl_hiss": "the hiss and crackle of a vinyl record",
    "vinyl_rewind": "a vinyl record rewinding",
    "vinyl_scratch": "a vinyl scratch",
}


def sonic_pi_caption(stem: str) -> str | None:
    """Caption of a Sonic Pi sample named ``stem`` (None: left out)."""
    if stem.startswith("tabla_"):
        return "a tabla"
    if stem.startswith("sn_"):
        return "a snare drum"
    if stem.startswith("bd_") and stem not in SONIC_PI:
        return "an electronic kick drum"
    return SONIC_PI.get(stem, SONIC_PI.get(re.sub(r"\d+$", "", stem)))


# Hydrogen instrument names: (pattern, caption), first match wins; None drops the instrument
DRUM_RULES: tuple[tuple[str, str | None], ...] = (
    (r"^sample:|^\d+$|^$|\bfx\b|free|swish|choke|flink|^drum \d|redo", None),
    (r"rimshot", "a snare drum rimshot"),
    (r"snare.*roll|roll", "a snare drum roll"),
    (r"snare", "a snare drum"),
    (r"side stick|stick|rim", "a rim click"),
    (r"kick|bass ?drum", "a kick drum"),
    (r"clap", "a hand clap"),
    (r"(hat|hh).*(pedal|pd)|pedal (hh|hat)", "a pedal hi-hat"),
    (r"(hat|hh).*semi", "a half-open hi-hat"),
    (r"(hat|hh).*\b(open|opened|op)\b|open (hh|hat)", "an open hi-hat"),
    (r"hat|hh", "a closed hi-hat"),
    (r"tom.*\b(floor|low|lo)\b|\b(floor|low)\b.*tom", "a low tom"),
    (r"tom.*mid|mid.*tom|tom 2", "a mid tom"),
    (r"tom", "a high tom"),
    (r"ride.*(bell|cup)|^paiste bell$", "a ride cymbal bell"),
    (r"ride", "a ride cymbal"),
    (r"splash", "a splash cymbal"),
    (r"china", "a china cymbal"),
    (r"crash", "a crash cymbal"),
    (r"cymbal", "a cymbal"),
    (r"cowbell", "a cowbell"),
    (r"tambourine", "a tambourine"),
    (r"agogo low", "a low agogo bell"),
    (r"agogo", "a high agogo bell"),
    (r"cajon", "a cajon"),
    (r"maraca", "maracas"),
    (r"snap", "finger snaps"),
    (r"bongo hi", "a high bongo"),
    (r"bongo", "a low bongo"),
    (r"clave", "claves"),
    (r"woodblock hi", "a high wood block"),
    (r"woodblock", "a low wood block"),
    (r"waterglass", "a glass being tapped"),
    (r"djembe.*slap", "a djembe slap"),
    (r"djembe.*bass", "a deep djembe stroke"),
    (r"djembe", "a djembe"),
    (r"bell", "a bell on a dunun drum"),
    (r"sangban|dununba|kenkeni", "a dunun drum"),
    (r"conga", "a conga"),
    (r"whistle", "a whistle"),
    (r"zap", "an electronic zap"),
    (r"click", "an electronic click"),
)
ELECTRONIC_KITS = {"ElectricEmpireKit", "HardElectro1", "VariBreaks"}


def drum_caption(instrument: str, electronic: bool = False) -> str | None:
    """Caption of a Hydrogen instrument name ("Hi-Hat Open (Paiste ...)" -> "an open hi-hat")."""
    name = re.sub(r"\(.*?\)", "", instrument).lower().replace("-", " ")
    name = re.sub(r"^[a-g]#?\d - ", "", name).strip()  # rumpf kit: "c3 - bass drum 1"
    for pattern, caption in DRUM_RULES:
        if re.search(pattern, name):
            if (
                caption
                and electronic
                and caption.startswith(
                    (
                        "a kick",
                        "a snare",
                        "a closed",
                        "an open",
                        "a pedal",
                        "a low tom",
                        "a mid tom",
                        "a high tom",
                        "a hand clap",
                    )
                )
            ):
                caption = "an electronic " + caption.split(" ", 1)[1]
            return caption
    return None


# LMMS: (folder, name pattern, caption); first match wins; unmatched names are left out
LMMS_RULES: tuple[tuple[str, str, str], ...] = (
    ("drums", r"kick_distorted", "a distorted kick drum"),
    ("drums", r"bassdrum|kick", "a kick drum"),
    ("drums", r"snare_electro", "an electronic snare drum"),
    ("drums", r"nasty_snare", "a distorted snare drum"),
    ("drums", r"snare_rim|^rim|nasty_rim|sidestick", "a rim click"),
    ("drums", r"snare", "a snare drum"),
    ("drums", r"clap", "a hand clap"),
    ("drums", r"crash", "a crash cymbal"),
    ("drums", r"ride", "a ride cymbal"),
    ("drums", r"hihat_closed", "a closed hi-hat"),
    ("drums", r"hihat_opened", "an open hi-hat"),
    ("drums", r"hihat_foot", "a pedal hi-hat"),
    ("drums", r"tom_hi", "a high tom"),
    ("drums", r"tom_low", "a low tom"),
    ("drums", r"tom_mid", "a mid tom"),
    ("drums", r"tom", "a tom drum"),
    ("drums", r"shaker", "a shaker"),
    ("drums", r"clav", "claves"),
    ("drums", r"wood", "a wood block"),
    ("drums", r"zap", "an electronic zap"),
    ("basses", r"acid", "an acid synth bass"),
    ("basses", r"rave_bass", "a rave synth bass"),
    ("basses", r"bass_hard", "a hard synth bass"),
    ("basses", r"horror", "a dark synth bass"),
    ("basses", r"pluck", "a plucked synth bass"),
    ("basses", r"techno_synth", "a techno synth"),
    ("basses", r"punch", "a punchy synth bass"),
    ("basses", r"^bass\d", "a synth bass note"),
    ("bassloops", r"tb303", "an acid bass line"),
    ("bassloops", r"techno_synth", "a techno synth loop"),
    ("bassloops", r"briff", "a bass riff"),
    ("bassloops", r"bass", "a synth bass line"),
    ("beats", r"electro_beat", "an electro drum beat"),
    ("beats", r"909", "a drum machine beat"),
    ("beats", r"house", "a house drum loop"),
    ("beats", r"break", "a breakbeat drum loop"),
    ("beats", r"jungle", "a jungle drum loop"),
    ("beats", r"rave_kick", "an electronic kick drum"),
    ("beats", r"rave_snare", "an electronic snare drum"),
    ("beats", r"rave_hihat", "an electronic hi-hat"),
    ("effects", r"scratch", "a vinyl scratch"),
    ("effects", r"explode", "an explosion"),
    ("effects", r"wind_chimes", "wind chimes"),
    ("effects", r"filter_sweep", "a synth filter sweep"),
    ("instruments", r"church_organ", "a church organ"),
    ("instruments", r"cello", "a cello"),
    ("instruments", r"bassslap", "a slap bass"),
    ("instruments", r"distorted", "a distorted electric guitar"),
    ("instruments", r"steel_guitar", "a steel string guitar"),
    ("instruments", r"trumpet", "a trumpet"),
    ("instruments", r"flute", "a flute"),
    ("instruments", r"violin_double", "a violin double stop"),
    ("instruments", r"violin_pizz", "a violin played pizzicato"),
    ("instruments", r"violin", "a violin"),
    ("instruments", r"e_piano", "a chord on an electric piano"),
    ("instruments", r"piano", "a piano"),
    ("instruments", r"e_organ", "an electric organ"),
    ("instruments", r"harpsichord", "a harpsichord"),
    ("latin", r"guitar", "a spanish guitar"),
    ("latin", r"brass", "a brass section"),
    ("misc", r"applause", "applause"),
    ("misc", r"breath", "a breath"),
    ("misc", r"metalish", "a metallic bong"),
    ("misc", r"dong", "a deep bell"),
    ("misc", r"electric_ping", "an electronic ping"),
    ("misc", r"raving_crowd", "a cheering crowd"),
    ("misc", r"metronome", "a metronome"),
    ("misc", r"buzz", "a buzz"),
    ("stringsnpads", r"^strings", "a string section"),
    ("stringsnpads", r"juno_pad", "a synth pad"),
    ("stringsnpads", r"nord_ambient", "an ambient synth pad"),
    ("stringsnpads", r"bell_choir", "bells"),
    ("stringsnpads", r"rave_choir|chorus", "a synth choir"),
    ("stringsnpads", r"strings|string", "synth strings"),
    ("stringsnpads", r"drone", "a synth drone"),
)


def lmms_caption(folder: str, stem: str) -> str | None:
    """Caption of LMMS's ``samples/<folder>/<stem>.*`` (None: left out)."""
    for rule_folder, pattern, caption in LMMS_RULES:
        if folder == rule_folder and re.search(pattern, stem):
            return caption
    return None


def hydrogen_items(root: Path) -> list[dict]:
    """Every layer of every captioned instrument of the Hydrogen kits."""
    kits = root / "usr/share/hydrogen/data/drumkits"
    stanzas = dep5_licences(root / "usr/share/doc/hydrogen-drumkits/copyright")
    items = []
    for xml in sorted(kits.glob("*/drumkit.xml")):
        kit = xml.parent.name
        licence = licence_of(f"drumkits/{kit}.h2drumkit", stanzas)
        if licence == "?":
            licence = licence_of(f"drumkits/{re.sub(r' v?[0-9.]+$', '', kit)}.h2drumkit", stanzas)
        for inst in ET.parse(xml).getroot().iter():
            if not inst.tag.endswith("}instrument") and inst.tag != "instrument":
                continue
            name = next((c.text or "" for c in inst if c.tag.split("}")[-1] == "name"), "")
            text = drum_caption(name, kit in ELECTRONIC_KITS)
            files = [e.text for e in inst.iter() if e.tag.split("}")[-1] == "filename" and e.text]
            for f in files if text else []:
                if (xml.parent / f).is_file():
                    items.append(
                        {
                            "read": xml.parent / f,
                            "text": text,
                            "source": "hydrogen",
                            "licence": licence,
                            "origin": f"{kit}/{f}",
                            "instrument": name,
                        }
                    )
    return items


def build(out: Path, cache: Path) -> dict[str, int]:
    """Fetch the three packages, caption, convert and split; returns the counts per split."""
    items, licences = [], []
    sp = fetch_deb("sonic-pi-samples", cache)
    stanzas = dep5_licences(sp / "usr/share/doc/sonic-pi-samples/copyright")
    found = []
    for f in sorted((sp / "usr/share/sonic-pi/samples").glob("*.flac")):
        text = sonic_pi_caption(f.stem)
        if text:
            found.append(
                {
                    "read": f,
                    "text": text,
                    "source": "sonic-pi",
                    "licence": licence_of(f"etc/samples/{f.name}", stanzas),
                    "origin": f.name,
                }
            )
    items += cap_per_caption(found, CAP)
    licences.append(
        {
            "package": "sonic-pi-samples",
            "version": deb_version(sp, "sonic-pi-samples"),
            "licence": "CC0 (a few MIT)",
            "source": "sonic-pi",
        }
    )
    hy = fetch_deb("hydrogen-drumkits", cache)
    items += cap_per_caption(hydrogen_items(hy), CAP)
    licences.append(
        {
            "package": "hydrogen-drumkits",
            "version": deb_version(hy, "hydrogen-drumkits"),
            "licence": "per kit: GPL-2, GPL-2+, CC-BY-3.0, CC-BY-SA-3.0, CC0",
            "source": "hydrogen",
        }
    )
    lm = fetch_deb("lmms-common", cache)
    found = []
    for f in sorted((lm / "usr/share/lmms/samples").glob("*/*")):
        text = lmms_caption(f.parent.name, f.stem)
        if text and f.suffix in (".ogg", ".wav", ".flac"):
            found.append(
                {"read": f, "text": text, "source": "lmms", "licence": "GPL-2+", "origin": f"{f.parent.name}/{f.name}"}
            )
    items += cap_per_caption(found, CAP)
    licences.append(
        {"package": "lmms-common", "version": deb_version(lm, "lmms-common"), "licence": "GPL-2+", "source": "lmms"}
    )
    log.info("%d sounds, %d captions", len(items), len({i["text"] for i in items}))
    counts = build_named(out, items)
    write_licences(out, licences)
    return counts


def main() -> None:
    run_script(__doc__, build)


if __name__ == "__main__":
    main()
