"""Fingerprints that find copies: a picture's perceptual hash and a recording's acoustic fingerprint.

The picture's hash (``dct64``) is the sign of the 63 lowest-frequency coefficients of the 2-D
DCT of its 32x32 grey thumbnail (Zauner 2010's pHash, with signs instead of a median so that
turning and mirroring map to bit operations): mirroring a picture negates the coefficients of
odd horizontal (or vertical) frequency, turning it by 90 degrees transposes them, so the hashes
of its eight turned and mirrored copies follow from its own (:func:`dihedral`), and a copy is
found whichever way it was turned without decoding anything again. Grey and resized copies
keep their hash: it is made from luminance at a fixed size.

A second hash is taken of the picture with its flat borders trimmed (:func:`trim_box`: rows and
columns nearly all of one colour, from each side in turn), so that a copy shown inside a window
(a screenshot) or framed hashes like its original. Beside the hashes, a grey thumbnail (longest
side 48) and a coarse colour one (longest side 16) are kept: a copy with a caption added, or
cropped, changes the hash but is found inside the other's thumbnail (:func:`contained`), and two
pictures alike in grey but not in colour are told apart.

The recording's fingerprint is Chromaprint's (``fpcalc -raw``, Debian ``libchromaprint-tools``,
as AcoustID uses it): a 32-bit word every ~0.124 s; two recordings are the same when, at the
best offset, their words differ in few bits (:func:`audio_similarity`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import numpy as np

IMAGE_METHOD = "dct64-trim-thumb48-chroma16-v2"
AUDIO_METHOD = "chromaprint-v1"
AUDIO_SECONDS = 600  # of a recording fingerprinted (fpcalc's default is 120)
SIDE = 32  # the thumbnail the DCT is taken of
THUMB = 48  # the longest side of the grey thumbnail kept (copies cropped, framed or captioned are matched in it)
CHROMA = 16  # the longest side of the colour thumbnail kept (two channels: blue and red minus green)
TRIM_SIDE = 256  # flat borders are found on the picture at most this long
TRIM_TOLERANCE = 24  # a border line: pixels within this of the line's median colour (0..255) ...
TRIM_SHARE = 0.95  # ... at least this share of them
TRIM_KEEP = 0.25  # of each side, kept however flat (a blank picture is not trimmed to nothing)
COLOURED = 3.0  # a picture whose mean chroma is below this is grey: its colour is not compared
COLOUR_GRID = 4  # colours are compared on a grid this coarse (so a copy's shifted colour edges do not count)
COLOUR_APART = 12.0  # two pictures whose chroma differ by more than this (mean, 0..255) where they match are not copies
REFINE_FROM = 0.85  # a match this good is refined between pixels
HEAD = 16  # the bytes of a stored fingerprint that copies are first looked for with: its two hashes
HEADER = 20  # bytes before the thumbnails: two hashes, the grey thumbnail's width and height, the colour one's
# Perceptual hashes: copies at most this many of the 64 bits apart (measured: resized, re-saved,
# grey, turned and mirrored copies of real photos 0-10 bits apart, half of them 0-1; two
# distinct photos 10 or more).
HASH_MAX_BITS = 6
HASH_FLAT_LIMIT = 20_000  # hashes compared exactly; above, a multi-index hash table
FEW_ASKED = 400_000_000  # hashes asked times hashes held up to which a few are compared with all exactly
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


def _flat(line: np.ndarray) -> bool:
    """A border line: at least :data:`TRIM_SHARE` of its pixels (``[n, 3]``) within
    :data:`TRIM_TOLERANCE` of its median colour (JPEG's ringing beside a picture tolerated)."""
    near = np.abs(line - np.median(line, axis=0)).max(axis=1) <= TRIM_TOLERANCE
    return bool(near.mean() >= TRIM_SHARE)


def trim_box(img: object) -> tuple[int, int, int, int]:
    """``(left, top, right, bottom)`` of a PIL image without its flat borders: a flat line
    (:func:`_flat`) is dropped from each side in turn until none is, keeping at least
    :data:`TRIM_KEEP` of each side (a picture that is all flat keeps that much)."""
    from PIL import Image

    w, h = img.size  # type: ignore[attr-defined]
    r = min(1.0, TRIM_SIDE / max(w, h))
    small = img.convert("RGB")  # type: ignore[attr-defined]
    if r < 1.0:
        small = small.resize((max(1, round(w * r)), max(1, round(h * r))), Image.Resampling.BOX)
    a = np.asarray(small, dtype=np.float32)
    sh, sw = a.shape[:2]
    top, left, bottom, right = 0, 0, sh, sw
    changed = True
    while changed:
        changed = False
        if bottom - top > sh * TRIM_KEEP and _flat(a[top, left:right]):
            top, changed = top + 1, True
        if bottom - top > sh * TRIM_KEEP and _flat(a[bottom - 1, left:right]):
            bottom, changed = bottom - 1, True
        if right - left > sw * TRIM_KEEP and _flat(a[top:bottom, left]):
            left, changed = left + 1, True
        if right - left > sw * TRIM_KEEP and _flat(a[top:bottom, right - 1]):
            right, changed = right - 1, True
    return round(left / r), round(top / r), min(w, round(right / r)), min(h, round(bottom / r))


def image_fingerprint(img: object) -> bytes:
    """A picture's stored fingerprint: its 8-byte :func:`image_hash`, the hash of it without its
    flat borders (:func:`trim_box`; the same when it has none), the width and height (one byte
    each) of its grey thumbnail (longest side :data:`THUMB`, aspect kept) and of its colour one
    (longest side :data:`CHROMA`), then the grey pixels, then the colour ones (blue minus green,
    red minus green, each halved and offset by 128)."""
    from PIL import Image

    w, h = img.size  # type: ignore[attr-defined]
    box = trim_box(img)
    trimmed = image_hash(img) if box == (0, 0, w, h) else image_hash(img.crop(box))  # type: ignore[attr-defined]
    r = THUMB / max(w, h)
    tw, th = max(1, round(w * r)), max(1, round(h * r))
    thumb = img.convert("L").resize((tw, th), Image.Resampling.BOX)  # type: ignore[attr-defined]
    r = CHROMA / max(w, h)
    cw, ch = max(1, round(w * r)), max(1, round(h * r))
    rgb = np.asarray(img.convert("RGB").resize((cw, ch), Image.Resampling.BOX), dtype=np.float32)  # type: ignore[attr-defined]
    chroma = np.clip(np.round(_chroma(rgb) / 2 + 128), 0, 255).astype(np.uint8)
    header = image_hash(img) + trimmed + bytes([tw, th, cw, ch])
    return header + np.asarray(thumb, dtype=np.uint8).tobytes() + chroma.tobytes()


def _chroma(rgb: np.ndarray) -> np.ndarray:
    """``[h, w, 3]`` RGB -> ``[h, w, 2]``: blue minus green, red minus green."""
    return np.stack([rgb[..., 2] - rgb[..., 1], rgb[..., 0] - rgb[..., 1]], axis=-1)


def hashes(value: bytes) -> bytes:
    """The two 8-byte hashes (whole, borders trimmed) at the start of a stored :func:`image_fingerprint`."""
    return value[:HEAD]


def thumbnail(value: bytes) -> np.ndarray:
    """The grey thumbnail inside a stored :func:`image_fingerprint` (float32, rows x columns)."""
    tw, th = value[16], value[17]
    return np.frombuffer(value[HEADER : HEADER + tw * th], dtype=np.uint8).reshape(th, tw).astype(np.float32)


def colour(value: bytes) -> np.ndarray:
    """The colour thumbnail inside a stored :func:`image_fingerprint` (float32 ``[rows, columns, 2]``
    chroma, 0 for grey)."""
    tw, th, cw, ch = value[16], value[17], value[18], value[19]
    start = HEADER + tw * th
    raw = np.frombuffer(value[start : start + cw * ch * 2], dtype=np.uint8).reshape(ch, cw, 2)
    return (raw.astype(np.float32) - 128.0) * 2.0


def _ncc(x: np.ndarray, y: np.ndarray) -> float:
    x, y = x - x.mean(), y - y.mean()
    return float((x * y).sum() / ((np.linalg.norm(x) + 1e-3) * (np.linalg.norm(y) + 1e-3)))


def locate(a: np.ndarray, b: np.ndarray) -> tuple[float, tuple[float, float, float, float]]:
    """Where grey thumbnail ``a`` best matches a region of grey thumbnail ``b`` (``b`` a copy of
    ``a`` with a border or a caption added, or ``a`` a crop of ``b``): the normalised
    cross-correlation (-1..1) and the region ``(left, top, right, bottom)`` in ``b``'s pixels.
    Searched at :data:`SCALES` of ``b``'s width at every whole pixel, then refined by quarter
    pixels and half-pixel widths around the best (a crop of a small picture lies between pixels)."""
    from PIL import Image

    best, where = -1.0, (0.0, 0.0, float(b.shape[1]), float(b.shape[0]))
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
        k = int(ncc.argmax())
        if ncc[k] > best:
            left, top = k % (b.shape[1] - w + 1), k // (b.shape[1] - w + 1)
            best, where = float(ncc[k]), (float(left), float(top), float(left + w), float(top + h))
    if best < REFINE_FROM:
        return best, where
    picture = Image.fromarray(b)
    for step in (0.5, 0.25):
        left, top, right, _ = where
        for dx in (-step, 0.0, step):
            for dy in (-step, 0.0, step):
                for dw in (-step, 0.0, step):
                    x0, y0, w = left + dx - dw, top + dy - dw, right - left + 2 * dw
                    box = (x0, y0, x0 + w, y0 + w * a.shape[0] / a.shape[1])
                    if box[0] < 0 or box[1] < 0 or box[2] > b.shape[1] or box[3] > b.shape[0]:
                        continue
                    region = picture.resize((a.shape[1], a.shape[0]), Image.Resampling.BILINEAR, box=box)
                    score = _ncc(a, np.asarray(region, dtype=np.float32))
                    if score > best:
                        best, where = score, box
    return best, where


def colour_apart(a: np.ndarray, b: np.ndarray, where: tuple[float, float, float, float], b_side: int) -> float:
    """How far apart in colour chroma thumbnail ``a`` is from the region ``where`` (in the
    pixels of a grey thumbnail ``b_side`` long) of chroma thumbnail ``b``: the mean absolute
    difference (0..510) on a :data:`COLOUR_GRID`-cell grid; 0 when either is grey (a grey copy
    has no colour to compare)."""
    from PIL import Image

    if np.abs(a).mean() < COLOURED or np.abs(b).mean() < COLOURED:
        return 0.0
    r = max(b.shape[:2]) / b_side
    left, top, right, bottom = (v * r for v in where)
    box = (max(0.0, left), max(0.0, top), min(float(b.shape[1]), right), min(float(b.shape[0]), bottom))
    r = COLOUR_GRID / max(a.shape[:2])
    grid = (max(1, round(a.shape[1] * r)), max(1, round(a.shape[0] * r)))

    def coarse(x: np.ndarray, box: tuple[float, float, float, float] | None = None) -> np.ndarray:
        return np.stack(
            [np.asarray(Image.fromarray(x[..., c]).resize(grid, Image.Resampling.BOX, box=box)) for c in range(2)], -1
        )

    return float(np.abs(coarse(a) - coarse(b, box)).mean())


def contained(a: bytes, b: bytes) -> float:
    """How well stored fingerprint ``a``'s picture lies inside ``b``'s (``b`` a copy of it with
    a border or a caption added, or it a crop of ``b``): the grey thumbnails' best normalised
    cross-correlation (:func:`locate`), or 0 when their colours differ there by more than
    :data:`COLOUR_APART` (-1..1)."""
    ga, gb = thumbnail(a), thumbnail(b)
    score, where = locate(ga, gb)
    if score > 0 and colour_apart(colour(a), colour(b), where, max(gb.shape)) > COLOUR_APART:
        return 0.0
    return score


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


def hash_pairs(hashes: np.ndarray, max_bits: int, queries: np.ndarray | None = None) -> dict[tuple[int, int], int]:
    """``{(i, j): bits}``, i < j row numbers of ``hashes``, for pictures whose hashes are at most
    ``max_bits`` apart, each of one picture's hashes compared with the other's eight turned and
    mirrored ones (:func:`dihedral`) through a FAISS binary range search: exact up to
    :data:`HASH_FLAT_LIMIT` pictures; above, a multi-index hash table, which finds every pair up
    to 3 bits apart and most of those further. ``hashes``: ``[N, 8]`` uint8, or ``[N, M, 8]`` for
    M hashes a picture (whole, borders trimmed). ``queries``: the rows compared with all the
    others (default: all): a few (:data:`FEW_ASKED`) are compared exactly with every hash, their
    turns against the hashes as held (the same pairs: turning one or the other is alike)."""
    import faiss

    n = len(hashes)
    if n < 2:
        return {}
    hashes = np.asarray(hashes, dtype=np.uint8).reshape(n, -1, 8)
    owner = np.repeat(np.arange(n), hashes.shape[1])
    flat = hashes.reshape(-1, 8)
    keep = np.ones(len(flat), dtype=bool)  # a picture's second hash, when the same as its first, is not searched twice
    for m in range(1, hashes.shape[1]):
        keep[m :: hashes.shape[1]] = (hashes[:, m] != hashes[:, 0]).any(axis=1)
    owner, flat = owner[keep], np.ascontiguousarray(flat[keep])
    asked = np.arange(len(flat)) if queries is None else np.flatnonzero(np.isin(owner, queries))
    # faiss counts a neighbour within the radius strictly below it
    if len(asked) * len(flat) <= FEW_ASKED:  # a few new pictures: their turns against the hashes as stored
        index = faiss.IndexBinaryFlat(64)
        index.add(flat)
        lims, dist, found = index.range_search(np.ascontiguousarray(dihedral(flat[asked]).reshape(-1, 8)), max_bits + 1)
        mine = owner[asked][np.repeat(np.arange(len(asked) * 8) // 8, np.diff(lims).astype(np.int64))]
        other = owner[found]
    else:  # the hashes against every picture's turns
        index = faiss.IndexBinaryFlat(64) if n <= HASH_FLAT_LIMIT else faiss.IndexBinaryMultiHash(64, 4, 16)
        index.add(np.ascontiguousarray(dihedral(flat).reshape(len(flat) * 8, 8)))
        lims, dist, found = index.range_search(np.ascontiguousarray(flat[asked]), max_bits + 1)
        mine = owner[asked][np.repeat(np.arange(len(asked)), np.diff(lims).astype(np.int64))]
        other = owner[found // 8]
    apart = mine != other
    low, high, bits = np.minimum(mine, other)[apart], np.maximum(mine, other)[apart], dist[apart]
    order = np.lexsort((bits, high, low))  # each pair's closest first
    low, high, bits = low[order], high[order], bits[order]
    first = np.ones(len(low), dtype=bool)
    first[1:] = (low[1:] != low[:-1]) | (high[1:] != high[:-1])
    return {(int(a), int(b)): int(d) for a, b, d in zip(low[first], high[first], bits[first])}


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
    head = HEAD  # the bytes of a stored picture fingerprint that :meth:`copies` reads

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

    def copies(self, new: Sequence[int], stored: dict[int, bytes]) -> list[tuple[int, int, int]]:
        """``(new id, other id, bits apart)``: pictures of ``new`` (ids) whose hashes are at most
        :data:`HASH_MAX_BITS` apart from another picture's of ``stored`` (``{id: the first
        :data:`HEAD` bytes of its fingerprint}``, the new ones among them), whichever way it was
        turned or mirrored; for each new picture its closest (of two new copies, the later one is listed)."""
        ids = np.array(sorted(stored), dtype=np.int64)
        if len(ids) < 2 or not len(new):
            return []
        both = np.frombuffer(b"".join(stored[int(i)][:HEAD] for i in ids), dtype=np.uint8).reshape(-1, 2, 8)
        fresh = set(int(i) for i in new)
        best: dict[int, tuple[int, int]] = {}  # new id: (bits, other id)
        queries = np.flatnonzero(np.isin(ids, np.fromiter(fresh, dtype=np.int64, count=len(fresh))))
        for (a, b), bits in hash_pairs(both, HASH_MAX_BITS, queries).items():
            for mine, other in ((int(ids[a]), int(ids[b])), (int(ids[b]), int(ids[a]))):
                if other in fresh and other > mine:
                    continue  # two new copies: the later is the copy
                if mine in fresh and (mine not in best or (bits, other) < best[mine]):
                    best[mine] = (bits, other)
        return [(mine, other, bits) for mine, (bits, other) in sorted(best.items())]
