"""Copies found (``xmr duplicates``): copies made of photos, recordings and videos, hidden
among other files of the same kinds of scene, found by :func:`retrieval.search.duplicates.find_duplicates`.

Pictures: each of ``--originals`` photos copied ten ways (half size, JPEG at quality 15, an 85%
crop, turned 90/180/270 degrees, mirrored, grey, a caption strip added below, a screenshot-like
border) among ``--others`` photos of the same kinds of scene. Recordings: melodies copied as MP3,
OGG, resampled to 22.05 kHz and trimmed by 3 s, among other melodies in the same scale. Videos:
clips re-encoded at half size and cut by 2 s, among other clips. Reported: pair precision and
recall per kind of copy at each modality's default threshold, and over thresholds (a
precision/recall plot for pictures); the time to find the copies among ``--scale`` synthetic
image vectors and hashes with planted copies.

A pair is a copy and its original, or two copies of one original (photos of ``--photos`` that
are the same picture count as one original and its copy); predicted pairs are the pairs inside
each group found. Photos: ``--photos DIR`` (every ``*.png``/``*.jpg`` under it), else
photo-like pictures drawn here (gradients, soft shapes and grain; ten kinds of scene).

Run: ``xmr bench duplicates [--originals 40] [--others 80] [--photos DIR] [--scale 100000]``.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont, ImageOps

from .report import machine_info, markdown_table, write_outputs

log = logging.getLogger(__name__)
IMAGE_KINDS = ("half", "jpeg15", "crop85", "turn90", "turn180", "turn270", "mirror", "grey", "caption", "border")
AUDIO_KINDS = ("mp3", "ogg", "resampled", "trimmed")
VIDEO_KINDS = ("smaller", "cut")
THRESHOLDS = tuple(round(t, 3) for t in np.arange(0.70, 0.995, 0.01))
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"


# --- media made here ---------------------------------------------------------------------------
def synthetic_photo(seed: int, scene: int, size: tuple[int, int] = (320, 240)) -> Image.Image:
    """A photo-like picture: a sky-to-ground gradient in the colours of its ``scene`` (pictures
    of one scene share them) with soft shapes and grain of its own (``seed``)."""
    scene_rng = np.random.default_rng(1000 + scene)
    rng = np.random.default_rng(seed)
    w, h = size
    top, bottom = scene_rng.integers(0, 256, size=(2, 3))
    ramp = np.linspace(0, 1, h)[:, None, None]
    img = Image.fromarray(((top * (1 - ramp) + bottom * ramp) * np.ones((1, w, 1))).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(12):
        x, y = rng.integers(0, w), rng.integers(0, h)
        r = int(rng.integers(w // 20, w // 4))
        colour = tuple(int(c) for c in np.clip(scene_rng.integers(0, 256, 3) + rng.integers(-60, 60, 3), 0, 255))
        box = (x - r, y - r // 2, x + r, y + r // 2)
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=colour)
    img = img.filter(ImageFilter.GaussianBlur(2))
    grain = rng.integers(-8, 8, size=(h, w, 3))
    return Image.fromarray(np.clip(np.asarray(img, dtype=np.int32) + grain, 0, 255).astype(np.uint8))


def image_copy(img: Image.Image, kind: str) -> Image.Image:
    """``img`` copied one of the :data:`IMAGE_KINDS` ways (saved as JPEG at quality 15 for "jpeg15")."""
    w, h = img.size
    if kind == "half":
        return img.resize((max(1, w // 2), max(1, h // 2)), Image.Resampling.LANCZOS)
    if kind == "crop85":
        cw, ch = int(w * 0.85), int(h * 0.85)
        return img.crop(((w - cw) // 2, (h - ch) // 2, (w - cw) // 2 + cw, (h - ch) // 2 + ch))
    if kind.startswith("turn"):
        return img.rotate(int(kind[4:]), expand=True)
    if kind == "mirror":
        return ImageOps.mirror(img)
    if kind == "grey":
        return ImageOps.grayscale(img).convert("RGB")
    if kind == "caption":
        strip = max(16, h // 8)
        out = Image.new("RGB", (w, h + strip), "white")
        out.paste(img, (0, 0))
        font = ImageFont.truetype(FONT, int(strip * 0.6)) if Path(FONT).exists() else None
        ImageDraw.Draw(out).text((8, h + strip // 6), "Holiday 2019, day 3", fill="black", font=font)
        return out
    if kind == "border":  # a window around it, as a screenshot shows it
        pad, bar = max(8, w // 20), max(16, h // 10)
        out = Image.new("RGB", (w + 2 * pad, h + pad + bar), (236, 236, 236))
        ImageDraw.Draw(out).rectangle((0, 0, w + 2 * pad, bar - 4), fill=(48, 52, 60))
        out.paste(img, (pad, bar))
        return out
    return img  # jpeg15: the same pixels, saved badly


def _photos(folder: Path, n: int, rng: np.random.Generator) -> list[Image.Image]:
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    chosen = rng.choice(len(paths), size=min(n, len(paths)), replace=False)
    return [Image.open(paths[i]).convert("RGB") for i in sorted(chosen)]


def _same_pictures(pictures: list[Image.Image], apart: float = 3.0) -> list[int]:
    """For each picture, the first one of ``pictures`` that is the same picture (itself when
    none is): a photo folder may hold one photo twice (GCompris's does: a pyramid in two
    activities, its pixels 0.8 of 255 apart on average), a copy to find, not a distinct photo.
    The same: at 32x32, colour values at most ``apart`` apart on average."""
    small = [np.asarray(p.resize((32, 32), Image.Resampling.BOX), dtype=np.float32) for p in pictures]
    out = []
    for n, x in enumerate(small):
        out.append(next((m for m in range(n) if float(np.abs(small[m] - x).mean()) <= apart), n))
    return out


def make_images(
    folder: Path, originals: int, others: int, photos: str | None, seed: int
) -> tuple[dict[str, str], dict[str, str]]:
    """Write the originals, their copies and the other photos; returns ``{file: original}``
    and ``{file: kind}`` ("original", "other" or a copy's kind)."""
    rng = np.random.default_rng(seed)
    pictures = (
        _photos(Path(photos), originals + others, rng)
        if photos
        else [synthetic_photo(seed * 100_000 + n, scene=n % 10) for n in range(originals + others)]
    )
    same = _same_pictures(pictures)
    source, kind = {}, {}
    folder.mkdir(parents=True, exist_ok=True)
    for n, img in enumerate(pictures):
        name = f"p{n:04d}.png"
        img.save(folder / name)
        source[name], kind[name] = f"p{same[n]:04d}.png", "original" if n < originals else "other"
        if n >= originals:
            continue
        for k in IMAGE_KINDS:
            copy = f"p{n:04d}-{k}.jpg"
            image_copy(img, k).save(folder / copy, quality=15 if k == "jpeg15" else 90)
            source[copy], kind[copy] = source[name], k
    return source, kind


def melody(seed: int, scale: int, seconds: float = 24.0, rate: int = 44100) -> np.ndarray:
    """A melody in one of a few scales (``scale``): notes with overtones, a soft attack and decay."""
    rng = np.random.default_rng(seed)
    base = 220.0 * 2 ** (scale / 12)
    steps = np.array([0, 2, 4, 5, 7, 9, 11, 12])
    out = np.zeros(int(seconds * rate), dtype=np.float64)
    t0 = 0.0
    while t0 < seconds:
        dur = float(rng.choice([0.25, 0.5, 0.75, 1.0]))
        f = base * 2 ** (rng.choice(steps) / 12)
        n = int(dur * rate)
        t = np.arange(n) / rate
        note = sum(0.5 / k * np.sin(2 * np.pi * f * k * t) for k in (1, 2, 3))
        note *= np.minimum(1.0, t / 0.02) * np.exp(-t * 2.5)
        a = int(t0 * rate)
        out[a : a + n] += note[: len(out) - a]
        t0 += dur
    return (0.5 * out / max(1e-9, np.abs(out).max())).astype(np.float32)


def _write_mp3(path: Path, wave: np.ndarray, rate: int) -> None:
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("libmp3lame", rate=rate)
        stream.bit_rate = 96_000
        frame = av.AudioFrame.from_ndarray(wave[None, :].astype(np.float32), format="fltp", layout="mono")
        frame.rate = rate
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


def make_audio(folder: Path, originals: int, others: int, seed: int) -> tuple[dict[str, str], dict[str, str]]:
    """Melodies, their copies (MP3, OGG, resampled, trimmed by 3 s) and other melodies in the same scales."""
    import soundfile as sf

    rate = 44100
    source, kind = {}, {}
    folder.mkdir(parents=True, exist_ok=True)
    for n in range(originals + others):
        wave = melody(seed * 100_000 + n, scale=n % 4)
        name = f"a{n:04d}.flac"
        sf.write(folder / name, wave, rate)
        source[name], kind[name] = name, "original" if n < originals else "other"
        if n >= originals:
            continue
        _write_mp3(folder / f"a{n:04d}-mp3.mp3", wave, rate)
        sf.write(folder / f"a{n:04d}-ogg.ogg", wave, rate, format="OGG", subtype="VORBIS")
        half = np.interp(np.arange(0, len(wave), 2), np.arange(len(wave)), wave).astype(np.float32)
        sf.write(folder / f"a{n:04d}-resampled.wav", half, rate // 2)
        sf.write(folder / f"a{n:04d}-trimmed.flac", wave[3 * rate :], rate)
        for k, ext in zip(AUDIO_KINDS, ("mp3", "ogg", "wav", "flac")):
            source[f"a{n:04d}-{k}.{ext}"], kind[f"a{n:04d}-{k}.{ext}"] = name, k
    return source, kind


def _write_video(path: Path, frames: list[np.ndarray], fps: int = 10) -> None:
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=fps)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


def clip(seed: int, scene: int, seconds: int = 16, fps: int = 10) -> list[np.ndarray]:
    """A clip: one photo-like picture per 4 s, panned slowly (frames 320x240)."""
    shots = [synthetic_photo(seed * 10 + s, scene, size=(400, 300)) for s in range(seconds // 4)]
    frames = []
    for n in range(seconds * fps):
        shot = shots[min(len(shots) - 1, n // (4 * fps))]
        dx = int(80 * ((n % (4 * fps)) / (4 * fps)))
        frames.append(np.asarray(shot.crop((dx, 30, dx + 320, 270))))
    return frames


def make_videos(folder: Path, originals: int, others: int, seed: int) -> tuple[dict[str, str], dict[str, str]]:
    """Clips, their copies (re-encoded at half size; cut by 2 s) and other clips of the same scenes."""
    source, kind = {}, {}
    folder.mkdir(parents=True, exist_ok=True)
    fps = 10
    for n in range(originals + others):
        frames = clip(seed * 100_000 + n, scene=n % 3, fps=fps)
        name = f"v{n:04d}.mp4"
        _write_video(folder / name, frames, fps)
        source[name], kind[name] = name, "original" if n < originals else "other"
        if n >= originals:
            continue
        small = [np.asarray(Image.fromarray(f).resize((160, 120))) for f in frames]
        _write_video(folder / f"v{n:04d}-smaller.mp4", small, fps)
        _write_video(folder / f"v{n:04d}-cut.mp4", frames[2 * fps :], fps)
        for k in VIDEO_KINDS:
            source[f"v{n:04d}-{k}.mp4"], kind[f"v{n:04d}-{k}.mp4"] = name, k
    return source, kind


# --- scoring -----------------------------------------------------------------------------------
def score(groups: list[list[str]], source: dict[str, str], kind: dict[str, str]) -> dict[str, Any]:
    """Pair precision and recall, overall and per kind of copy (a copy's pairs with its original
    and the other copies of it), of ``groups`` (file names)."""
    truth: set[tuple[str, str]] = set()
    by_source: dict[str, list[str]] = defaultdict(list)
    for name, src in source.items():
        by_source[src].append(name)
    for names in by_source.values():
        truth |= {(a, b) for a in names for b in names if a < b}
    found = {(a, b) for g in groups for a in g for b in g if a < b}
    out: dict[str, Any] = {"overall": _pr(found, truth)}
    for k in sorted({v for v in kind.values() if v not in ("original", "other")}):
        mine = {p for p in truth if kind[p[0]] == k or kind[p[1]] == k}
        claimed = {p for p in found if kind.get(p[0]) == k or kind.get(p[1]) == k}
        out[k] = _pr(claimed, mine)
    return out


def _pr(found: set, truth: set) -> dict[str, Any]:
    hit = len(found & truth)
    return {
        "precision": round(hit / len(found), 4) if found else 1.0,
        "recall": round(hit / len(truth), 4) if truth else 1.0,
        "pairs": len(truth),
        "found": len(found),
    }


def _sweep(src: Any, modality: str, source: dict[str, str], kind: dict[str, str]) -> list[dict[str, Any]]:
    """Precision and recall over :data:`THRESHOLDS`, from one pass over the evidence."""
    from retrieval.search.duplicates import accepted, edges_of, group

    edges, rows = edges_of(src, modality, min(THRESHOLDS))
    out = []
    for t in THRESHOLDS:
        groups = group(accepted(edges, t), rows, src.root, modality)
        named = [[Path(c.path).name for c in g.items] for g in groups]
        out.append({"threshold": t, **score(named, source, kind)["overall"]})
    return out


def _evaluate(engine: Any, modality: str, source: dict[str, str], kind: dict[str, str]) -> dict[str, Any]:
    from retrieval.search.duplicates import DEFAULT_THRESHOLDS, Sources

    start = time.perf_counter()
    groups = engine.duplicates(modality=modality)
    seconds = time.perf_counter() - start
    named = [[Path(c.path).name for c in g.items] for g in groups]
    result = {"threshold": DEFAULT_THRESHOLDS[modality], "seconds": round(seconds, 3), **score(named, source, kind)}

    def shards(name: str) -> Any:
        return engine.index.shards(name)

    result["sweep"] = _sweep(Sources(engine.store, shards, str(engine.root)), modality, source, kind)
    return result


# --- scale -------------------------------------------------------------------------------------
def run_scale(n: int, dim: int = 384, planted: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Seconds to find the copies among ``n`` synthetic unit vectors and pairs of hashes (whole,
    borders trimmed) with ``planted`` copies (vectors 0.97 alike; the whole hashes 2 bits apart,
    or for half of them the copy's trimmed hash 2 bits from the original's), as
    :func:`retrieval.search.duplicates.edges_of` does for pictures: the hashes' range search
    against the eight turns, each picture's nearest neighbours by vector, and the grouping; and
    the thumbnail check of two photos of one scene, timed per pair (its whole cost: that times
    the neighbour pairs)."""
    from types import SimpleNamespace

    from retrieval.models.fingerprint import contained, image_fingerprint
    from retrieval.search.duplicates import (
        HASH_FLOOR,
        NEIGHBOURS,
        VECTOR_FLOOR,
        group,
        hash_edges,
        neighbour_pairs,
    )

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    hashes = rng.integers(0, 256, size=(n, 2, 8), dtype=np.uint8)  # whole, borders trimmed: all differ (the worst case)
    originals = rng.choice(n - planted, size=planted, replace=False)
    copies = np.arange(n - planted, n)
    noise = rng.standard_normal((planted, dim)).astype(np.float32)
    noise -= (noise * x[originals]).sum(1, keepdims=True) * x[originals]
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    x[copies] = 0.97 * x[originals] + np.sqrt(1 - 0.97**2) * noise
    flips = np.zeros((planted, 8), dtype=np.uint8)
    flips[:, 0] = 0b00010001
    framed = np.arange(planted) % 2 == 1  # half the copies framed: their trimmed hash is the original's
    hashes[copies[~framed], 0] = hashes[originals[~framed], 0] ^ flips[~framed]
    hashes[copies[framed], 1] = hashes[originals[framed], 0] ^ flips[framed]
    ids = np.arange(n, dtype=np.int64)
    start = time.perf_counter()
    edges = hash_edges(ids, hashes, HASH_FLOOR)
    hashed = time.perf_counter() - start
    pairs = neighbour_pairs(ids, x, NEIGHBOURS, VECTOR_FLOOR)
    rows = {i: SimpleNamespace(id=i, path=f"{i}.jpg", kind="file", size=0, width=1, height=1, duration=None, mtime_ns=0)
            for i in {e.a for e in edges} | {e.b for e in edges}}  # fmt: skip
    groups = group(edges, rows, "/", "image")
    seconds = time.perf_counter() - start
    prints = [image_fingerprint(synthetic_photo(seed + k, scene=0)) for k in range(2)]  # one scene: alike
    tick = time.perf_counter()
    for _ in range(50):
        contained(prints[0], prints[1]), contained(prints[1], prints[0])
    per_pair = (time.perf_counter() - tick) / 50
    planted_pairs = {(int(min(a, b)), int(max(a, b))) for a, b in zip(originals, copies)}
    found = {(min(c.id for c in g.items), max(c.id for c in g.items)) for g in groups if len(g.items) == 2}
    return {
        "vectors": n,
        "dim": dim,
        "planted": planted,
        "seconds": round(seconds, 2),
        "hash_seconds": round(hashed, 2),
        "neighbour_pairs": len(pairs),
        "pixel_ms_per_pair": round(per_pair * 1000, 2),
        "recall": round(len(found & planted_pairs & {(min(e.a, e.b), max(e.a, e.b)) for e in edges}) / planted, 4),
        "groups": len(groups),
    }


# --- the run -----------------------------------------------------------------------------------
def run_duplicates(
    out_dir: str,
    model: str = "xmr-mini",
    originals: int = 40,
    others: int = 80,
    photos: str | None = None,
    audio: int = 12,
    videos: int = 6,
    scale: int = 100_000,
    seed: int = 0,
) -> dict[str, Any]:
    """See the module docstring. ``audio``/``videos``: originals of each (0: none); others as many
    again; ``scale``: synthetic image vectors to time (0: none). Returns the results (their files
    under ``files``)."""
    import indexer
    from retrieval import create_model
    from retrieval.models.fingerprint import Fingerprinter
    from retrieval.search.engine import Engine

    encoder = create_model(model)
    work = Path(tempfile.mkdtemp(prefix="xmr-bench-duplicates-"))
    result: dict[str, Any] = {"model": model, "photos": photos or "synthetic", "seed": seed}
    try:
        media = work / "media"
        source, kind = make_images(media / "pictures", originals, others, photos, seed)
        sets = {"image": (source, kind)}  # scored by file name: p*, a* and v* never meet
        if audio:
            sets["audio"] = make_audio(media / "sounds", audio, audio, seed)
        if videos:
            sets["video"] = make_videos(media / "videos", videos, videos, seed)
        start = time.perf_counter()
        options = indexer.IndexOptions(fingerprinter=Fingerprinter(), speech=False, ocr=False)
        summary = indexer.index_folder(media, encoder, options)
        result["index_seconds"] = round(time.perf_counter() - start, 1)
        result["files"] = sum(summary.counts.values())
        with Engine.open(media / ".xmr", model=encoder) as engine:
            for modality, (src, kinds) in sets.items():
                result[modality] = _evaluate(engine, modality, src, kinds)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if scale:
        result["scale"] = run_scale(scale, dim=encoder.embed_dim, seed=seed)
    result["machine"] = machine_info()
    table = _tables(result)
    files = write_outputs(out_dir, "duplicates", result, table)
    plot = _plot(result, Path(out_dir) / "duplicates.png")
    result["files"] = {k: str(v) for k, v in files.items()} | ({"png": str(plot)} if plot else {})
    return result


def _tables(result: dict[str, Any]) -> str:
    parts = []
    for modality in ("image", "audio", "video"):
        if modality not in result:
            continue
        r = result[modality]
        rows = [{"kind": k, **v} for k, v in r.items() if isinstance(v, dict) and "precision" in v]
        parts.append(f"### {modality} (threshold {r['threshold']}, {r['seconds']} s)\n")
        parts.append(markdown_table(rows, ["kind", "precision", "recall", "pairs", "found"]))
        best = [s for s in r["sweep"] if s["precision"] >= 0.95]
        sweep = [s for s in r["sweep"] if round(s["threshold"] * 100) % 2 == 0]
        parts.append(markdown_table(sweep, ["threshold", "precision", "recall", "found"]))
        if best:
            top = max(best, key=lambda s: (s["recall"], -s["threshold"]))
            parts.append(f"best recall at precision >= 0.95: {top['recall']} at threshold {top['threshold']}\n")
    if "scale" in result:
        parts.append(markdown_table([result["scale"]], list(result["scale"])))
    return "\n".join(parts)


def _plot(result: dict[str, Any], path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(5, 4))
    for modality in ("image", "audio", "video"):
        if modality in result:
            sweep = result[modality]["sweep"]
            ax.plot([s["recall"] for s in sweep], [s["precision"] for s in sweep], marker=".", label=modality)
    ax.set_xlabel("pair recall")
    ax.set_ylabel("pair precision")
    ax.set_title("xmr duplicates over thresholds")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
