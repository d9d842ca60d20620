"""Text in pictures, found: phrases you choose drawn into pictures (signs on photos, in sizes,
colours and small rotations; printed pages; screenshot-like windows) among photos without text,
searched by the phrase and by a part of it, with text read (``--ocr``) and with the image tower
alone (``--no-ocr``) on the same folder.

Every phrase holds a word of its own, two words of a vocabulary run together ("Harbourmeadow"),
and one or two other words of the vocabulary or a four-digit number. Reported: phrase -> picture
R@1 and part -> picture R@5 (the part: the phrase's number, else its own word cut three letters
into its second half, "harbourmea"), per kind and signal; how often a photo without text
is among the top 5 of a phrase that is in no picture, found by text read in it (textures read as
words), and the share of those photos in which any line was read; seconds per picture read,
with and without text. Photos: ``--photos DIR`` (every ``*.png``/``*.jpg`` under it), else
pictures of coloured noise and gradients.

Run: ``xmr bench ocr [--pictures 40] [--photos DIR]``.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .report import machine_info, markdown_table, write_outputs

log = logging.getLogger(__name__)
FONTS = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSerif-Bold.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationMono-Regular.ttf",
)
WORDS = (
    "harbour", "lantern", "orchard", "granite", "meadow", "velvet", "copper", "falcon", "thimble", "saffron",
    "juniper", "quarry", "bramble", "citadel", "marble", "tundra", "walnut", "glacier", "pepper", "canyon",
    "willow", "cobalt", "maple", "ember", "plaza", "bakery", "station", "library", "museum", "garden",
    "refurbishment", "invoice", "delivery", "warranty", "reception", "departure", "exhibition", "pharmacy",
)  # fmt: skip
KINDS = ("sign", "page", "screen")


def run_ocr(
    out_dir: str, model: str = "xmr-mini", pictures: int = 40, photos: str | None = None, seed: int = 0
) -> dict:
    """See the module docstring.

    Raises:
        retrieval.models.ocr.OcrUnavailable: the extra ocr is not installed.
    """
    import indexer
    from retrieval import create_model
    from retrieval.models.ocr import TextReader
    from retrieval.search.engine import Engine

    reader, encoder = TextReader(), create_model(model)
    rng = np.random.default_rng(seed)
    work = Path(tempfile.mkdtemp(prefix="xmr-bench-ocr-"))
    try:
        backgrounds = _photos(Path(photos), pictures) if photos else []
        phrases = _phrases(rng, pictures * len(KINDS) + pictures)
        made, plain = _make(work / "media", rng, phrases[: pictures * len(KINDS)], backgrounds, pictures)
        absent = [phrase for phrase, _ in phrases[pictures * len(KINDS) :]]
        result: dict[str, Any] = {"model": model, "reader": reader.model_id, "pictures": len(made) + len(plain)}
        speed = _speed(reader, made, plain)
        for ocr in (False, True):
            shutil.rmtree(work / "media" / ".xmr", ignore_errors=True)
            options = indexer.IndexOptions(ocr=ocr, text_reader=reader)
            indexer.index_folder(work / "media", encoder, options)
            with Engine.open(work / "media" / ".xmr", model=encoder) as engine:
                signal = "fused" if ocr else "image_tower"
                result[signal] = _find(engine, made, plain, absent)
        result["speed"] = speed | _indexing(encoder, reader, plain, work) | _video(reader, work, rng, backgrounds)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["machine"] = machine_info()
    rows = [{"kind": kind, "signal": s, **result[s][kind]} for kind in KINDS for s in ("fused", "image_tower")]
    table = markdown_table(rows, ["kind", "signal", "phrase_R@1", "part_R@5"])
    noise = {s: result[s]["textless_in_top5"] for s in ("fused", "image_tower")}
    table += f"\nphotos without text in the top 5 of an absent phrase: {noise}\n"
    table += "\n" + markdown_table([speed], list(speed))
    indexing = {k: v for k, v in result["speed"].items() if k not in speed}
    table += "\n" + markdown_table([indexing], list(indexing))
    result["files"] = {k: str(v) for k, v in write_outputs(out_dir, "ocr", result, table).items()}
    return result


def _indexing(encoder: Any, reader: Any, plain: list[Path], work: Path) -> dict[str, float]:
    """Seconds to index a folder of the photos without text, with text read and without (one
    decode worker a core, as ``xmr index``), and their ratio."""
    import indexer

    folder = work / "photos"
    folder.mkdir()
    for path in plain:
        shutil.copy(path, folder / path.name)
    took = {}
    for ocr in (False, True):
        shutil.rmtree(folder / ".xmr", ignore_errors=True)
        started = time.perf_counter()
        indexer.index_folder(folder, encoder, indexer.IndexOptions(ocr=ocr, text_reader=reader))
        took[ocr] = time.perf_counter() - started
    return {
        "photos_indexed_seconds_ocr_off": round(took[False], 2),
        "photos_indexed_seconds_ocr_on": round(took[True], 2),
        "photos_indexing_speed_with_ocr": round(took[False] / took[True], 3),
    }


def _video(reader: Any, work: Path, rng: np.random.Generator, backgrounds: list[Path]) -> dict[str, float]:
    """Seconds to read the text of a minute of 640x360 video (a frame every 2 s, as indexed): a
    subtitle shown from 20 s to 26 s over pictures that change every 10 s."""
    from indexer.ingest.frame_text import read_video_text
    from indexer.ingest.video import FRAME_SECONDS

    from .media import write_video

    scenes = [np.asarray(_background(rng, backgrounds, k).resize((640, 360))) for k in range(6)]
    shots, seconds = [], []
    for k, scene in enumerate(scenes):
        shots.append(scene)
        seconds.append(10.0)
        if k == 2:  # 20-30 s: the caption for its first 6 s
            shown = Image.fromarray(scene)
            draw = ImageDraw.Draw(shown)
            draw.rectangle((20, 290, 620, 340), fill=(16, 16, 16))  # a subtitle's band
            draw.text((30, 296), "Harbourmeadow Station 4471", fill=(255, 255, 255), font=_font(rng, 32))
            shots[-1], seconds[-1] = np.asarray(shown), 6.0
            shots.append(scene)
            seconds.append(4.0)
    path = write_video(work / "video.mp4", shots, seconds_each=seconds, fps=10, gop=50)
    started = time.perf_counter()
    lines, frames = read_video_text(reader, path, FRAME_SECONDS)
    took = time.perf_counter() - started
    caption = [(a, b) for a, b, text, _, _ in lines if "4471" in text]
    return {
        "video_minute_seconds": round(took, 2),
        "video_frames_read": frames,
        "video_frames": int(60 / FRAME_SECONDS),
        "video_caption_shown": list(caption[0]) if caption else None,
        "video_lines": len(lines),
    }


def _phrases(rng: np.random.Generator, n: int) -> list[tuple[str, str]]:
    """``(phrase, part)``: distinct phrases, each with a word of its own (see the module
    docstring), and the part of it a query gives."""
    pairs = [(a, b) for a in WORDS for b in WORDS if a != b]
    numbers = rng.choice(np.arange(1000, 10000), size=n, replace=False)
    out = []
    for k, pick in enumerate(rng.permutation(len(pairs))[:n]):
        first, second = pairs[pick]
        own = (first + second).title()
        others = [str(w).title() for w in rng.choice(WORDS, size=2, replace=False)]
        if rng.random() < 0.3:
            out.append((f"{own} {numbers[k]}", str(numbers[k])))
        else:
            out.append((" ".join([own, *others[: int(rng.integers(1, 3))]]), (first + second[:3]).lower()))
    return out


def _font(rng: np.random.Generator, size: int) -> Any:
    fonts = [f for f in FONTS if Path(f).is_file()]
    if not fonts:
        return ImageFont.load_default(size=size)
    return ImageFont.truetype(str(fonts[int(rng.integers(len(fonts)))]), size)


def _photos(folder: Path, n: int) -> list[Path]:
    found = sorted(p for ext in ("*.png", "*.jpg", "*.jpeg") for p in folder.rglob(ext))
    return found[: 2 * n]


def _background(rng: np.random.Generator, photos: list[Path], k: int) -> Image.Image:
    if photos:
        return Image.open(photos[k % len(photos)]).convert("RGB").resize((1024, 768))
    noise = rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)
    return Image.fromarray(noise).resize((1024, 768), Image.BICUBIC)


def _make(
    root: Path, rng: np.random.Generator, phrases: list[tuple[str, str]], photos: list[Path], n: int
) -> tuple[list[tuple[Path, str, str, str]], list[Path]]:
    """``n`` pictures of each kind, each holding one phrase, and ``n`` photos without text."""
    root.mkdir(parents=True)
    made = []
    for k, (phrase, part) in enumerate(phrases):
        kind = KINDS[k % len(KINDS)]
        if kind == "sign":
            picture = _background(rng, photos, k)
            size = int(rng.integers(28, 72))
            font = _font(rng, size)
            colour = tuple(int(c) for c in rng.integers(0, 256, 3))
            ink = (255, 255, 255) if sum(colour) < 380 else (0, 0, 0)
            width = int(ImageDraw.Draw(picture).textlength(phrase, font=font)) + 2 * size
            sign = Image.new("RGB", (width, 2 * size), colour)
            ImageDraw.Draw(sign).text((size, size // 2), phrase, fill=ink, font=font)
            sign = sign.rotate(float(rng.uniform(-8, 8)), expand=True, fillcolor=colour)
            x, y = int(rng.integers(0, max(1, 1024 - sign.width))), int(rng.integers(0, max(1, 768 - sign.height)))
            picture.paste(sign, (x, y))
        elif kind == "page":
            picture = Image.new("RGB", (850, 1100), (250, 250, 245))
            draw = ImageDraw.Draw(picture)
            font = _font(rng, 26)
            lines = [" ".join(rng.choice(WORDS, size=4)) for _ in range(12)]
            lines[int(rng.integers(len(lines)))] = phrase
            for n_line, line in enumerate(lines):
                draw.text((80, 90 + 70 * n_line), line, fill=(25, 25, 25), font=font)
        else:
            picture = Image.new("RGB", (1280, 800), (236, 236, 236))
            draw = ImageDraw.Draw(picture)
            draw.rectangle((0, 0, 1280, 44), fill=(60, 64, 72))
            draw.text((20, 10), phrase, fill=(240, 240, 240), font=_font(rng, 22))
            for n_line in range(8):
                draw.rectangle(
                    (40, 90 + 80 * n_line, 40 + int(rng.integers(300, 1100)), 110 + 80 * n_line), fill=(200, 200, 205)
                )
        path = root / f"{kind}-{k:03d}.png"
        picture.save(path)
        made.append((path, kind, phrase, part))
    plain = []
    for k in range(n):
        path = root / f"photo-{k:03d}.png"
        _background(rng, photos[n:] or photos, k + n).save(path)
        plain.append(path)
    return made, plain


def _find(engine: Any, made: list[tuple[Path, str, str, str]], plain: list[Path], absent: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind in KINDS:
        ones = [(p, phrase, part) for p, k, phrase, part in made if k == kind]
        r1 = np.mean([Path(engine.search(f'"{ph}"', to="image", k=1)[0].path).name == p.name for p, ph, _ in ones])
        r5 = np.mean(
            [p.name in {Path(h.path).name for h in engine.search(part, to="image", k=5)} for p, _, part in ones]
        )
        out[kind] = {"phrase_R@1": round(100 * float(r1), 1), "part_R@5": round(100 * float(r5), 1)}
    names = {p.name for p in plain}
    textless = [
        any(Path(h.path).name in names and h.track == "text" for h in engine.search(ph, to="image", k=5))
        for ph in absent
    ]
    out["textless_in_top5"] = round(float(np.mean(textless)), 3)
    return out


def _speed(reader: Any, made: list[tuple[Path, str, str, str]], plain: list[Path]) -> dict[str, Any]:
    """Seconds a picture, read alone: with text, and photos without; lines read in those."""
    reader.load()
    took, lines = [], 0
    for path, *_ in made:
        started = time.perf_counter()
        reader.read(path)
        took.append(time.perf_counter() - started)
    empty, read_in_plain = [], 0
    for path in plain:
        started = time.perf_counter()
        found = reader.read(path)
        empty.append(time.perf_counter() - started)
        read_in_plain += bool(found)
        lines += len(found)
    return {
        "seconds_with_text": round(float(np.mean(took)), 3),
        "seconds_without_text": round(float(np.mean(empty)), 3),
        "photos_with_a_line_read": round(read_in_plain / max(1, len(plain)), 3),
        "lines_read_in_photos": lines,
    }
