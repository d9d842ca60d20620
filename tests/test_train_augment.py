"""Training-time augmentation: seeded, shaped as the model expects, and doing what it says."""

from __future__ import annotations

import torch

from retrieval.models.audio import AudioPreprocessor
from retrieval.train.augment import TorchLogMel, augment_waves, spec_augment

FLOOR = -13.8  # log(1e-6): the log-mel of zero padding


def _logmel_batch(n: int = 64, mels: int = 64, frames: int = 500, voiced: int = 200) -> torch.Tensor:
    x = torch.randn(n, mels, frames, generator=torch.Generator().manual_seed(1))
    x[:, :, voiced:] = FLOOR
    return x


def test_spec_augment_masks_whole_bands_and_spans_inside_the_sound() -> None:
    x = _logmel_batch()
    y = spec_augment(x, torch.Generator().manual_seed(0), p=1.0, max_bands=8, max_frames=20)
    changed = y != x
    assert changed.any()
    assert not changed[:, :, 200:].any(), "the zero padding after the clip is never masked"
    for i in range(x.shape[0]):
        c = changed[i, :, :200]
        if not c.any():
            continue
        assert torch.allclose(y[i][changed[i]], x[i].mean().expand(int(changed[i].sum())))
        # every changed cell lies in a fully masked band or a fully masked frame span
        full_band = c.all(dim=1)
        full_frame = c.all(dim=0)
        assert (c <= (full_band[:, None] | full_frame[None, :])).all()
        assert int(full_band.sum()) <= 2 * 8 and int(full_frame.sum()) <= 2 * 20


def test_spec_augment_is_seeded_and_spares_a_share_of_examples() -> None:
    x = _logmel_batch(n=400)
    a = spec_augment(x, torch.Generator().manual_seed(3), p=0.5)
    b = spec_augment(x, torch.Generator().manual_seed(3), p=0.5)
    assert torch.equal(a, b)
    untouched = (a == x).flatten(1).all(1).float().mean().item()
    assert 0.35 < untouched < 0.7  # p=0.5 masks about half (a drawn width can be 0 too)
    assert torch.equal(spec_augment(x, torch.Generator().manual_seed(3), p=0.0), x)


def test_augmented_waves_fill_the_window_and_telephone_band_removes_high_frequencies() -> None:
    pre = AudioPreprocessor()
    gen = torch.Generator().manual_seed(0)
    t = torch.arange(pre.sample_rate) / pre.sample_rate
    tone = torch.sin(2 * torch.pi * 6000 * t) * 0.3  # above the 3.4 kHz telephone band
    waves = tone.repeat(40, 1)
    out, band = augment_waves(waves, torch.full((40,), pre.sample_rate), pre, gen)
    assert out.shape == (40, pre.window_samples)
    narrow = band.sum(1) < band.shape[1]
    assert narrow.any() and (~narrow).any()
    mel = TorchLogMel(pre)(out, band)
    top = mel[:, -8:, :].mean(dim=(1, 2))  # the highest mel bands
    assert top[narrow].max() < top[~narrow].min()
