"""Find the moment: captioned clips hidden in long recordings, searched by their captions.

Clips of test manifests (one clip per caption, chosen with a seed) are joined with silence or
low noise (gaps of 2-12 s) into long files of ``clips`` clips each, their offsets recorded, and
indexed; each caption is then a text query (``to="audio"``). Reported:

* file R@1 / R@5: the right long file among the top 1 / 5 files;
* moment accuracy: the top hit is the right file *and* its segment overlaps the clip's span with
  its centre within 5 s of it;
* clip R@1: the same clips indexed as files of their own, the right clip first (what moment
  accuracy is held against: goal >= 0.9x);
* speed: a one-hour recording made of the same clips indexed alone, as times real time.

Video (``--images MANIFEST``): pictures with their captions spoken, in H.264 videos; see
:mod:`retrieval.bench.video_moments`.

Run: ``xmr bench moments [MANIFEST...] [--model xmr-mini] [--files 10] [--clips 20] [--images MANIFEST]``.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from .moment_scoring import RATE, _decode, choose_captions, score
from .report import machine_info, markdown_table, write_outputs

log = logging.getLogger(__name__)


def build_recordings(
    clips: list[tuple[str, np.ndarray]], folder: Path, per_file: int, seed: int
) -> list[tuple[str, str, float, float]]:
    """Write long files of ``per_file`` clips each into ``folder``; return (caption, file, start, end)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    truth = []
    import soundfile as sf

    for f, first in enumerate(range(0, len(clips), per_file)):
        name = f"recording-{f:03d}.wav"
        parts, at = [], 0.0
        noise = f % 2 == 1  # every other file: low noise between clips, else silence
        for caption, wave in clips[first : first + per_file]:
            gap = int(rng.uniform(2.0, 12.0) * RATE)
            parts.append((0.003 * rng.standard_normal(gap)).astype(np.float32) if noise else np.zeros(gap, np.float32))
            at += gap / RATE
            parts.append(wave)
            truth.append((caption, name, at, at + wave.size / RATE))
            at += wave.size / RATE
        parts.append(np.zeros(2 * RATE, np.float32))
        sf.write(folder / name, np.clip(np.concatenate(parts), -1, 1), RATE, subtype="PCM_16")
    return truth


def run_moments(
    manifests: list[str],
    model: str = "xmr-mini",
    files: int = 10,
    clips: int = 20,
    seed: int = 0,
    hour: bool = True,
    out_dir: str | None = None,
    encoder: Any = None,
    images: list[str] | None = None,
    video_files: int = 5,
    pictures: int = 20,
    video_minutes: float = 10.0,
) -> dict[str, Any]:
    """See the module docstring: long audio from the audio ``manifests``, and video from the image
    manifests ``images`` (:mod:`retrieval.bench.video_moments`), either part alone."""
    if not manifests and not images:
        raise ValueError("give audio manifests (long recordings), image manifests (--images: videos), or both")
    if encoder is None:
        from ..models.registry import create_model, inference_runtime

        encoder = create_model(model, runtime=inference_runtime(model))
    result: dict[str, Any] = {}
    if manifests:
        result = _long_audio(manifests, encoder, files, clips, seed, hour)
    if images:
        from .video_moments import run_video_moments

        result["video"] = run_video_moments(images, model, video_files, pictures, seed, video_minutes, encoder)
    payload = {
        "machine": machine_info(),
        "model": model,
        "manifests": manifests,
        "images": images or [],
        "seed": seed,
        "result": result,
    }
    if out_dir:
        tables = []
        if manifests:
            row = {k: v for k, v in result.items() if k not in ("hour", "video")} | {
                "hour_x_real_time": (result.get("hour") or {}).get("x_real_time")
            }
            tables.append("Long audio\n\n" + markdown_table([row], list(row)))
        if images:
            video = result["video"]
            rows = [{"track": t} | video[t] for t in ("frames", "soundtrack")]
            tables.append(
                f"Video ({video['queries']} captions in {video['videos']} videos, indexed at "
                f"{video['x_real_time']}x real time)\n\n" + markdown_table(rows, list(rows[0]))
            )
            if "speed" in video:
                tables.append("Video speed\n\n" + markdown_table([video["speed"]], list(video["speed"])))
        payload["files"] = {k: str(v) for k, v in write_outputs(out_dir, "moments", payload, "\n".join(tables)).items()}
    return payload


def _long_audio(manifests: list[str], encoder: Any, files: int, clips: int, seed: int, hour: bool) -> dict[str, Any]:
    """The long-audio part (see the module docstring)."""
    from indexer import IndexOptions, index_folder

    chosen = choose_captions(manifests, "audio", files * clips, seed, f"{files} files x {clips} clips")
    waves = [(c, _decode(path)) for c, path in chosen]
    work = Path(tempfile.mkdtemp(prefix="xmr-moments-"))
    try:
        truth = build_recordings(waves, work / "long", clips, seed)
        pieces = work / "pieces"
        pieces.mkdir()
        import soundfile as sf

        for n, (_, wave) in enumerate(waves):
            sf.write(pieces / f"clip-{n:04d}.wav", wave, RATE, subtype="PCM_16")
        started = time.perf_counter()
        summary = index_folder(work / "long", encoder, IndexOptions(index_dir=str(work / "index-long")))
        long_seconds = time.perf_counter() - started
        index_folder(pieces, encoder, IndexOptions(index_dir=str(work / "index-pieces")))
        audio_seconds = sum(e - s for *_, s, e in truth) + 0.0
        recorded = sum(sf.info(str(p)).duration for p in (work / "long").glob("*.wav"))
        result: dict[str, Any] = {
            "queries": len(truth),
            "files": files,
            "recorded_seconds": round(recorded, 1),
            "clip_seconds": round(audio_seconds, 1),
            "segments": summary.segments,
        }
        result |= score(
            work / "index-long", work / "index-pieces", truth, "audio", lambda n: f"clip-{n:04d}.wav", encoder
        )
        result["index_seconds"] = round(long_seconds, 2)
        result["x_real_time"] = round(recorded / long_seconds, 1)
        result["moment_vs_clip"] = result.pop("moment_vs_clip")  # last, as before
        if hour:
            result["hour"] = _one_hour(waves, work, encoder, seed)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return result


def _one_hour(waves: list[tuple[str, np.ndarray]], work: Path, encoder: Any, seed: int) -> dict[str, float]:
    """Index one hour of recording (the clips and gaps over and over) alone; times real time."""
    import soundfile as sf

    from indexer import IndexOptions, index_folder

    folder = work / "hour"
    folder.mkdir()
    rng = np.random.default_rng(seed)
    with sf.SoundFile(folder / "hour.wav", "w", RATE, 1, subtype="PCM_16") as f:
        written = 0
        while written < 3600 * RATE:
            _, wave = waves[int(rng.integers(len(waves)))]
            gap = np.zeros(int(rng.uniform(2.0, 12.0) * RATE), np.float32)
            chunk = np.concatenate([gap, wave])[: 3600 * RATE - written]
            f.write(chunk)
            written += chunk.size
    started = time.perf_counter()
    summary = index_folder(folder, encoder, IndexOptions(index_dir=str(work / "index-hour")))
    seconds = time.perf_counter() - started
    return {"seconds": round(seconds, 2), "x_real_time": round(3600 / seconds, 1), "segments": summary.segments}
