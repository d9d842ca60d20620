"""Peak memory of indexing: the resident memory of the whole process tree (``xmr index`` and its
decode workers), sampled every 50 ms, while it indexes N generated photos, for several N.
With bounded in-flight work the peak does not grow with the collection (goal: 5,000 photos
within 1.5x of 500).

Run: ``xmr bench memory [--sizes 500,5000] [--width 1600]``. The photos (smooth random colour
fields with fine noise, JPEG quality 90, 4:3) are generated once into ``--cache`` and reused.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from .report import machine_info, markdown_table, write_outputs

log = logging.getLogger(__name__)
PAGE = os.sysconf("SC_PAGE_SIZE")


def make_photos(folder: Path, n: int, width: int, seed: int = 0) -> Path:
    """``n`` photo-sized JPEGs in ``folder`` (kept between runs: only missing ones are made)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    height = width * 3 // 4
    for i in range(n):
        path = folder / f"{i:05d}.jpg"
        if path.exists():
            continue
        rng = np.random.default_rng(seed * 1_000_003 + i)
        coarse = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)).resize((width, height), Image.BICUBIC)
        pixels = np.asarray(coarse, dtype=np.int16) + rng.integers(-12, 12, (height, width, 1), dtype=np.int16)
        tmp = path.with_suffix(".tmp")
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(tmp, format="JPEG", quality=90)
        os.replace(tmp, path)
        if (i + 1) % 500 == 0:
            log.info("photos: %d/%d", i + 1, n)
    return folder


def tree_rss(pid: int) -> int:
    """Resident bytes of ``pid`` and all its descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                ppid = int(f.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        try:
            with open(f"/proc/{p}/statm", "rb") as f:
                total += int(f.read().split()[1]) * PAGE
        except (OSError, ValueError, IndexError):
            pass
        stack.extend(children.get(p, []))
    return total


def measure(command: list[str], cwd: str | None = None, every: float = 0.05) -> dict[str, Any]:
    """Run ``command``; its peak process-tree RSS, wall time and last stdout line."""
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd)
    peak = [0]

    def sample() -> None:
        while proc.poll() is None:
            peak[0] = max(peak[0], tree_rss(proc.pid))
            time.sleep(every)

    start = time.perf_counter()
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    seconds = time.perf_counter() - start
    sampler.join()
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command)} failed ({proc.returncode}): {err.strip().splitlines()[-1] if err.strip() else ''}"
        )
    return {
        "peak_rss_mb": peak[0] / 2**20,
        "seconds": seconds,
        "stdout": out.strip().splitlines()[-1] if out.strip() else "",
    }


def run_memory(
    sizes: list[int],
    width: int = 1600,
    model: str = "xmr-mini",
    workers: int | None = None,
    cache: str = "~/.cache/xmr/bench",
    out_dir: str | None = None,
    command: list[str] | None = None,
    cwd: str | None = None,
) -> dict[str, Any]:
    """Index the first N photos for each N in ``sizes`` (a fresh index each) and record the peak.

    Args:
        command: how to start xmr (default: this Python's ``-m cli``), e.g. another checkout's.
    """
    photos = make_photos(Path(cache).expanduser() / f"photos-{width}", max(sizes), width)
    command = command or [sys.executable, "-m", "cli"]
    rows = []
    runs = [(min(sizes), False)] + [(n, True) for n in sizes]  # the first warms the caches (a model's one-time export)
    for n, report in runs:
        with tempfile.TemporaryDirectory(prefix="xmr-bench-memory-") as tmp:
            folder = Path(tmp) / "photos"
            folder.mkdir()
            for i in range(n):  # hard links: regular files inside the folder, no copy
                os.link(photos / f"{i:05d}.jpg", folder / f"{i:05d}.jpg")
            args = [*command, "index", str(folder), "--index", str(Path(tmp) / "index"), "--model", model, "--json"]
            if workers is not None:
                args += ["--workers", str(workers)]
            got = measure(args, cwd=cwd)
        summary = json.loads(got["stdout"]) if got["stdout"].startswith("{") else {}
        if not report:
            continue
        rows.append(
            {
                "photos": n,
                "added": summary.get("added"),
                "peak_rss_mb": got["peak_rss_mb"],
                "seconds": got["seconds"],
                "photos_per_s": n / got["seconds"],
            }
        )
        log.info("%d photos: peak %.0f MB in %.1f s", n, got["peak_rss_mb"], got["seconds"])
    result = {
        "machine": machine_info(),
        "model": model,
        "width": width,
        "height": width * 3 // 4,
        "workers": workers,
        "rows": rows,
        "peak_ratio_largest_to_smallest": rows[-1]["peak_rss_mb"] / rows[0]["peak_rss_mb"],
    }
    if out_dir:
        table = markdown_table(rows, ["photos", "added", "peak_rss_mb", "seconds", "photos_per_s"])
        ratio = result["peak_ratio_largest_to_smallest"]
        table += f"\npeak RSS, {rows[-1]['photos']} photos / {rows[0]['photos']}: {ratio:.2f}x\n"
        result["files"] = {k: str(v) for k, v in write_outputs(out_dir, "index_memory", result, table).items()}
    return result
