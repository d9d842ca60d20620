"""Text in pictures end to end: read while indexing (the reading phase of build.py, spans of
source ``ocr``), kept in step with the folder, found by a word, a part of one or a phrase and
fused with the image tower; ``xmr text`` and the hits' box. Real PP-OCRv4 forward passes on
pages Pillow draws."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import indexer
from indexer.storage.fulltext import parse_terms
from indexer.storage.layout import Layout
from indexer.storage.manifest import read_manifest
from indexer.storage.store import Store
from retrieval import create_model
from retrieval.search.engine import Engine
from tests.helpers import ocr_reader, write_image, write_page, write_video


@pytest.fixture(scope="module")
def mini():  # noqa: ANN201
    return create_model("xmr-mini")


@pytest.fixture(scope="module")
def reader():  # noqa: ANN201
    return ocr_reader()


def _folder(root: Path) -> Path:
    write_page(root / "pics/invoice.png", ["Invoice 7781", "Refurbishment of the north wing"])
    write_page(root / "pics/card.png", ["Happy birthday Grandmother"], size=(1200, 800))
    write_image(root / "pics/plain.png", seed=1, size=200)
    return root


def _run(root: Path, mini, reader, **kw) -> indexer.Summary:
    return indexer.index_folder(root, mini, indexer.IndexOptions(workers=0, text_reader=reader, **kw))


def _store(root: Path) -> Store:
    layout = Layout(root / ".xmr")
    manifest = read_manifest(layout)
    return Store.of_index(layout.db_url(manifest), manifest)


def _lines(root: Path) -> dict[str, list[str]]:
    store = _store(root)
    try:
        names = {r.id: Path(r.path).name for r in store.file_rows()}
        out: dict[str, list[str]] = {}
        for sp in store.spans_of(list(names), "ocr"):
            out.setdefault(names[sp.item_id], []).append(sp.text)
        return out
    finally:
        store.close()


def test_text_in_pictures_is_read_found_by_words_parts_and_phrases(tmp_path: Path, mini, reader, db_url: str) -> None:
    root = _folder(tmp_path / "media")
    summary = _run(root, mini, reader, db_url=db_url)
    assert (summary.pictures_read, summary.text_lines) == (3, 3)
    lines = _lines(root)
    assert set(lines) == {"invoice.png", "card.png"} and lines["invoice.png"][0].endswith("7781")
    with Engine.open(root / ".xmr", model=mini) as engine:
        for query in ("7781", "refurb", '"north wing"', "grandmother birthday"):
            top = engine.search(query, to="image", k=3)[0]
            assert Path(top.path).name == ("card.png" if "grand" in query else "invoice.png"), query
            assert top.track == "text" and top.box and len(top.box) == 4 and top.start is None, query
        assert "7781" in engine.search("7781", to="image", k=1)[0].snippet
        part = parse_terms("refurb")  # full text alone: a part of a word matches read text's words
        (span, _, _), *rest = engine.index.search_spans(part, 5, "ocr", None, True)
        assert not rest and engine.index.spans_by_id([span])[span].text.startswith("Refurbishment")
        assert engine.index.search_spans(part, 5, "ocr", None) == []  # whole words only, as speech
        plain = engine.search("a striped colour field", to="image", k=3)
        assert "plain.png" in {Path(h.path).name for h in plain}  # the image tower still answers
        hit, read = engine.text(root / "pics/invoice.png")
        assert [line["text"].split()[-1] for line in read] == ["7781", "wing"] and len(read[0]["box"]) == 4
        assert engine.text(root / "pics/plain.png")[1] == []
    again = _run(root, mini, reader, db_url=db_url)
    assert again.pictures_read == 0 and again.unchanged == 3  # read once, until a picture changes
    write_page(root / "pics/card.png", ["Congratulations Grandfather"], size=(1200, 800))
    (root / "pics/invoice.png").rename(root / "pics/bill.png")
    changed = _run(root, mini, reader, db_url=db_url)
    assert changed.pictures_read == 1 and changed.moved == 1
    assert _lines(root)["card.png"] == ["Congratulations Grandfather"] and "bill.png" in _lines(root)


def test_ocr_turned_on_later_reads_what_is_indexed_and_a_failure_costs_one_picture(
    tmp_path: Path, mini, reader
) -> None:
    root = _folder(tmp_path / "media")
    off = _run(root, mini, reader, ocr=False)
    assert off.pictures_read == 0 and _lines(root) == {}
    assert read_manifest(Layout(root / ".xmr")).options["ocr"] is False
    assert _run(root, mini, reader).pictures_read == 0  # a plain re-run keeps what was recorded

    class Picky:
        source, model_id = reader.source, reader.model_id

        def read(self, path: Path):  # noqa: ANN201
            if path.name == "card.png":
                raise ValueError("corrupt or truncated image: broken data stream")
            return reader.read(path)

    on = _run(root, mini, Picky(), ocr=True)
    assert (on.pictures_read, on.updated, on.added) == (2, 0, 0)  # nothing embedded again
    assert set(_lines(root)) == {"invoice.png"}
    retried = _run(root, mini, reader, retry_failed=True)
    assert retried.pictures_read == 1 and set(_lines(root)) == {"invoice.png", "card.png"}


def test_the_cli_prints_what_was_read_and_the_box_of_a_hit(tmp_path: Path, mini, reader) -> None:
    from cli import app

    root = _folder(tmp_path / "media")
    _run(root, mini, reader)
    runner = CliRunner()
    index = ["--index", str(root / ".xmr")]
    printed = runner.invoke(app, ["text", str(root / "pics/invoice.png"), *index])
    assert printed.exit_code == 0 and printed.output.splitlines()[1].startswith("Refurbishment")
    as_json = json.loads(runner.invoke(app, ["text", str(root / "pics/invoice.png"), *index, "--json"]).output)
    assert len(as_json["lines"]) == 2 and len(as_json["lines"][0]["box"]) == 4
    nothing = runner.invoke(app, ["text", str(root / "pics/plain.png"), *index])
    assert nothing.exit_code == 0 and "no text read" in nothing.output
    (hit,) = json.loads(runner.invoke(app, ["search", "7781", *index, "--to", "image", "-k", "1", "--json"]).output)
    assert hit["track"] == "text" and "7781" in hit["snippet"] and len(hit["box"]) == 4
    info = runner.invoke(app, ["info", *index])
    assert "text      3 pictures read, 2 with text, 3 lines" in info.output and "speech" not in info.output


def _captioned(path: Path, caption: str) -> Path:
    """A 12 s video: a gradient, with ``caption`` burnt into it from 4 s to 8 s."""
    from PIL import Image, ImageDraw, ImageFont

    ramp = np.linspace(40, 200, 640, dtype=np.uint8)
    plain = np.stack([np.tile(ramp, (360, 1)), np.tile(ramp[::-1], (360, 1)), np.full((360, 640), 90, np.uint8)], -1)
    shown = Image.fromarray(plain)
    ImageDraw.Draw(shown).text((40, 280), caption, fill=(255, 255, 255), font=ImageFont.load_default(size=40))
    return write_video(path, [plain, np.asarray(shown), plain], seconds_each=4.0, fps=10)


def test_a_caption_burnt_into_a_video_is_a_span_with_its_times(tmp_path: Path, mini, reader) -> None:
    from cli import app

    root = tmp_path / "media"
    _captioned(root / "clips/party.mp4", "Happy birthday Grandmother")
    write_image(root / "pics/plain.png", seed=1, size=200)
    summary = _run(root, mini, reader)
    # Six frames (one every 2 s): the three keyframes read, each frame after one shows the same.
    assert (summary.videos_read, summary.frames_read, summary.pictures_read) == (1, 3, 1)
    with Engine.open(root / ".xmr", model=mini) as engine:
        (top, *_) = engine.search("grandmother", to="video", k=2)
        assert Path(top.path).name == "party.mp4" and top.track == "text" and top.listed_under == "image"
        assert (top.start, top.end) == (pytest.approx(4.0, abs=0.11), 8.0) and len(top.box) == 4
        assert "Grandmother" in top.snippet
        _, lines = engine.text(root / "clips/party.mp4")
    assert [(line["text"], line["start"], line["end"]) for line in lines] == [
        ("Happy birthday Grandmother", pytest.approx(4.0, abs=0.11), 8.0)
    ]
    printed = CliRunner().invoke(app, ["text", str(root / "clips/party.mp4"), "--index", str(root / ".xmr")])
    assert printed.output.splitlines() == ["[00:00:04-00:00:08] Happy birthday Grandmother"]


def test_a_line_seen_over_frames_is_kept_once_with_its_surest_reading() -> None:
    from indexer.ingest.frame_text import merged
    from retrieval.models.ocr import Line

    def line(text: str, confidence: float, y: float = 10.0) -> Line:
        return Line(text, [(0, y), (50, y), (50, y + 9), (0, y + 9)], confidence)

    title, noisy, sure = line("Chapter One", 0.9, 0), line("Chapt3r One", 0.7), line("Invoice 7781", 0.95)
    shown = {
        0: (0.0, [title]),
        1: (2.0, [title, line("Invoice 778l", 0.8)]),  # the same line read two ways: one span
        2: (4.1, [noisy, sure]),
        3: (6.0, [sure]),
        5: (10.0, [sure]),  # slot 4 had no frame: shown again is another span
    }
    assert [(s, e, text, c) for s, e, text, c, _ in merged(shown, 2.0, 11.0)] == [
        (0.0, 6.0, "Chapter One", 0.9),
        (2.0, 8.0, "Invoice 7781", 0.95),
        (10.0, 11.0, "Invoice 7781", 0.95),
    ]


CHILD = """
import sys
import indexer, retrieval
from retrieval.models.ocr import TextReader
enc = retrieval.create_model("xmr-tiny", device="cpu")
options = indexer.IndexOptions(workers=0, text_reader=TextReader(), checkpoint_items=1)
indexer.index_folder(sys.argv[1], enc, options)
"""


@pytest.mark.parametrize("crash", ["vectors-written:3", "rows-committed:3"])
def test_a_kill_while_lines_are_written_loses_and_duplicates_nothing(tmp_path: Path, reader, crash: str) -> None:
    """Killed between a picture's lines' vectors and their rows, or just after, the next run
    finishes the reading: each picture read once, each line one span and one vector."""
    import os
    import subprocess
    import sys

    from indexer.storage.check import check_index

    root = _folder(tmp_path / "media")
    write_page(root / "pics/note.png", ["Meeting moved to Thursday"])
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(root)],
        cwd=Path(__file__).resolve().parent.parent,
        env={**os.environ, "XMR_CRASH_AT": crash},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == -9, proc.stderr
    store = _store(root)
    assert 0 < store.readings("ocr")["files"] < 4  # killed amid the readings
    store.close()
    _run(root, create_model("xmr-tiny", device="cpu"), reader)
    report = check_index(root / ".xmr")
    assert report.ok, report.problems
    assert set(_lines(root)) == {"invoice.png", "card.png", "note.png"}
    store = _store(root)
    assert store.readings("ocr")["files"] == 4
    spans = store.spans_of(sorted(store.ids()), "ocr")
    assert sorted(sp.text for sp in spans) == sorted({sp.text for sp in spans}) and len(spans) == 4
    store.close()
