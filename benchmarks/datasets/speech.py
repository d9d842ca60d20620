"""Synthesized speech of captions with espeak-ng: many accents, voice variants, speeds and
pitches. Split by caption (the caption's own split, shared with every other set) and by
voice variant (test voices are never trained on)."""

from __future__ import annotations

import argparse
import logging
import random
import subprocess
from pathlib import Path

from .common import SPLITS, clip_path, read_captions, split_of, synthesize_all

log = logging.getLogger(__name__)
ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-rp", "en-gb-x-gbcwmd", "en-029")


def variants() -> list[str]:
    """espeak-ng's voice variants (``!v/NAME`` -> ``NAME``)."""
    out = subprocess.run(["espeak-ng", "--voices=variant"], check=True, capture_output=True, text=True).stdout
    return sorted(line.split()[4].split("/", 1)[1] for line in out.splitlines()[1:] if len(line.split()) >= 5)


def voice_split(variant: str) -> str:
    return split_of(variant, val=0.1, test=0.15, salt="xmr-voice-v1")


def synth(job: tuple[str, str, Path]) -> str | None:
    text, args, path = job
    if path.exists():
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        subprocess.run(["espeak-ng", *args.split(), "-w", str(path), text], check=True, capture_output=True, timeout=60)
    except subprocess.SubprocessError as exc:
        return str(exc)
    return None


def build(out: Path, caption_manifests: list[Path], per_caption: int = 3, seed: int = 0) -> dict[str, int]:
    """Speak every distinct caption of ``caption_manifests`` ``per_caption`` times."""
    return speak(out, read_captions(caption_manifests), per_caption, seed)


def speak(
    out: Path, captions: dict[str, str], per_caption: int = 3, seed: int = 0, source: str = "espeak"
) -> dict[str, int]:
    """Speak ``captions`` (caption key -> text) ``per_caption`` times each, every caption in its
    own split and by voices of that split; writes the clips and ``train/val/test.jsonl``."""
    rng = random.Random(seed)
    pool = {s: [v for v in variants() if voice_split(v) == s] for s in SPLITS}
    log.info("voices per split: %s", {s: len(v) for s, v in pool.items()})
    rows, jobs = [], []
    for key, text in sorted(captions.items()):
        split = split_of(key)
        for i in range(per_caption):
            variant = rng.choice(pool[split])
            accent = rng.choice(ACCENTS)
            speed, pitch = rng.randint(120, 200), rng.randint(25, 75)
            args = f"-v {accent}+{variant} -s {speed} -p {pitch}"
            rel = clip_path(key, i)
            rows.append(
                {
                    "audio": str(rel),
                    "text": text,
                    "source": source,
                    "voice": f"{accent}+{variant}",
                    "speed": speed,
                    "pitch": pitch,
                    "split": split,
                }
            )
            jobs.append((text, args, out / rel))
    return synthesize_all(out, rows, jobs, synth)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--captions", type=Path, nargs="+", required=True, help="manifests whose captions to speak")
    parser.add_argument("--per-caption", type=int, default=3)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    print(build(args.out, args.captions, args.per_caption))


if __name__ == "__main__":
    main()
