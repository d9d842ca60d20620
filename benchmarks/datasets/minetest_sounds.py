"""Everyday sounds of Minetest, its mods packaged by Debian, and the freedesktop.org sound
theme, captioned by what they are (a table of their file names). A test set only: none of
these packages feeds a training set, so the audio tower has never heard these recordings.

- Minetest Game (``minetest-data``; per file CC-BY-SA-3.0, CC-BY-3.0, CC0-1.0 or MIT):
  footsteps on ten surfaces, digging, doors, fire, lava, running water, an explosion.
- Minetest mods (``minetest-mod-homedecor``, ``-xdecor``, ``-unified-inventory``,
  ``-mesecons``, ``-nether``, ``-lucky-block``, ``-mobs-redo``, ``-throwing-arrows``): a
  shower, a toilet, a tap, a doorbell, a toaster, birds, an owl, drums.
- ``sound-theme-freedesktop``: an alarm clock, a camera shutter, telephone tones.

Names that only say what happens in the game (``place_node``, ``teleport``, ``portal``,
``enchanting``, clicks) are left out, and so are the pitched note blocks (their instrument is
unnamed). A file whose bytes repeat another's (a mod's copy of a Minetest sound) is kept
once. Each clip's licence is read from its package's DEP-5 copyright file; ``licences.json``
records the packages. Writes ``test.jsonl`` only.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from pathlib import Path

import soundfile as sf

from .common import fetch_deb, run_script
from .sound_common import cap_per_caption, convert, deb_version, dep5_licences, licence_of, write_licences

log = logging.getLogger(__name__)
CAP = 10  # clips of one caption from one package

# (package, folder of its sounds in the package, that folder's path in the copyright file)
SOURCES: tuple[tuple[str, str, str], ...] = (
    ("minetest-data", "usr/share/games/minetest/games/minetest_game", "mtg/"),
    ("minetest-mod-homedecor", "usr/share/games/minetest/mods/homedecor", ""),
    ("minetest-mod-xdecor", "usr/share/games/minetest/mods/xdecor", ""),
    ("minetest-mod-unified-inventory", "usr/share/games/minetest/mods/unified_inventory", ""),
    ("minetest-mod-mesecons", "usr/share/games/minetest/mods/mesecons", ""),
    ("minetest-mod-nether", "usr/share/games/minetest/mods/nether", ""),
    ("minetest-mod-lucky-block", "usr/share/games/minetest/mods/lucky-block", ""),
    ("minetest-mod-mobs-redo", "usr/share/games/minetest/mods/mobs_redo", ""),
    ("minetest-mod-throwing-arrows", "usr/share/games/minetest/mods/throwing_arrows", ""),
    ("sound-theme-freedesktop", "usr/share/sounds/freedesktop", ""),
)

# file stem without its .N variant -> caption (stems not listed are left out)
SOUNDS = {
    # Minetest Game
    "carts_cart_moving": "a cart rolling on rails",
    "default_break_glass": "glass breaking",
    "default_chest_open": "a wooden chest opening",
    "default_chest_close": "a wooden chest closing",
    "default_cool_lava": "a hiss of steam",
    "default_dig_choppy": "an axe chopping wood",
    "default_dig_cracky": "a pickaxe striking stone",
    "default_dig_crumbly": "a shovel digging dirt",
    "default_gravel_dig": "a shovel digging gravel",
    "default_gravel_dug": "a shovel digging gravel",
    "default_dig_metal": "a metal clank",
    "default_dug_metal": "a metal clank",
    "default_place_node_metal": "a metal clank",
    "default_ice_dig": "ice cracking",
    "default_ice_dug": "ice shattering",
    "default_furnace_active": "a fire crackling in a furnace",
    "default_dirt_footstep": "footsteps on dirt",
    "default_glass_footstep": "a footstep on glass",
    "default_grass_footstep": "footsteps on grass",
    "default_gravel_footstep": "footsteps on gravel",
    "default_hard_footstep": "footsteps on a stone floor",
    "default_ice_footstep": "footsteps on ice",
    "default_metal_footstep": "footsteps on metal",
    "default_sand_footstep": "footsteps on sand",
    "default_snow_footstep": "footsteps in snow",
    "default_wood_footstep": "footsteps on wood",
    "default_water_footstep": "wading through water",
    "player_damage": "a man grunting in pain",
    "doors_door_open": "a wooden door opening",
    "doors_door_close": "a wooden door closing",
    "doors_fencegate_open": "a wooden gate opening",
    "doors_fencegate_close": "a wooden gate closing",
    "doors_glass_door_open": "a glass door opening",
    "doors_glass_door_close": "a glass door closing",
    "doors_steel_door_open": "a heavy metal door opening",
    "doors_steel_door_close": "a heavy metal door closing",
    "xpanes_steel_bar_door_open": "an iron gate opening",
    "xpanes_steel_bar_door_close": "an iron gate closing",
    "env_sounds_lava": "lava bubbling",
    "env_sounds_water": "water flowing in a stream",
    "fire_extinguish_flame": "a flame being put out",
    "fire_fire": "a crackling fire",
    "fire_large": "a large fire roaring",
    "fire_small": "a small fire crackling",
    "fire_flint_and_steel": "striking a flint and steel",
    "tnt_explode": "an explosion",
    "tnt_gunpowder_burning": "gunpowder fizzing",
    "tnt_ignite": "a burning fuse sparkling",
    # the mods
    "fire_extinguish": "a flame being put out",
    "homedecor_shower": "a shower running",
    "homedecor_toilet_flush": "a toilet flushing",
    "homedecor_faucet": "a tap running",
    "homedecor_book_close": "a book closing",
    "homedecor_door_open": "a wooden door opening",
    "homedecor_door_close": "a wooden door closing",
    "homedecor_gate_open_close": "a gate opening and closing",
    "homedecor_doorbell": "a doorbell ringing",
    "insert_coin": "coins dropping into a machine",
    "toaster": "a toaster popping up",
    "homedecor_trash_all": "rubbish being thrown in a bin",
    "xdecor_boiling_water": "water boiling",
    "birds": "birds singing",
    "owl": "an owl hooting",
    "paperflip": "pages being turned",
    "electricity": "electricity crackling",
    "mesecons_switch": "a switch being flipped",
    "mesecons_lever": "a switch being flipped",
    "mesecons_noteblock_hihat": "a hi-hat",
    "mesecons_noteblock_kick": "a kick drum",
    "mesecons_noteblock_snare": "a snare drum",
    "mesecons_noteblock_crash": "a crash cymbal",
    "mesecons_noteblock_litecrash": "a crash cymbal",
    "nether_lava_bubble": "lava bubbling",
    "nether_book_open": "a book opening",
    "nether_rack_destroy": "rock crumbling",
    "fart1": "a fart",
    "lightning": "a thunderclap",
    "default_punch": "a punch",
    "mobs_swing": "a whoosh",
    "throwing_sound": "a bow being shot",
    "throwing_arrow": "an arrow hitting a target",
    # freedesktop.org's sound theme
    "alarm-clock-elapsed": "an alarm clock ringing",
    "camera-shutter": "a camera shutter clicking",
    "phone-incoming-call": "a telephone ringing",
    "phone-outgoing-busy": "a telephone busy signal",
    "phone-outgoing-calling": "a telephone ringing tone",
}


def caption(stem: str) -> str | None:
    """Caption of a sound file named ``stem`` ("default_snow_footstep.3" -> "footsteps in snow")."""
    return SOUNDS.get(re.sub(r"\.\d+$", "", stem))


def build(out: Path, cache: Path) -> dict[str, int | float]:
    """Fetch the packages, caption and convert their sounds; returns the counts of ``test.jsonl``."""
    items, licences, seen = [], [], set()
    for package, folder, dep5_prefix in SOURCES:
        root = fetch_deb(package, cache)
        stanzas = dep5_licences(root / "usr/share/doc" / package / "copyright")
        found = []
        for f in sorted((root / folder).rglob("*")):
            text = caption(f.stem) if f.suffix in (".ogg", ".oga", ".wav") else None
            digest = hashlib.sha1(f.read_bytes()).hexdigest() if text else None
            if not text or digest in seen:
                continue
            seen.add(digest)
            rel = str(f.relative_to(root / folder))
            licence = licence_of(dep5_prefix + rel, stanzas)
            found.append({"read": f, "text": text, "source": package, "licence": licence, "origin": rel})
        items += cap_per_caption(found, CAP)
        licences.append(
            {
                "package": package,
                "version": deb_version(root, package),
                "licence": ", ".join(sorted({i["licence"] for i in found})),
                "source": package,
            }
        )

    out.mkdir(parents=True, exist_ok=True)
    rows, failures, seconds = [], [], 0.0
    for item in items:
        rel = Path("clips") / item["source"] / (Path(item["origin"]).stem + ".wav")
        reason = convert(item.pop("read"), out / rel)
        if reason:
            failures.append((item["origin"], reason))
            continue
        seconds += sf.info(out / rel).duration
        rows.append({"audio": str(rel), **item})
    if failures:
        log.warning("%s: %d of %d sounds skipped: %s", out.name, len(failures), len(items), failures)
    (out / "test.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    write_licences(out, licences)
    return {"test": len(rows), "captions": len({r["text"] for r in rows}), "seconds": round(seconds, 1)}


def main() -> None:
    run_script(__doc__, build)


if __name__ == "__main__":
    main()
