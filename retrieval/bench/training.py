"""Training speed per trainable tower: seconds per optimizer step (forward, backward, AdamW)
on a training batch of preprocessed inputs, with the convolution weights in the default
(NCHW) layout and in channels-last (NHWC), the layout ``xmr train`` uses."""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch

from .report import machine_info, markdown_table, write_outputs


def _step_seconds(tower: torch.nn.Module, x: torch.Tensor, reps: int) -> float:
    opt = torch.optim.AdamW(tower.parameters(), lr=1e-4)
    tower.train()
    times = []
    for _ in range(reps + 1):  # the first is a warm-up
        start = time.perf_counter()
        loss = torch.nn.functional.normalize(tower(x), dim=-1).sum(0).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def run_train_speed(
    model: str = "xmr-mini",
    image_batch: int = 256,
    audio_batch: int = 128,
    reps: int = 5,
    threads: int | None = None,
    out_dir: str | None = None,
) -> dict[str, Any]:
    from ..models.audio import AudioPreprocessor
    from ..models.registry import resolve
    from ..models.towers import build_tower

    if threads:
        torch.set_num_threads(threads)
    config = resolve(model).config
    rows = []
    for modality, batch in (("image", image_batch), ("audio", audio_batch)):
        cfg = config.get(f"{modality}_cfg")
        if not cfg or cfg.get("frozen"):
            continue
        if modality == "image":
            x = torch.randn(batch, 3, cfg["image_size"], cfg["image_size"])
        else:
            x = torch.randn(batch, cfg["n_mels"], AudioPreprocessor.from_config(cfg).frames_per_window) - 6.0
        seconds = {}
        for layout, fmt in (("contiguous", torch.contiguous_format), ("channels_last", torch.channels_last)):
            torch.manual_seed(0)
            tower = build_tower(cfg, config["embed_dim"]).to(memory_format=fmt)
            seconds[layout] = _step_seconds(tower, x, reps)
        rows.append(
            {
                "tower": modality,
                "batch": batch,
                "s_per_step_contiguous": seconds["contiguous"],
                "s_per_step_channels_last": seconds["channels_last"],
                "samples_per_s_channels_last": batch / seconds["channels_last"],
                "speedup": seconds["contiguous"] / seconds["channels_last"],
            }
        )
    payload = {
        "machine": machine_info(),
        "model": model,
        "threads": torch.get_num_threads(),
        "reps": reps,
        "results": rows,
    }
    if out_dir:
        table = markdown_table(
            rows,
            [
                "tower",
                "batch",
                "s_per_step_contiguous",
                "s_per_step_channels_last",
                "samples_per_s_channels_last",
                "speedup",
            ],
        )
        payload["files"] = {k: str(v) for k, v in write_outputs(out_dir, "train_speed", payload, table).items()}
    return payload
