"""GCompris (Debian ``gcompris-qt-data`` 3.1-2): real photographs and named sounds, for evaluation.

GCompris keeps its media in Qt resource bundles (``/usr/share/gcompris-qt/rcc/*.rcc``). Read
here without Qt: a header (``qres``, version, tree / data / names offsets), a tree of 14- or
22-byte nodes, UTF-16 names, and data entries (zlib-compressed when flagged). Captions are the
file names, cleaned ("eiffelTower" -> "eiffel tower", "scissors2" -> "scissors").

Writes ``gcompris-photos/test.jsonl`` (photographs of objects, animals and monuments) and
``gcompris-sounds/test.jsonl`` (instruments and farm animals). Licence: GPL-3+ for the
package's files unless its copyright file says otherwise (some assets CC-BY-SA-4.0).
Evaluation only: never trained on.
"""

from __future__ import annotations

import io
import json
import logging
import re
import struct
import zlib
from pathlib import Path

from PIL import Image

from .common import fetch_deb, letterbox, run_script

log = logging.getLogger(__name__)
PACKAGE = "gcompris-qt-data"
PHOTO_BUNDLES = ("categorization", "explore_monuments", "explore_world_animals", "explore_farm_animals")
SOUND_BUNDLES = ("instruments", "explore_farm_animals")


def read_rcc(path: Path) -> dict[str, bytes]:
    """Every file of a Qt resource bundle: ``{path inside the bundle: bytes}``."""
    b = path.read_bytes()
    if b[:4] != b"qres":
        raise ValueError(f"{path}: not a Qt resource bundle")
    version, tree, data, names = struct.unpack(">iiii", b[4:20])
    node = 14 if version == 1 else 22
    out: dict[str, bytes] = {}

    def name(offset: int) -> str:
        (length,) = struct.unpack(">H", b[names + offset : names + offset + 2])
        return b[names + offset + 6 : names + offset + 6 + 2 * length].decode("utf-16-be")

    stack = [(0, "")]
    while stack:
        index, prefix = stack.pop()
        base = tree + index * node
        name_offset, flags = struct.unpack(">iH", b[base : base + 6])
        here = prefix + (name(name_offset) if index else "")
        if flags & 2:  # a directory
            count, first = struct.unpack(">ii", b[base + 6 : base + 14])
            stack.extend((child, here + "/") for child in range(first, first + count))
            continue
        (offset,) = struct.unpack(">i", b[base + 10 : base + 14])
        (size,) = struct.unpack(">I", b[data + offset : data + offset + 4])
        blob = b[data + offset + 4 : data + offset + 4 + size]
        if flags & 1:  # qCompress: a 4-byte length, then zlib
            blob = zlib.decompress(blob[4:])
        elif flags & 4:
            log.warning("skipping zstd-compressed entry %s", here)
            continue
        out[here] = blob
    return out


# Words glued in the file names' camelCase ("statueofLiberty", "pontduGard")
GLUED = {
    "statueof": "statue of",
    "wallof": "wall of",
    "pontdu": "pont du",
    "chateaude": "chateau de",
    "blackslate": "black slate",
    "citede": "cite de",
    "palaisdes": "palais des",
    "gatewayof": "gateway of",
    "canyonde": "canyon de",
    "castillode": "castillo de",
}


def caption(file_name: str) -> str:
    stem = Path(file_name).stem
    stem = re.sub(r"[_\-]+", " ", stem)
    stem = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", stem)  # camelCase
    stem = re.sub(r"\d+$", "", stem).strip().lower()
    return " ".join(GLUED.get(word, word) for word in stem.split())


def build(out: Path, cache: Path) -> dict[str, int]:
    rcc = fetch_deb(PACKAGE, cache) / "usr/share/gcompris-qt/rcc"
    photos, sounds = [], []
    photo_dir, sound_dir = out / "gcompris-photos", out / "gcompris-sounds"
    for bundle in sorted(set(PHOTO_BUNDLES) | set(SOUND_BUNDLES)):
        files = read_rcc(rcc / f"{bundle}.rcc")
        for inner, blob in sorted(files.items()):
            text = caption(inner)
            if len(text) < 3:
                continue
            ext = Path(inner).suffix.lower()
            if bundle in PHOTO_BUNDLES and ext in (".webp", ".jpg", ".jpeg", ".png"):
                rel = Path("images") / bundle / (Path(inner).stem + ".png")
                try:
                    with Image.open(io.BytesIO(blob)) as img:
                        (photo_dir / rel).parent.mkdir(parents=True, exist_ok=True)
                        letterbox(img).save(photo_dir / rel)
                except OSError as exc:
                    log.warning("skipping %s: %s", inner, exc)
                    continue
                photos.append({"image": str(rel), "text": text, "source": f"gcompris-{bundle}"})
            elif bundle in SOUND_BUNDLES and ext in (".ogg", ".wav"):
                rel = Path("clips") / bundle / Path(inner).name
                (sound_dir / rel).parent.mkdir(parents=True, exist_ok=True)
                (sound_dir / rel).write_bytes(blob)
                sounds.append({"audio": str(rel), "text": text, "source": f"gcompris-{bundle}"})
    for folder, rows in ((photo_dir, photos), (sound_dir, sounds)):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return {"photos": len(photos), "sounds": len(sounds)}


def main() -> None:
    run_script(__doc__, build, "folder that receives gcompris-photos/ and gcompris-sounds/")


if __name__ == "__main__":
    main()
