"""Training data: pairs manifests loaded into memory-friendly arrays, cached on disk.

Images become one uint8 ``[N, S, S, 3]`` array; audio one int16 buffer at the model rate
with offsets (clips cut to one window); both are cached one manifest at a time. Captions get
their text-tower embeddings computed once and cached, keyed by the texts and the text model's
hash.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import zipfile
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..models.audio import AudioPreprocessor, resample, to_mono
from ..models.encoder import Encoder

log = logging.getLogger(__name__)
STORE_SIDE = 96


def read_manifest(path: str | os.PathLike) -> list[dict]:
    """Pairs of a JSONL manifest, with media paths made absolute."""
    path = Path(path)
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{n}: not JSON: {exc}") from exc
            media = [m for m in ("image", "audio") if m in row]
            if len(media) != 1 or not isinstance(row.get("text"), str):
                raise ValueError(f"{path}:{n}: a pair needs one of image/audio and a text")
            row["modality"] = media[0]
            row["path"] = str((path.parent / row[media[0]]).resolve())
            row["manifest"] = str(path)
            rows.append(row)
    return rows


def manifest_hash(paths: Sequence[str | os.PathLike]) -> str:
    """sha256 over the manifests' bytes (what a checkpoint records as the data it saw)."""
    h = hashlib.sha256()
    for p in sorted(str(p) for p in paths):
        h.update(Path(p).read_bytes())
    return h.hexdigest()


@dataclass
class PairSet:
    """Pairs of one modality: media arrays, caption index per item, and caption texts."""

    modality: str
    texts: list[str]
    caption: np.ndarray  # [N] index into texts
    images: np.ndarray | None = None  # [N, S, S, 3] uint8
    audio: np.ndarray | None = None  # int16, all clips end to end
    offsets: np.ndarray | None = None  # [N + 1]
    sources: list[str] = field(default_factory=list)
    alt: dict[int, list[int]] = field(default_factory=dict)  # item -> extra caption indexes

    def __len__(self) -> int:
        return len(self.caption)

    def subset(self, keep: np.ndarray) -> "PairSet":
        keep = np.asarray(keep)
        clips = None
        offsets = None
        if self.audio is not None:
            parts = [self.audio[self.offsets[i] : self.offsets[i + 1]] for i in keep]
            offsets = np.concatenate([[0], np.cumsum([len(p) for p in parts])]).astype(np.int64)
            clips = np.concatenate(parts) if parts else np.zeros(0, np.int16)
        remap = {int(old): new for new, old in enumerate(keep)}
        return PairSet(
            self.modality,
            self.texts,
            self.caption[keep],
            self.images[keep] if self.images is not None else None,
            clips,
            offsets,
            [self.sources[i] for i in keep],
            {remap[k]: v for k, v in self.alt.items() if k in remap},
        )


def _load_image(path: str) -> np.ndarray | None:
    from PIL import Image

    from ..models.image import ImageDecodeError, open_image

    try:
        img = open_image(path)
    except ImageDecodeError as exc:
        log.warning("skipping %s: %s", path, exc)
        return None
    if img.size != (STORE_SIDE, STORE_SIDE):
        img = img.resize((STORE_SIDE, STORE_SIDE), Image.BICUBIC)
    return np.asarray(img, dtype=np.uint8)


def _load_clip(path: str, pre: AudioPreprocessor) -> np.ndarray | None:
    import soundfile as sf

    try:
        wave, rate = sf.read(path, dtype="float32", always_2d=True, frames=int(pre.window_seconds * 48000) * 2)
    except Exception as exc:  # noqa: BLE001 - libsndfile raises many types; the clip is skipped and said
        log.warning("skipping %s: %s", path, exc)
        return None
    wave = resample(to_mono(wave), rate, pre.sample_rate)[: int(pre.window_samples * 1.15)]
    if wave.size == 0:
        log.warning("skipping %s: no samples", path)
        return None
    peak = np.abs(wave).max()
    scale = 32767.0 / peak if peak > 1.0 else 32767.0
    return (wave * scale).astype(np.int16)


def load_pairs(
    rows: list[dict], modality: str, cache: Path, pre: AudioPreprocessor | None = None, workers: int = 2
) -> PairSet:
    """Decode the media of ``rows`` (one modality) into a :class:`PairSet`.

    The decoded media are cached on disk one manifest at a time (rows' ``manifest`` field), so
    a run that adds a set to those of an earlier run decodes only the new set."""
    rows = [r for r in rows if r["modality"] == modality]
    texts = sorted({r["text"] for r in rows} | {t for r in rows for t in r.get("alt_texts", [])})
    tindex = {t: i for i, t in enumerate(texts)}
    groups: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        groups.setdefault(r.get("manifest", ""), []).append(i)
    files = [
        _cached_media([rows[i] for i in members], modality, cache, pre, workers, manifest)
        for manifest, members in groups.items()
    ]
    keep, offsets, base = [], [np.zeros(1, np.int64)], 0
    for members, f in zip(groups.values(), files):
        with np.load(f) as data:  # the small arrays of each file, in one opening
            keep.append(np.asarray(members, dtype=np.int64)[data["keep"]])
            if modality == "audio":
                part = data["offsets"]
                offsets.append(part[1:] + base)
                base += int(part[-1])
    keep = np.concatenate(keep) if keep else np.zeros(0, np.int64)
    kept = [rows[i] for i in keep]
    media = _concatenate_from(files, "images" if modality == "image" else "audio")
    return PairSet(
        modality=modality,
        texts=texts,
        caption=np.array([tindex[r["text"]] for r in kept], dtype=np.int64),
        images=media if modality == "image" else None,
        audio=media if modality == "audio" else None,
        offsets=np.concatenate(offsets) if modality == "audio" else None,
        sources=[r.get("source", "") for r in kept],
        alt={i: [tindex[t] for t in r.get("alt_texts", [])] for i, r in enumerate(kept) if r.get("alt_texts")},
    )


def _npz_header(file: Path, key: str) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of one array of an ``.npz`` file, read from its header alone."""
    with zipfile.ZipFile(file) as z, z.open(f"{key}.npy") as f:
        version = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read(f)
    return shape, dtype


def _concatenate_from(files: list[Path], key: str) -> np.ndarray:
    """The ``key`` arrays of ``files`` end to end, filled into one array allocated up front, so
    loading holds at most the result and one file's array (not every part plus their copy)."""
    headers = [_npz_header(f, key) for f in files]
    if not headers:
        return np.zeros(
            (0, STORE_SIDE, STORE_SIDE, 3) if key == "images" else 0, np.uint8 if key == "images" else np.int16
        )
    out = np.empty((sum(shape[0] for shape, _ in headers), *headers[0][0][1:]), headers[0][1])
    start = 0
    for f, (shape, _) in zip(files, headers):
        with np.load(f) as data:
            out[start : start + shape[0]] = data[key]
        start += shape[0]
    return out


def _cached_media(
    rows: list[dict], modality: str, cache: Path, pre: AudioPreprocessor | None, workers: int, label: str
) -> Path:
    """The cache file of the decoded media of ``rows`` (``keep``: the rows that decoded, then
    ``images`` or ``audio`` + ``offsets``), decoded and written first if it is not there."""
    key = hashlib.sha256(json.dumps([[r["path"], r["text"]] for r in rows]).encode() + repr(pre).encode()).hexdigest()[
        :20
    ]
    file = cache / f"{modality}-{key}.npz"
    if file.is_file():
        return file
    log.info(
        "decoding %d %s files of %s (cached in %s for later runs)", len(rows), modality, label or "the data", cache
    )
    loader = (lambda r: _load_image(r["path"])) if modality == "image" else (lambda r: _load_clip(r["path"], pre))
    media, last = [], time.monotonic()
    with ThreadPoolExecutor(workers) as ex:
        for m in ex.map(loader, rows):
            media.append(m)
            if time.monotonic() - last > 30:
                log.info("decoded %d/%d %s files", len(media), len(rows), modality)
                last = time.monotonic()
    keep = np.array([i for i, m in enumerate(media) if m is not None], dtype=np.int64)
    arrays: dict[str, np.ndarray] = {"keep": keep}
    if modality == "image":
        arrays["images"] = (
            np.stack([media[i] for i in keep]) if len(keep) else np.zeros((0, STORE_SIDE, STORE_SIDE, 3), np.uint8)
        )
    else:
        kept = [media[i] for i in keep]
        arrays["offsets"] = np.concatenate([[0], np.cumsum([len(c) for c in kept])]).astype(np.int64)
        arrays["audio"] = np.concatenate(kept) if kept else np.zeros(0, np.int16)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = file.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, file)
    return file


def text_embeddings(encoder: Encoder, texts: Sequence[str], cache: Path) -> np.ndarray:
    """Text-tower embeddings of ``texts``, computed once and cached by (texts, text tower hash)."""
    spec = getattr(encoder, "spec", None)
    model_hash = spec.text_hash() if spec is not None else encoder.weights_hash
    key = hashlib.sha256((model_hash + "\n" + "\n".join(texts)).encode()).hexdigest()[:20]
    file = cache / f"text-{key}.npy"
    if file.is_file():
        return np.load(file)
    log.info("embedding %d captions with the text tower (cached for later runs)", len(texts))
    # Captions are English: the tower alone, as the model will be trained to match it.
    encode = encoder.encode_text if getattr(encoder, "multilingual", None) is None else encoder.encode_text_tower
    vecs = encode(list(texts), batch_size=128)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = file.with_suffix(".tmp.npy")
    np.save(tmp, vecs)
    os.replace(tmp, file)
    return vecs


def unique_caption_batches(caption: np.ndarray, batch_size: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """One epoch of batches in which no caption appears twice (a repeat would be a false
    negative for InfoNCE); items pushed out by a repeat wait for a later batch."""
    pending = list(rng.permutation(len(caption)))
    while pending:
        batch, seen, rest = [], set(), []
        for i in pending:
            if len(batch) < batch_size and caption[i] not in seen:
                batch.append(i)
                seen.add(caption[i])
            else:
                rest.append(i)
        if len(batch) < max(2, batch_size // 4) and rest:
            return  # only a few distinct captions left: end the epoch here
        pending = rest
        yield np.array(batch)
