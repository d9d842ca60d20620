"""Text in pictures end to end: read while indexing (the reading phase of build.py, spans of
source ``ocr``), kept in step with the folder, found by a word, a part of one or a phrase and
fused with the image tower; ``xmr text`` and the hits' box. Real PP-OCRv4 forward passes on
pages Pillow draws."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import indexer
from indexer.storage.fulltext import parse_terms
from indexer.storage.layout import Layout
from indexer.storage.manifest import read_manifest
from indexer.storage.store import Store
from retrieval import create_model
from retrieval.search.engine import Engine
from tests.helpers import ocr_reader, write_image, write_page


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


def _lines(root: Path) -> dict[str, list[str]]:
    layout = Layout(root / ".xmr")
    store = Store.of_index(layout.db_url(read_manifest(layout).db), read_manifest(layout))
    try:
        names = {r.id: Path(r.path).name for r in store.file_rows()}
        out: dict[str, list[str]] = {}
        for sp in store.spans_of(list(names), "ocr"):
            out.setdefault(names[sp.item_id], []).append(sp.text)
        return out
    finally:
        store.close()


def test_text_in_pictures_is_read_found_by_words_parts_and_phrases(tmp_path: Path, mini, reader) -> None:
    root = _folder(tmp_path / "media")
    summary = _run(root, mini, reader)
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
    again = _run(root, mini, reader)
    assert again.pictures_read == 0 and again.unchanged == 3  # read once, until a picture changes
    write_page(root / "pics/card.png", ["Congratulations Grandfather"], size=(1200, 800))
    (root / "pics/invoice.png").rename(root / "pics/bill.png")
    changed = _run(root, mini, reader)
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
