"""Mixtures of the sound sets' training clips, for training only:

- a sound over a background (rain, wind, water, a crowd, birds in a forest, or synthetic room
  tone) at a random signal-to-noise ratio, captioned by the foreground alone;
- two sounds, one after the other or overlapping, captioned "X and Y" (X the one that starts
  first); only pairs whose caption falls in the training split are kept, so no mixed caption
  is a validation or test caption of any set.

Reads training manifests (``train.jsonl`` of ``gm-instruments``, ``sample-libraries``,
``game-sounds``, ...), draws foregrounds evenly across them, writes 16 kHz mono clips of at
most 10 s and ``train.jsonl`` (``val.jsonl`` and ``test.jsonl`` stay empty).
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import re
from pathlib import Path

import numpy as np
import soundfile as sf

from .common import caption_key, split_of, write_manifests
from .sound_common import RATE, to_mono_16k, write_clip

log = logging.getLogger(__name__)
BACKGROUND = re.compile(
    r"\b(rain|wind(?! chimes)|river|waves|sea|seashore|waterfall|stream|market|harbour|farm|forest|crickets|crowd|"
    r"applause|snowstorm|windstorm|bubbling water)\b"
)
ROOM_TONE = "room tone"  # a synthetic background: coloured noise
MAX_S = 10.0
FOREGROUND_MAX_S = 6.0


def is_background(text: str) -> bool:
    """True for captions of ambient sounds that may lie under another sound."""
    return bool(BACKGROUND.search(text.lower()))


def read_rows(manifests: list[Path]) -> dict[str, list[dict]]:
    """Training rows of each manifest (keyed by its set's folder name), audio paths made absolute."""
    out: dict[str, list[dict]] = {}
    for manifest in manifests:
        rows = [json.loads(line) for line in manifest.read_text(encoding="utf-8").splitlines() if line.strip()]
        out[manifest.parent.name] = [{**r, "audio": str((manifest.parent / r["audio"]).resolve())} for r in rows]
    return out


def plan(sets: dict[str, list[dict]], n_background: int, n_pairs: int, seed: int = 0) -> list[dict]:
    """The mixtures to make: ``n_background`` foreground-over-background jobs and up to
    ``n_pairs`` "X and Y" jobs (fewer when pairs' captions fall outside the training split).
    Foregrounds are drawn evenly across the ``sets``; seeded."""
    rng = random.Random(seed)
    by_caption: dict[str, set[str]] = {}
    for rows in sets.values():
        for r in rows:
            if is_background(r["text"]):
                by_caption.setdefault(caption_key(r["text"]), set()).add(r["audio"])
    backgrounds = {
        k: sorted(v) for k, v in sorted(by_caption.items())
    }  # drawn by caption, so no one kind floods the rest
    foregrounds = {
        name: [r for r in rows if not is_background(r["text"]) and split_of(caption_key(r["text"])) == "train"]
        for name, rows in sorted(sets.items())
    }
    foregrounds = {k: v for k, v in foregrounds.items() if v}
    names = list(foregrounds)
    if not names:
        return []

    def draw() -> dict:
        return rng.choice(foregrounds[rng.choice(names)])

    jobs = []
    for i in range(n_background):
        fg = draw()
        bg = (
            rng.choice(backgrounds[rng.choice(list(backgrounds))]) if backgrounds and rng.random() < 0.75 else ROOM_TONE
        )
        jobs.append(
            {
                "kind": "background",
                "parts": [fg["audio"], bg],
                "text": fg["text"],
                "snr_db": round(rng.uniform(3, 20), 1),
                "seed": rng.randrange(1 << 30),
                "audio": f"clips/bg/{i:05d}.wav",
            }
        )
    tries = 0
    while sum(j["kind"] == "pair" for j in jobs) < n_pairs and tries < 20 * n_pairs:
        tries += 1
        a, b = draw(), draw()
        text = f"{a['text']} and {b['text']}"
        if caption_key(a["text"]) == caption_key(b["text"]) or split_of(caption_key(text)) != "train":
            continue
        i = sum(j["kind"] == "pair" for j in jobs)
        jobs.append(
            {
                "kind": "pair",
                "parts": [a["audio"], b["audio"]],
                "text": text,
                "gain_db": round(rng.uniform(-6, 6), 1),
                "overlap": rng.random() < 0.5,
                "seed": rng.randrange(1 << 30),
                "audio": f"clips/pair/{i:05d}.wav",
            }
        )
    return jobs


def load(path: str) -> np.ndarray:
    """A clip as 16 kHz mono float32."""
    wave, rate = sf.read(path, dtype="float32", always_2d=True)
    return to_mono_16k(wave, rate)


def room_tone(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` samples of coloured noise (between pink and brown, 1/f^1 to 1/f^2 power), like a room's hum."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.maximum(np.fft.rfftfreq(n, 1 / RATE), 20.0)
    return np.fft.irfft(spectrum / freqs ** (rng.uniform(1.0, 2.0) / 2), n).astype(np.float32)


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2) + 1e-12))


def mix(job: dict) -> np.ndarray:
    """The samples of one planned mixture."""
    rng = np.random.default_rng(job["seed"])
    a = load(job["parts"][0])[: int(FOREGROUND_MAX_S * RATE)]
    if job["kind"] == "background":
        pre, post = (int(rng.uniform(0.2, 1.0) * RATE) for _ in range(2))
        n = min(int(MAX_S * RATE), len(a) + pre + post)
        if job["parts"][1] == ROOM_TONE:
            bg = room_tone(n, rng)
        else:
            bg = load(job["parts"][1])
            bg = np.tile(bg, int(np.ceil(n / max(1, len(bg)))) + 1)
            start = int(rng.integers(0, max(1, len(bg) - n)))
            bg = bg[start : start + n]
        fg = np.zeros(n, dtype=np.float32)
        fg[pre : pre + len(a)] = a[: n - pre]
        bg = bg * (rms(a) / rms(bg) / 10 ** (job["snr_db"] / 20))
        return fg + bg.astype(np.float32)
    b = load(job["parts"][1])[: int(FOREGROUND_MAX_S * RATE)]
    b = b * (10 ** (job["gain_db"] / 20) * rms(a) / rms(b))
    start = int(rng.uniform(0.1, 0.6) * len(a)) if job["overlap"] else len(a) + int(rng.uniform(0.1, 0.5) * RATE)
    n = min(int(MAX_S * RATE), start + len(b))
    out = np.zeros(max(n, len(a)), dtype=np.float32)
    out[: len(a)] += a
    if start < n:
        out[start:n] += b[: n - start]
    return out[: int(MAX_S * RATE)]


def build(
    out: Path, manifests: list[Path], n_background: int = 3000, n_pairs: int = 3000, seed: int = 0
) -> dict[str, int]:
    """Plan and write the mixtures of the training rows of ``manifests`` (resumable)."""
    jobs = plan(read_rows(manifests), n_background, n_pairs, seed)
    log.info("%d mixtures", len(jobs))
    rows, failed = [], 0
    for i, job in enumerate(jobs):
        path = out / job["audio"]
        reason = None
        if not path.exists():
            try:
                reason = write_clip(path, mix(job), MAX_S)
            except (RuntimeError, OSError, ValueError) as exc:
                reason = str(exc)[:80]
        if reason:
            failed += 1
            log.debug("%s: %s", job["audio"], reason)
            continue
        rows.append(
            {
                "audio": job["audio"],
                "text": job["text"],
                "source": f"mix-{job['kind']}",
                "parts": [p if p == ROOM_TONE else Path(p).name for p in job["parts"]],
                **{k: job[k] for k in ("snr_db", "gain_db", "overlap") if k in job},
            }
        )
        if i % 1000 == 0:
            log.info("mixed %d of %d", i, len(jobs))
    if failed:
        log.warning("%d mixtures not written", failed)
    return write_manifests(out, rows, lambda r: "train")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--manifests", type=Path, nargs="+", required=True, help="training manifests of the sound sets")
    parser.add_argument("--backgrounds", type=int, default=3000)
    parser.add_argument("--pairs", type=int, default=3000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    print(build(args.out, args.manifests, args.backgrounds, args.pairs))


if __name__ == "__main__":
    main()
