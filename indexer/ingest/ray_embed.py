"""Decoding and encoding on a Ray cluster (``xmr index --ray``, issue 22).

The indexing process keeps everything that decides what the index holds: the walk, change
detection, skip reasons, checkpoints (shards, then rows), crash safety and resume. Only the
work of each new or changed file goes to the cluster: a Ray Data pipeline whose actors (one
model each, GPUs through ``num_gpus`` when the cluster has them) decode the file with the same
torch-free preprocessors the local decode workers run, embed it and its moments, and send back
what a local run would have computed, vectors included. Files must be readable at the same path
on every node (a shared file system).

Ray is imported only here, and only for ``--ray`` (``pip install 'xmr[ray]'``).
"""

from __future__ import annotations

import glob
import logging
import os
import pickle
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

from .decode import Decoded
from .segments import SEGMENTS_KEY, SegmentingAudio, encode_segments
from .video import SegmentingVideo
from .workers import DecodePool

log = logging.getLogger(__name__)
RETRIES = 3  # a task whose actor (or node) died is tried again this many times, then the run stops
SCRATCH = "xmr-ray-scratch-"  # + the actor's pid: a dead actor's leftovers are swept by the next


class RayMissingError(RuntimeError):
    """``--ray`` without Ray installed."""


def connect(address: str) -> Any:
    """Ray, connected: ``auto`` joins a running cluster, else starts one on this machine; any
    other value is a cluster's address.

    Raises:
        RayMissingError: Ray is not installed.
        ConnectionError: no cluster answers at ``address``.
    """
    try:
        import ray
    except ImportError as exc:
        raise RayMissingError("--ray needs Ray, which the core install leaves out: pip install 'xmr[ray]'") from exc
    if ray.is_initialized():
        return ray
    try:
        if address == "auto":
            try:
                ray.init(address="auto", log_to_driver=False)
            except ConnectionError:
                log.warning("no running Ray cluster found: starting one on this machine")
                ray.init(log_to_driver=False)
        else:
            ray.init(address=address, log_to_driver=False)
    except ConnectionError as exc:
        raise RuntimeError(f"no Ray cluster answers at {address!r} ({exc}); give its address, or --ray auto") from exc
    return ray


class EmbedActor:
    """One model on a Ray worker: decodes and embeds batches of files (see the module docstring).

    Files decode in a supervised decode worker (:class:`indexer.ingest.workers.DecodePool`), as on the
    local path: a file that crashes or hangs its decoder comes back skipped with the reason (and
    is remembered by the indexing process), and the actor lives on."""

    def __init__(self, make_encoder: Callable[[], Any], batch_size: int, frame_seconds: float, timeout: float) -> None:
        _sweep_scratch()
        self.encoder = make_encoder()
        self.batch_size = batch_size
        self.frame_seconds = frame_seconds
        self.pool = DecodePool(1, timeout).__enter__()  # its process ends with the actor's

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        scratch = tempfile.mkdtemp(prefix=f"{SCRATCH}{os.getpid()}-")
        try:
            image, audio = self.encoder.preprocess_image, self.encoder.preprocess_audio
            pre = {
                "image": image,
                "audio": SegmentingAudio(audio, scratch) if audio is not None else None,
                "video": SegmentingVideo(image, audio, scratch, self.frame_seconds),
                "text": None,
            }
            jobs = [
                (int(k), str(p), str(m), pre[str(m)]) for k, p, m in zip(batch["key"], batch["path"], batch["modality"])
            ]
            out = [pickle.dumps(self.embed(d, str(m))) for d, m in self._decoded(jobs)]
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return {"payload": np.array(out, dtype=object)}

    def _decoded(self, jobs: list[tuple]) -> Iterator[tuple[Decoded, str]]:
        modality = {job[0]: job[2] for job in jobs}
        for decoded in self.pool.map(jobs):
            yield decoded, modality[decoded.key]

    def embed(self, decoded: Decoded, modality: str) -> Decoded:
        if not decoded.ok:
            return decoded
        enc = self.encoder
        found = (decoded.meta or {}).pop(SEGMENTS_KEY, None)
        if found is not None:
            try:
                decoded.meta[SEGMENTS_KEY] = [encode_segments(enc, s, self.batch_size) for s in found]
            finally:
                for s in found:
                    s.discard()
        if modality == "image":
            decoded.vectors = {"image": enc.encode_image(decoded.features[None])[0]}
        elif modality == "audio":
            decoded.vectors = {"audio": enc.encode_audio_features([decoded.features])[0]}
        elif modality == "text":
            decoded.vectors = {"text": enc.encode_text([decoded.text])[0]}
        decoded.features = None  # the vectors travel back, not the model inputs
        return decoded


def decode_embed_on_ray(
    jobs: Iterable[tuple[int, str, str]],
    make_encoder: Callable[[], Any],
    address: str,
    batch_size: int = 64,
    frame_seconds: float = 2.0,
    decode_timeout: float = 120.0,
    actors: int | None = None,
    gpus_per_actor: float = 0.0,
) -> Iterator[Decoded]:
    """Each job ``(key, path, modality)`` decoded and embedded on the cluster at ``address``, as a
    :class:`Decoded` whose ``vectors`` hold its file vectors (its moments, embedded, in its
    metadata), in the order they finish."""
    connect(address)
    import ray.data
    import ray.exceptions

    rows = [{"key": k, "path": os.fspath(p), "modality": m} for k, p, m in jobs]
    if not rows:
        return
    cpus = int(ray.cluster_resources().get("CPU", 1))
    gpus = int(ray.cluster_resources().get("GPU", 0))
    actors = actors or max(1, gpus if gpus_per_actor else cpus)
    ds = ray.data.from_items(rows, override_num_blocks=max(1, min(len(rows), actors * 4)))
    embedded = ds.map_batches(
        EmbedActor,
        fn_constructor_args=(make_encoder, batch_size, frame_seconds, decode_timeout),
        batch_size=max(1, min(batch_size, -(-len(rows) // actors))),
        concurrency=actors,
        num_cpus=1,
        num_gpus=gpus_per_actor,
        max_restarts=-1,  # an actor whose worker died is started again...
        max_task_retries=RETRIES,  # ...and its batch tried again
    )
    batches = iter(embedded.iter_batches(batch_size=None, batch_format="numpy"))
    try:
        for batch in batches:
            for payload in batch["payload"]:
                yield pickle.loads(payload)
    except ray.exceptions.RayError as exc:  # a node lost for good, a batch failing past its retries
        raise RuntimeError(f"the Ray cluster could not finish the run: {str(exc).splitlines()[0]}") from exc
    finally:
        close = getattr(batches, "close", None)
        if close is not None:
            close()  # stops the pipeline when the run stops early (Ctrl-C)


def _sweep_scratch() -> None:
    """Scratch folders of actors that died mid-batch on this node (their pid is gone)."""
    for folder in glob.glob(os.path.join(tempfile.gettempdir(), SCRATCH + "*")):
        pid = os.path.basename(folder)[len(SCRATCH) :].split("-", 1)[0]
        if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
            shutil.rmtree(folder, ignore_errors=True)
