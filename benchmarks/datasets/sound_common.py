"""Audio helpers of the sound sets: decode to 16 kHz mono, trim silence, write clips, and
record each set's packages, versions and licences (they bind the weights trained on them)."""

from __future__ import annotations

import gzip
import json
import logging
import re
from pathlib import Path

import numpy as np
import soundfile as sf

log = logging.getLogger(__name__)
RATE = 16000
PEAK = 0.5  # every clip is scaled to this peak; training augments the gain anyway


def to_mono_16k(wave: np.ndarray, rate: int) -> np.ndarray:
    """``wave`` ([n] or [n, channels]) as float32 mono at :data:`RATE`."""
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim == 2:
        wave = wave.mean(axis=1)
    if rate != RATE:
        import soxr

        wave = soxr.resample(wave, rate, RATE).astype(np.float32)
    return wave


def trim(wave: np.ndarray, rate: int = RATE, floor_db: float = -45.0, frame_s: float = 0.01) -> np.ndarray:
    """``wave`` without its leading and trailing frames quieter than ``floor_db`` below its loudest frame."""
    frame = max(1, int(rate * frame_s))
    n = len(wave) // frame
    if n == 0:
        return wave[:0]
    rms = np.sqrt(np.mean(wave[: n * frame].reshape(n, frame) ** 2, axis=1) + 1e-20)
    loud = np.flatnonzero(rms >= rms.max() * 10 ** (floor_db / 20))
    return wave[loud[0] * frame : min(len(wave), (loud[-1] + 2) * frame)]


def write_clip(path: Path, wave: np.ndarray, max_s: float, min_s: float = 0.04) -> str | None:
    """Trim ``wave`` (16 kHz mono), cap it at ``max_s`` seconds (a short fade-out at the cut),
    scale it to :data:`PEAK` and write it as 16-bit WAV; returns a reason when it is not written."""
    wave = trim(wave)
    peak = float(np.abs(wave).max()) if len(wave) else 0.0
    if peak < 1e-4:
        return "silent"
    if len(wave) > max_s * RATE:
        wave = wave[: int(max_s * RATE)].copy()
        fade = int(0.05 * RATE)
        wave[-fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
    if len(wave) < min_s * RATE:
        return "too short"
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".part.wav")
    sf.write(partial, (wave * (PEAK / peak)).astype(np.float32), RATE, subtype="PCM_16")
    partial.replace(path)
    return None


def convert(src: Path, dst: Path, max_s: float = 10.0) -> str | None:
    """Decode ``src`` (WAV, OGG, FLAC), write it as a trimmed 16 kHz mono clip at ``dst``;
    returns a failure reason or None (also when ``dst`` exists)."""
    if dst.exists():
        return None
    try:
        wave, rate = sf.read(src, dtype="float32", always_2d=True)
    except (RuntimeError, OSError, sf.LibsndfileError) as exc:
        return f"cannot decode: {str(exc)[:80]}"
    return write_clip(dst, to_mono_16k(wave, rate), max_s)


def deb_version(root: Path, package: str) -> str:
    """The Debian version of an unpacked package (first line of its changelog), or "?"."""
    doc = root / "usr/share/doc" / package
    for name in ("changelog.Debian.gz", "changelog.gz"):
        if (doc / name).is_file():
            with gzip.open(doc / name, "rt", encoding="utf-8", errors="replace") as f:
                found = re.search(r"\(([^)]+)\)", f.readline())
            if found:
                return found.group(1)
    return "?"


def write_licences(folder: Path, entries: list[dict]) -> None:
    """``licences.json``: one entry per source package (package, version, licence, clips). An
    entry with a ``source`` and no ``clips`` gets the count of the manifests' rows of that source."""
    folder.mkdir(parents=True, exist_ok=True)
    written = [
        json.loads(line)
        for split in ("train", "val", "test")
        if (folder / f"{split}.jsonl").exists()
        for line in (folder / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    for entry in entries:
        if "source" in entry and "clips" not in entry:
            entry["clips"] = sum(r["source"] == entry["source"] for r in written)
    (folder / "licences.json").write_text(json.dumps(entries, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def dep5_licences(copyright_file: Path) -> list[tuple[list[str], str]]:
    """The ``Files:`` patterns and ``License:`` of each stanza of a machine-readable Debian
    copyright file, in order (a later stanza overrides an earlier one, as DEP-5 says)."""
    stanzas, files, licence, in_files = [], None, None, False
    for line in copyright_file.read_text(encoding="utf-8", errors="replace").splitlines() + [""]:
        if not line.strip():
            if files and licence:
                stanzas.append((files, licence))
            files, licence, in_files = None, None, False
        elif line.startswith("Files:"):
            files, in_files = line[6:].split(), True
        elif line.startswith((" ", "\t")):
            if in_files:
                files.extend(line.split())
        else:
            in_files = False
            if line.startswith("License:") and files is not None:
                licence = line[8:].strip() or None
    return stanzas


def licence_of(path: str, stanzas: list[tuple[list[str], str]]) -> str:
    """The licence of ``path`` (relative to the source tree) under :func:`dep5_licences`'s stanzas."""
    import fnmatch

    found = "?"
    for patterns, licence in stanzas:
        if any(fnmatch.fnmatch(path, p) for p in patterns):
            found = licence
    return found


def cap_per_caption(items: list[dict], cap: int) -> list[dict]:
    """At most ``cap`` items of each (source, caption), the first in order of their ``origin``."""
    seen: dict[tuple[str, str], int] = {}
    out = []
    for item in sorted(items, key=lambda i: i["origin"]):
        key = (item["source"], item["text"])
        seen[key] = seen.get(key, 0) + 1
        if seen[key] <= cap:
            out.append(item)
    return out


def build_named(out: Path, items: list[dict], max_s: float = 10.0, workers: int = 2) -> dict[str, int]:
    """Convert named sounds and write caption-split manifests. Each item has ``read`` (a Path,
    or a callable returning the file's bytes), ``text``, ``source``, ``licence`` and
    ``origin`` (its path in the package); clips go to ``clips/<source>/<origin>.wav``."""
    import io
    from concurrent.futures import ThreadPoolExecutor

    from .common import caption_key, split_of, write_manifests

    out.mkdir(parents=True, exist_ok=True)

    def one(item: dict) -> str | None:
        dst = out / item["audio"]
        if dst.exists():
            return None
        src = item["read"]
        try:
            wave, rate = sf.read(src if isinstance(src, Path) else io.BytesIO(src()), dtype="float32", always_2d=True)
        except (RuntimeError, OSError, sf.LibsndfileError) as exc:
            return f"cannot decode: {str(exc)[:80]}"
        return write_clip(dst, to_mono_16k(wave, rate), max_s)

    unique: dict[str, dict] = {}
    for item in items:  # one file may serve two captions (a kit's sample used by two instruments): keep the first
        stem = re.sub(r"[^A-Za-z0-9_-]+", "_", str(Path(item["origin"]).with_suffix("")))
        item["audio"] = str(Path("clips") / item["source"] / f"{stem}.wav")
        unique.setdefault(item["audio"], item)
    items = list(unique.values())
    with ThreadPoolExecutor(workers) as pool:
        reasons = list(pool.map(one, items))
    failures = [(i["origin"], r) for i, r in zip(items, reasons) if r]
    if failures:
        log.warning("%s: %d of %d sounds skipped, e.g. %s", out.name, len(failures), len(items), failures[:3])
    rows = [{k: v for k, v in i.items() if k != "read"} for i, r in zip(items, reasons) if not r]
    return write_manifests(out, rows, lambda r: split_of(caption_key(r["text"])))
