"""Peak memory of an ``xmr index`` run that finds nothing to do, over an index of ``--items``
rows: a folder of that many small text files (made once) and an index of them bulk-loaded with
random 384-d vectors under xmr-mini's identity (made once; both kept in ``--work``, by default
``$XMR_CACHE_DIR/bench/nochange-N``), then ``index_folder`` run in a fresh process, which walks the
folder, compares every file with its row and reconciles the shards with the rows.

    python benchmarks/nochange_memory.py [--items 1000000]   # writes results/nochange_memory.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PER_FOLDER = 1000


def make_folder(root: Path, items: int) -> None:
    done = root / ".files-done"
    if done.exists():
        return
    for n in range(items):
        folder = root / f"d{n // PER_FOLDER:05d}"
        if n % PER_FOLDER == 0:
            folder.mkdir(parents=True, exist_ok=True)
        (folder / f"note{n:07d}.txt").write_text(f"note number {n}\n")
    done.write_text("")


def make_index(root: Path, index_dir: Path, items: int) -> None:
    if (index_dir / "manifest.json").exists():
        return
    import numpy as np

    from indexer.ingest.bulk import IndexSpec, build_from_vectors
    from indexer.storage.paths import escape_path
    from retrieval import create_model

    encoder = create_model("xmr-mini")
    rows = []
    for n in range(items):
        rel = f"d{n // PER_FOLDER:05d}/note{n:07d}.txt"
        st = os.stat(root / rel)
        rows.append({"path": escape_path(rel), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "ext": "txt"})
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((items, encoder.embed_dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    spec = IndexSpec(
        model=encoder.name,
        weights_hash=encoder.weights_hash,
        dim=encoder.embed_dim,
        root=str(root),
        modalities=tuple(encoder.modalities),
    )
    build_from_vectors(index_dir, spec, "text", vectors, rows)


def child(root: str, index_dir: str) -> None:
    from indexer import IndexOptions, index_folder
    from retrieval import create_model
    from retrieval.models.registry import inference_runtime

    encoder = create_model("xmr-mini", runtime=inference_runtime("xmr-mini"))  # as `xmr index` does
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # the peak (VmHWM) counts from here: the run, not loading the model
    before = _status("VmRSS")
    started = time.perf_counter()
    summary = index_folder(root, encoder, IndexOptions(index_dir=index_dir))
    seconds = time.perf_counter() - started
    peak = _status("VmHWM")
    print(
        json.dumps(
            {
                "unchanged": summary.unchanged,
                "added": summary.added,
                "removed": summary.removed,
                "rss_before_mib": round(before),
                "peak_rss_mib": round(peak),
                "seconds": round(seconds, 1),
            }
        )
    )


def _status(key: str) -> float:
    """A line of /proc/self/status in MiB."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(key + ":")) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--work", default=None)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    from retrieval.bench.report import machine_info
    from retrieval.models.encoder import cache_dir

    work = Path(args.work or Path(cache_dir()) / "bench" / f"nochange-{args.items}")
    root, index_dir = work / "root", work / "index"
    started = time.perf_counter()
    make_folder(root, args.items)
    make_index(root, index_dir, args.items)
    print(f"fixture ready in {time.perf_counter() - started:.0f} s", flush=True)
    done = subprocess.run(
        [sys.executable, __file__, "--child", str(root), str(index_dir)], capture_output=True, text=True, cwd=ROOT
    )
    if done.returncode != 0:
        raise SystemExit(done.stderr[-3000:])
    result = {"items": args.items} | json.loads(done.stdout.strip().splitlines()[-1])
    print(json.dumps(result), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "nochange_memory.json").write_text(
        json.dumps({"machine": machine_info(), "result": result}, indent=2) + "\n"
    )


if __name__ == "__main__":
    main()
