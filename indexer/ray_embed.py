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

import logging
import os
import pickle
import tempfile
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

from .decode import Decoded, decode
from .segments import SEGMENTS_KEY, SegmentingAudio, encode_segments
from .video import SegmentingVideo

log = logging.getLogger(__name__)
RETRIES = 3  # a task whose actor died is tried again this many times (then its files are skipped)


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
    if address == "auto":
        try:
            ray.init(address="auto", log_to_driver=False)
        except ConnectionError:
            log.info("no running Ray cluster found: starting one on this machine")
            ray.init(log_to_driver=False)
    else:
        ray.init(address=address, log_to_driver=False)
    return ray


class EmbedActor:
    """One model on a Ray worker: decodes and embeds batches of files (see the module docstring)."""

    def __init__(self, make_encoder: Callable[[], Any], batch_size: int, frame_seconds: float) -> None:
        self.encoder = make_encoder()
        self.batch_size = batch_size
        scratch = tempfile.mkdtemp(prefix="xmr-ray-scratch-")
        image, audio = self.encoder.preprocess_image, self.encoder.preprocess_audio
        self.pre = {
            "image": image,
            "audio": SegmentingAudio(audio, scratch) if audio is not None else None,
            "video": SegmentingVideo(image, audio, scratch, frame_seconds),
            "text": None,
        }

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = []
        for key, path, modality in zip(batch["key"], batch["path"], batch["modality"]):
            out.append(pickle.dumps(self.embed(int(key), str(path), str(modality))))
        return {"payload": np.array(out, dtype=object)}

    def embed(self, key: int, path: str, modality: str) -> Decoded:
        decoded = decode((key, path, modality, self.pre[modality]))
        if not decoded.ok:
            return decoded
        enc = self.encoder
        found = (decoded.meta or {}).pop(SEGMENTS_KEY, None)
        if found is not None:
            decoded.meta[SEGMENTS_KEY] = [encode_segments(enc, s, self.batch_size) for s in found]
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
    actors: int | None = None,
    gpus_per_actor: float = 0.0,
) -> Iterator[Decoded]:
    """Each job ``(key, path, modality)`` decoded and embedded on the cluster at ``address``, as a
    :class:`Decoded` whose ``vectors`` hold its file vectors (its moments, embedded, in its
    metadata), in the order they finish."""
    connect(address)
    import ray.data

    rows = [{"key": k, "path": os.fspath(p), "modality": m} for k, p, m in jobs]
    if not rows:
        return
    cpus = int(ray.cluster_resources().get("CPU", 1))
    gpus = int(ray.cluster_resources().get("GPU", 0))
    actors = actors or max(1, gpus if gpus_per_actor else cpus)
    ds = ray.data.from_items(rows, override_num_blocks=max(1, min(len(rows), actors * 4)))
    embedded = ds.map_batches(
        EmbedActor,
        fn_constructor_args=(make_encoder, batch_size, frame_seconds),
        batch_size=max(1, min(batch_size, -(-len(rows) // actors))),
        concurrency=actors,
        num_cpus=1,
        num_gpus=gpus_per_actor,
        max_restarts=-1,  # an actor whose worker died is started again...
        max_task_retries=RETRIES,  # ...and its batch tried again
    )
    for batch in embedded.iter_batches(batch_size=None, batch_format="numpy"):
        for payload in batch["payload"]:
            yield pickle.loads(payload)
