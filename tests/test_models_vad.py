"""The streamed voice-activity filter (retrieval/models/vad.py) checked against faster-whisper's
whole-file ``get_speech_timestamps`` (the slow reference) on espeak-ng speech among music."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from faster_whisper.vad import VadOptions, get_speech_timestamps

from retrieval.models import vad
from retrieval.models.audio import resample
from retrieval.models.vad import SpeechFinder
from tests.helpers import speak


def _talk_among_music(tmp_path: Path) -> np.ndarray:
    """40 s of chords and noise, someone speaking at 6 s and at 25 s."""
    rng = np.random.default_rng(3)
    t = np.arange(16000 * 40) / 16000
    wave = 0.05 * np.sin(2 * np.pi * 196 * t) * (1 + np.sin(2 * np.pi * 0.5 * t)) + 0.01 * rng.standard_normal(len(t))
    for at, words in ((6.0, "the budget meeting starts at nine"), (25.0, "happy birthday dear grandmother")):
        talk, _ = sf.read(speak(tmp_path / f"{at}.wav", words), dtype="float32")
        wave[int(at * 16000) : int(at * 16000) + len(talk)] += talk
    return wave.astype(np.float32)


def test_streamed_regions_are_faster_whispers_for_the_whole_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wave = _talk_among_music(tmp_path)
    reference = [(r["start"] / 16000, r["end"] / 16000) for r in get_speech_timestamps(wave, VadOptions())]
    assert len(reference) == 2 and reference[0][0] < 6.0 < reference[0][1] < 25.0 < reference[1][1]
    monkeypatch.setattr(vad, "BATCH", 7)  # the recurrent state carried across many model calls
    stream = SpeechFinder().listen()
    for a in range(0, len(wave), 7777):  # blocks that split windows
        stream.feed(wave[a : a + 7777])
    assert stream.finish() == reference
    loud = SpeechFinder().listen(44100)  # another rate, resampled as one stream
    wide = resample(wave, 16000, 44100)
    for a in range(0, len(wide), 44100 * 3):
        loud.feed(wide[a : a + 44100 * 3])
    found = loud.finish()
    assert len(found) == 2 and all(abs(a - b) < 0.25 for r, f in zip(reference, found) for a, b in zip(r, f))


def test_silence_holds_no_speech_and_a_finder_travels_without_its_session() -> None:
    finder = SpeechFinder()
    assert finder.regions(np.zeros(16000 * 3, np.float32)) == []
    assert finder._session is not None
    copy = pickle.loads(pickle.dumps(finder))  # decode workers receive it
    assert copy._session is None and copy.regions(np.zeros(100, np.float32)) == []
