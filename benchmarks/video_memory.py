"""Memory and speed of cutting a video into moments (what a decode worker does): peak RSS of a
fresh process running ``SegmentingVideo.process`` (frames every 2 s and the soundtrack's
windows, to scratch files; no model) on 1280x720 30 fps H.264 videos of growing length, against
the same process before it starts, and on a 30-minute AAC soundtrack alone (the sound path,
longer). Flat peaks mean the file is streamed, never held whole.

    python benchmarks/video_memory.py [--minutes 0.5 10]   # writes results/video_memory.json

The videos are made once (``retrieval.bench.media.write_moving_video``, a few minutes for 10
minutes of video) and kept in ``$XMR_CACHE_DIR/bench/``, as ``xmr bench moments`` keeps them.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def video(minutes: float) -> Path:
    from retrieval.bench.media import write_moving_video
    from retrieval.models.encoder import cache_dir

    cached = Path(cache_dir()) / "bench" / f"moving-720p30-g60-{minutes:g}min.mp4"
    if not cached.exists():
        partial = cached.with_suffix(".partial.mp4")
        write_moving_video(partial, minutes * 60)
        os.replace(partial, cached)
    return cached


def soundtrack(minutes: float) -> Path:
    """A stereo 44.1 kHz AAC .m4a of ``minutes`` (sound alone: the soundtrack path, longer)."""
    import av
    import numpy as np

    from retrieval.models.encoder import cache_dir

    cached = Path(cache_dir()) / "bench" / f"tones-aac-{minutes:g}min.m4a"
    if cached.exists():
        return cached
    partial = cached.with_suffix(".partial.m4a")
    rate, pts = 44100, 0
    rng = np.random.default_rng(0)
    with av.open(str(partial), "w") as out:
        stream = out.add_stream("aac", rate=rate, layout="stereo")
        while pts < minutes * 60 * rate:
            t = (np.arange(1024) + pts) / rate
            tone = 0.2 * np.sin(2 * np.pi * (220 + (pts // rate) % 12 * 40) * t) + 0.05 * rng.standard_normal(1024)
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(np.tile(tone.astype(np.float32)[None], (2, 1))), format="fltp", layout="stereo"
            )
            frame.sample_rate, frame.pts = rate, pts
            pts += 1024
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    os.replace(partial, cached)
    return cached


def child(path: str) -> None:
    """Runs in a fresh process: RSS before and at peak, in MiB."""
    from indexer.ingest.video import SegmentingVideo
    from retrieval.models.audio import AudioPreprocessor
    from retrieval.models.image import ImagePreprocessor

    def rss() -> float:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024

    before = rss()
    pre = SegmentingVideo(ImagePreprocessor(64), AudioPreprocessor(), tempfile.mkdtemp(prefix="xmr-vidmem-"))
    started = time.perf_counter()
    _, meta = pre.process(path)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    counts = {s.modality: s.count for s in meta["segments"]}
    for s in meta["segments"]:
        s.discard()
    print(json.dumps({"rss_before_mib": round(before, 1), "peak_rss_mib": round(peak, 1), "seconds": seconds} | counts))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[0.5, 10.0])
    parser.add_argument("--m4a-minutes", type=float, nargs="*", default=[30.0], help="sound-only files, longer")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    from retrieval.bench.report import machine_info

    rows = []
    for minutes, path in [(m, video(m)) for m in args.minutes] + [(m, soundtrack(m)) for m in args.m4a_minutes]:
        done = subprocess.run(
            [sys.executable, __file__, "--child", str(path)], capture_output=True, text=True, check=True, cwd=ROOT
        )
        got = json.loads(done.stdout.strip().splitlines()[-1])
        row = {
            "file": path.name,
            "minutes": minutes,
            "size_mb": round(path.stat().st_size / 1e6, 1),
            "frames": got.get("image", 0),
            "sound_windows": got.get("audio", 0),
            "rss_before_mib": got["rss_before_mib"],
            "peak_rss_mib": got["peak_rss_mib"],
            "seconds": round(got["seconds"], 2),
            "x_real_time": round(minutes * 60 / got["seconds"], 1),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "video_memory.json").write_text(json.dumps({"machine": machine_info(), "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
