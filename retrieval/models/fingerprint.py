"""Fingerprints that find copies: a picture's perceptual hash and a recording's acoustic fingerprint.

The picture's hash (``dct64``) is the sign of the 63 lowest-frequency coefficients of the 2-D
DCT of its 32x32 grey thumbnail (Zauner 2010's pHash, with signs instead of a median so that
turning and mirroring map to bit operations): mirroring a picture negates the coefficients of
odd horizontal (or vertical) frequency, turning it by 90 degrees transposes them, so the hashes
of its eight turned and mirrored copies follow from its own (:func:`dihedral`), and a copy is
found whichever way it was turned without decoding anything again. Grey and resized copies
keep their hash: it is made from luminance at a fixed size.

Beside the hash, a grey thumbnail (longest side 48) is kept: a copy with a border or a caption
added, or cropped, changes the hash but is found inside the other's thumbnail
(:func:`contained`).

The recording's fingerprint is Chromaprint's (``fpcalc -raw``, Debian ``libchromaprint-tools``,
as AcoustID uses it): a 32-bit word every ~0.124 s; two recordings are the same when, at the
best offset, their words differ in few bits (:func:`audio_similarity`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np

IMAGE_METHOD = "dct64-thumb48-v1"
AUDIO_METHOD = "chromaprint-v1"
AUDIO_SECONDS = 600  # of a recording fingerprinted (fpcalc's default is 120)
SIDE = 32  # the thumbnail the DCT is taken of
THUMB = 48  # the longest side of the grey thumbnail kept (copies cropped, framed or captioned are matched in it)
SCALES = tuple(round(1.0 - 0.025 * n, 3) for n in range(13))  # a picture's width inside another's: 1 .. 0.7
_u, _v = np.divmod(np.arange(64), 8)  # vertical and horizontal frequency of each bit
_ODD_V = np.where(_v % 2 == 1)[0]
_ODD_U = np.where(_u % 2 == 1)[0]
_TRANSPOSE = (_v * 8 + _u).astype(np.int64)


class FingerprintError(ValueError):
    """A file that could not be fingerprinted (the reason says why)."""


def _dct_matrix(n: int) -> np.ndarray:
    k = np.arange(n)[:, None]
    m = np.cos(np.pi * (2 * np.arange(n)[None, :] + 1) * k / (2 * n))
    m[0] /= np.sqrt(2)
    return m * np.sqrt(2 / n)


_DCT = _dct_matrix(SIDE)


def image_hash(img: object) -> bytes:
    """The 8-byte perceptual hash of a PIL image (bit ``8u+v``: the sign of DCT coefficient
    (u, v), u the vertical frequency; bit 0, the mean, always 0)."""
    from PIL import Image

    grey = img.convert("L").resize((SIDE, SIDE), Image.Resampling.BOX)  # type: ignore[attr-defined]
    pixels = np.asarray(grey, dtype=np.float64)
    coeffs = (_DCT @ pixels @ _DCT.T)[:8, :8].reshape(64)
    bits = coeffs > 0
    bits[0] = False
    return np.packbits(bits).tobytes()


def image_fingerprint(img: object) -> bytes:
    """A picture's stored fingerprint: its 8-byte :func:`image_hash`, then the width and height
    (one byte each) and grey pixels of its thumbnail (longest side :data:`THUMB`, aspect kept)."""
    from PIL import Image

    w, h = img.size  # type: ignore[attr-defined]
    r = THUMB / max(w, h)
    tw, th = max(1, round(w * r)), max(1, round(h * r))
    thumb = img.convert("L").resize((tw, th), Image.Resampling.BOX)  # type: ignore[attr-defined]
    return image_hash(img) + bytes([tw, th]) + np.asarray(thumb, dtype=np.uint8).tobytes()


def thumbnail(value: bytes) -> np.ndarray:
    """The grey thumbnail inside a stored :func:`image_fingerprint` (float32, rows x columns)."""
    tw, th = value[8], value[9]
    return np.frombuffer(value[10 : 10 + tw * th], dtype=np.uint8).reshape(th, tw).astype(np.float32)


def contained(a: np.ndarray, b: np.ndarray) -> float:
    """How well thumbnail ``a`` matches a region of thumbnail ``b`` (``b`` a copy of ``a`` with
    a border or a caption added, or ``a`` a crop of ``b``): the best normalised cross-correlation
    of ``a``, scaled to :data:`SCALES` of ``b``'s width, at every place in ``b`` (-1..1)."""
    from PIL import Image

    best = -1.0
    for s in SCALES:
        w = round(b.shape[1] * s)
        h = round(a.shape[0] * w / a.shape[1])
        if h > b.shape[0] or h < 4 or w < 4:
            continue
        x = np.asarray(Image.fromarray(a).resize((w, h), Image.Resampling.BOX), dtype=np.float32)
        x = (x - x.mean()).ravel()
        windows = np.lib.stride_tricks.sliding_window_view(b, (h, w)).reshape(-1, h * w)
        windows = windows - windows.mean(axis=1, keepdims=True)
        ncc = windows @ x / ((np.linalg.norm(windows, axis=1) + 1e-3) * (np.linalg.norm(x) + 1e-3))
        best = max(best, float(ncc.max()))
    return best


def hash_bits(hashes: np.ndarray) -> np.ndarray:
    """``[N, 8]`` uint8 hashes as ``[N, 64]`` booleans."""
    return np.unpackbits(np.asarray(hashes, dtype=np.uint8).reshape(-1, 8), axis=1).astype(bool)


def dihedral(hashes: np.ndarray) -> np.ndarray:
    """``[N, 8]`` hashes -> ``[N, 8, 8]``: the hash of each picture as it would be turned by 0,
    90, 180 and 270 degrees and mirrored (transform 0 the picture itself)."""
    bits = hash_bits(hashes)
    out = []
    for transpose in (False, True):
        b = bits[:, _TRANSPOSE] if transpose else bits
        for flip_v, flip_u in ((False, False), (True, False), (False, True), (True, True)):
            c = b.copy()
            if flip_v:
                c[:, _ODD_V] ^= True
            if flip_u:
                c[:, _ODD_U] ^= True
            out.append(np.packbits(c, axis=1))
    return np.stack(out, axis=1)


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bits differing between ``[..., 8]`` uint8 hashes (broadcast)."""
    return np.unpackbits(np.bitwise_xor(a, b), axis=-1).sum(axis=-1)


def audio_fingerprint(path: str | os.PathLike, seconds: int = AUDIO_SECONDS) -> np.ndarray:
    """Chromaprint's raw fingerprint of a recording: uint32 words, one every ~0.124 s.

    Raises:
        FingerprintError: fpcalc is missing, failed, or found no sound.
    """
    fpcalc = shutil.which("fpcalc")
    if fpcalc is None:
        raise FingerprintError("fpcalc is not installed (Debian: apt-get install libchromaprint-tools)")
    try:
        done = subprocess.run(
            [fpcalc, "-raw", "-length", str(seconds), "--", os.fspath(path)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise FingerprintError("fpcalc took more than 120 s") from exc
    words = next((line[12:] for line in done.stdout.splitlines() if line.startswith("FINGERPRINT=")), "")
    if not words:  # fpcalc also fails at a damaged end after printing what it read: that is kept
        reason = (done.stderr.strip().splitlines() or ["no fingerprint"])[-1]
        raise FingerprintError(f"fpcalc: {reason}")
    return np.array([int(w) for w in words.split(",")], dtype=np.int64).astype(np.uint32)


def audio_similarity(a: np.ndarray, b: np.ndarray, min_overlap: int = 40) -> tuple[float, int]:
    """How alike two Chromaprint fingerprints are: the share of equal bits (0.5 for unrelated
    sound, 1 for the same) over their overlap at the offset where it is highest, and that
    offset (words of ``b`` after ``a``). Offsets are tried where the two share a word's top 20
    bits (AcoustID's way of aligning), so a trimmed copy is aligned where it starts."""
    if len(a) < 1 or len(b) < 1:
        return 0.0, 0
    top_a, top_b = a >> 12, b >> 12
    where_b: dict[int, list[int]] = {}
    for j, w in enumerate(top_b.tolist()):
        where_b.setdefault(w, []).append(j)
    votes: dict[int, int] = {}
    for i, w in enumerate(top_a.tolist()):
        for j in where_b.get(w, ()):
            votes[j - i] = votes.get(j - i, 0) + 1
    offsets = sorted(votes, key=lambda o: -votes[o])[:5] or [0]
    best = (0.0, 0)
    for off in offsets:
        start_a, start_b = max(0, -off), max(0, off)
        n = min(len(a) - start_a, len(b) - start_b)
        if n < min(min_overlap, len(a), len(b)) or n <= 0:
            continue
        x = np.bitwise_xor(a[start_a : start_a + n], b[start_b : start_b + n])
        same = 1.0 - float(np.unpackbits(x.view(np.uint8)).sum()) / (32 * n)
        if same > best[0]:
            best = (same, off)
    return best


class Fingerprinter:
    """What ``xmr index`` fingerprints files with (``IndexOptions.fingerprinter``): pictures
    always, recordings when fpcalc is installed. ``methods``: ``{modality: method}``."""

    source = "fingerprint"

    def __init__(self, audio: bool = True) -> None:
        self.methods = {"image": IMAGE_METHOD}
        if audio and shutil.which("fpcalc"):
            self.methods["audio"] = AUDIO_METHOD

    def fingerprint(self, path: str | os.PathLike, modality: str) -> bytes:
        """The fingerprint of the file at ``path``, as stored.

        Raises:
            FingerprintError, OSError: the file could not be read or fingerprinted.
        """
        if modality == "image":
            from .image import open_image

            return image_fingerprint(open_image(Path(path), min_side=2 * SIDE))
        if modality == "audio":
            return audio_fingerprint(path).tobytes()
        raise FingerprintError(f"no fingerprint for {modality}")
