"""Find the moment in video: captioned test pictures shown one after another in H.264 videos,
each caption spoken on the soundtrack (espeak-ng), searched by their captions.

Each video shows ``pictures`` pictures of test manifests (letterboxed on white), each for 3 s or
as long as its spoken caption lasts plus half a second, a keyframe every 2 s. Each caption is
then a text query twice: ``to="image"`` (the frame moment) and ``to="audio"`` (the soundtrack
moment). Reported for each: file R@1 / R@5, moment accuracy (the top hit is the right video and
its segment overlaps the picture's span, centre within 5 s), and clip R@1: the same pictures
and spoken captions indexed as files of their own (goal: moment accuracy >= 0.9x clip R@1).
Speed: a 10-minute 1280x720 30 fps H.264 video (keyframe every 2 s, AAC soundtrack) indexed
alone, as times real time.

Run: ``xmr bench moments --images MANIFEST [--video-files 5 --pictures 20 --video-minutes 10]``.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from .media import write_moving_video, write_video
from .moment_scoring import RATE, choose_captions, score

log = logging.getLogger(__name__)
SIZE = (320, 240)  # the videos' frame: width, height
FPS = 10
GOP_SECONDS = 2.0


def speak(text: str, folder: Path, voice: str = "en-us") -> np.ndarray:
    """``text`` spoken by espeak-ng, mono float32 at the benchmark's rate.

    Raises:
        ValueError: espeak-ng is not installed, or fails.
    """
    import soundfile as sf

    from ..models.audio import resample, to_mono

    exe = shutil.which("espeak-ng")
    if exe is None:
        raise ValueError("the video part needs espeak-ng to speak its captions (apt-get install espeak-ng)")
    out = folder / "speech.wav"
    done = subprocess.run([exe, "-v", voice, "-s", "150", "-w", str(out), text], capture_output=True, timeout=60)
    if done.returncode != 0:
        raise ValueError(f"espeak-ng failed: {done.stderr.decode(errors='replace').strip()}")
    data, rate = sf.read(out, dtype="float32", always_2d=True)
    return resample(to_mono(data), int(rate), RATE)


def _canvas(path: str) -> np.ndarray:
    """A picture scaled to fit the frame, on white."""
    from PIL import Image

    from ..models.image import open_image

    img = open_image(path)
    scale = min(SIZE[0] / img.width, SIZE[1] / img.height)  # up or down: the picture fills the frame
    img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.BICUBIC)
    canvas = Image.new("RGB", SIZE, (255, 255, 255))
    canvas.paste(img, ((SIZE[0] - img.width) // 2, (SIZE[1] - img.height) // 2))
    return np.asarray(canvas)


def build_videos(
    chosen: list[tuple[str, str]], folder: Path, per_file: int, scratch: Path
) -> tuple[list[tuple[str, str, float, float]], list[tuple[np.ndarray, np.ndarray]]]:
    """Videos of ``per_file`` (caption, image path) pictures each in ``folder``; returns the truth
    (caption, video name, start, end) and each piece (picture, speech)."""
    truth, pieces = [], []
    folder.mkdir(parents=True, exist_ok=True)
    for f, first in enumerate(range(0, len(chosen), per_file)):
        name = f"video-{f:03d}.mp4"
        pictures, seconds, sound = [], [], []
        at = 0.0
        for caption, path in chosen[first : first + per_file]:
            picture, speech = _canvas(path), speak(caption, scratch)
            span = max(3.0, np.ceil((speech.size / RATE + 0.5) * FPS) / FPS)
            track = np.zeros(int(round(span * RATE)), np.float32)
            lead = int(0.25 * RATE)
            track[lead : lead + speech.size] = speech[: track.size - lead]
            pictures.append(picture)
            seconds.append(span)
            sound.append(track)
            truth.append((caption, name, at, at + span))
            pieces.append((picture, speech))
            at += span
        write_video(
            folder / name, pictures, seconds, fps=FPS, gop=int(GOP_SECONDS * FPS), wave=np.concatenate(sound), rate=RATE
        )
    return truth, pieces


def run_video_moments(
    manifests: list[str],
    model: str = "xmr-mini",
    files: int = 5,
    pictures: int = 20,
    seed: int = 0,
    minutes: float = 10.0,
    encoder: Any = None,
) -> dict[str, Any]:
    """See the module docstring; the result's ``frames``, ``soundtrack`` and ``speed`` parts."""
    import soundfile as sf
    from PIL import Image

    from indexer import IndexOptions, index_folder

    if encoder is None:
        from ..models.registry import create_model, inference_runtime

        encoder = create_model(model, runtime=inference_runtime(model))
    chosen = choose_captions(manifests, "image", files * pictures, seed, f"{files} videos x {pictures}")
    work = Path(tempfile.mkdtemp(prefix="xmr-video-moments-"))
    try:
        truth, pieces = build_videos(chosen, work / "videos", pictures, work)
        alone = work / "pieces"
        alone.mkdir()
        for n, (picture, speech) in enumerate(pieces):
            Image.fromarray(picture).save(alone / f"picture-{n:04d}.png")
            sf.write(alone / f"speech-{n:04d}.wav", speech, RATE, subtype="PCM_16")
        started = time.perf_counter()
        summary = index_folder(work / "videos", encoder, IndexOptions(index_dir=str(work / "index-videos")))
        seconds = time.perf_counter() - started
        index_folder(alone, encoder, IndexOptions(index_dir=str(work / "index-pieces")))
        result: dict[str, Any] = {"queries": len(truth), "videos": files, "segments": summary.segments}
        recorded = sum(e - s for *_, s, e in truth)
        result["index_seconds"] = round(seconds, 2)
        result["x_real_time"] = round(recorded / seconds, 1)
        for track, prefix, ext, part in (
            ("image", "picture", "png", "frames"),
            ("audio", "speech", "wav", "soundtrack"),
        ):
            result[part] = score(
                work / "index-videos",
                work / "index-pieces",
                truth,
                track,
                lambda n, prefix=prefix, ext=ext: f"{prefix}-{n:04d}.{ext}",
                encoder,
            )
        if minutes > 0:
            result["speed"] = video_speed(encoder, minutes, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return result


def video_speed(encoder: Any, minutes: float, work: Path) -> dict[str, Any]:
    """Index a ``minutes``-long 1280x720 30 fps H.264 video (made once, kept in the xmr cache) alone."""
    from indexer import IndexOptions, index_folder

    from ..models.encoder import cache_dir

    cached = Path(cache_dir()) / "bench" / f"moving-720p30-g60-{minutes:g}min.mp4"
    if not cached.exists():
        log.info("writing the %g-minute 720p test video (once; kept at %s)", minutes, cached)
        partial = cached.with_suffix(".partial.mp4")
        write_moving_video(partial, minutes * 60)
        os.replace(partial, cached)
    folder = work / "speed"
    folder.mkdir()
    os.symlink(cached, folder / cached.name)
    started = time.perf_counter()
    summary = index_folder(folder, encoder, IndexOptions(index_dir=str(work / "index-speed"), links="follow"))
    seconds = time.perf_counter() - started
    return {
        "video_seconds": minutes * 60,
        "size_MB": round(cached.stat().st_size / 1e6, 1),
        "index_seconds": round(seconds, 2),
        "x_real_time": round(minutes * 60 / seconds, 1),
        "segments": summary.segments,
    }
