"""Whisper's encoder as an audio backbone (retrieval.models.whisper_audio): its input against
faster-whisper's own front end, the trim, the pooling against a loop, and the encoder run on
CTranslate2 with the shipped Whisper tiny.en."""

from __future__ import annotations

import numpy as np
import pytest

from retrieval.models.whisper_audio import (
    N_MELS,
    POOL,
    SECOND,
    STATE_DIM,
    WhisperBackbone,
    front_end,
    pooled_states,
    summary,
    whisper_input,
)

RATE = 16000
FRONT = front_end()


def chirp(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    wave = 0.3 * np.sin(2 * np.pi * (300 + 400 * t) * t) + 0.05 * rng.standard_normal(t.size)
    return wave.astype(np.float32)


@pytest.mark.parametrize("gain", [1.0, 10 ** (-50 / 20)], ids=["loud", "at -50 dB"])
def test_input_matches_faster_whispers_front_end_inside_the_window(gain: float) -> None:
    fw = pytest.importorskip("faster_whisper.feature_extractor")
    wave = chirp(5.0) * np.float32(gain)  # quiet audio too: Whisper's floor (1e-10), not the scratch towers'
    ours = whisper_input(FRONT((wave, RATE))[0])
    theirs = fw.FeatureExtractor(feature_size=N_MELS)(wave, padding=0)
    assert ours.shape == (N_MELS, 500) and theirs.shape[0] == N_MELS
    # the edge frames differ by padding (zeros here, reflection there); the rest is Whisper's input
    # float32 FFTs on both sides: a band a million times below the peak differs by up to 0.07 on
    # Whisper's scale of about 2 (the mean stays far below; a wrong floor moves whole rows by more)
    diff = np.abs(ours[:, 2:-2] - theirs[:, 2 : ours.shape[1] - 2])
    assert diff.max() < 0.1 and diff.mean() < 1e-3 and np.quantile(diff, 0.99) < 2e-3


def test_a_short_clip_is_cut_after_its_last_sound_to_whole_seconds() -> None:
    for seconds, frames in ((0.3, SECOND), (1.0, SECOND), (1.2, 2 * SECOND), (4.95, 5 * SECOND), (7.0, 5 * SECOND)):
        mels = FRONT((chirp(seconds), RATE))
        assert whisper_input(mels[0]).shape == (N_MELS, frames), seconds
    silent = FRONT((np.zeros(RATE, np.float32), RATE))
    assert whisper_input(silent[0]).shape == (N_MELS, SECOND)  # nothing heard: one second, not none


def test_pooling_averages_states_five_at_a_time() -> None:
    states = np.random.default_rng(1).standard_normal((23, 4)).astype(np.float32)
    expected = np.stack([states[i : i + POOL].mean(axis=0) for i in range(0, 23, POOL)])
    np.testing.assert_allclose(pooled_states(states), expected, rtol=1e-6)
    s = summary(expected)
    np.testing.assert_allclose(s, np.concatenate([expected.mean(0), expected.max(0)]), rtol=1e-6)


@pytest.fixture(scope="module")
def backbone() -> WhisperBackbone:
    try:
        model = WhisperBackbone(threads=1)
    except Exception as exc:  # noqa: BLE001 - the package is a core dependency; say why if it is not there
        pytest.skip(f"Whisper tiny.en is not installed: {exc}")
    return model


def test_encoder_states_per_window_and_batches_equal_single_runs(backbone: WhisperBackbone) -> None:
    windows = np.concatenate([FRONT((chirp(s, seed=s), RATE)) for s in (1, 3)] + [FRONT((chirp(12.0), RATE))])
    inputs = [whisper_input(m) for m in windows]
    states = backbone.encode(inputs)
    assert [s.shape for s in states] == [(x.shape[1] // 2, STATE_DIM) for x in inputs]
    alone = backbone.encode([inputs[-1]])[0]  # the last two windows of the 12 s clip ran as one batch
    np.testing.assert_allclose(states[-1], alone, atol=1e-4)
    summaries = backbone.summaries(windows)
    assert summaries.shape == (len(windows), 2 * STATE_DIM) and np.isfinite(summaries).all()
    assert not np.allclose(summaries[0], summaries[1])
