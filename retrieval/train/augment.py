"""Training-time augmentation in torch, on whole batches, seeded by a generator.

Images: random resized crop and mild brightness/contrast/saturation jitter (no flips and no
hue shift: arrows, text and colour names matter). Audio: gain, noise, time shift,
speed/pitch, and band-limiting to telephone quality; then the same log-mel as inference,
and SpecAugment's frequency and time masks on it.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ..models.audio import AudioPreprocessor, mel_filterbank
from ..models.image import OPENAI_MEAN, OPENAI_STD


def normalize_pixels(images: torch.Tensor) -> torch.Tensor:
    """``[N, 3, S, S]`` floats in [0, 1] -> the model's normalised input."""
    mean = torch.tensor(OPENAI_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(OPENAI_STD).view(1, 3, 1, 1)
    return (images - mean) / std


def center_images(images: torch.Tensor, size: int) -> torch.Tensor:
    """Evaluation view of uint8 ``[N, H, W, 3]`` images: resize to ``size`` (they are square)."""
    x = images.permute(0, 3, 1, 2).float() / 255.0
    return normalize_pixels(
        F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)
    )


def augment_images(
    images: torch.Tensor, size: int, gen: torch.Generator, scale: tuple[float, float] = (0.45, 1.0)
) -> torch.Tensor:
    """Random resized crops of uint8 ``[N, H, W, 3]`` images to ``size``, then colour jitter."""
    n = images.shape[0]
    x = images.permute(0, 3, 1, 2).float() / 255.0
    x = (
        F.interpolate(x, scale_factor=0.75, mode="bilinear", antialias=True, align_corners=False)
        if x.shape[-1] > 2 * size
        else x
    )
    area = torch.empty(n).uniform_(*scale, generator=gen)
    log_ratio = torch.empty(n).uniform_(math.log(3 / 4), math.log(4 / 3), generator=gen)
    ratio = log_ratio.exp()
    w = (area * ratio).sqrt().clamp(max=1.0)
    h = (area / ratio).sqrt().clamp(max=1.0)
    cx = (torch.rand(n, generator=gen) * (1 - w) + w / 2) * 2 - 1
    cy = (torch.rand(n, generator=gen) * (1 - h) + h / 2) * 2 - 1
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = w, cx, h, cy
    grid = F.affine_grid(theta, (n, 3, size, size), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    bright = torch.empty(n, 1, 1, 1).uniform_(0.8, 1.2, generator=gen)
    contrast = torch.empty(n, 1, 1, 1).uniform_(0.8, 1.2, generator=gen)
    sat = torch.empty(n, 1, 1, 1).uniform_(0.8, 1.2, generator=gen)
    x = x * bright
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * contrast + mean
    gray = 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]
    x = (x - gray) * sat + gray
    return normalize_pixels(x.clamp(0, 1))


class TorchLogMel(torch.nn.Module):
    """The inference front-end's log-mel (:class:`AudioPreprocessor.log_mel`) in torch, with
    an optional per-example frequency mask for band-limiting."""

    def __init__(self, pre: AudioPreprocessor) -> None:
        super().__init__()
        self.pre = pre
        fb = mel_filterbank(pre.sample_rate, pre.n_fft, pre.n_mels, pre.fmin, pre.fmax)
        self.register_buffer("fb", torch.from_numpy(np.array(fb)), persistent=False)
        self.register_buffer(
            "window", torch.from_numpy(np.hanning(pre.n_fft + 1)[:-1].astype(np.float32)), persistent=False
        )

    def forward(self, waves: torch.Tensor, band_mask: torch.Tensor | None = None) -> torch.Tensor:
        spec = torch.stft(
            waves,
            self.pre.n_fft,
            self.pre.hop_length,
            window=self.window,
            center=True,
            pad_mode="constant",
            return_complex=True,
        )
        power = spec.abs() ** 2  # [N, F, T]
        if band_mask is not None:
            power = power * band_mask[:, :, None]
        return torch.log(torch.einsum("mf,nft->nmt", self.fb, power) + 1e-6)


def augment_waves(
    waves: torch.Tensor, lengths: torch.Tensor, pre: AudioPreprocessor, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Augment ``[N, L]`` waveforms at the model rate (each ``lengths[i]`` samples long) into
    ``[N, window]`` windows, and give a band mask per example for :class:`TorchLogMel`."""
    n, window = waves.shape[0], pre.window_samples
    out = torch.zeros(n, window)
    speed = torch.empty(n).uniform_(0.88, 1.12, generator=gen)
    for i in range(n):
        clip = waves[i, : int(lengths[i])]
        if torch.rand(1, generator=gen).item() < 0.7 and clip.numel() > 16:
            new_len = max(16, int(clip.numel() / speed[i].item()))
            clip = F.interpolate(clip[None, None], size=new_len, mode="linear", align_corners=False)[0, 0]
        clip = clip[:window]
        slack = window - clip.numel()
        # Time shift: start short clips up to 0.5 s into the window (inference starts them at 0).
        start = (
            int(torch.randint(0, min(slack, pre.sample_rate // 2) + 1, (1,), generator=gen).item()) if slack > 0 else 0
        )
        out[i, start : start + clip.numel()] = clip
    gain = 10 ** (torch.empty(n, 1).uniform_(-10, 6, generator=gen) / 20)
    out = out * gain
    rms = out.pow(2).mean(1, keepdim=True).sqrt().clamp(min=1e-4)
    snr_db = torch.empty(n, 1).uniform_(10, 45, generator=gen)
    noisy = torch.rand(n, 1, generator=gen) < 0.6
    out = out + noisy * torch.randn(n, window, generator=gen) * rms / 10 ** (snr_db / 20)
    freqs = torch.linspace(0, pre.sample_rate / 2, pre.n_fft // 2 + 1)
    phone = ((freqs >= 300) & (freqs <= 3400)).float()
    narrow = torch.rand(n, generator=gen) < 0.3
    mask = torch.where(narrow[:, None], phone[None], torch.ones_like(phone)[None])
    return out, mask


def spec_augment(
    logmel: torch.Tensor,
    gen: torch.Generator,
    p: float = 0.8,
    freq_masks: int = 2,
    max_bands: int = 8,
    time_masks: int = 2,
    max_frames: int = 20,
) -> torch.Tensor:
    """SpecAugment (Park et al., 2019) on ``[N, mels, frames]`` log-mel: for a share ``p`` of
    the examples, ``freq_masks`` bands of up to ``max_bands`` mels and ``time_masks`` spans of
    up to ``max_frames`` frames are set to the example's mean. Masks fall inside the frames
    that hold sound (a short clip's zero padding is left alone)."""
    n, mels, frames = logmel.shape
    floor = logmel.amin(dim=(1, 2), keepdim=True)
    voiced = (logmel > floor + 1e-3).any(dim=1)  # [N, T]: frames above the padding floor
    last = torch.where(voiced.any(1), frames - voiced.flip(1).float().argmax(1), torch.full((n,), frames))
    fill = logmel.mean(dim=(1, 2), keepdim=True)
    keep = torch.ones_like(logmel, dtype=torch.bool)
    chosen = torch.rand(n, generator=gen) < p
    band = torch.arange(mels)[None, :]
    for _ in range(freq_masks):
        width = torch.randint(0, max_bands + 1, (n, 1), generator=gen)
        start = (torch.rand(n, 1, generator=gen) * (mels - width + 1)).long()
        keep &= ~((band >= start) & (band < start + width))[:, :, None]
    frame = torch.arange(frames)[None, :]
    for _ in range(time_masks):
        width = torch.minimum(
            torch.randint(0, max_frames + 1, (n, 1), generator=gen), (last[:, None] // 5).clamp(min=0)
        )
        start = (torch.rand(n, 1, generator=gen) * (last[:, None] - width + 1).clamp(min=1)).long()
        keep &= ~((frame >= start) & (frame < start + width))[:, None, :]
    keep |= ~chosen[:, None, None] | (frame >= last[:, None])[:, None, :]
    return torch.where(keep, logmel, fill)
