"""The audio front-end against references: mel placement, resampling, windows, decoding."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from retrieval.models.audio import AudioDecodeError, AudioPreprocessor, hz_to_mel, mel_filterbank, mel_to_hz, resample
from tests.conftest import sine


def test_mel_scale_round_trips_and_is_monotonic() -> None:
    hz = np.array([0.0, 100.0, 999.0, 1000.0, 4000.0, 8000.0])
    assert np.allclose(mel_to_hz(hz_to_mel(hz)), hz, atol=1e-6)
    assert np.all(np.diff(hz_to_mel(hz)) > 0)


def test_filterbank_matches_triangles() -> None:
    fb = mel_filterbank(16000, 400, 64)
    assert fb.shape == (64, 201)
    assert (fb >= 0).all()
    peaks = fb.argmax(axis=1)
    assert np.all(np.diff(peaks) >= 0), "filter centres must rise with the band index"


@pytest.mark.parametrize("freq", [440.0, 1000.0, 3000.0])
def test_sine_peaks_in_its_mel_band(freq: float) -> None:
    pre = AudioPreprocessor(sample_rate=16000, n_mels=64, window_seconds=1.0)
    mel = pre((sine(freq, 1.0, 16000), 16000))
    assert mel.shape == (1, 64, pre.frames_per_window)
    band = int(mel[0, :, 10:-10].mean(axis=1).argmax())
    fb = mel_filterbank(16000, 400, 64)
    bin_of_freq = int(round(freq * 400 / 16000))
    assert band in set(np.nonzero(fb[:, bin_of_freq] >= fb[:, bin_of_freq].max() * 0.5)[0]), (band, freq)


def test_resampling_8k_to_16k_keeps_a_1khz_tone() -> None:
    up = resample(sine(1000.0, 1.0, 8000), 8000, 16000)
    assert len(up) == 16000
    spectrum = np.abs(np.fft.rfft(up * np.hanning(len(up))))
    assert abs(np.fft.rfftfreq(len(up), 1 / 16000)[spectrum.argmax()] - 1000.0) < 2.0


def test_resampling_filters_aliases() -> None:
    # A 7 kHz tone cannot exist at 8 kHz: a proper resampler removes it, naive decimation folds it to 1 kHz.
    down = resample(sine(7000.0, 1.0, 16000), 16000, 8000)
    assert np.abs(down).max() < 0.05


def test_short_silent_and_long_audio(tmp_path) -> None:
    pre = AudioPreprocessor(sample_rate=16000, n_mels=32, window_seconds=1.0, max_windows=4)
    assert pre((np.zeros(160, np.float32), 16000)).shape == (1, 32, pre.frames_per_window)  # 10 ms
    silent = pre((np.zeros(16000 * 3, np.float32), 16000))
    assert np.isfinite(silent).all()
    long_file = tmp_path / "long.flac"
    with sf.SoundFile(long_file, "w", samplerate=8000, channels=1, format="FLAC") as f:
        block = np.zeros(8000 * 60, np.float32)
        for _ in range(120):  # two hours, streamed to disk
            f.write(block)
    windows = pre.load_windows(long_file)
    assert windows.shape == (4, 16000)


def test_same_file_same_windows_and_stereo_downmix(tmp_path) -> None:
    path = tmp_path / "stereo.wav"
    left, right = sine(500.0, 2.5, 22050), sine(1500.0, 2.5, 22050)
    sf.write(path, np.stack([left, right], axis=1), 22050)
    pre = AudioPreprocessor(window_seconds=1.0)
    a, b = pre(path), pre(path.read_bytes())
    assert a.shape[0] == 3 and np.array_equal(a, b)


@pytest.mark.parametrize("fmt,ext", [("OGG", ".ogg"), ("FLAC", ".flac"), ("MP3", ".mp3"), ("WAV", ".wav")])
def test_decodes_common_formats(tmp_path, fmt: str, ext: str) -> None:
    path = tmp_path / f"tone{ext}"
    sf.write(path, sine(440.0, 1.0, 16000), 16000, format=fmt)
    assert AudioPreprocessor(window_seconds=1.0)(path).shape[0] == 1


def test_bad_audio_raises_a_clear_error(tmp_path) -> None:
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt garbage")
    with pytest.raises(AudioDecodeError):
        AudioPreprocessor()(bad)
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, np.float32), 16000)
    with pytest.raises(AudioDecodeError, match="no samples"):
        AudioPreprocessor()(empty)


@pytest.mark.parametrize("name", ["fake.mp3", "fake.flac", "fake.wav"])
def test_a_text_file_named_as_audio_is_said_not_to_be_that_audio(tmp_path, name: str) -> None:
    path = tmp_path / name
    path.write_text("this is a text file, not a recording\n")
    with pytest.raises(AudioDecodeError) as caught:
        AudioPreprocessor()(str(path))
    message = str(caught.value)
    ext = name.rsplit(".", 1)[1].upper()
    assert f"not an {ext} file" in message or f"not a {ext} file" in message, message
    assert "does not exist" not in message and "pipe" not in message, message


def test_a_bad_upload_s_error_names_no_python_object(tmp_path) -> None:
    import re

    for data in (b"this is a text file, not a recording\n", b"\x00" * 64, b"RIFF\x10\x00\x00\x00WAVEfmt "):
        with pytest.raises(AudioDecodeError) as caught:
            AudioPreprocessor()(data)
        message = str(caught.value)
        assert not re.search(r"object at 0x[0-9a-f]+|<_io\.", message), message
        assert message.startswith("cannot decode audio"), message


def test_a_text_file_named_fake_mp3_is_skipped_as_not_an_mp3(tmp_path, tiny) -> None:
    from tests.helpers import write_audio
    from tests.test_ingest_indexer import run

    root = tmp_path / "media"
    write_audio(root / "real.wav", seed=3)
    (root / "fake.mp3").write_text("hello, I am text\n")
    summary = run(root, tiny)
    assert summary.counts == {"audio": 1}
    (skip,) = summary.skipped
    assert skip["path"].endswith("fake.mp3") and "not an MP3 file" in skip["reason"], skip
