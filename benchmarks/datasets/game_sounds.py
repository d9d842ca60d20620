"""Sound effects of four open games, captioned by what they are (tables of their file names):

- 0 A.D. (Debian ``0ad-data`` 0.0.26, 1.4 GB; audio CC-BY-SA-3.0, Wildfire Games): animals,
  footsteps, weather, water, fire, weapons, crafts. Fetched once; only ``audio/`` (less the
  music) is kept in the cache, the rest is deleted.
- Widelands (``widelands-data``; GPL-2+, per-file CC0 / CC-BY-3.0 in ``wl-sound-docu.csv``):
  animals, crafts, taverns.
- OpenTTD's OpenSFX (``openttd-opensfx``; each sound CC-BY-3.0, CC-BY-SA-3.0 or CC0, read
  from the sample catalogue): vehicles, animals, machines, weather.
- Warzone 2100 (``warzone2100-data``; GPL-2+): guns, explosions, engines, screams.

Names that only say what happens in the game (``select``, ``order``, ``click``, ``message``,
``build``, ``expire``, speech) are left out; so are the music and the voices. Clips are
16 kHz mono, at most 10 s; splits by caption; ``licences.json`` records the licences.
"""

from __future__ import annotations

import csv
import glob
import logging
import os
import re
import shutil
import struct
import subprocess
import tempfile
import zipfile
from pathlib import Path

from .common import fetch_deb, run_script
from .sound_common import build_named, cap_per_caption, deb_version, write_licences

log = logging.getLogger(__name__)
CAP = 25  # clips of one caption from one game

# 0 A.D.: (pattern on the path below audio/, caption); first match wins, None drops
ZERO_AD: tuple[tuple[str, str | None], ...] = (
    (r"^(voice|interface|music)/|select|order|trained|expire|generic|ship_move|smove|warship", None),
    (r"animal/camel|movement/camel", "a camel grunting"),
    (r"death_camel", "a camel groaning"),
    (r"cattle", "a cow mooing"),
    (r"chicken", "a chicken clucking"),
    (r"elephant", "an elephant trumpeting"),
    (r"flamingo", "flamingos calling"),
    (r"horse_death|death_horse", "a horse screaming"),
    (r"horse", "a horse neighing"),
    (r"mstep", "horse hooves on the ground"),
    (r"lion", "a lion roaring"),
    (r"peacock", "a peacock calling"),
    (r"pig", "a pig squealing"),
    (r"sheep", "sheep bleating"),
    (r"goat", "a goat bleating"),
    (r"stonegate", "a heavy stone gate grinding"),
    (r"female_death", "a woman crying out in pain"),
    (r"human/death", "a man crying out in pain"),
    (r"sand_running", "footsteps running on sand"),
    (r"sand_walking", "footsteps walking on sand"),
    (r"grass_running", "footsteps running on grass"),
    (r"grass_walking", "footsteps walking on grass"),
    (r"gravel_running", "footsteps running on gravel"),
    (r"gravel_walking", "footsteps walking on gravel"),
    (r"rock_running", "footsteps running on stone"),
    (r"rock_walking", "footsteps walking on stone"),
    (r"wood_running", "footsteps running on wood"),
    (r"wood_walking", "footsteps walking on wood"),
    (r"hstep_run", "footsteps running on dirt"),
    (r"hstep", "footsteps walking on dirt"),
    (r"fs_grass", "a footstep on grass"),
    (r"fs_gravel", "a footstep on gravel"),
    (r"fs_rock", "a footstep on stone"),
    (r"fs_sand", "a footstep on sand"),
    (r"fs_snow", "a footstep in snow"),
    (r"fs_wood", "a footstep on wood"),
    (r"amb_farm", "sounds of a farm"),
    (r"amb_port", "sounds of a harbour"),
    (r"amb_trade", "a busy market"),
    (r"day_tropical", "a tropical forest with birds and insects"),
    (r"day_temperate", "birds singing in a forest"),
    (r"river_raging", "a raging river"),
    (r"river_fast", "a fast flowing river"),
    (r"river_", "a river flowing"),
    (r"waterfall", "a waterfall"),
    (r"wavecrash", "waves crashing"),
    (r"waverocky", "waves on rocks"),
    (r"water/wave", "waves"),
    (r"weather/rain", "rain"),
    (r"snowstorm", "a snowstorm"),
    (r"thunder", "thunder"),
    (r"windleaves", "wind in the leaves"),
    (r"windgust", "a gust of wind"),
    (r"windstorm", "a windstorm"),
    (r"weather/wind", "wind"),
    (r"building_collapse", "a building collapsing"),
    (r"explode_debris", "an explosion with falling debris"),
    (r"fire/c_", "a crackling fire"),
    (r"fire/sp_", "a roaring fire"),
    (r"arrow_dirt", "an arrow hitting the ground"),
    (r"arrow_metal", "an arrow hitting metal"),
    (r"arrow_stone", "an arrow hitting stone"),
    (r"arrow_wood", "an arrow hitting wood"),
    (r"impact/arrow", "an arrow hitting a target"),
    (r"flesh", "a blade stabbing flesh"),
    (r"shield_metal", "a blow on a metal shield"),
    (r"shield_wood", "a blow on a wooden shield"),
    (r"siegeprojectilehit", "a heavy stone smashing into a wall"),
    (r"sling_metal", "a sling stone hitting metal"),
    (r"sling_stone", "a sling stone hitting stone"),
    (r"sling_wood", "a sling stone hitting wood"),
    (r"ballist", "a ballista firing"),
    (r"onager_moving|ram_move", "a heavy wooden cart rolling"),
    (r"onager_shooting", "a catapult firing"),
    (r"ram_attack", "a battering ram hitting a gate"),
    (r"musket", "a musket shot"),
    (r"arrowfly", "an arrow flying past"),
    (r"bow_attack", "a bow shooting an arrow"),
    (r"jav_attack", "a javelin being thrown"),
    (r"pike_attack|spear_attack", "a spear thrust"),
    (r"sling", "a sling being whirled and released"),
    (r"sword_attack", "a sword swing"),
    (r"swordhit", "swords clashing"),
    (r"con_saw", "sawing wood"),
    (r"con_stone", "chiselling stone"),
    (r"con_wood", "hammering wood"),
    (r"hoe", "a hoe digging soil"),
    (r"leaves", "rustling leaves"),
    (r"gather_field", "cutting crops with a sickle"),
    (r"gather_fruit", "picking fruit from a bush"),
    (r"gather_meat", "a knife cutting meat"),
    (r"lumber_tree", "an axe chopping wood"),
    (r"mine_metal", "a pickaxe striking metal ore"),
    (r"mine_stone", "a pickaxe striking stone"),
)

# Widelands: file stem without its _NN -> caption
WIDELANDS = {
    "bird1": "a bird singing",
    "bird2": "a bird singing",
    "bird3": "a bird singing",
    "bird4": "a bird singing",
    "bird5": "a bird singing",
    "bird6": "a bird singing",
    "boar": "a wild boar grunting",
    "coyote": "a coyote howling",
    "crickets1": "crickets chirping",
    "crickets2": "crickets chirping",
    "frog": "a frog croaking",
    "moose": "a moose calling",
    "stag": "a stag bellowing",
    "wolf": "a wolf howling",
    "stonecutter": "a pickaxe striking rock",
    "goldspin": "metal debris falling",
    "benchsaw": "a saw cutting wood",
    "sawing": "sawing wood by hand",
    "blackwood": "a stream flowing",
    "mortar": "stones being gathered",
    "stonegrind": "stone grinding",
    "biginn": "dishes clattering in a kitchen",
    "inn": "dishes clattering in a kitchen",
    "tavern": "dishes clattering in a kitchen",
    "weaver": "an old wooden loom weaving",
    "beerbubble": "liquid bubbling",
    "winebubble": "big bubbles in water",
    "ration": "dishes clattering in a kitchen",
    "donkey": "a donkey braying",
    "horse": "a horse neighing",
    "ox": "an ox mooing",
    "scythe": "a scythe cutting grass",
    "sheep": "sheep bleating",
    "fisher_pull_net": "a net being pulled out of water",
    "fisher_throw_net": "a net being thrown into water",
    "geologist_hammer": "a hammer striking rock",
    "hammering": "hammering",
    "fizzle": "a fire hissing",
    "furnace": "a fire burning",
    "goldping": "a metal ping",
    "ironping": "a metal ping",
    "mill_turning": "a wooden mill turning",
    "weaving": "a loom weaving",
    "falling_tools": "metal tools clattering",
    "sawmill": "a saw cutting wood",
    "sharpening": "a blade being sharpened on a grindstone",
    "smith": "a blacksmith hammering on an anvil",
    "toolsmith": "hammering metal",
    "stonemason": "chiselling stone",
    "fast_woodcutting": "an axe chopping wood",
    "tree_falling": "a tree falling",
    "woodcutting": "an axe chopping wood",
    "duck": "a duck quacking",
}
# exceptions by full stem (tavern sounds differ)
WIDELANDS_STEMS = {
    "inn_01": "food frying in a pan",
    "meal_00": "food frying in a pan",
    "meal_01": "a bottle clinking",
    "biginn_01": "a glass jar being opened",
    "stonecutter": "chiselling stone",
}

# OpenSFX: catalogue index -> caption (the rest are jingles, builds, cartoon mixes, or empty)
OPENTTD = {
    2: "a wet splat",
    3: "a factory whistle blowing",
    4: "a steam train whistle",
    5: "a steam train whistle",
    6: "a ship's horn",
    7: "a ship's horn",
    8: "a propeller plane engine starting",
    9: "a jet plane taking off",
    10: "a train horn",
    11: "machinery rumbling",
    12: "electric sparks crackling",
    13: "a hiss of steam",
    14: "a railway crossing bell",
    15: "a heavy metal clunk",
    16: "metal clanking",
    17: "a crash",
    18: "an explosion",
    19: "a loud crash",
    20: "a cash register",
    21: "a beep",
    22: "morse code beeping",
    23: "tyres screeching",
    24: "a helicopter",
    25: "a truck starting and driving away",
    26: "a truck starting and honking its horn",
    27: "a bus driving away",
    28: "an old engine starting",
    29: "applause",
    30: "a crowd going ooh",
    33: "a jackhammer",
    35: "a car horn",
    36: "sheep bleating",
    37: "a cow mooing",
    38: "a horse neighing",
    39: "hammering on metal",
    40: "a circular saw cutting wood",
    41: "a shaker",
    43: "a slide whistle",
    45: "a shaker",
    46: "bubbles",
    47: "a plop",
    49: "a slurp",
    51: "bubbling water",
    52: "wind blowing",
    54: "a tree falling and crashing",
    55: "a tree being cut down",
    56: "a chainsaw",
    57: "strong wind blowing",
    59: "a loud jet plane",
    61: "jet planes flying past",
    65: "a metro train leaving",
    66: "a tropical bird calling",
    67: "a lion roaring",
    68: "monkeys screaming",
    69: "a propeller plane taking off",
    71: "a train passing by",
    72: "a tropical bird calling",
}

# Warzone 2100: sfx file stem -> caption
WARZONE = {
    "oilpump": "a mechanical pump",
    "freroar": "a roaring fire",
    "powerspk": "electric sparks",
    "steam": "a hiss of steam",
    "powerhum": "an electrical hum",
    "rocket": "a rocket launching",
    "mgbar1": "a machine gun firing",
    "mgbar2": "a machine gun firing",
    "mgbar3": "a machine gun firing",
    "mgheavy": "a heavy machine gun firing",
    "mgtower": "a machine gun firing",
    "asltmg": "a machine gun firing",
    "lrgcan": "a large cannon firing",
    "medcan": "a cannon firing",
    "smlcan": "a cannon firing",
    "rapdcan": "a rapid-fire cannon",
    "hivelcan": "a rapid-fire cannon",
    "bemlsr": "a laser weapon firing",
    "plslsr": "a laser weapon firing",
    "rotlsr": "a laser weapon firing",
    "hevlsr": "a laser weapon firing",
    "weld-1": "welding",
    "weld-2": "welding",
    "flmthrow": "a flamethrower",
    "plasflm": "a flamethrower",
    "splash": "a splash",
    "hwtzflgt": "a shell whistling through the air",
    "mortar": "a mortar firing",
    "hovstart": "a hovercraft",
    "hovmove": "a hovercraft",
    "hovstop": "a hovercraft",
    "vtol-move": "a jet aircraft flying",
    "tread": "tank tracks clanking",
    "scream": "a man screaming",
    "scream2": "a man screaming",
    "scream3": "a man screaming",
    "richet1": "a bullet ricochet",
    "richet2": "a bullet ricochet",
    "richet3": "a bullet ricochet",
    "mpodexpl": "a small explosion",
    "smlexpl": "a small explosion",
    "lrgexpl": "a large explosion",
    "atnkexpl": "an explosion",
    "squish": "a squish",
    "bldfall": "a building collapsing",
}


def zero_ad_caption(rel: str) -> str | None:
    """Caption of 0 A.D.'s ``audio/<rel>`` (None: left out)."""
    low = rel.lower()
    for pattern, caption in ZERO_AD:
        if re.search(pattern, low):
            return caption
    return None


def widelands_caption(stem: str) -> str | None:
    """Caption of a Widelands sound named ``stem`` ("bird2_03" -> "a bird singing")."""
    return WIDELANDS_STEMS.get(stem) or WIDELANDS.get(re.sub(r"_\d+$", "", stem))


def fetch_0ad_audio(cache: Path) -> Path:
    """``0ad-data``'s sounds: download the package once, keep ``audio/`` (less the music) and
    the copyright file, delete the rest; returns the kept root."""
    root = cache / "debs" / "0ad-data-audio"
    if (root / ".done").exists():
        return root
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        os.chmod(tmp, 0o777)
        subprocess.run(["apt-get", "download", "0ad-data"], cwd=tmp, check=True, capture_output=True)
        (deb,) = glob.glob(os.path.join(tmp, "*.deb"))
        subprocess.run(
            f"dpkg-deb --fsys-tarfile '{deb}' | tar -x -C '{tmp}' ./usr/share/doc/0ad-data "
            "./usr/share/games/0ad/mods/public/public.zip",
            shell=True,
            check=True,
        )
        os.unlink(deb)
        with zipfile.ZipFile(Path(tmp) / "usr/share/games/0ad/mods/public/public.zip") as z:
            for name in z.namelist():
                if name.startswith("audio/") and not name.startswith("audio/music/") and not name.endswith("/"):
                    z.extract(name, root)
        (root / "usr/share/doc").mkdir(parents=True, exist_ok=True)
        shutil.copytree(Path(tmp) / "usr/share/doc/0ad-data", root / "usr/share/doc/0ad-data", dirs_exist_ok=True)
    (root / ".done").touch()
    return root


def opensfx_sounds(cat: Path) -> dict[int, tuple[str, bytes]]:
    """The sounds of an OpenTTD sample catalogue: index -> (its description, WAV bytes)."""
    b = cat.read_bytes()
    count = (struct.unpack("<I", b[:4])[0] & 0x7FFFFFFF) // 8
    out = {}
    for i in range(count):
        offset, size = struct.unpack("<II", b[i * 8 : i * 8 + 8])
        offset &= 0x7FFFFFFF
        length = b[offset]
        name = b[offset + 1 : offset + 1 + length].rstrip(b"\0").decode("utf-8", "replace")
        data = b[offset + 1 + length : offset + size]
        if data[:4] == b"RIFF":
            out[i] = (name, data)
    return out


def _licence_in(description: str) -> str:
    found = re.search(r"License: (.+?)\.?$", description)
    return found.group(1) if found else "?"


def build(out: Path, cache: Path) -> dict[str, int]:
    """Fetch the four games' data, caption, convert and split; returns the counts per split."""
    items, licences = [], []
    zad = fetch_0ad_audio(cache)
    found = []
    for f in sorted((zad / "audio").rglob("*.ogg")):
        rel = str(f.relative_to(zad / "audio"))
        text = zero_ad_caption(rel)
        if text:
            found.append({"read": f, "text": text, "source": "0ad", "licence": "CC-BY-SA-3.0", "origin": rel})
    items += cap_per_caption(found, CAP)
    licences.append(
        {
            "package": "0ad-data",
            "version": deb_version(zad, "0ad-data"),
            "licence": "CC-BY-SA-3.0 (audio/LICENSE.txt)",
            "source": "0ad",
        }
    )

    wl = fetch_deb("widelands-data", cache)
    data = wl / "usr/share/games/widelands/data"
    with open(data / "sound/wl-sound-docu.csv", encoding="utf-8", errors="replace") as f:
        per_file = {r[0]: r[5] for r in csv.reader(f) if len(r) > 5 and r[0].endswith(".ogg") and r[5]}
    found = []
    for f in sorted(list((data / "sound").rglob("*.ogg")) + list((data / "world/critters").rglob("*.ogg"))):
        text = widelands_caption(f.stem)
        if text and f.stat().st_size > 4000:  # ~3.6 kB files are silent placeholders
            found.append(
                {
                    "read": f,
                    "text": text,
                    "source": "widelands",
                    "licence": per_file.get(f.name, "GPL-2+"),
                    "origin": str(f.relative_to(data)),
                }
            )
    items += cap_per_caption(found, CAP)
    licences.append(
        {
            "package": "widelands-data",
            "version": deb_version(wl, "widelands-data"),
            "licence": "GPL-2+ (package); per-file CC-0 / CC-3 in wl-sound-docu.csv",
            "source": "widelands",
        }
    )

    ot = fetch_deb("openttd-opensfx", cache)
    sounds = opensfx_sounds(ot / "usr/share/games/openttd/baseset/opensfx/opensfx.cat")
    items += [
        {
            "read": (lambda d=data_: d),
            "text": OPENTTD[i],
            "source": "openttd",
            "licence": _licence_in(desc),
            "origin": f"opensfx_{i:02d}.wav",
            "description": desc.split(".")[0].strip('"'),
        }
        for i, (desc, data_) in sorted(sounds.items())
        if i in OPENTTD
    ]
    licences.append(
        {
            "package": "openttd-opensfx",
            "version": deb_version(ot, "openttd-opensfx"),
            "licence": "per sound: CC-BY-3.0, CC-BY-SA-3.0 or CC0-1.0",
            "source": "openttd",
        }
    )

    wz = fetch_deb("warzone2100-data", cache)
    base = zipfile.ZipFile(wz / "usr/share/games/warzone2100/base.wz")
    found = []
    for name in sorted(base.namelist()):
        stem = Path(name).stem
        if name.startswith(("audio/sfx/", "audio/multi/")) and stem in WARZONE:
            found.append(
                {
                    "read": (lambda n=name: base.read(n)),
                    "text": WARZONE[stem],
                    "source": "warzone2100",
                    "licence": "GPL-2+",
                    "origin": name.removeprefix("audio/"),
                }
            )
    items += cap_per_caption(found, CAP)
    licences.append(
        {
            "package": "warzone2100-data",
            "version": deb_version(wz, "warzone2100-data"),
            "licence": "GPL-2+",
            "source": "warzone2100",
        }
    )
    log.info("%d sounds, %d captions", len(items), len({i["text"] for i in items}))
    counts = build_named(out, items, workers=1)  # one zip file handle is shared
    write_licences(out, licences)
    return counts


def main() -> None:
    run_script(__doc__, build)


if __name__ == "__main__":
    main()
