"""Speech by another synthesizer: CMU Flite (Debian ``flite``; BSD-style licence, voices from
the CMU ARCTIC recordings, free to use and redistribute).

Every espeak-ng voice is the same formant synthesizer under other settings; Flite's voices are
made from recordings of four people (kal: diphones; awb, slt, rms: statistical parametric),
so they sound nothing like espeak-ng and give the audio tower other speakers to learn from.
Training captions are read by kal16, awb and slt, each reading at a random speed and with a
random shift of pitch and formants (resampling, as a smaller or larger speaker); test captions
by rms alone, a speaker never trained on. Validation captions are not read (the existing
validation sets keep choosing checkpoints)."""

from __future__ import annotations

import argparse
import logging
import random
import subprocess
from pathlib import Path

import numpy as np
import soundfile as sf

from .common import clip_path, read_captions, split_of, synthesize_all

log = logging.getLogger(__name__)
VOICES = {"train": ("kal16", "awb", "slt"), "test": ("rms",)}


def shift(path: Path, factor: float) -> None:
    """Raise (factor > 1) or lower pitch and formants together by resampling ``path`` in place:
    the clip plays ``factor`` times faster at the same sample rate."""
    wave, rate = sf.read(path, dtype="float32")
    positions = np.arange(0, len(wave) - 1, factor)
    sf.write(path, np.interp(positions, np.arange(len(wave)), wave).astype(np.float32), rate)


def synth(job: tuple[str, str, float, float, Path]) -> str | None:
    text, voice, stretch, factor, path = job
    if path.exists():
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".part.wav")
    try:
        # a slower reading first, so that resampling brings it back to the drawn speed
        subprocess.run(
            [
                "flite",
                "-voice",
                voice,
                "--setf",
                f"duration_stretch={stretch * factor:.3f}",
                "-t",
                text,
                "-o",
                str(partial),
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        shift(partial, factor)
    except (subprocess.SubprocessError, OSError, RuntimeError) as exc:
        partial.unlink(missing_ok=True)
        return f"{path.name}: {exc}"
    partial.replace(path)
    return None


def plan(
    captions: dict[str, str], out: Path, per_caption: dict[str, int] | None = None, seed: int = 0
) -> tuple[list[dict], list[tuple]]:
    """The manifest rows and synthesis jobs for ``captions`` (caption key -> text):
    ``per_caption[split]`` readings of each training and test caption (default 1), each by a
    voice of its split at a drawn speed and shift; validation captions are not read."""
    per_caption = per_caption or {}
    rng = random.Random(seed)
    rows, jobs = [], []
    for key, text in sorted(captions.items()):
        split = split_of(key)
        for i in range(per_caption.get(split, 1) if split in VOICES else 0):
            voice = rng.choice(VOICES[split])
            stretch, factor = round(rng.uniform(0.8, 1.3), 2), round(rng.uniform(0.85, 1.18), 2)
            rel = clip_path(key, i)
            rows.append(
                {
                    "audio": str(rel),
                    "text": text,
                    "source": "flite",
                    "voice": voice,
                    "stretch": stretch,
                    "shift": factor,
                    "split": split,
                }
            )
            jobs.append((text, voice, stretch, factor, out / rel))
    return rows, jobs


def build(
    out: Path, caption_manifests: list[Path], per_caption: dict[str, int] | None = None, seed: int = 0
) -> dict[str, int]:
    """Read the distinct captions of ``caption_manifests`` (see :func:`plan`); writes the clips
    and ``train/val/test.jsonl`` under ``out``."""
    captions = read_captions(caption_manifests)
    rows, jobs = plan(captions, out, per_caption, seed)
    log.info("reading %d clips of %d captions with flite", len(jobs), len(captions))
    return synthesize_all(out, rows, jobs, synth)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--captions", type=Path, nargs="+", required=True, help="manifests whose captions to read")
    parser.add_argument("--train-readings", type=int, default=1, help="readings of each training caption")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    print(build(args.out, args.captions, {"train": args.train_readings}))


if __name__ == "__main__":
    main()
