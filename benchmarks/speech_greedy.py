"""Word error rate of the Asterisk prompts (one person's recorded voice) transcribed with greedy
decoding only (what xmr does, so a file reads the same every time) and with faster-whisper's
default fallback to sampling at higher temperatures, in one run.

    python benchmarks/speech_greedy.py [--prompts 400]   # writes benchmarks/results/speech_greedy.json
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import numpy as np

from retrieval.bench.speech import ASTERISK, _asterisk_prompts, _wer
from retrieval.models import speech
from retrieval.models.speech import SpeechRecognizer

ROOT = Path(__file__).resolve().parent.parent
FALLBACK = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]  # faster-whisper's default


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=400, help="at most this many prompts (all there are: 317)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/speech_greedy.json")
    args = parser.parse_args()
    prompts, recognizer = _asterisk_prompts(ASTERISK), SpeechRecognizer()
    result: dict = {"host": platform.processor() or platform.machine(), "runs": {}}
    for name, temperature in (("fallback", FALLBACK), ("greedy", 0.0)):
        speech.TEMPERATURE = temperature
        result["runs"][name] = _wer(prompts, recognizer, args.prompts, np.random.default_rng(0))
        print(name, result["runs"][name], flush=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
