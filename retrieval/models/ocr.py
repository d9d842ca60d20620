"""What is written in pictures: PP-OCRv4 text detection and recognition (ONNX models, run on
ONNX Runtime by the PyPI package ``rapidocr-onnxruntime``, Apache-2.0; the extra ``ocr``).

A picture is decoded at most ``READ_SIDE`` pixels on its longer side (a large JPEG at a reduced
scale, so a 100-megapixel scan never sits in memory whole). A first look at a copy
``LOOK_SIDE`` pixels long decides whether it holds text at all: detection, then recognition of
the few boxes it finds (detection alone finds boxes in most photos: edges, textures); most
photos do not hold text, and cost that look only. Where one does, detection runs again at the
read size and recognition on the boxes found. Each line comes with its box (four corners, in
the picture's own pixels) and the recogniser's confidence; lines under ``MIN_CONFIDENCE``, or
without two letters or digits, are dropped (textures such as grass or brick make such
fragments). The recogniser often misses the space between words of small print
("VelvetLibrary2024"): a long run of letters and digits is cut where a small letter meets a
capital and where letters meet digits, so each word can be searched on its own (a run of small
letters alone stays as read).
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .image import ImageSource, decode_image

log = logging.getLogger(__name__)
LOOK_SIDE = 640  # the first look: detection alone at this size
READ_SIDE = 1600  # the read: detection and recognition at most this size
MIN_CONFIDENCE = 0.6
READING = "cls-look2"  # how pictures are read (see model_id)
DENSE = 6  # boxes found by the first look that mean text whatever they read as (photos: 0-4)
EXTRA_HINT = "reading text in pictures needs the extra ocr: pip install 'xmr[ocr]'"
RUN = 10  # a run of letters and digits this long is looked at for words written together
_JOINS = re.compile(r"(?<=[a-z])(?=[A-Z])|(?<=[^\W\d_])(?=\d)|(?<=\d)(?=[^\W\d_])")


class OcrUnavailable(RuntimeError):
    """No text recogniser here: the package rapidocr-onnxruntime is not installed."""


@dataclass(frozen=True)
class Line:
    """A line of text read in a picture: its words, its box's four corners ``[(x, y), ...]`` in
    the picture's pixels (as shown, EXIF rotation applied), and how sure the model was (0..1)."""

    text: str
    box: list[tuple[float, float]]
    confidence: float


class TextReader:
    """PP-OCRv4 ready to read pictures (see the module docstring). Loads on the first read."""

    source = "ocr"

    def __init__(self, threads: int | None = None) -> None:
        spec = importlib.util.find_spec("rapidocr_onnxruntime")
        if spec is None or not spec.submodule_search_locations:
            raise OcrUnavailable(EXTRA_HINT)
        self.folder = Path(next(iter(spec.submodule_search_locations)))
        self.name = "pp-ocrv4"
        # The way of reading is part of the id: another (lines turned back, the look's boxes read)
        # reads what an index holds again at its next run.
        self.model_id = f"{self.name}:{_fingerprint(self.folder / 'models')}:{READING}"
        self.threads = threads or len(os.sched_getaffinity(0))
        self._engine: Any = None

    def load(self) -> None:
        """Load the models now (else on the first read).

        Raises:
            OcrUnavailable: the package's models cannot be loaded.
        """
        if self._engine is not None:
            return
        try:
            from rapidocr_onnxruntime import RapidOCR

            self._engine = RapidOCR(
                intra_op_num_threads=self.threads,
                inter_op_num_threads=1,
                use_cls=True,  # lines upside down (a page turned 180 or 90 degrees) turned back
                max_side_len=READ_SIDE,
                text_score=MIN_CONFIDENCE,
                det_limit_type="max",  # never enlarged (its default, "min", takes the short side to 736)
                det_limit_side_len=READ_SIDE,
            )
        except (ImportError, RuntimeError, OSError, ValueError) as exc:
            raise OcrUnavailable(f"cannot load the text recogniser: {exc}") from exc

    def read(self, source: ImageSource) -> list[Line]:
        """The lines of text in a picture, top to bottom.

        Raises:
            ImageDecodeError: the picture cannot be decoded.
        """
        self.load()
        image, size = decode_image(source, min_side=READ_SIDE)
        image.thumbnail((READ_SIDE, READ_SIDE))  # decoded for this read alone: no copy
        return self.read_image(image, size)

    def read_image(self, image: Any, size: tuple[int, int] | None = None) -> list[Line]:
        """The lines of text in a decoded picture (a PIL image; a video's frame), top to bottom,
        their boxes in the pixels of a picture ``size`` large (the image's own by default)."""
        self.load()
        width, height = size or image.size
        if max(image.size) > READ_SIDE:
            image = image.copy()
            image.thumbnail((READ_SIDE, READ_SIDE))
        if not self._looks_written(image):
            return []
        found, _ = self._engine(_bgr(image))
        scale = (width / image.width, height / image.height)
        lines = []
        for box, text, score in found or []:
            text = spaced(str(text))
            if float(score) < MIN_CONFIDENCE or sum(c.isalnum() for c in text) < 2:
                continue
            corners = [(round(float(x) * scale[0], 1), round(float(y) * scale[1], 1)) for x, y in box]
            lines.append(Line(text, corners, round(float(score), 4)))
        return sorted(lines, key=lambda line: (min(y for _, y in line.box), min(x for x, _ in line.box)))

    def _looks_written(self, image: Any) -> bool:
        """The first look: whether a copy ``LOOK_SIDE`` pixels long shows text. Detection finds
        boxes in most photos (textures, edges); the boxes' crops are then read at that size, and
        the picture holds text when one reads as a line would be kept, or when there are
        ``DENSE`` boxes or more (small print too small to read at this size)."""
        look = image.copy()
        look.thumbnail((LOOK_SIDE, LOOK_SIDE))
        bgr = _bgr(look)
        boxes, _ = self._engine.text_det(bgr)
        if boxes is None or len(boxes) == 0:
            return False
        if len(boxes) >= DENSE:
            return True
        crops = self._engine.get_crop_img_list(bgr, self._engine.sorted_boxes(boxes))
        crops, _, _ = self._engine.text_cls(crops)  # an upside-down line turned back
        read, _ = self._engine.text_rec(crops)
        return any(float(score) >= MIN_CONFIDENCE and sum(c.isalnum() for c in str(text)) >= 2 for text, score in read)


def spaced(text: str) -> str:
    """``text`` with its whitespace made single spaces, and each run of at least ``RUN`` letters
    and digits cut where a small letter meets a capital or letters meet digits (see the module
    docstring): "VelvetlibraryExhibition6568" -> "Velvetlibrary Exhibition 6568"."""
    return " ".join(_JOINS.sub(" ", word) if len(word) >= RUN and word.isalnum() else word for word in text.split())


def _bgr(image: Any) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(image.convert("RGB"))[:, :, ::-1])


def _fingerprint(folder: Path) -> str:
    """A short id of the models: others mean pictures read again."""
    digest = hashlib.sha256()
    for path in sorted(folder.glob("*.onnx")):
        digest.update(f"{path.name}:{path.stat().st_size}".encode())
    return digest.hexdigest()[:12]
