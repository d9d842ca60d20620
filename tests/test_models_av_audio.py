"""AAC audio (.m4a) through PyAV: far seeks give the samples a decode from the start gives;
windows, moments and the index work as for any other audio."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from indexer import IndexOptions, index_folder
from retrieval import Engine
from retrieval.models.audio import AudioDecodeError, AudioPreprocessor, resample, to_mono
from retrieval.models.av_audio import AvAudio
from tests.helpers import write_m4a

PRE = AudioPreprocessor()


def _signal(seconds: float, rate: int) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * (200 + 20 * np.floor(t)) * t)).astype(np.float32)  # the pitch steps each second


def test_far_seeks_read_what_a_decode_from_the_start_reads(tmp_path: Path) -> None:
    """The fast path (container seeks, pre-roll) against the slow reference (one decode from
    the start, then cut): 200 s has 40 windows, so the 16 evenly spread ones jump ~13 s."""
    path = write_m4a(tmp_path / "long.m4a", _signal(200.0, 44100))
    with AvAudio(path, AudioDecodeError) as whole:
        assert whole.samplerate == 44100 and whole.channels == 2 and abs(whole.frames / 44100 - 200.0) < 0.1
        reference = whole.read(whole.frames + 44100)
    windows, rate, frames = PRE._read_windows(path)
    native = int(np.ceil(PRE.window_seconds * rate))
    starts = PRE._window_starts(frames, native)
    assert len(starts) == 16 and starts[1] - starts[0] > 10 * rate
    for window, start in zip(windows, starts):
        expected = PRE.fit(resample(to_mono(reference[start : start + native]), rate, 16000))
        assert np.abs(window - expected).max() < 1e-4, start


def test_moments_of_aac_audio_stream_and_are_found(tmp_path: Path, tiny) -> None:
    root = tmp_path / "media"
    rate = 16000
    clip = (0.3 * np.sin(2 * np.pi * 1500 * np.arange(rate) / rate)).astype(np.float32)
    wave = np.zeros(12 * rate, np.float32)
    wave[6 * rate : 7 * rate] = clip
    write_m4a(root / "rec.m4a", wave, rate=rate, channels=1)
    windows = list(PRE.segment_windows(root / "rec.m4a", 2.5))
    assert [s for s, _, _ in windows] == [0.0, 2.5, 5.0, 7.5] and abs(windows[-1][1] - 12.0) < 0.1
    summary = index_folder(root, tiny, IndexOptions(workers=1))
    assert (
        summary.added == 1 and summary.skipped == [] and 3 <= summary.segments <= 4
    )  # windows hearing the clip (AAC rings)
    with Engine.open(root / ".xmr", model=tiny) as engine:
        top = engine.search(audio=[clip], to="audio", k=1)[0]
        assert top.path.endswith("rec.m4a") and top.start == 6.0
        assert abs(top.metadata["duration"] - 12.0) < 0.1
