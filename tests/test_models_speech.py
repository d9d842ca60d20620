"""The speech recogniser (retrieval/models/speech.py): Whisper tiny.en on CTranslate2, real
forward passes on speech espeak-ng makes, and the streaming reader checked against a whole-file
resampling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from retrieval.models import speech
from retrieval.models.audio import AudioDecodeError, resample
from retrieval.models.speech import SpeechRecognizer, SpeechUnavailable, quietest, speech_pieces
from tests.helpers import speak, write_video


@pytest.fixture(scope="module")
def recognizer() -> SpeechRecognizer:
    return SpeechRecognizer()


def test_words_are_heard_at_their_moment(tmp_path: Path, recognizer: SpeechRecognizer) -> None:
    path = speak(tmp_path / "talk.wav", "the budget meeting starts at nine", before=4.0, after=3.0)
    found = recognizer.transcribe(path)
    assert found.seconds == pytest.approx(sf.info(path).duration, abs=0.05)
    assert 0 < found.speech_seconds < found.seconds  # the silence around it skipped
    (utterance,) = found.utterances
    assert "budget meeting" in utterance.text.lower()
    assert 3.5 <= utterance.start and utterance.end <= found.seconds - 2.0
    budget = next(w for w in utterance.words if w.text.lower().strip(".,") == "budget")
    assert utterance.start <= budget.start < budget.end <= utterance.end and 0 < budget.probability <= 1
    assert 0 < utterance.confidence <= 1


def test_music_noise_and_silence_hold_no_words(tmp_path: Path, recognizer: SpeechRecognizer) -> None:
    t = np.arange(16000 * 6) / 16000
    chord = 0.2 * (np.sin(2 * np.pi * 220 * t) + np.sin(2 * np.pi * 330 * t)) * (1 + np.sin(2 * np.pi * 2 * t)) / 2
    noise = np.random.default_rng(0).normal(0, 0.05, len(t))
    for name, wave in (("chord", chord), ("noise", noise), ("silence", np.zeros_like(t))):
        sf.write(tmp_path / f"{name}.wav", wave.astype(np.float32), 16000)
        assert recognizer.transcribe(tmp_path / f"{name}.wav").utterances == [], name


def test_a_video_soundtrack_is_heard_and_a_silent_video_holds_nothing(
    tmp_path: Path, recognizer: SpeechRecognizer
) -> None:
    talk, _ = sf.read(speak(tmp_path / "talk.wav", "happy birthday to you", before=1.0, after=1.0), dtype="float32")
    pictures = [np.full((32, 32, 3), 90 * n, np.uint8) for n in range(2)]
    seconds = len(talk) / 16000 / 2
    with_sound = write_video(tmp_path / "party.mp4", pictures, seconds_each=seconds, wave=talk)
    silent = write_video(tmp_path / "quiet.mp4", pictures, seconds_each=1.0)
    assert "birthday" in " ".join(u.text.lower() for u in recognizer.transcribe(with_sound).utterances)
    assert recognizer.transcribe(silent).utterances == []
    (tmp_path / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt nonsense")
    with pytest.raises(AudioDecodeError):
        recognizer.transcribe(tmp_path / "broken.wav")


def test_a_file_reads_the_same_words_every_time(tmp_path: Path, recognizer: SpeechRecognizer) -> None:
    # Whisper is unsure of these words (average log-probability under -1), where faster-whisper's
    # default falls back to sampling: two reads of the same file then wrote different words
    path = speak(tmp_path / "glorp.wav", "mumble bumble frobnicate the glorp", voice="en")
    reads = {tuple(u.text for u in recognizer.transcribe(path).utterances) for _ in range(6)}
    assert len(reads) == 1 and next(iter(reads)), reads


def test_speech_regions_found_before_are_read_alone_and_heard_the_same(
    tmp_path: Path, recognizer: SpeechRecognizer
) -> None:
    """Given the regions (as decode workers find them), only they are read, by seeking, and the
    words and their times are those the whole file gives; no regions, no words."""
    talk, _ = sf.read(speak(tmp_path / "talk.wav", "the budget meeting starts at nine"), dtype="float32")
    wave = np.zeros(16000 * 50, np.float32)
    wave[16000 * 31 : 16000 * 31 + len(talk)] = talk
    sf.write(tmp_path / "long.wav", resample(wave, 16000, 44100), 44100)
    whole = recognizer.transcribe(tmp_path / "long.wav")
    regions = recognizer.finder.regions(wave)
    assert len(regions) == 1 and regions[0][0] < 31.0 and regions[0][1] < 40.0 and speech.sparse(regions)
    read = list(speech.region_pieces(tmp_path / "long.wav", regions))
    assert sum(len(samples) for _, samples in read) == pytest.approx((regions[0][1] - regions[0][0]) * 16000, abs=2)
    alone = recognizer.transcribe(tmp_path / "long.wav", regions)
    assert [u.text for u in alone.utterances] == [u.text for u in whole.utterances]
    assert "budget" in alone.utterances[0].text.lower()
    for a, b in zip(alone.utterances[0].words, whole.utterances[0].words):
        assert (
            a.text == b.text and a.start == pytest.approx(b.start, abs=0.05) and a.end == pytest.approx(b.end, abs=0.05)
        )
    assert alone.seconds == pytest.approx(50.0, abs=0.01) and alone.speech_seconds == pytest.approx(
        whole.speech_seconds, abs=0.01
    )
    nothing = recognizer.transcribe(tmp_path / "long.wav", [])
    assert nothing.utterances == [] and nothing.speech_seconds == 0


def test_long_files_stream_in_pieces_cut_at_quiet_moments_equal_to_the_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pieces, joined, are the whole file resampled at once (the slow reference), and each
    cut lies in the quietest half second near a piece's end."""
    rng = np.random.default_rng(1)
    rate = 22050
    wave = rng.normal(0, 0.3, rate * 40).astype(np.float32)
    quiet_at = (8.3, 16.5, 25.0, 33.5)  # one in each stretch a cut is looked for in
    for quiet in quiet_at:
        wave[int(quiet * rate) : int((quiet + 0.8) * rate)] *= 0.001
    sf.write(tmp_path / "long.wav", wave, rate, subtype="FLOAT")
    monkeypatch.setattr(speech, "CHUNK_SECONDS", 10.0)
    monkeypatch.setattr(speech, "CUT_SEARCH_SECONDS", 3.0)
    monkeypatch.setattr(speech, "READ_SECONDS", 1.7)
    pieces = list(speech_pieces(tmp_path / "long.wav"))
    assert len(pieces) >= 4 and all(len(p) <= 13 * 16000 for _, p in pieces)
    offsets = [o for o, _ in pieces]
    assert offsets[0] == 0 and all(b == pytest.approx(a + len(p) / 16000) for (a, p), b in zip(pieces, offsets[1:]))
    joined = np.concatenate([p for _, p in pieces])
    whole = resample(wave, rate, 16000)
    assert abs(len(joined) - len(whole)) <= 2
    n = min(len(joined), len(whole))
    assert np.max(np.abs(joined[:n] - whole[:n])) < 1e-3
    assert len(offsets) == 5
    for cut, quiet in zip(offsets[1:], quiet_at):
        assert quiet <= cut <= quiet + 0.8, (cut, quiet)


def test_quietest_is_the_lowest_energy_window() -> None:
    x = np.ones(16000 * 3, np.float32)
    x[20000:28000] = 0.0
    assert 20000 <= quietest(x, 0, len(x)) <= 28000


def test_a_folder_that_is_not_a_model_is_refused_with_the_reason(tmp_path: Path) -> None:
    with pytest.raises(SpeechUnavailable, match="not a CTranslate2 Whisper model"):
        SpeechRecognizer(tmp_path)
