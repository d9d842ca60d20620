"""Speech in the index (indexer/ingest/build.py's reading phase, the spans and readings of
indexer/storage): transcribed with the file, incremental, crash-safe, on SQLite and PostgreSQL.
Real Whisper forward passes on espeak-ng speech."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import indexer
from indexer.storage.check import check_index
from indexer.storage.layout import Layout
from indexer.storage.manifest import read_manifest
from indexer.storage.store import Store
from retrieval.models.speech import SpeechRecognizer
from retrieval.models.vad import SpeechFinder
from tests.helpers import killed_at, speak, touch_later, write_audio, write_image, write_video

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def recognizer() -> SpeechRecognizer:
    return SpeechRecognizer()


def _folder(root: Path) -> Path:
    speak(root / "talks/budget.wav", "the budget meeting starts at nine", before=1.0)
    speak(root / "talks/party.wav", "happy birthday dear grandmother", voice="en-gb")
    write_audio(root / "music/tone.wav", seed=3, seconds=2.0)
    write_image(root / "pics/a.png", seed=1)
    return root


def _run(root: Path, tiny, recognizer, db_url: str | None = None, **kw) -> indexer.Summary:
    options = indexer.IndexOptions(workers=0, db_url=db_url, transcriber=recognizer, **kw)
    return indexer.index_folder(root, tiny, options)


def _store(root: Path, db_url: str | None = None) -> Store:
    layout = Layout(root / ".xmr")
    manifest = read_manifest(layout)
    return Store.of_index(db_url or layout.db_url(manifest.db), manifest)


def _spans(root: Path, db_url: str | None = None) -> dict[str, list[str]]:
    """{file name: its spans' texts} of every file with spans."""
    store = _store(root, db_url)
    try:
        names = {r.id: Path(r.path).name for r in store.file_rows()}
        out: dict[str, list[str]] = {}
        for sp in store.spans_of(list(names)):
            out.setdefault(names[sp.item_id], []).append(sp.text)
        return out
    finally:
        store.close()


def test_speech_is_transcribed_with_its_file_and_kept_in_step_with_the_folder(
    tmp_path: Path, tiny, recognizer, db_url: str
) -> None:
    root = _folder(tmp_path / "media")
    first = _run(root, tiny, recognizer, db_url)
    assert first.transcribed == 3 and first.speech_seconds > 4  # the tone too: read, nothing heard
    spans = _spans(root, db_url)
    assert set(spans) == {"budget.wav", "party.wav"} and "budget" in spans["budget.wav"][0].lower()
    assert check_index(root / ".xmr").ok, check_index(root / ".xmr").problems
    store = _store(root, db_url)
    facts = store.readings("speech") | {"seconds": 0}
    assert facts == {"files": 3, "with_words": 2, "seconds": 0, "failed": 0, "spans": 2}
    store.close()

    again = _run(root, tiny, recognizer, db_url)
    assert (again.transcribed, again.added, again.updated) == (0, 0, 0)  # nothing read twice
    assert _spans(root, db_url) == spans

    speak(root / "talks/party.wav", "the train leaves from platform four")  # changed: heard anew
    touch_later(root / "talks/party.wav")
    os.rename(root / "talks/budget.wav", root / "talks/moved.wav")  # moved: keeps its transcript
    (root / "music/tone.wav").unlink()  # removed: its reading goes with it
    third = _run(root, tiny, recognizer, db_url)
    assert (third.transcribed, third.updated, third.moved, third.removed) == (1, 1, 1, 1)
    now = _spans(root, db_url)
    assert set(now) == {"moved.wav", "party.wav"} and now["moved.wav"] == spans["budget.wav"]
    assert "platform" in " ".join(now["party.wav"]).lower() and "birthday" not in " ".join(now["party.wav"]).lower()
    store = _store(root, db_url)
    assert store.readings("speech")["files"] == 2
    assert not any(store.span_problems().values())
    store.close()
    assert check_index(root / ".xmr").ok, check_index(root / ".xmr").problems


def test_speech_turned_on_later_transcribes_what_is_indexed_and_embeds_nothing_again(
    tmp_path: Path, tiny, recognizer
) -> None:
    root = _folder(tmp_path / "media")
    off = _run(root, tiny, recognizer, speech=False)
    assert off.transcribed == 0 and _spans(root) == {}
    assert read_manifest(Layout(root / ".xmr")).options["speech"] is False
    still_off = _run(root, tiny, recognizer)  # a plain re-run keeps what was recorded
    assert still_off.transcribed == 0 and still_off.recorded_options == {"speech": False}
    on = _run(root, tiny, recognizer, speech=True)
    assert (on.transcribed, on.added, on.updated, on.unchanged) == (3, 0, 0, 4)
    assert set(_spans(root)) == {"budget.wav", "party.wav"}
    assert "speech" not in read_manifest(Layout(root / ".xmr")).options  # on is the default again
    no_model = indexer.index_folder(root, tiny, indexer.IndexOptions(workers=0))  # Python, no transcriber
    assert no_model.transcribed == 0 and set(_spans(root)) == {"budget.wav", "party.wav"}


def test_a_file_that_cannot_be_heard_costs_its_transcript_only(tmp_path: Path, tiny, recognizer) -> None:
    class Deaf:
        source, model_id = "speech", "deaf:1"

        def transcribe(self, path: Path):  # noqa: ANN201
            if path.name == "party.wav":
                raise ValueError("cannot decode audio: a broken stream")
            return recognizer.transcribe(path)

    root = _folder(tmp_path / "media")
    summary = _run(root, tiny, Deaf())
    assert summary.transcribed == 2 and summary.counts == {"audio": 3, "image": 1}
    assert set(_spans(root)) == {"budget.wav"}
    store = _store(root)
    assert store.readings("speech")["failed"] == 1
    store.close()
    assert _run(root, tiny, Deaf()).transcribed == 0  # not tried again until the file changes


CHILD = """
import sys
import indexer, retrieval
from retrieval.models.speech import SpeechRecognizer
from retrieval.models.vad import SpeechFinder
enc = retrieval.create_model("xmr-tiny", device="cpu")
options = indexer.IndexOptions(workers=0, transcriber=SpeechRecognizer(), checkpoint_items=1)
indexer.index_folder(sys.argv[1], enc, options)
"""


@pytest.mark.parametrize("crash", ["vectors-written:4", "rows-committed:4"])
def test_a_kill_while_spans_are_written_loses_and_duplicates_nothing(
    tmp_path: Path, tiny, recognizer, crash: str
) -> None:
    """Killed between a transcript's vectors and its rows, or just after, the next run finishes
    the transcripts: each file read once, each span one vector, the full-text index whole."""
    root = _folder(tmp_path / "media")
    speak(root / "talks/third.wav", "please leave a message after the tone")
    killed_at(CHILD, root, crash)
    store = _store(root)
    assert 0 < store.readings("speech")["files"] < 4  # killed amid the transcripts
    store.close()
    _run(root, tiny, recognizer)
    report = check_index(root / ".xmr")
    assert report.ok, report.problems
    assert set(_spans(root)) == {"budget.wav", "party.wav", "third.wav"}
    store = _store(root)
    assert store.readings("speech")["files"] == 4
    spans = store.spans_of(sorted(store.ids()))
    assert len({sp.item_id for sp in spans}) == len(spans) == 3  # one utterance each, none twice
    store.close()


def test_a_shared_database_keeps_two_indexes_words_apart(tmp_path: Path, tiny, recognizer, db_url: str) -> None:
    a = tmp_path / "a"
    b = tmp_path / "b"
    speak(a / "one.wav", "the budget meeting starts at nine")
    speak(b / "two.wav", "happy birthday dear grandmother")
    _run(a, tiny, recognizer, db_url)
    _run(b, tiny, recognizer, db_url)
    from indexer.storage.fulltext import parse_terms

    for root, word, other in ((a, "budget", "birthday"), (b, "birthday", "budget")):
        store = _store(root, db_url)
        assert len(store.search_spans(parse_terms(word), 10)) == 1
        assert store.search_spans(parse_terms(other), 10) == []
        assert len(store.search_spans(parse_terms(word[:4]), 10, prefix=True)) == 1  # a word's start
        assert store.search_spans(parse_terms(word[:4]), 10) == []
        store.close()


def test_speech_in_videos_and_the_summary_json(tmp_path: Path, tiny, recognizer) -> None:
    import soundfile as sf

    from tests.helpers import write_video

    root = tmp_path / "media"
    talk, _ = sf.read(speak(tmp_path / "talk.wav", "happy birthday to you", before=0.5), dtype="float32")
    pictures = [np.full((32, 32, 3), 80 * n, np.uint8) for n in range(2)]
    write_video(root / "party.mp4", pictures, seconds_each=len(talk) / 32000, wave=talk)
    write_video(root / "quiet.mp4", pictures, seconds_each=1.0)
    summary = _run(root, tiny, recognizer)
    assert summary.transcribed == 2 and set(_spans(root)) == {"party.mp4"}
    assert json.loads(json.dumps(summary.to_dict()))["transcribed"] == 2
    shutil.rmtree(root / ".xmr")


def test_a_model_that_cannot_load_fails_no_file_and_another_model_reads_again(tmp_path: Path, tiny, recognizer) -> None:
    from retrieval.models.speech import SpeechUnavailable

    class Broken:
        source, model_id = "speech", "broken:1"

        def load(self) -> None:
            raise SpeechUnavailable("cannot load the speech model in /nowhere: bad file")

        def transcribe(self, path: Path):  # noqa: ANN201
            raise AssertionError("never called")

    class Other:  # the same words under another model's name
        source, model_id = "speech", "other:2"

        def transcribe(self, path: Path):  # noqa: ANN201
            return recognizer.transcribe(path)

    root = _folder(tmp_path / "media")
    assert _run(root, tiny, Broken()).transcribed == 0
    store = _store(root)
    assert store.readings("speech")["files"] == 0  # nothing marked as failed
    store.close()
    assert _run(root, tiny, recognizer).transcribed == 3
    before = _spans(root)
    again = _run(root, tiny, Other())
    assert (again.transcribed, again.updated) == (3, 0)  # another model: read again, nothing re-embedded
    assert _spans(root) == before  # replaced, not doubled
    assert check_index(root / ".xmr").ok, check_index(root / ".xmr").problems


def test_a_video_embedded_again_at_another_frame_interval_keeps_its_words(tmp_path: Path, tiny, recognizer) -> None:
    import soundfile as sf

    from tests.helpers import write_video

    root = tmp_path / "media"
    talk, _ = sf.read(speak(tmp_path / "talk.wav", "happy birthday to you", before=0.5), dtype="float32")
    pictures = [np.full((32, 32, 3), 80 * n, np.uint8) for n in range(2)]
    write_video(root / "party.mp4", pictures, seconds_each=len(talk) / 32000, wave=talk)
    assert _run(root, tiny, recognizer).transcribed == 1
    words = _spans(root)
    reframed = _run(root, tiny, recognizer, frame_seconds=0.5)
    assert (reframed.updated, reframed.transcribed) == (1, 0) and _spans(root) == words
    assert check_index(root / ".xmr").ok, check_index(root / ".xmr").problems


def test_words_whose_rows_or_vectors_were_lost_are_read_again(tmp_path: Path, tiny, recognizer) -> None:
    from sqlalchemy import text

    root = _folder(tmp_path / "media")
    _run(root, tiny, recognizer)
    store = _store(root)
    with store.engine.begin() as conn:  # a span's segment row gone (a damaged database)
        conn.execute(text("DELETE FROM segments WHERE modality = 'text' AND id = (SELECT min(id) FROM spans)"))
    store.close()
    assert not check_index(root / ".xmr").ok
    again = _run(root, tiny, recognizer)
    assert again.transcribed == 1 and set(_spans(root)) == {"budget.wav", "party.wav"}
    assert check_index(root / ".xmr").ok, check_index(root / ".xmr").problems


class Listening(SpeechRecognizer):
    """The real recogniser, noting what each file was transcribed with."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: dict[str, list | None] = {}

    def transcribe(self, source, regions=None):  # noqa: ANN001, ANN201
        self.calls[Path(source).name] = regions
        return super().transcribe(source, regions)


@pytest.mark.parametrize("workers", [0, 1])
def test_speech_heard_while_decoding_spares_a_second_decode_of_files_without_it(
    tmp_path: Path, tiny, workers: int
) -> None:
    """The decode workers find where speech is as they decode each audio file for its vectors;
    a file with none is never opened again, one with some is transcribed from those regions
    only; both are read (not again next run)."""
    root = tmp_path / "media"
    speak(root / "talks/long.wav", "the budget meeting starts at nine", before=7.0, after=4.0)
    speak(root / "talks/short.wav", "happy birthday dear grandmother")
    write_audio(root / "music/long.wav", seed=3, seconds=12.0)
    write_audio(root / "music/short.wav", seed=4, seconds=2.0)
    music, _ = sf.read(root / "music/long.wav", dtype="float32")
    pictures = [np.full((32, 32, 3), 80 * n, np.uint8) for n in range(2)]
    write_video(root / "clips/band.mp4", pictures, seconds_each=6.0, wave=music)  # a soundtrack without speech
    heard = Listening()
    summary = indexer.index_folder(root, tiny, indexer.IndexOptions(workers=workers, transcriber=heard))
    seconds = sum(sf.info(p).duration for p in root.rglob("*.wav")) + 12.0
    assert summary.transcribed == 5 and summary.speech_seconds == pytest.approx(seconds, abs=0.1)
    assert set(heard.calls) == {"long.wav", "short.wav"}  # the talks only: no music file or video opened again
    (start, end), *more = heard.calls["long.wav"]
    assert not more and start < 7.0 < end < 11.5
    assert set(_spans(root)) == {"long.wav", "short.wav"}
    assert "budget" in " ".join(_spans(root)["long.wav"]).lower()
    heard.calls.clear()
    assert indexer.index_folder(root, tiny, indexer.IndexOptions(workers=workers, transcriber=heard)).transcribed == 0
    assert heard.calls == {}


def test_a_speech_finder_that_breaks_costs_no_file_and_the_speech_is_found_later(tmp_path: Path, tiny) -> None:
    """A voice-activity model that fails while files decode costs their transcripts (recorded
    with the reason), never their vectors; ``--retry-failed`` with one that works reads them."""

    class Broken(SpeechFinder):
        def listen(self, rate: int = 16000):  # noqa: ANN201
            raise RuntimeError("the voice-activity model failed")

    heard = Listening()
    heard.finder = Broken()
    root = _folder(tmp_path / "media")
    summary = indexer.index_folder(root, tiny, indexer.IndexOptions(workers=0, transcriber=heard))
    assert summary.counts == {"audio": 3, "image": 1} and summary.skipped == []
    assert set(heard.calls.values()) == {None}  # nothing heard while decoding: looked for again
    store = _store(root)
    assert store.readings("speech")["failed"] == 3
    store.close()
    again = indexer.index_folder(
        root, tiny, indexer.IndexOptions(workers=0, transcriber=Listening(), retry_failed=True)
    )
    assert again.transcribed == 3 and set(_spans(root)) == {"budget.wav", "party.wav"}
