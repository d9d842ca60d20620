"""Embedding speed per model and runtime: images/s, five-second audio windows/s, texts/s
(inputs preprocessed beforehand and untimed: this is the encoder's own forward throughput)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from .report import machine_info, markdown_table, write_outputs

CAPTIONS = [
    "a dog running on a sandy beach",
    "church bells ringing in the distance",
    "a red bicycle leaning on a wall",
    "rain falling on a tin roof at night",
    "a smiling face with tears of joy",
    "someone says the number seven",
]


def _rate(fn, items: int, reps: int = 3) -> float:
    fn()  # warm
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return items / best


def run_embedding(
    models: list[str], runtimes: list[str], n: int = 256, batch: int = 64, out_dir: str | None = None
) -> dict[str, Any]:
    from ..models.registry import create_model

    rng = np.random.default_rng(0)
    rows = []
    for name in models:
        for runtime in runtimes:
            enc = create_model(name, runtime=runtime, device="cpu")
            row: dict[str, Any] = {"model": name, "runtime": runtime}
            if "image" in enc.modalities:
                size = enc.preprocess_image.image_size
                pixels = rng.standard_normal((n, 3, size, size)).astype(np.float32)
                row["images_per_s"] = _rate(
                    lambda enc=enc, pixels=pixels: enc.encode_image(pixels, batch_size=batch), n
                )
            if "audio" in enc.modalities:
                pre = enc.preprocess_audio
                mel = pre.log_mel(rng.standard_normal((1, pre.window_samples)).astype(np.float32) * 0.1)
                feats = [mel] * n  # one 5-second window each
                row["audio_windows_per_s"] = _rate(
                    lambda enc=enc, feats=feats: enc.encode_audio_features(feats, batch_size=batch), n
                )
            if "text" in enc.modalities:
                texts = [CAPTIONS[i % len(CAPTIONS)] + f" {i}" for i in range(n)]
                row["texts_per_s"] = _rate(lambda enc=enc, texts=texts: enc.encode_text(texts), n)
            rows.append(row)
    payload = {"machine": machine_info(), "batch": batch, "items": n, "results": rows}
    if out_dir:
        table = markdown_table(rows, ["model", "runtime", "images_per_s", "audio_windows_per_s", "texts_per_s"])
        payload["files"] = {k: str(v) for k, v in write_outputs(out_dir, "embed_speed", payload, table).items()}
    return payload
