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
from tests.helpers import killed_at, ocr_reader, write_image, write_page, write_video


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

    title, noisy, sure = line("Chapter One", 0.9, 0), line("Chapler One", 0.7, 0), line("Invoice 7781", 0.95)
    shown = {
        0: (0.0, [title, line("Slide 9 of 40", 0.9, 90)]),
        1: (2.0, [title, line("lnvoice 7781", 0.8), line("Slide 10 of 40", 0.9, 90)]),  # a number changed: two
        2: (4.1, [noisy, sure]),  # the same line read two ways: one span, its surest reading
        3: (6.0, [sure]),
        5: (10.0, [sure]),  # slot 4 had no frame: shown again is another span
    }
    assert [(s, e, text, c) for s, e, text, c, _ in merged(shown, 2.0, 11.0)] == [
        (0.0, 6.0, "Chapter One", 0.9),
        (0.0, 2.0, "Slide 9 of 40", 0.9),
        (2.0, 8.0, "Invoice 7781", 0.95),
        (2.0, 4.0, "Slide 10 of 40", 0.9),
        (10.0, 11.0, "Invoice 7781", 0.95),
    ]


def test_two_lines_alike_continue_where_each_was_shown() -> None:
    """Two equal lines in one frame, then one: it continues the span whose box is nearest."""
    from indexer.ingest.frame_text import merged
    from retrieval.models.ocr import Line

    def at(y: float) -> Line:
        return Line("EXIT", [(0, y), (50, y), (50, y + 9), (0, y + 9)], 0.9)

    spans = merged({0: (0.0, [at(10), at(300)]), 1: (2.0, [at(300)])}, 2.0, 4.0)
    assert [(s, e, box["box"][0][1]) for s, e, _, _, box in spans] == [(0.0, 2.0, 10.0), (0.0, 4.0, 300.0)]


def test_a_subtitle_over_a_still_shot_is_read_in_every_frame_it_changes(tmp_path: Path, reader) -> None:
    """A still scene with a subtitle from 4 s and another from 8 s: each frame whose subtitle
    changed is read (the whole frame's mean barely moves), the still ones are not."""
    from PIL import Image, ImageDraw, ImageFont

    from indexer.ingest.frame_text import read_video_text

    ramp = np.linspace(40, 200, 640, dtype=np.uint8)
    scene = np.stack([np.tile(ramp, (360, 1)), np.tile(ramp[::-1], (360, 1)), np.full((360, 640), 90, np.uint8)], -1)
    shots = [scene]
    for caption in ("Harbourmeadow Station 4471", "Platform seven closed"):
        shown = Image.fromarray(scene)
        ImageDraw.Draw(shown).text((40, 300), caption, fill=(255, 255, 255), font=ImageFont.load_default(size=22))
        shots.append(np.asarray(shown))
    path = write_video(tmp_path / "still.mp4", shots, seconds_each=4.0, fps=10, gop=120)  # one keyframe
    lines, frames = read_video_text(reader, path, 2.0)
    assert frames == 3  # one frame of each shot read; the second of each is as still as it
    assert [(s, e, text.replace(" ", "")) for s, e, text, _, _ in lines] == [  # spaces as the model reads them
        (pytest.approx(4.0, abs=0.11), 8.0, "HarbourmeadowStation4471"),
        (pytest.approx(8.0, abs=0.11), 12.0, "Platformsevenclosed"),
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
    from indexer.storage.check import check_index

    root = _folder(tmp_path / "media")
    write_page(root / "pics/note.png", ["Meeting moved to Thursday"])
    killed_at(CHILD, root, crash)
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


def test_words_heard_and_words_read_in_one_video_stay_apart(tmp_path: Path, mini, reader) -> None:
    """A video with a spoken sentence and a caption: a text query for pictures never takes its
    words heard as a line read (nor the other way round), and reading its text again (another
    reader, a retried failure) keeps its transcript; a video of sound alone holds no lines."""
    import soundfile as sf
    from PIL import Image, ImageDraw, ImageFont

    from retrieval.models.speech import SpeechRecognizer
    from tests.helpers import speak, write_m4a

    root = tmp_path / "media"
    wave, _ = sf.read(speak(tmp_path / "said.wav", "the budget meeting starts at nine", before=0.5), dtype="float32")
    caption = Image.new("RGB", (640, 360), (30, 40, 60))
    ImageDraw.Draw(caption).text((40, 150), "Invoice 7781", fill=(250, 250, 250), font=ImageFont.load_default(size=48))
    plain = np.full((360, 640, 3), 90, np.uint8)
    write_video(root / "talk.mp4", [np.asarray(caption), plain], seconds_each=len(wave) / 32000, wave=wave)
    write_m4a(root / "voice.mp4", wave, rate=16000, channels=1)  # sound alone, in a video's format
    for n in range(6):
        write_image(root / f"pics/{n}.png", seed=n, size=64)
    recognizer = SpeechRecognizer()
    _run(root, mini, reader, transcriber=recognizer)
    store = _store(root)
    heard = {sp.text for sp in store.spans_of(sorted(store.ids()), "speech")}
    assert store.readings("ocr")["failed"] == 0  # sound alone: read, no lines, no failure
    store.close()
    assert any("budget" in t.lower() for t in heard), heard
    assert set(_lines(root)) == {"talk.mp4"}
    with Engine.open(root / ".xmr", model=mini) as engine:
        for query in ("budget meeting starts at nine", "the budget meeting", "invoice 7781"):
            for hit in engine.search(query, to="image", k=3):
                assert hit.track != "text" or "7781" in hit.snippet, (query, hit)
            for hit in engine.search(query, to="audio", k=3):
                assert hit.track != "speech" or "budget" in hit.snippet.lower(), (query, hit)

    class Another:  # the same lines under another reader's name: all read again
        source, model_id = reader.source, "another:1"

        def read(self, path: Path):  # noqa: ANN201
            return reader.read(path)

        def read_image(self, image):  # noqa: ANN001, ANN201
            return reader.read_image(image)

    again = _run(root, mini, Another(), transcriber=recognizer)
    assert again.videos_read == 2 and again.transcribed == 0
    store = _store(root)
    assert {sp.text for sp in store.spans_of(sorted(store.ids()), "speech")} == heard  # the transcript kept
    store.close()
    assert _run(root, mini, Another(), transcriber=recognizer).transcribed == 0  # and never made again
