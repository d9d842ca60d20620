"""Cache Whisper's encoder summaries for every audio manifest, once, resumably.

For each manifest (``--manifest``, or every ``*.jsonl`` under ``--data`` whose rows name an
``audio``) each clip is read as the Whisper tower reads it (:mod:`retrieval.models.whisper_audio`:
5 s windows of 80 mel bands, at most 16, each trimmed after its last sound) and every window's
:func:`~retrieval.models.whisper_audio.summary` (``[768]``: the mean and maximum of its pooled
encoder states) is written, in shards of ``--shard-size`` rows, to
``--out/<set>-<split>-<hash>/shard-NNNNN.npz`` (float16; keys ``rows``, ``summaries`` with
``offsets`` (a row's windows), ``seconds`` (its length), ``failed`` and ``reasons``), each
atomically, beside a ``meta.json``, the layout of ``benchmarks/cache_features.py``. A shard on
disk is never computed again, so a stopped run resumes where it was. A clip that cannot be read
is skipped and listed with its reason.

Usage:
    PYTHONPATH=. nice -n 10 python benchmarks/cache_audio_features.py --data /root/xmr-data/data \\
        --out /root/xmr-data/cache/whisper --threads 2
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from benchmarks.cache_features import cache_folder, manifests_of, save_atomic
from retrieval.models.audio import AudioDecodeError
from retrieval.models.whisper_audio import SUMMARY_DIM, WhisperBackbone, front_end

log = logging.getLogger("cache_audio_features")
FRONT_END = front_end()


def extractor_name(backbone: WhisperBackbone) -> str:
    return f"whisper-summary-v3:{backbone.fingerprint[:16]}"


def read(path: Path) -> tuple[np.ndarray, float] | str:
    try:
        mels, info = FRONT_END.process(path)
    except (AudioDecodeError, OSError, ValueError) as exc:
        return str(exc)
    return mels, float(info["duration"])


def cache_manifest(manifest: Path, out: Path, backbone: WhisperBackbone, shard_size: int) -> Path:
    """Compute the shards of ``manifest`` that are not on disk; returns its folder."""
    rows = [json.loads(line) for line in open(manifest) if line.strip()]
    extractor = extractor_name(backbone)
    folder = cache_folder(out, manifest, extractor, len(rows))
    folder.mkdir(parents=True, exist_ok=True)
    shards = (len(rows) + shard_size - 1) // shard_size
    meta = {"manifest": str(manifest), "extractor": extractor, "rows": len(rows), "shard_size": shard_size}
    (folder / "meta.json").write_text(json.dumps({**meta, "shards": shards}, indent=2))
    todo = [s for s in range(shards) if not (folder / f"shard-{s:05d}.npz").is_file()]
    log.info("%s: %d rows, %d shards, %d to do -> %s", manifest, len(rows), shards, len(todo), folder.name)
    with ThreadPoolExecutor(1) as reader:  # the next clip decodes while the encoder runs
        for shard in todo:
            start = time.perf_counter()
            span = range(shard * shard_size, min(len(rows), (shard + 1) * shard_size))
            ids, summaries, counts, seconds, failed, reasons = [], [], [], [], [], []
            for i, got in zip(span, reader.map(lambda i: read(manifest.parent / rows[i]["audio"]), span)):
                if isinstance(got, str):
                    failed.append(i)
                    reasons.append(got)
                    log.warning("%s row %d: %s", manifest, i, got)
                    continue
                mels, duration = got
                s = backbone.summaries(mels)
                ids.append(i)
                summaries.append(s)
                counts.append(len(s))
                seconds.append(duration)
            save_atomic(
                folder / f"shard-{shard:05d}.npz",
                {
                    "rows": np.asarray(ids, dtype=np.int64),
                    "summaries": (np.concatenate(summaries) if summaries else np.zeros((0, SUMMARY_DIM))).astype(
                        np.float16
                    ),
                    "offsets": np.cumsum([0] + counts).astype(np.int64),
                    "seconds": np.asarray(seconds, dtype=np.float32),
                    "failed": np.asarray(failed, dtype=np.int64),
                    "reasons": np.asarray(reasons, dtype=str),
                },
            )
            took = time.perf_counter() - start
            audio = float(np.sum(seconds))
            log.info(
                "%s shard %d/%d: %d clips, %.0f s of audio in %.1f s (%.0fx real time)",
                folder.name,
                shard + 1,
                shards,
                len(span),
                audio,
                took,
                audio / max(took, 1e-9),
            )
    return folder


def load_summaries(folder: Path) -> dict[str, object]:
    """Every shard of a cache folder joined: ``rows`` and, per row, its windows' summaries
    (a list of ``[W, 768]`` float32 arrays, in ``windows``)."""
    rows, windows = [], []
    for path in sorted(folder.glob("shard-*.npz")):
        part = np.load(path)
        s, offsets = part["summaries"].astype(np.float32), part["offsets"]
        rows.extend(part["rows"].tolist())
        windows.extend(s[a:b] for a, b in zip(offsets[:-1], offsets[1:]))
    return {"rows": np.asarray(rows, dtype=np.int64), "windows": windows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, action="append", default=[], help="a folder of <set>/<split>.jsonl")
    parser.add_argument("--manifest", type=Path, action="append", default=[])
    parser.add_argument("--out", type=Path, default=Path("/root/xmr-data/cache/whisper"))
    parser.add_argument("--shard-size", type=int, default=512)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    backbone = WhisperBackbone(threads=args.threads)
    # test and validation splits first, then the training sets from the smallest: a run stopped
    # early has every split it can measure and as much training data as it had time for
    found = manifests_of(args.data, "audio")
    manifests = args.manifest + sorted(found, key=lambda m: (m.stem == "train", m.stat().st_size))
    start = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    for manifest in manifests:
        cache_manifest(manifest.resolve(), args.out, backbone, args.shard_size)
    log.info("done in %.1f min: %d manifests in %s", (time.perf_counter() - start) / 60, len(manifests), args.out)


if __name__ == "__main__":
    main()
