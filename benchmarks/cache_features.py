"""Cache a frozen image backbone's features for every image manifest, once, resumably.

For each manifest (``--manifest``, or every ``*.jsonl`` under ``--data`` whose rows name an
``image``) the NanoDet features (:mod:`retrieval.models.nanodet`: ``pooled`` ``[N, 1232]`` and
a 3x3 grid of C5 tokens) are written in shards of ``--shard-size`` rows to
``--out/<set>-<split>-<hash>/shard-NNNNN.npz`` (float16; keys ``rows``, ``pooled``, ``seq``
with ``offsets``, ``seconds``, ``failed`` and ``reasons``), each atomically (temp file, fsync,
rename), beside a ``meta.json`` naming the manifest, the extractor and the row count. A shard
that is on disk is never computed again, so a stopped run resumes where it was; a folder made
earlier for the same manifest, extractor and row count is adopted whatever its name. A picture
that cannot be read is skipped and listed with its reason. ``--out/summary.json`` lists every
manifest's folder.

Usage:
    PYTHONPATH=. nice -n 10 python benchmarks/cache_features.py --data /root/xmr-data \\
        --data /root/xmr-data/prep --out /root/xmr-data/cache/nanodet --threads 1 [--size 320]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import time
from pathlib import Path

import numpy as np

from retrieval.models.image import ImageDecodeError, open_image
from retrieval.models.nanodet import SIZE, NanoDetFeatures
from retrieval.models.spec import WEIGHTS_DIR

log = logging.getLogger("cache_features")
DEFAULT_MODEL = WEIGHTS_DIR / "nanodet-features.onnx"


def manifests_of(roots: list[Path], field: str = "image") -> list[Path]:
    """Every non-empty ``ROOT/<set>/<split>.jsonl`` whose first row names ``field`` (a file of it)."""
    found = []
    for root in roots:
        for path in sorted(root.glob("*/*.jsonl")):
            with open(path) as f:
                first = f.readline()
            if first.strip() and field in json.loads(first):
                found.append(path)
    return found


def split_name(manifest: Path) -> str:
    return f"{manifest.parent.name}/{manifest.stem}"


def cache_folder(out: Path, manifest: Path, extractor: str, rows: int) -> Path:
    """The folder of ``manifest``'s features: an existing one made for the same manifest,
    extractor and row count, else a new name from the manifest's bytes and the extractor."""
    for meta_path in sorted(out.glob("*/meta.json")):
        meta = json.loads(meta_path.read_text())
        if meta["manifest"] == str(manifest) and meta["extractor"] == extractor and meta["rows"] == rows:
            return meta_path.parent
    digest = hashlib.sha256(manifest.read_bytes() + extractor.encode()).hexdigest()[:12]
    return out / f"{manifest.parent.name}-{manifest.stem}-{digest}"


def save_atomic(path: Path, arrays: dict[str, np.ndarray]) -> None:
    tmp = path.with_suffix(".tmp.npz")
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def cache_manifest(manifest: Path, out: Path, backbone: NanoDetFeatures, shard_size: int) -> Path:
    """Compute the shards of ``manifest`` that are not on disk; returns its folder."""
    rows = [json.loads(line) for line in open(manifest) if line.strip()]
    folder = cache_folder(out, manifest, backbone.extractor, len(rows))
    folder.mkdir(parents=True, exist_ok=True)
    shards = (len(rows) + shard_size - 1) // shard_size
    meta = {
        "manifest": str(manifest),
        "extractor": backbone.extractor,
        "rows": len(rows),
        "shard_size": shard_size,
        "shards": shards,
    }
    (folder / "meta.json").write_text(json.dumps(meta, indent=2))
    todo = [s for s in range(shards) if not (folder / f"shard-{s:05d}.npz").is_file()]
    log.info("%s: %d rows, %d shards, %d to do -> %s", manifest, len(rows), shards, len(todo), folder.name)
    for shard in todo:
        start = time.perf_counter()
        cpu = time.process_time()
        ids, pooled, seq, seconds, failed, reasons = [], [], [], [], [], []
        for i in range(shard * shard_size, min(len(rows), (shard + 1) * shard_size)):
            try:
                img = open_image(manifest.parent / rows[i]["image"])
            except (ImageDecodeError, OSError) as exc:
                failed.append(i)
                reasons.append(str(exc))
                log.warning("%s row %d: %s", manifest, i, exc)
                continue
            p, g = backbone(img)
            ids.append(i)
            pooled.append(p)
            seq.append(g)
            seconds.append(0.0)
        offsets = np.cumsum([0] + [len(g) for g in seq])
        save_atomic(
            folder / f"shard-{shard:05d}.npz",
            {
                "rows": np.asarray(ids, dtype=np.int64),
                "pooled": np.asarray(pooled, dtype=np.float16).reshape(-1, 1232),
                "seq": (np.concatenate(seq) if seq else np.zeros((0, 512))).astype(np.float16),
                "offsets": offsets.astype(np.int64),
                "seconds": np.asarray(seconds, dtype=np.float32),
                "failed": np.asarray(failed, dtype=np.int64),
                "reasons": np.asarray(reasons, dtype=str),
            },
        )
        took = time.perf_counter() - start
        n = len(ids) + len(failed)
        log.info(
            "%s shard %d/%d: %d items in %.1f s (%.1f items/s; %.3f CPU s an item)",
            folder.name,
            shard + 1,
            shards,
            n,
            took,
            n / max(took, 1e-9),
            (time.process_time() - cpu) / max(n, 1),
        )
    return folder


def load_features(folder: Path) -> dict[str, np.ndarray]:
    """Every shard of a cache folder joined: ``rows``, ``pooled`` (float32), ``grid`` ``[N, 9, 512]``."""
    parts = [np.load(p) for p in sorted(folder.glob("shard-*.npz"))]
    rows = np.concatenate([p["rows"] for p in parts])
    pooled = np.concatenate([p["pooled"] for p in parts]).astype(np.float32)
    grid = np.concatenate([p["seq"].reshape(-1, 9, 512) for p in parts]).astype(np.float32)
    return {"rows": rows, "pooled": pooled, "grid": grid}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, action="append", default=[], help="a folder of <set>/<split>.jsonl")
    parser.add_argument("--manifest", type=Path, action="append", default=[])
    parser.add_argument("--out", type=Path, default=Path("/root/xmr-data/cache/nanodet"))
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--size", type=int, default=SIZE, help="the pictures' side in NanoDet (a multiple of 32)")
    parser.add_argument("--shard-size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    backbone = NanoDetFeatures(args.model, threads=args.threads, size=args.size)
    manifests = args.manifest + manifests_of(args.data)
    start = time.perf_counter()
    summary_path = args.out / "summary.json"
    args.out.mkdir(parents=True, exist_ok=True)
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    earlier = summary.get("manifests", {}) if summary.get("extractor") == backbone.extractor else {}
    # keyed by the manifest's path (an earlier layout keyed "<set>/<split>": not carried over)
    summary = {"extractor": backbone.extractor, "manifests": {k: v for k, v in earlier.items() if k.startswith("/")}}
    for manifest in manifests:
        folder = cache_manifest(manifest.resolve(), args.out, backbone, args.shard_size)
        size = sum(p.stat().st_size for p in folder.glob("shard-*.npz"))
        summary["manifests"][str(manifest.resolve())] = {"folder": folder.name, "bytes": size}
        summary_path.write_text(json.dumps(summary, indent=2))
    log.info("done in %.1f min: %d manifests in %s", (time.perf_counter() - start) / 60, len(manifests), args.out)


if __name__ == "__main__":
    main()
