"""``xmr bench index FOLDER --ray``: a folder indexed through a local Ray cluster of ``nodes``
one-CPU nodes (``ray.cluster_utils.Cluster``) against the local path (decode workers), on the
same machine: items/s of each and their ratio, the Ray path's overhead on one machine. What many
machines would give is the per-item cost times the machines, which the result states as a
bound, not a measurement."""

from __future__ import annotations

import functools
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from .report import machine_info, markdown_table, write_outputs


def run_ray_indexing(
    folder: str, model: str = "xmr-mini", nodes: int = 2, repeat: int = 3, out_dir: str | None = None
) -> dict[str, Any]:
    """See the module docstring; medians of ``repeat`` runs of each, interleaved."""
    import ray
    from ray.cluster_utils import Cluster

    from indexer import IndexOptions, index_folder

    from ..models.registry import inference_model

    encoder = inference_model(model)
    factory = functools.partial(inference_model, model)
    started = time.perf_counter()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    for _ in range(nodes - 1):
        cluster.add_node(num_cpus=1)
    ray.init(address=cluster.address, log_to_driver=False)
    cluster_seconds = time.perf_counter() - started
    work = Path(tempfile.mkdtemp(prefix="xmr-bench-ray-"))
    times: dict[str, list[float]] = {"local": [], "ray": []}
    items = 0
    try:
        for n in range(repeat):
            for path in ("local", "ray"):
                options = IndexOptions(index_dir=str(work / f"{path}-{n}"))
                if path == "ray":
                    options.ray, options.encoder_factory = cluster.address, factory
                t = time.perf_counter()
                summary = index_folder(folder, encoder, options)
                times[path].append(time.perf_counter() - t)
                items = summary.added
    finally:
        ray.shutdown()
        cluster.shutdown()
        shutil.rmtree(work, ignore_errors=True)
    local, on_ray = statistics.median(times["local"]), statistics.median(times["ray"])
    result = {
        "folder": str(folder),
        "model": model,
        "items": items,
        "nodes": nodes,
        "cluster_start_seconds": round(cluster_seconds, 1),
        "local_items_per_s": round(items / local, 1),
        "ray_items_per_s": round(items / on_ray, 1),
        "ray_over_local": round(local / on_ray, 3),
        "ray_seconds_per_item_per_node": round(on_ray * nodes / max(items, 1), 4),
        "times": {k: [round(v, 2) for v in vs] for k, vs in times.items()},
    }
    payload = {"machine": machine_info(), "result": result}
    if out_dir:
        row = {k: v for k, v in result.items() if k not in ("times", "folder")}
        payload["files"] = {
            k: str(v) for k, v in write_outputs(out_dir, "index_ray", payload, markdown_table([row], list(row))).items()
        }
    return payload
