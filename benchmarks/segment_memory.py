"""Memory of cutting a long recording into moments: peak (tracemalloc) of
``SegmentingAudio.write`` on 5, 30 and 60 minutes of 44.1 kHz audio, and its speed (decode and
log-mel only, no model).

    python benchmarks/segment_memory.py [--minutes 5 30 60]   # writes results/segment_memory.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from indexer.ingest.segments import SegmentingAudio  # noqa: E402
from retrieval.bench.report import machine_info  # noqa: E402
from retrieval.models.audio import AudioPreprocessor  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=int, nargs="+", default=[5, 30, 60])
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="xmr-segmem-"))
    rows = []
    for minutes in args.minutes:
        path = work / f"{minutes}.wav"
        with sf.SoundFile(path, "w", 44100, 1, subtype="PCM_16") as f:
            rng = np.random.default_rng(0)
            for _ in range(minutes):
                f.write((0.1 * rng.standard_normal(44100 * 60)).astype(np.float32))
        pre = SegmentingAudio(AudioPreprocessor(), str(work / "scratch"))
        tracemalloc.start()
        started = time.perf_counter()
        segments = pre.write(path)
        seconds = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        segments.discard()
        path.unlink()
        row = {
            "minutes": minutes,
            "segments": segments.count,
            "peak_mib": round(peak / 2**20, 1),
            "seconds": round(seconds, 2),
            "x_real_time": round(minutes * 60 / seconds),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "segment_memory.json").write_text(json.dumps({"machine": machine_info(), "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
