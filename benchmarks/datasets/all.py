"""Prepare every data set in one go (resumable: a set whose ``test.jsonl`` exists is kept).

    python -m benchmarks.datasets.all --out data --cache data/cache [--fsdd ../shared/data/fsdd]

Needs network access to the Debian and npm registries and the Debian packages ``espeak-ng``,
``flite``, ``librsvg2-bin``, ``fluidsynth`` and ``timidity``. Writes one folder per set with ``train/val/test.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

from . import (
    asterisk,
    emoji_styles,
    flite_speech,
    fsdd,
    game_sounds,
    gcompris,
    gm_instruments,
    minetest_sounds,
    openclipart,
    openmoji,
    sample_libraries,
    sound_mixes,
    speech,
    tuxpaint,
    twemoji,
    wordnet_speech,
)

log = logging.getLogger(__name__)


def prepare(out: Path, cache: Path, fsdd_dir: Path, only: list[str] | None = None) -> None:
    """Build every set (``only``: the named steps, in this order) that is not built yet."""
    steps = [
        ("openclipart", lambda: openclipart.build(out / "openclipart", cache)),
        ("openmoji", lambda: openmoji.build(out / "openmoji", cache)),
        ("tuxpaint", lambda: tuxpaint.build(out / "tuxpaint", cache)),
        ("asterisk", lambda: asterisk.build(out / "asterisk", cache)),
        ("fsdd", lambda: fsdd.build(out / "fsdd", fsdd_dir)),
        ("twemoji", lambda: twemoji.build(out / "twemoji", cache)),
        ("gcompris-photos", lambda: gcompris.build(out, cache)),  # also writes gcompris-sounds
        # more emoji designs, captioned and split as OpenMoji
        *((name, lambda name=name: emoji_styles.build_style(name, out / name, cache)) for name in emoji_styles.STYLES),
        # espeak-ng readings of the captions of the sets above (3 voices a caption)
        (
            "speech",
            lambda: speech.build(
                out / "speech",
                [
                    out / s / f"{p}.jsonl"
                    for s in ("openclipart", "openmoji", "tuxpaint", "asterisk", "tuxpaint-sounds")
                    for p in ("train", "val", "test")
                ],
            ),
        ),
        # espeak-ng readings of WordNet words and phrases (training-split captions only)
        ("speech-wordnet", lambda: wordnet_speech.build(out / "speech-wordnet", cache)),
        # 24,000 more: the next phrases of the same draw, none of the first set's repeated
        (
            "speech-wordnet-b",
            lambda: wordnet_speech.build(
                out / "speech-wordnet-b", cache, 48000, [out / "speech-wordnet" / "train.jsonl"]
            ),
        ),
        # Flite readings (other synthesizer, other speakers) of the speech set's training and
        # test captions and of the first WordNet set; test captions by a speaker never trained on
        (
            "speech-flite",
            lambda: flite_speech.build(
                out / "speech-flite",
                [out / "speech" / "train.jsonl", out / "speech" / "test.jsonl", out / "speech-wordnet" / "train.jsonl"],
            ),
        ),
        # everyday sounds: GM instruments rendered from four sound sets (one never trained on),
        # named samples of music programs, named game sound effects, then mixtures of their
        # training clips (over backgrounds, and two at a time)
        ("gm-instruments", lambda: gm_instruments.build(out / "gm-instruments", cache)),
        ("sample-libraries", lambda: sample_libraries.build(out / "sample-libraries", cache)),
        ("game-sounds", lambda: game_sounds.build(out / "game-sounds", cache)),
        # everyday sounds of packages no training set uses (test only)
        ("minetest-sounds", lambda: minetest_sounds.build(out / "minetest-sounds", cache)),
        (
            "sound-mixes",
            lambda: sound_mixes.build(
                out / "sound-mixes",
                [out / s / "train.jsonl" for s in ("gm-instruments", "sample-libraries", "game-sounds")],
            ),
        ),
        # the three image sets' test splits in one gallery (the headline image recall)
        (
            "images-all",
            lambda: combine(
                out / "images-all", [out / s / "test.jsonl" for s in ("openclipart", "openmoji", "tuxpaint")]
            ),
        ),
    ]
    unknown = sorted(set(only or []) - {name for name, _ in steps})
    if unknown:
        raise SystemExit(f"unknown step(s) {', '.join(unknown)}; steps: {', '.join(name for name, _ in steps)}")
    for name, step in steps:
        if only and name not in only:
            continue
        if (out / name / "test.jsonl").exists():
            log.info("%s: ready", name)
            continue
        log.info("%s: %s", name, step())


def combine(out: Path, manifests: list[Path]) -> dict[str, int]:
    """One ``test.jsonl`` holding the pairs of ``manifests``, paths made relative to ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for manifest in manifests:
        for line in manifest.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            for field in ("image", "audio"):
                if field in row:
                    row[field] = os.path.relpath(manifest.parent / row[field], out)
            rows.append(row)
    (out / "test.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return {"test": len(rows)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--cache", type=Path, required=True)
    parser.add_argument("--fsdd", type=Path, default=Path(__file__).resolve().parents[3] / "shared/data/fsdd")
    parser.add_argument(
        "--only", default="", help="comma-separated steps to run (default: all), e.g. asterisk,fsdd,speech"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    prepare(args.out, args.cache, args.fsdd, [n for n in args.only.split(",") if n] or None)


if __name__ == "__main__":
    main()
