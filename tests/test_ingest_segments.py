"""Moments of long audio (issue 21, decode side): every window at a hop, streamed; the same
numbers as cutting the whole decoded file; bounded memory whatever the length."""

from __future__ import annotations

import pickle
import tracemalloc
from pathlib import Path

import numpy as np
import soundfile as sf

from indexer.ingest.segments import SEGMENTS_KEY, SegmentingAudio
from retrieval.models.audio import AudioPreprocessor, resample

PRE = AudioPreprocessor()  # xmr-mini's front-end: 16 kHz, 5 s windows


def _wav(path: Path, seconds: float, rate: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    wave = 0.3 * np.sin(2 * np.pi * 440 * t) * np.sin(2 * np.pi * 0.1 * t) + 0.05 * rng.standard_normal(t.size)
    sf.write(path, wave.astype(np.float32), rate, subtype="FLOAT")
    return wave.astype(np.float32)


def test_windows_cover_the_file_at_the_hop_and_end_at_its_end(tmp_path: Path) -> None:
    _wav(tmp_path / "a.wav", 12.3, 16000)
    got = list(PRE.segment_windows(tmp_path / "a.wav", 2.5))
    assert [(s, e) for s, e, _ in got] == [(0.0, 5.0), (2.5, 7.5), (5.0, 10.0), (7.5, 12.3)]
    assert all(w.shape == (PRE.window_samples,) for _, _, w in got)
    # A file that ends where a window ends gets no redundant tail window.
    _wav(tmp_path / "b.wav", 7.5, 16000)
    assert [(s, e) for s, e, _ in PRE.segment_windows(tmp_path / "b.wav", 2.5)] == [(0.0, 5.0), (2.5, 7.5)]
    _wav(tmp_path / "c.wav", 1.0, 16000)
    assert [(s, e) for s, e, _ in PRE.segment_windows(tmp_path / "c.wav", 2.5)] == [(0.0, 1.0)]


def test_streamed_windows_equal_cutting_the_whole_decoded_file(tmp_path: Path) -> None:
    """The fast path (blocks of 1.3 s, resampled as a stream) against the slow reference (the
    whole file decoded and resampled at once, then cut)."""
    for rate in (16000, 22050, 44100):
        wave = _wav(tmp_path / f"{rate}.wav", 11.0, rate, seed=rate)
        whole = resample(wave, rate, 16000)
        n, hop = PRE.window_samples, 16000 * 5 // 2
        got = list(PRE.segment_windows(tmp_path / f"{rate}.wav", 2.5, block_seconds=1.3))
        for start, _, window in got:
            ref = PRE.fit(whole[int(round(start * 16000)) : int(round(start * 16000)) + n])
            tol = 0.0 if rate == 16000 else 2e-3
            assert np.abs(window[: len(ref)] - ref).max() <= tol, (rate, start)
        assert len(got) == int(np.ceil((len(whole) - n) / hop)) + 1


def test_segment_features_are_each_window_s_own_log_mel_and_the_file_keeps_its_vector(tmp_path: Path) -> None:
    wave = _wav(tmp_path / "long.wav", 14.0, 16000)
    pre = SegmentingAudio(PRE, str(tmp_path / "scratch"))
    pre = pickle.loads(pickle.dumps(pre))  # as a decode worker receives it
    features, meta = pre.process(tmp_path / "long.wav")
    plain, plain_meta = PRE.process(tmp_path / "long.wav")
    assert np.array_equal(features, plain) and meta["duration"] == plain_meta["duration"]
    (seg,) = meta[SEGMENTS_KEY]
    assert seg.count == 5 and seg.starts == [0.0, 2.5, 5.0, 7.5, 10.0] and seg.ends[-1] == 14.0
    mels = seg.features()
    for k, start in enumerate(seg.starts):
        at = int(start * 16000)
        alone = PRE.log_mel(PRE.fit(wave[at : at + PRE.window_samples])[None])[0]
        assert np.abs(mels[k] - alone).max() < 1e-4  # batched BLAS may round differently
    seg.discard()
    assert not Path(seg.file).exists()
    _wav(tmp_path / "short.wav", 4.0, 16000)
    assert SEGMENTS_KEY not in pre.process(tmp_path / "short.wav")[1]


def test_segments_stop_at_the_limit_and_say_so(tmp_path: Path) -> None:
    _wav(tmp_path / "long.wav", 30.0, 16000)
    seg = SegmentingAudio(PRE, str(tmp_path / "scratch"), max_segments=4).write(tmp_path / "long.wav")
    assert seg.count == 4 and seg.truncated and seg.features().shape == (4, 64, PRE.frames_per_window)


def test_a_long_recording_is_never_held_whole(tmp_path: Path) -> None:
    """30 minutes at 44.1 kHz (300 MB as float32 at the model rate of 16 kHz would be 115 MB):
    streaming its 719 segments to the scratch file peaks at a few blocks."""
    rate, seconds = 44100, 1800
    with sf.SoundFile(tmp_path / "long.wav", "w", rate, 1, subtype="PCM_16") as f:
        rng = np.random.default_rng(0)
        for _ in range(seconds // 60):
            f.write((0.1 * rng.standard_normal(rate * 60)).astype(np.float32))
    pre = SegmentingAudio(PRE, str(tmp_path / "scratch"))
    tracemalloc.start()
    try:
        seg = pre.write(tmp_path / "long.wav")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert seg.count == 719 and seg.ends[-1] == 1800.0
    assert Path(seg.file).stat().st_size == 719 * 64 * PRE.frames_per_window * 4
    assert peak < 80 * 2**20, f"peak {peak / 2**20:.0f} MiB while segmenting 30 minutes"


def test_silence_is_no_moment_but_a_silent_file_keeps_one(tmp_path: Path) -> None:
    rate = 16000
    wave = np.zeros(20 * rate, np.float32)
    wave[10 * rate : 11 * rate] = 0.3 * np.sin(2 * np.pi * 500 * np.arange(rate) / rate)
    sf.write(tmp_path / "gap.wav", wave, rate, subtype="FLOAT")
    seg = SegmentingAudio(PRE, str(tmp_path / "scratch")).write(tmp_path / "gap.wav")
    assert seg.starts == [7.5, 9.9, 10.0], "only the windows that hear the tone, and the tone alone"
    assert seg.ends[1] == 11.1
    sf.write(tmp_path / "silent.wav", np.zeros(20 * rate, np.float32), rate, subtype="FLOAT")
    seg = SegmentingAudio(PRE, str(tmp_path / "scratch")).write(tmp_path / "silent.wav")
    assert seg.starts == [0.0] and seg.count == 1


def test_a_stream_that_breaks_keeps_the_moments_before_the_break(tmp_path: Path) -> None:
    rate = 16000
    rng = np.random.default_rng(0)
    sf.write(tmp_path / "broken.flac", (0.2 * rng.standard_normal(40 * rate)).astype(np.float32), rate)
    data = bytearray((tmp_path / "broken.flac").read_bytes())
    cut = len(data) * 2 // 5
    data[cut:] = bytes(rng.integers(0, 256, len(data) - cut, dtype=np.uint8))  # garbage from ~16 s on
    (tmp_path / "broken.flac").write_bytes(bytes(data))
    seg = SegmentingAudio(PRE, str(tmp_path / "scratch")).write(tmp_path / "broken.flac")
    assert seg.count >= 4 and seg.ends[-1] <= 20.0, (seg.count, seg.ends[-1:])


def test_a_segmenting_failure_costs_the_moments_not_the_file(tmp_path: Path) -> None:
    _wav(tmp_path / "long.wav", 14.0, 16000)
    (tmp_path / "scratch").write_text("a file where the scratch folder should be")  # as a full or broken disk
    features, meta = SegmentingAudio(PRE, str(tmp_path / "scratch")).process(tmp_path / "long.wav")
    assert SEGMENTS_KEY not in meta and np.array_equal(features, PRE.process(tmp_path / "long.wav")[0])


def test_an_uploaded_aac_file_decodes_from_its_bytes(tmp_path: Path) -> None:
    from tests.helpers import write_m4a

    data = write_m4a(tmp_path / "q.m4a", _wav(tmp_path / "q.wav", 3.0, 44100), rate=44100).read_bytes()
    windows, meta = PRE.process(data)
    assert windows.shape[0] == 1 and abs(meta["duration"] - 3.0) < 0.1


def test_stretches_between_pauses_are_moments_of_their_own(tmp_path: Path) -> None:
    """Sounds between pauses, fed in uneven pieces: each one up to a window long is cut out with
    0.1 s on each side; a short gap (0.2 s) is no pause; too long or too short is no stretch;
    steady noise has no pauses at all."""
    from indexer.ingest.segments import Utterances

    rate = 16000

    def tone(seconds: float) -> np.ndarray:
        return (0.3 * np.sin(2 * np.pi * 300 * np.arange(int(seconds * rate)) / rate)).astype(np.float32)

    def quiet(seconds: float) -> np.ndarray:
        return np.zeros(int(seconds * rate), np.float32)

    def run(wave: np.ndarray) -> list[tuple[float, float]]:
        found = Utterances(rate, 5.0)
        out = []
        for a in range(0, len(wave), 12_345):
            out += found.feed(wave[a : a + 12_345])
        out += found.finish()
        for a, b, samples in out:
            assert len(samples) == int(round((b - a) * rate))
        return [(round(a, 2), round(b, 2)) for a, b, _ in out]

    parts = [quiet(1), tone(1.5), quiet(0.5), tone(2.0), quiet(0.2), tone(1.0), quiet(1), tone(7), quiet(1), tone(0.2)]
    assert run(np.concatenate([*parts, quiet(1)])) == [(0.9, 2.6), (2.9, 6.3)]
    assert run(np.concatenate([quiet(1), tone(1.0)])) == [(0.9, 2.0)], "the stretch the stream ends in"
    noise = (0.05 * np.random.default_rng(0).standard_normal(10 * rate)).astype(np.float32)
    assert run(noise) == []
    # Through a file: the tone's own segment, besides the windows.
    sf.write(tmp_path / "talk.wav", np.concatenate([quiet(6), tone(1.5), quiet(6)]), rate, subtype="FLOAT")
    seg = SegmentingAudio(PRE, str(tmp_path / "scratch")).write(tmp_path / "talk.wav")
    assert (5.9, 7.6) in list(zip(seg.starts, seg.ends))
    alone = SegmentingAudio(PRE, str(tmp_path / "scratch"), utterances=False).write(tmp_path / "talk.wav")
    assert seg.count == alone.count + 1
