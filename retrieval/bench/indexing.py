"""Indexing throughput: ``xmr index`` end to end against the encoder's own forward passes on the
same files and batch size. Encoder-busy = encoder-alone time / (end-to-end time - start-up),
where start-up is the time before the first item is embedded (scan and planning); each time
is the median of ``repeat`` runs. That ratio leaves out what only a run embeds (the moments of
long audio and video, each window a vector beside the file's own), so a second one is measured
inside the run: encoder-busy-in-run = the seconds the run spends in the encoder's ``encode*``
calls (:class:`TimedEncoder`; moments included, the batches' normalisation not) / (end-to-end
time - start-up).

Run: ``xmr bench index FOLDER [--model xmr-mini]`` (FOLDER: any media folder; it is not modified,
the index goes to a temporary folder).
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from typing import Any

import numpy as np

from .report import machine_info, markdown_table, write_outputs

log = logging.getLogger(__name__)


class TimedEncoder:
    """An encoder whose ``encode*`` calls are timed (``seconds``); everything else is the
    encoder's own, so the indexer runs it as it is."""

    def __init__(self, encoder: Any) -> None:
        self._encoder = encoder
        self.seconds = 0.0

    def __getattr__(self, name: str) -> Any:
        if name == "_encoder":  # not set yet (a copy, an unpickling): no recursion
            raise AttributeError(name)
        attr = getattr(self._encoder, name)
        if not (name.startswith("encode") and callable(attr)):
            return attr

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return attr(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start

        return timed


def run_indexing(
    folder: str | os.PathLike,
    model: str = "xmr-mini",
    batch_size: int = 64,
    workers: int | None = None,
    out_dir: str | None = None,
    repeat: int = 3,
) -> dict[str, Any]:
    """Time the encoder alone and the whole run ``repeat`` times each, interleaved, and report
    medians (a shared machine's speed drifts between runs; every time is kept in the result)."""
    import indexer
    from indexer.ingest.build import encode_batch
    from indexer.ingest.decode import decode
    from indexer.ingest.scan import EXTENSIONS, Found, walk
    from retrieval.models.registry import create_model, inference_runtime

    encoder = create_model(model, runtime=inference_runtime(model))  # as `xmr index` does
    files = [f for f in walk(folder) if isinstance(f, Found) and f.modality in encoder.modalities]
    by_modality: dict[str, list[Found]] = {}
    for f in files:
        by_modality.setdefault(f.modality, []).append(f)
    pre = {"image": encoder.preprocess_image, "audio": encoder.preprocess_audio}
    decoded = {
        m: [d for d in (decode((i, f.abs, m, pre.get(m))) for i, f in enumerate(found)) if d.ok]
        for m, found in by_modality.items()
    }

    def encoder_alone() -> dict[str, float]:
        """Forward passes only, on inputs decoded beforehand."""
        seconds = {}
        for modality, items in decoded.items():
            start = time.perf_counter()
            for b in range(0, len(items), batch_size):
                chunk = items[b : b + batch_size]
                encode_batch(encoder, modality, [d.text if modality == "text" else d.features for d in chunk])
            seconds[modality] = time.perf_counter() - start
        return seconds

    def end_to_end(exclude: list[str] | None = None) -> tuple[Any, float, float, float]:
        """A fresh index with default options: (summary, total seconds, start-up seconds,
        seconds in the encoder's calls)."""
        first_item: list[float] = []
        timed = TimedEncoder(encoder)

        def progress(done: int, total: int) -> None:
            if not first_item:
                first_item.append(time.perf_counter())

        with tempfile.TemporaryDirectory(prefix="xmr-bench-index-") as tmp:
            start = time.perf_counter()
            summary = indexer.index_folder(
                folder,
                timed,
                indexer.IndexOptions(index_dir=tmp, batch_size=batch_size, workers=workers, exclude=exclude or []),
                progress=progress,
            )
            total = time.perf_counter() - start
        return summary, total, (first_item[0] - start) if first_item else 0.0, timed.seconds

    encoder_runs, e2e_runs = [], []
    for r in range(repeat):
        encoder_runs.append(encoder_alone())
        summary, total, startup, in_encoder = end_to_end()
        e2e_runs.append({"end_to_end_s": total, "startup_s": startup, "encoder_in_run_s": in_encoder})
        log.info(
            "run %d/%d: encoder alone %.2f s, end to end %.2f s", r + 1, repeat, sum(encoder_runs[-1].values()), total
        )
    encoder_seconds = {m: float(np.median([run[m] for run in encoder_runs])) for m in decoded}
    encoder_total = float(np.median([sum(run.values()) for run in encoder_runs]))
    total = float(np.median([run["end_to_end_s"] for run in e2e_runs]))
    startup = float(np.median([run["startup_s"] for run in e2e_runs]))
    busy_in_run = float(
        np.median([run["encoder_in_run_s"] / max(run["end_to_end_s"] - run["startup_s"], 1e-9) for run in e2e_runs])
    )
    rows = []
    for m, seconds in encoder_seconds.items():  # each modality end to end on its own, too
        others = [f"*.{ext}" for other, exts in EXTENSIONS.items() if other != m for ext in exts]
        alone, e2e, _, _ = end_to_end(others)
        row = {
            "modality": m,
            "items": len(by_modality[m]),
            "encoder_items_per_s": len(by_modality[m]) / max(seconds, 1e-9),
            "end_to_end_items_per_s": alone.added / max(e2e, 1e-9),
        }
        if m == "audio":  # how many times faster than real time: the seconds of audio per second
            heard = sum(float((d.meta or {}).get("duration", 0.0)) for d in decoded[m])
            # the encoder alone runs a file's windows (at most max_windows): the audio they hold
            window = encoder.preprocess_audio.window_seconds
            windowed = sum(min(len(d.features) * window, d.meta["duration"]) for d in decoded[m])
            row |= {"audio_s": heard, "encoder_x_real_time": windowed / max(seconds, 1e-9)}
            row["end_to_end_x_real_time"] = heard / max(e2e, 1e-9)
        rows.append(row)
    result = {
        "machine": machine_info(),
        "model": model,
        "folder": str(folder),
        "batch_size": batch_size,
        "workers": workers if workers is not None else indexer.ingest.build.default_workers(),
        "items": summary.added,
        "skipped": len(summary.skipped),
        "repeat": repeat,
        "end_to_end_s": total,
        "startup_s": startup,
        "encoder_alone_s": encoder_total,
        "end_to_end_items_per_s": summary.added / max(total, 1e-9),
        "encoder_busy": encoder_total / max(total - startup, 1e-9),
        "encoder_busy_in_run": busy_in_run,
        "runs": [{"encoder_alone_s": sum(a.values()), **b} for a, b in zip(encoder_runs, e2e_runs)],
        "per_modality": rows,
    }
    if out_dir:
        table = markdown_table(
            [result],
            [
                "model",
                "items",
                "workers",
                "batch_size",
                "repeat",
                "end_to_end_s",
                "startup_s",
                "encoder_alone_s",
                "end_to_end_items_per_s",
                "encoder_busy",
                "encoder_busy_in_run",
            ],
        )
        columns = ["modality", "items", "encoder_items_per_s", "end_to_end_items_per_s"]
        columns += ["encoder_x_real_time", "end_to_end_x_real_time"] if "audio" in decoded else []
        table += "\n" + markdown_table(rows, columns)
        name = (
            "index_speed"
            if model == "xmr-mini"
            else "index_speed-" + "".join(c if c.isalnum() or c in "-_." else "_" for c in model)
        )
        result["files"] = {k: str(v) for k, v in write_outputs(out_dir, name, result, table).items()}
    return result
