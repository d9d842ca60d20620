"""The text recogniser (retrieval/models/ocr.py): PP-OCRv4 on ONNX Runtime, real forward passes
on printed pages Pillow draws, and pictures without text."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from retrieval.models.image import ImageDecodeError
from tests.helpers import ocr_reader, write_page


@pytest.fixture(scope="module")
def reader():  # noqa: ANN201
    return ocr_reader()


def test_printed_lines_are_read_top_to_bottom_with_their_boxes(tmp_path: Path, reader) -> None:
    page = write_page(tmp_path / "page.png", ["Invoice 7781", "Refurbishment of the north wing"])
    lines = reader.read(page)
    assert [line.text.split()[-1] for line in lines] == ["7781", "wing"]
    assert "Refurbishment" in lines[1].text and all(0.6 <= line.confidence <= 1 for line in lines)
    (x0, y0), (x1, y1) = np.min(lines[1].box, axis=0), np.max(lines[1].box, axis=0)
    assert 80 < x0 < 160 and 340 < y0 < 380 + 64 and x1 > 900 and y1 < 460  # where it was drawn: y 360


def test_a_large_picture_is_read_small_and_its_boxes_are_in_its_own_pixels(tmp_path: Path, reader) -> None:
    page = write_page(tmp_path / "scan.jpg", ["Invoice 7781"], size=(4800, 3600), font_size=192, top=600)
    (line,) = reader.read(page)
    assert line.text.endswith("7781")
    (x0, y0), (x1, y1) = np.min(line.box, axis=0), np.max(line.box, axis=0)
    assert 80 < x0 < 180 and 600 < y0 < 700 and 1100 < x1 < 1400 and 750 < y1 < 900  # drawn at 120, 600; 3x the page


def test_pictures_without_text_hold_none_and_a_broken_one_says_why(tmp_path: Path, reader) -> None:
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (900, 1200, 3), dtype=np.uint8)).save(tmp_path / "noise.png")
    grass = np.zeros((900, 1200, 3), np.uint8)
    grass[..., 1] = 90 + 60 * np.sin(np.arange(1200) / 3)[None] * np.cos(np.arange(900) / 5)[:, None]
    Image.fromarray(grass).save(tmp_path / "grass.png")
    Image.new("RGB", (640, 480), (30, 120, 200)).save(tmp_path / "sky.jpg")
    for name in ("noise.png", "grass.png", "sky.jpg"):
        assert reader.read(tmp_path / name) == [], name
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(ImageDecodeError):
        reader.read(tmp_path / "broken.png")


def test_words_the_recogniser_wrote_together_are_cut_apart_where_it_is_clear() -> None:
    from retrieval.models.ocr import spaced

    assert spaced("VelvetlibraryExhibitionWalnut") == "Velvetlibrary Exhibition Walnut"
    assert spaced("Plazavelvet6568  x") == "Plazavelvet 6568 x"
    for kept in ("iPhone 15", "McDonald", "COVID19", "citadelwalnut", "1,250.00EUR"):
        assert spaced(kept) == kept  # short runs, one case, punctuation: as read


def test_a_100_megapixel_scan_is_read_without_its_full_decode_in_memory(tmp_path: Path, reader) -> None:
    """A JPEG of 12000 x 8400 pixels (over Pillow's bomb guard) is read at a reduced scale: its
    line found, its box in its own pixels, the reading process's peak memory grown by less than
    the full decode would take (100 MB grey, 300 MB as RGB)."""
    import subprocess
    import sys

    from PIL import ImageDraw, ImageFont

    scan = Image.new("L", (12000, 8400), 235)
    ImageDraw.Draw(scan).text(
        (600, 3000), "Survey of the north field 1887", fill=20, font=ImageFont.load_default(size=420)
    )
    scan.save(tmp_path / "scan.jpg", quality=80)
    del scan
    write_page(tmp_path / "page.png", ["Invoice 7781"])
    child = (
        "import sys, resource, warnings; warnings.simplefilter('ignore')\n"
        "from retrieval.models.ocr import TextReader\n"
        "reader = TextReader(); reader.read(sys.argv[1]); reader.read(sys.argv[1])\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "(line,) = reader.read(sys.argv[2])\n"
        "grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024\n"
        "print(line.text, min(x for x, _ in line.box), max(x for x, _ in line.box), grown, sep='|')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", child, str(tmp_path / "page.png"), str(tmp_path / "scan.jpg")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert out.returncode == 0, out.stderr
    text, left, right, grown = out.stdout.strip().split("|")
    assert text == "Survey of the north field 1887"
    assert 500 < float(left) < 700 and 5500 < float(right) < 7000  # drawn from x 600, in the scan's pixels
    assert int(grown) < 100, f"reading the scan grew the process by {grown} MB"


def test_boxes_the_first_look_finds_in_a_picture_without_text_cost_no_full_read(reader) -> None:
    """Detection finds boxes in bars without letters (as in most photos: edges, textures); read
    at the look's size they are no line, so the full read never runs; a page passes the look."""
    from retrieval.models.ocr import _bgr

    bars = Image.new("RGB", (1280, 800), (236, 236, 236))
    draw = ImageDraw.Draw(bars)
    for k in range(2):
        draw.rectangle((40, 90 + 80 * k, 340 + 90 * k, 110 + 80 * k), fill=(120, 120, 125))
    look = bars.resize((640, 400))
    boxes, _ = reader._engine.text_det(_bgr(look))
    assert boxes is not None and len(boxes) >= 1  # detection alone would read this picture whole

    engine, full_reads = reader._engine, []

    class Counting:  # the real engine; calls of its full read counted
        def __getattr__(self, name: str):  # noqa: ANN204
            return getattr(engine, name)

        def __call__(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN204
            full_reads.append(1)
            return engine(*args, **kwargs)

    reader._engine = Counting()
    try:
        assert reader.read_image(bars) == [] and full_reads == []
        page = Image.new("RGB", (1280, 800), (236, 236, 236))
        ImageDraw.Draw(page).text((40, 90), "Invoice 7781", fill=(20, 20, 20), font=ImageFont.load_default(size=48))
        assert [line.text for line in reader.read_image(page)] == ["Invoice 7781"] and full_reads == [1]
    finally:
        reader._engine = engine


@pytest.mark.parametrize("degrees", [8, 90, 180, 270])
def test_turned_and_upside_down_text_is_read(tmp_path: Path, reader, degrees: int) -> None:
    """A page turned (a phone's photo of it, a scan fed upside down): its lines read as written."""
    page = Image.open(write_page(tmp_path / "page.png", ["Invoice 7781", "Refurbishment of the north wing"]))
    turned = page.convert("RGB").rotate(degrees, expand=True, fillcolor=(240, 235, 220))
    read = {line.text for line in reader.read_image(turned)}
    assert read == {"Invoice 7781", "Refurbishment of the north wing"}, read


def test_a_thin_picture_is_read_in_the_memory_of_a_small_one(tmp_path: Path) -> None:
    """A strip 1600 x 16 (a rule, a banner): detection never enlarges it (PP-OCR's default
    takes the short side to 736 px, an array of gigabytes for such a strip)."""
    import subprocess
    import sys

    for name, size in (("strip.png", (1600, 16)), ("band.png", (1200, 40))):
        Image.new("RGB", size, (200, 30, 30)).save(tmp_path / name)
    write_page(tmp_path / "page.png", ["Invoice 7781"])
    child = (
        "import sys, resource\n"
        "from retrieval.models.ocr import TextReader\n"
        "reader = TextReader(); reader.read(sys.argv[1]); reader.read(sys.argv[1])\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "read = [reader.read(p) for p in sys.argv[2:]]\n"
        "print(read, (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", child, *(str(tmp_path / n) for n in ("page.png", "strip.png", "band.png"))],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert out.returncode == 0, out.stderr
    read, grown = out.stdout.rsplit(" ", 1)
    assert read == "[[], []]" and int(grown) < 200, f"reading thin pictures grew the process by {grown} MB"
