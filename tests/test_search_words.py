"""Searching what is said (retrieval/search/words.py, indexer/storage/fulltext.py): full text and
the spans' vectors, each alone and fused with the audio tower; quoted phrases; hostile queries
are text; the transcript in Python, the CLI and the HTTP API. xmr-mini and real Whisper passes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import indexer
from indexer.storage.fulltext import STOP, Terms, parse_terms
from retrieval import Engine, Weighted, create_model
from retrieval.models.speech import SpeechRecognizer
from retrieval.search.words import matched_times, snippet
from tests.helpers import speak, write_audio


@pytest.fixture(scope="module")
def mini():
    return create_model("xmr-mini")


@pytest.fixture(scope="module")
def spoken(tmp_path_factory: pytest.TempPathFactory, mini) -> Path:
    root = tmp_path_factory.mktemp("spoken")
    speak(root / "budget.wav", "the budget meeting starts at nine", before=2.0)
    speak(root / "party.wav", "happy birthday dear grandmother", voice="en-gb", before=1.0)
    speak(root / "later.wav", "a birthday that was happy")
    write_audio(root / "tone.wav", seed=4, seconds=2.0)
    labels = tmp_path_factory.mktemp("labels") / "labels.txt"
    labels.write_text("a grandmother at a party\nthe budget\n")
    options = indexer.IndexOptions(workers=0, transcriber=SpeechRecognizer(), texts=[str(labels)])
    summary = indexer.index_folder(root, mini, options)
    assert summary.transcribed == 4
    return root


def _top(engine: Engine, query: str, **kw) -> list:
    return engine.search(query, to="audio", k=4, **kw)


def test_parse_terms_reads_words_and_phrases_and_nothing_else() -> None:
    assert parse_terms('the "Happy  Birthday" to grandma') == Terms((("happy", "birthday"),), ("grandma",))
    assert parse_terms("NEAR(a b) * col:budget ^x") == Terms((), ("near", "b", "col", "budget", "x"))
    assert parse_terms('"unbalanced quote here') == Terms((("unbalanced", "quote", "here"),), ())
    assert parse_terms("the and of") == Terms((), ("the", "and", "of"))  # all common: kept
    assert "the" in STOP and not parse_terms('*"^:()')


def test_a_word_only_the_transcript_holds_finds_its_file_at_its_moment(spoken: Path, mini) -> None:
    with Engine.open(spoken / ".xmr", model=mini) as engine:
        top = _top(engine, "grandmother")[0]
        assert Path(top.path).name == "party.wav" and top.track == "speech"
        assert "grandmother" in top.snippet.lower()
        _, utterances = engine.transcript(top.file_id)
        word = next(w for u in utterances for w in u["words"] if "grandmother" in w[2].lower())
        assert (top.start, top.end) == pytest.approx((word[0], word[1]), abs=1e-3)
        assert top.start > 0.9  # after the second of silence it starts with


def test_a_paraphrase_finds_the_file_through_the_spans_vectors(spoken: Path, mini) -> None:
    with Engine.open(spoken / ".xmr", model=mini) as engine:
        assert engine.index.store.search_spans(parse_terms("when does the finance session begin"), 10) == []
        top = _top(engine, "when does the finance session begin")[0]
        assert Path(top.path).name == "budget.wav" and top.track == "speech"
        assert top.start == pytest.approx(engine.transcript(top.file_id)[1][0]["start"], abs=1e-3)


def test_a_quoted_phrase_matches_exactly(spoken: Path, mini) -> None:
    with Engine.open(spoken / ".xmr", model=mini) as engine:
        store = engine.index.store
        phrase = {sp for sp, _, _ in store.search_spans(parse_terms('"happy birthday"'), 10)}
        words = {sp for sp, _, _ in store.search_spans(parse_terms("happy birthday"), 10)}
        assert len(phrase) == 1 and len(words) == 2  # "a birthday that was happy" holds both words
        top = _top(engine, '"happy birthday"')[0]
        assert Path(top.path).name == "party.wav" and top.snippet.lower().startswith("happy birthday")
        assert top.end - top.start < 2.0  # the two words, not the whole utterance


def test_hostile_queries_are_text_never_an_error(spoken: Path, mini) -> None:
    with Engine.open(spoken / ".xmr", model=mini) as engine:
        store = engine.index.store
        before = len(store.spans_of(sorted(store.ids())))
        for query in [
            '"',
            "*",
            "NEAR(budget nine)",
            "col:budget",
            "'; DROP TABLE spans; --",
            "budget OR 1=1",
            "^",
            '"" "',
        ]:
            hits = _top(engine, query)
            assert all(h.modality == "audio" for h in hits), query
        assert len(store.spans_of(sorted(store.ids()))) == before
        assert Path(_top(engine, "NEAR(budget nine)")[0].path).name == "budget.wav"  # its words still count


def test_speech_filter_transcript_and_snippets_in_the_cli(spoken: Path, mini, monkeypatch) -> None:
    from cli import app

    with Engine.open(spoken / ".xmr", model=mini) as engine:
        heard = {Path(h.path).name for h in engine.search("anything", to="audio", k=10, has_speech=True)}
        silent = {Path(h.path).name for h in engine.search("anything", to="audio", k=10, has_speech=False)}
        assert heard == {"budget.wav", "party.wav", "later.wav"} and silent == {"tone.wav"}
    runner = CliRunner()
    index = ["--index", str(spoken / ".xmr")]
    srt = runner.invoke(app, ["transcript", str(spoken / "budget.wav"), *index, "--srt"])
    assert srt.exit_code == 0 and srt.output.startswith("1\n00:00:0") and "budget" in srt.output.lower()
    assert " --> " in srt.output and "," in srt.output.splitlines()[1]
    vtt = runner.invoke(app, ["transcript", str(spoken / "budget.wav"), *index, "--vtt"])
    assert vtt.output.startswith("WEBVTT\n\n00:00:0")
    as_json = json.loads(runner.invoke(app, ["transcript", str(spoken / "party.wav"), *index, "--json"]).output)
    assert "grandmother" in as_json["utterances"][0]["text"].lower() and as_json["utterances"][0]["words"]
    silent_file = runner.invoke(app, ["transcript", str(spoken / "tone.wav"), *index])
    assert silent_file.exit_code == 0 and "nothing heard" in silent_file.output
    missing = runner.invoke(app, ["transcript", str(spoken / "nope.wav"), *index])
    assert missing.exit_code == 2 and "not an indexed file" in missing.output
    found = runner.invoke(app, ["search", "grandmother", *index, "--to", "audio", "-k", "1", "--json"])
    (hit,) = json.loads(found.output)
    assert hit["track"] == "speech" and "grandmother" in hit["snippet"].lower()
    info = runner.invoke(app, ["info", *index])
    assert "speech    4 files transcribed" in info.output and "3 with words" in info.output


def test_the_http_api_shows_snippets_and_filters_by_speech(spoken: Path, mini) -> None:
    from fastapi.testclient import TestClient

    from retrieval.server.app import create_app

    engine = Engine.open(spoken / ".xmr", model=mini)
    client = TestClient(create_app(engine), base_url="http://127.0.0.1")
    answer = client.get("/api/v1/search", params={"q": "grandmother", "to": "audio", "k": 1}).json()
    (hit,) = answer["results"]["audio"]
    assert hit["track"] == "speech" and "grandmother" in hit["snippet"].lower() and hit["start"] > 0.9
    quiet = client.get("/api/v1/search", params={"q": "x", "to": "audio", "has_speech": "false"}).json()
    assert [h["path"] for h in quiet["results"]["audio"]] == ["tone.wav"]
    bad = client.get("/api/v1/search", params={"q": "x", "has_speech": "maybe"})
    assert bad.status_code == 400 and "has_speech" in bad.json()["error"]["message"]
    engine.close()


def test_matched_times_and_snippets_from_a_span() -> None:
    class Span:
        start, end = 10.0, 14.0
        words = json.dumps([[10.0, 10.4, "Happy", 0.9], [10.4, 11.0, "birthday,", 0.9], [11.1, 11.5, "dear", 0.8]])
        text = "Happy birthday, dear"

    assert matched_times(Span, parse_terms('"happy birthday"')) == (10.0, 11.0)
    assert matched_times(Span, parse_terms("dear")) == (11.1, 11.5)
    assert matched_times(Span, parse_terms("absent")) == (10.0, 14.0)
    long = "word " * 100 + "needle " + "word " * 100
    cut = snippet(long, parse_terms("needle"))
    assert "needle" in cut and cut.startswith("…") and cut.endswith("…") and len(cut) <= 202


def test_words_stay_with_audio_queries_of_words_only(spoken: Path, mini) -> None:
    """Text targets never list audio by its words; a query with no words (a sound, a text part
    steering away) is ranked by the vectors alone; every moment still listed with segments=True;
    full text honours the filters."""
    with Engine.open(spoken / ".xmr", model=mini) as engine:
        as_text = engine.search("grandmother", to="text", k=10)
        assert as_text and all(h.modality == "text" for h in as_text)
        for hits in (
            engine.search(audio=str(spoken / "party.wav"), to="audio", k=4),
            engine.search(text=Weighted("grandmother", -1.0), to="audio", k=4),
        ):
            assert hits and all(h.track is None and h.snippet is None for h in hits)
        listed = engine.search("grandmother", to="audio", k=10, segments=True)
        assert {Path(h.path).name for h in listed} == {"budget.wav", "party.wav", "later.wav", "tone.wav"}
        (only,) = engine.search("happy", to="audio", k=1, path="later*")  # party.wav says it too
        assert Path(only.path).name == "later.wav" and only.track == "speech"


def test_fusion_ranks_by_reciprocal_rank_and_takes_files_the_tower_missed(spoken: Path, mini) -> None:
    """The tower may return fewer hits than the words find (IVF probes, rows not yet committed):
    a file found by words alone is a hit of its own; a file's score is its best weighted
    1/(60 + rank), full text weighing 2 times the share of the query's words a span holds."""
    from retrieval.search.words import RRF_K, _fuse

    with Engine.open(spoken / ".xmr", model=mini) as engine:
        store = engine.index.store
        spans = {Path(r.path).name: None for r in store.file_rows()}
        names = {r.id: Path(r.path).name for r in store.file_rows()}
        for sp in store.spans_of(list(names)):
            spans[names[sp.item_id]] = sp.id
        tone = next(h for h in engine.search("x", to="audio", k=10) if Path(h.path).name == "tone.wav")
        vector = [(spans["later.wav"], 0.9), (spans["budget.wav"], 0.8), (spans["party.wav"], 0.7)]
        text = [(spans["party.wav"], 3.0)]
        fused = _fuse(engine, [tone], vector, text, parse_terms("grandmother"), 4, None)
    assert [Path(h.path).name for h in fused] == ["party.wav", "tone.wav", "later.wav", "budget.wav"]
    assert fused[0].score == pytest.approx(2 / (RRF_K + 1))  # full text, every word held
    assert fused[1].score == fused[2].score == pytest.approx(1 / (RRF_K + 1)) and fused[2].track == "speech"
    assert [h.rank for h in fused] == [1, 2, 3, 4] and fused[1].track is None


def test_full_text_matches_count_by_the_share_of_the_words_they_hold() -> None:
    from types import SimpleNamespace

    from retrieval.search.words import by_coverage

    texts = [
        "Otherwise, press star now.",
        "You will now be placed into the conference.",
        "The conference is now locked.",
    ]
    spans = {n: SimpleNamespace(text=t) for n, t in enumerate(texts)}
    found = [(0, 9.0), (1, 8.0), (2, 7.0)]  # as BM25 might rank them
    assert by_coverage(found, spans, parse_terms("conference is now locked")) == [(2, 1.0, 7.0), (1, 2 / 3, 8.0)]
    assert by_coverage(found, spans, parse_terms('"now locked"')) == [(0, 1.0, 9.0), (1, 1.0, 8.0), (2, 1.0, 7.0)]


def test_a_query_of_an_index_with_speech_reads_words_without_sqlalchemy(spoken: Path) -> None:
    """Spans and their full-text matches are read through the plain sqlite3 path, as rows are."""
    import subprocess
    import sys
    import textwrap

    child = textwrap.dedent(
        f"""
        import sys
        from retrieval import Engine
        with Engine.open({str(spoken / ".xmr")!r}) as engine:
            top = engine.search("grandmother", to="audio", k=1)[0]
        assert top.track == "speech" and "grandmother" in top.snippet.lower(), top
        print(sorted(m for m in sys.modules if m.split(".")[0] == "sqlalchemy"))
        """
    )
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, cwd=root, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"
