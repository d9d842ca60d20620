"""Image front-end: decode and preprocess images with Pillow and numpy only (no torch)."""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass
from typing import BinaryIO, Union

import numpy as np
from PIL import Image, ImageOps

ImageSource = Union[str, os.PathLike, bytes, Image.Image, BinaryIO]  # BinaryIO: an open file, read from its start
# Pillow's own bomb guard warns at this many pixels and refuses at twice as many; xmr refuses
# to decode more, so a huge image costs a header read, never its decoded pixels (a JPEG read at
# a reduced scale counts the pixels decoded: a 100-megapixel scan is read at a quarter or less).
MAX_IMAGE_PIXELS = 89_478_485

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


class ImageDecodeError(ValueError):
    """Raised when a file cannot be decoded into an image."""


def open_image(source: ImageSource, max_pixels: int = MAX_IMAGE_PIXELS, min_side: int | None = None) -> Image.Image:
    """Decode ``source`` into an RGB image: EXIF rotation applied, transparency on white.

    ``min_side`` lets a JPEG decode at a reduced scale that still keeps both sides at least
    that long, so a large photo costs a fraction of its full decode.

    Raises:
        ImageDecodeError: unreadable, truncated, not an image, or more than ``max_pixels``.
    """
    return decode_image(source, max_pixels, min_side)[0]


def decode_image(
    source: ImageSource, max_pixels: int = MAX_IMAGE_PIXELS, min_side: int | None = None
) -> tuple[Image.Image, tuple[int, int]]:
    """:func:`open_image`, and the image's full size as shown (width, height after EXIF
    rotation), which a JPEG decoded at reduced scale no longer reports. One decode."""
    if isinstance(source, Image.Image):
        img = source
    else:
        try:
            if isinstance(source, bytes):
                img = Image.open(io.BytesIO(source))
            elif hasattr(source, "read"):
                img = Image.open(source)
            else:
                img = Image.open(os.fspath(source))
        except (FileNotFoundError, PermissionError, IsADirectoryError):
            raise  # about the file, not its pixels: the caller says so in its own words
        except Image.DecompressionBombError as exc:
            raise ImageDecodeError(f"image too large (decompression bomb guard): {exc}") from exc
        except Image.UnidentifiedImageError as exc:
            raise ImageDecodeError("not an image in a known format (unrecognised or damaged header)") from exc
        except (OSError, SyntaxError, ValueError) as exc:
            if "truncat" in str(exc).lower():
                raise ImageDecodeError(f"corrupt or truncated image: {exc}") from exc
            raise ImageDecodeError(f"not a readable image: {exc}") from exc
    width, height = full = img.size
    if min_side and img.format == "JPEG":  # decoded at a reduced scale: the pixels decoded count
        img.draft("RGB", (min_side, min_side))
    if img.width * img.height > max_pixels:
        raise ImageDecodeError(f"image too large: {width}x{height} pixels exceeds the limit of {max_pixels}")
    if width == 0 or height == 0:
        raise ImageDecodeError("image has no pixels")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img.load()
            if img.getexif().get(0x0112, 1) in (5, 6, 7, 8):
                full = (height, width)
            img = ImageOps.exif_transpose(img)
            return _to_rgb(img), full
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageDecodeError(f"image too large (decompression bomb guard): {exc}") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageDecodeError(f"corrupt or truncated image: {exc}") from exc


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("I;16", "I;16B", "I;16L"):
        # Scaled to 8 bits a band of rows at a time, in integers: the whole image as float64 took
        # 8 bytes a pixel (a 39 Mpx upload, +300 MB); now one byte a pixel and a band.
        arr = np.asarray(img)
        top = int(arr.max()) or 1
        out = np.empty(arr.shape, dtype=np.uint8)
        for row in range(0, arr.shape[0], 256):
            band = arr[row : row + 256].astype(np.uint32)
            band *= 255
            band //= top
            out[row : row + 256] = band
        del arr
        img = Image.fromarray(out, mode="L")
    elif img.mode == "I":
        arr = np.asarray(img, dtype=np.float64)
        top = arr.max() or 1.0
        img = Image.fromarray((arr * (255.0 / top)).astype(np.uint8), mode="L")
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "RGB" and "transparency" in img.info):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, img).convert("RGB")
    return img.convert("RGB")


@dataclass(frozen=True)
class ImagePreprocessor:
    """Resize the short side, centre-crop and normalise: image -> float32 ``[3, S, S]``.

    Picklable and free of torch, so decode workers can run it.
    """

    image_size: int = 64
    mean: tuple[float, float, float] = OPENAI_MEAN
    std: tuple[float, float, float] = OPENAI_STD
    max_pixels: int = MAX_IMAGE_PIXELS

    def __call__(self, source: ImageSource) -> np.ndarray:
        return self.process(source)[0]

    def process(self, source: ImageSource) -> tuple[np.ndarray, dict]:
        """Pixels and what the indexer stores of the image (its width and height)."""
        crop, meta = self.process_crop(source)
        return self.normalize(crop[None])[0], meta

    # What a decode worker may replace with process_crop, normalize after (indexer.ingest.decode.Crops):
    # a subclass that overrides process has its own way, and keeps it.
    crops_then_normalize = process

    def process_crop(self, source: ImageSource) -> tuple[np.ndarray, dict]:
        """:meth:`process` before :meth:`normalize`: the uint8 crop ``[S, S, 3]`` (a quarter of
        the bytes of the model's input, what a decode worker passes on) and the image's size."""
        img, size = decode_image(source, self.max_pixels, min_side=self.image_size)
        return self.crop(img), {"width": size[0], "height": size[1]}

    def from_rgb(self, img: Image.Image) -> np.ndarray:
        """Preprocess an already decoded RGB image."""
        return self.normalize(self.crop(img)[None])[0]

    def crop(self, img: Image.Image) -> np.ndarray:
        """The resized, centre-cropped pixels of an RGB image, uint8 ``[S, S, 3]`` (a quarter of
        the bytes of the model's input, for a decode worker to pass on)."""
        size = self.image_size
        width, height = img.size
        scale = size / min(width, height)
        new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
        img = img.resize((new_w, new_h), Image.BICUBIC, reducing_gap=3.0)
        left, top = (new_w - size) // 2, (new_h - size) // 2
        return np.asarray(img.crop((left, top, left + size, top + size)), dtype=np.uint8)

    def normalize(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 ``[B, S, S, 3]`` crops as the model's input, float32 ``[B, 3, S, S]``."""
        arr = np.asarray(pixels, dtype=np.float32) / 255.0
        arr = (arr - np.asarray(self.mean, dtype=np.float32)) / np.asarray(self.std, dtype=np.float32)
        return np.ascontiguousarray(arr.transpose(0, 3, 1, 2))
