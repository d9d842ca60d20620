"""Peak memory of transcribing a long file: a new process transcribes a recording of music and
noise with a spoken sentence every ``--every`` minutes (the same density at every length), for
each length; its peak RSS is reported. Pieces of at most 5 minutes are read and transcribed at
a time, so a 3-hour file should need no more than a 10-minute one.

    python benchmarks/speech_memory.py [--minutes 10 180] [--every 1]   # writes benchmarks/results/speech_memory.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
CHILD = """
import resource, sys, time
from retrieval.models.speech import SpeechRecognizer
r = SpeechRecognizer()
r.load()
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter()
found = r.transcribe(sys.argv[1])
took = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(base, peak, len(found.utterances), found.seconds, took)
"""


SENTENCES = (
    "the budget meeting starts at nine tomorrow morning",
    "please bring the blue folder to the second floor",
    "our flight to lisbon was delayed by two hours",
    "the dentist called to move your appointment to friday",
    "remember to water the tomato plants before the weekend",
    "the library closes early on public holidays",
    "she found the missing keys under the kitchen table",
    "the train to oxford leaves from platform seven",
)


def write_recording(path: Path, minutes: float, voices: list[Path], every: int = 10) -> None:
    """Music and noise a minute at a time, a sentence at the start of every ``every`` minutes
    (the next of ``voices`` each time: the same words over and over send Whisper into loops)."""
    talks = [sf.read(voice, dtype="float32")[0] for voice in voices]
    rng = np.random.default_rng(0)
    t = np.arange(16000 * 60) / 16000
    with sf.SoundFile(path, "w", 16000, 1, subtype="PCM_16") as out:
        for minute in range(int(minutes)):
            notes = 220 * 2 ** (rng.integers(0, 12, size=3) / 12)
            block = 0.08 * sum(np.sin(2 * np.pi * f * t) for f in notes) + 0.01 * rng.standard_normal(len(t))
            if minute % every == 0:
                talk = talks[(minute // every) % len(talks)]
                block[: len(talk)] = talk[: len(block)]
            out.write(block.astype(np.float32))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, nargs="+", default=[10, 180])
    parser.add_argument("--every", type=int, default=1, help="minutes between two spoken sentences")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "speech_memory.json")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="xmr-speech-memory-"))
    from retrieval.models.audio import resample  # light: this process's RSS is its child's starting peak

    voices = []
    for k, sentence in enumerate(SENTENCES):
        subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(work / "raw.wav"), sentence], check=True)
        raw, rate = sf.read(work / "raw.wav", dtype="float32")
        voices.append(work / f"voice{k}.wav")
        sf.write(voices[-1], resample(raw, rate, 16000), 16000)
    rows = []
    for minutes in args.minutes:
        path = work / f"{minutes:g}min.wav"
        write_recording(path, minutes, voices, args.every)
        out = subprocess.run(
            [sys.executable, "-c", CHILD, str(path)], cwd=ROOT, capture_output=True, text=True, check=True
        )
        base, peak, utterances, seconds, took = out.stdout.split()
        row = {
            "minutes": minutes,
            "sentence_every_minutes": args.every,
            "rss_after_load_mib": round(int(base) / 1024, 1),
            "peak_rss_mib": round(int(peak) / 1024, 1),
            "utterances": int(utterances),
            "x_real_time": round(float(seconds) / float(took), 1),
        }
        rows.append(row)
        print(json.dumps(row))
        path.unlink()
    args.out.write_text(json.dumps({"runs": rows}, indent=2) + "\n")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
