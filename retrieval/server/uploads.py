"""A search's uploads as the model will take them, or refused: their bounds (bytes, pixels,
seconds, how many at once), read once and checked by decoding or by header."""

from __future__ import annotations

from typing import Any

from starlette.datastructures import UploadFile

from .params import ApiError

MAX_UPLOAD_BYTES = 32 << 20
MAX_UPLOAD_PIXELS = 40_000_000  # a JPEG: decoded at a reduced scale, so a fraction of this is held
MAX_UPLOAD_FULL_PIXELS = 16_000_000  # other formats are decoded whole: 64 MB of RGBA at most
MAX_UPLOAD_SECONDS = 600.0
UPLOADS_IN_FLIGHT = 2  # uploads decoded and embedded at once; more wait (memory: twice one upload's bound)


async def read_upload(upload: UploadFile, modality: str) -> bytes:
    """The bytes of ``upload`` (the ``modality`` field).

    Raises:
        ApiError: 413 past :data:`MAX_UPLOAD_BYTES`, 422 when empty.
    """
    data = await upload.read(MAX_UPLOAD_BYTES + 1)
    if len(data) > MAX_UPLOAD_BYTES:
        raise ApiError(413, "too_large", f"{modality}: uploads are limited to {MAX_UPLOAD_BYTES >> 20} MB", modality)
    if not data:
        raise ApiError(422, "empty_upload", f"{modality}: the uploaded file is empty", modality)
    return data


def check_upload(data: bytes, modality: str, min_side: int = 224) -> Any:
    """An upload as the model will take it, or refused: an image decoded once (a JPEG at the
    smallest scale that keeps ``min_side``, other formats whole and so held to fewer pixels),
    audio checked by its header (decoded once, by the model).

    Raises:
        ApiError: 413 past a limit, 415 when it cannot be decoded.
    """
    if modality == "image":
        import io

        from PIL import Image

        from ..models.image import ImageDecodeError, decode_image

        try:
            header = Image.open(io.BytesIO(data))
            limit = MAX_UPLOAD_PIXELS if header.format == "JPEG" else min(MAX_UPLOAD_PIXELS, MAX_UPLOAD_FULL_PIXELS)
            if header.format != "JPEG" and header.size[0] * header.size[1] > limit:
                width, height = header.size
                raise ApiError(
                    413,
                    "too_large",
                    f"image: {width}x{height} pixels is more than the {limit:,} a {header.format} upload may have "
                    f"(a JPEG may have {MAX_UPLOAD_PIXELS:,})",
                    "image",
                )
            return decode_image(header, max_pixels=limit, min_side=min_side)[0]
        except ImageDecodeError as exc:
            status = 413 if "too large" in str(exc) else 415
            raise ApiError(status, "bad_image" if status == 415 else "too_large", f"image: {exc}", "image") from None
        except (Image.UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError) as exc:
            if isinstance(exc, Image.DecompressionBombError):
                raise ApiError(413, "too_large", "image: too many pixels (decompression bomb guard)", "image") from None
            raise ApiError(415, "bad_image", "image: not an image in a known format", "image") from None
    from ..models.audio import AudioDecodeError, audio_info

    try:
        info = audio_info(data)
    except AudioDecodeError as exc:
        raise ApiError(415, "bad_audio", f"audio: {exc}", "audio") from None
    if info.duration > MAX_UPLOAD_SECONDS:
        raise ApiError(
            413,
            "too_long",
            f"audio: {info.duration:.0f} s is longer than the {MAX_UPLOAD_SECONDS:.0f} s a query may be",
            "audio",
        )
    return data
