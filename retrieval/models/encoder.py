"""The one interface every model offers, whatever runs it (torch or ONNX Runtime).

An :class:`Encoder` turns texts, images and audio into float32 ``[N, D]`` L2-normalised
numpy arrays of one space. Subclasses provide the raw tower forwards; input coercion,
batching, text chunking and audio window averaging live here, once.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .audio import AudioPreprocessor
from .image import ImagePreprocessor

MODALITIES = ("image", "audio", "text")  # what a tower may embed (the indexer keeps its own list: it imports no model)

log = logging.getLogger(__name__)
__all__ = ["MODALITIES", "Encoder", "ModalityError", "l2_normalize"]


class ModalityError(ValueError):
    """Raised when a model is asked for a modality it has no tower for."""


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


@dataclass(frozen=True)
class TextTokenizer:
    """WordPiece tokenizer from a ``tokenizer.json`` (Hugging Face ``tokenizers``), torch-free.

    Text longer than ``max_length`` tokens is cut into chunks of that length; the encoder
    averages the chunks' vectors.
    """

    path: str
    max_length: int = 256

    def _tokenizer(self) -> Any:
        tok = _TOKENIZERS.get(self.path)
        if tok is None:
            from tokenizers import Tokenizer

            tok = Tokenizer.from_file(self.path)
            tok.no_padding()
            tok.no_truncation()
            _TOKENIZERS[self.path] = tok
        return tok

    def chunks(self, texts: Sequence[str]) -> tuple[list[list[int]], list[int]]:
        """Token id chunks (with [CLS]/[SEP]) and, for each chunk, the index of its text."""
        tok = self._tokenizer()
        cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
        body = self.max_length - 2
        out, owner = [], []
        for i, encoding in enumerate(tok.encode_batch(list(texts), add_special_tokens=False)):
            ids = encoding.ids
            for start in range(0, max(len(ids), 1), body):
                out.append([cls_id, *ids[start : start + body], sep_id])
                owner.append(i)
        return out, owner


_TOKENIZERS: dict[str, Any] = {}


def pad_ids(chunks: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad id lists into ``(input_ids, attention_mask)`` int64 arrays."""
    width = max(len(c) for c in chunks)
    ids = np.zeros((len(chunks), width), dtype=np.int64)
    mask = np.zeros((len(chunks), width), dtype=np.int64)
    for row, chunk in enumerate(chunks):
        ids[row, : len(chunk)] = chunk
        mask[row, : len(chunk)] = 1
    return ids, mask


def average_groups(vectors: np.ndarray, owner: Sequence[int], count: int) -> np.ndarray:
    """Mean of the unit vectors that belong to each of ``count`` items, renormalised."""
    vectors = l2_normalize(vectors)
    out = np.zeros((count, vectors.shape[1]), dtype=np.float32)
    np.add.at(out, np.asarray(owner), vectors)
    return l2_normalize(out)


class Encoder:
    """Base of every model: ``encode_text``, ``encode_image``, ``encode_audio``.

    Attributes:
        name: the registry name.
        weights_hash: sha256 that identifies the weights (what an index records).
        embed_dim: D, the width of every vector.
        modalities: the modalities this model has towers for.
        preprocess_image / preprocess_audio: picklable, torch-free preprocessors (or None).
    """

    name: str
    weights_hash: str
    embed_dim: int
    modalities: tuple[str, ...]
    preprocess_image: ImagePreprocessor | None = None
    preprocess_audio: AudioPreprocessor | None = None
    tokenizer: TextTokenizer | None = None
    runtime: str = "base"
    # Text in other languages (retrieval.models.multilingual.MultilingualText), attached by the
    # registry to models whose text tower has a shipped pivot bank; None: every text takes the tower.
    multilingual: Any = None

    def require(self, modality: str) -> None:
        """Raise :class:`ModalityError` unless this model has a tower for ``modality``."""
        if modality not in MODALITIES:
            raise ValueError(f"unknown modality {modality!r}; expected one of {', '.join(MODALITIES)}")
        if modality not in self.modalities:
            raise ModalityError(
                f"model {self.name!r} has no {modality} tower (it encodes: {', '.join(self.modalities)})"
            )

    def warm(self, modalities: Sequence[str]) -> None:
        """Get ready to encode ``modalities`` (load sessions, compile); a no-op by default."""

    # --- text ---------------------------------------------------------------------------
    def encode_text(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Embed texts; long texts are embedded in chunks whose vectors are averaged. Text that
        is not English takes the multilingual path where the model has one (``multilingual``)."""
        self.require("text")
        if isinstance(texts, str):
            raise TypeError("encode_text takes a list of strings, not one string")
        if self.multilingual is None or len(texts) == 0:
            return self.encode_text_tower(texts, batch_size)
        return self.multilingual.encode(
            list(texts), lambda english: self.encode_text_tower(english, batch_size), self.embed_dim
        )

    def encode_text_tower(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Embed texts with the text tower alone, whatever their language."""
        self.require("text")
        if len(texts) == 0:
            return np.zeros((0, self.embed_dim), dtype=np.float32)
        chunks, owner = self.tokenizer.chunks(texts)
        # Sorting by length keeps padding (and so wasted work) small; order is restored below.
        order = sorted(range(len(chunks)), key=lambda i: len(chunks[i]))
        out = np.zeros((len(chunks), self.embed_dim), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            ids, mask = pad_ids([chunks[i] for i in rows])
            out[rows] = self._text_forward(ids, mask)
        return average_groups(out, owner, len(texts))

    # --- image --------------------------------------------------------------------------
    def encode_image(self, images: Sequence[Any] | np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Embed images: a list of PIL images, paths or bytes, or a preprocessed ``[N, 3, S, S]`` array/tensor."""
        self.require("image")
        pixels = _as_array(images)
        if pixels is None:
            pixels = np.stack([self.preprocess_image(img) for img in images]) if len(images) else None
        if pixels is None:
            return np.zeros((0, self.embed_dim), dtype=np.float32)
        parts = [self._image_forward(pixels[i : i + batch_size]) for i in range(0, len(pixels), batch_size)]
        return l2_normalize(np.concatenate(parts))

    # --- audio --------------------------------------------------------------------------
    def encode_audio(self, audios: Sequence[Any] | np.ndarray, batch_size: int = 32) -> np.ndarray:
        """Embed audio: waveforms at the model's rate (a list, or an ``[N, samples]`` array/tensor),
        ``(waveform, rate)`` pairs, paths or file bytes. Windows of long audio are averaged."""
        self.require("audio")
        arr = _as_array(audios)
        rate = self.preprocess_audio.sample_rate
        items = list(arr) if arr is not None else list(audios)
        feats = []
        for item in items:
            if isinstance(item, np.ndarray) or _is_tensor(item):
                item = (np.asarray(item, dtype=np.float32), rate)
            feats.append(self.preprocess_audio(item))
        return self.encode_audio_features(feats, batch_size)

    def encode_audio_features(self, features: Sequence[np.ndarray], batch_size: int = 32) -> np.ndarray:
        """Embed preprocessed audio: one ``[W, n_mels, frames]`` log-mel array per item."""
        self.require("audio")
        if len(features) == 0:
            return np.zeros((0, self.embed_dim), dtype=np.float32)
        windows = np.concatenate(features)
        owner = np.repeat(np.arange(len(features)), [f.shape[0] for f in features])
        parts = [self._audio_forward(windows[i : i + batch_size]) for i in range(0, len(windows), batch_size)]
        return average_groups(np.concatenate(parts), owner, len(features))

    def encode(self, modality: str, items: Sequence[Any]) -> np.ndarray:
        """Dispatch to ``encode_<modality>``."""
        self.require(modality)
        return getattr(self, f"encode_{modality}")(items)

    # --- raw forwards, provided by a runtime -------------------------------------------
    def _text_forward(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _image_forward(self, pixels: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _audio_forward(self, mels: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, dim={self.embed_dim}, modalities={self.modalities})"


def _is_tensor(x: Any) -> bool:
    return type(x).__module__.startswith("torch") and hasattr(x, "detach")


def _as_array(x: Any) -> np.ndarray | None:
    """A numeric batch (numpy array or torch tensor) as float32 numpy; None for a list of items."""
    if _is_tensor(x):
        return x.detach().cpu().float().numpy()
    if isinstance(x, np.ndarray):
        return x.astype(np.float32, copy=False)
    return None


def cache_dir() -> str:
    """Where exported graphs and hashes are cached: ``$XMR_CACHE_DIR`` or ``~/.cache/xmr``."""
    return os.environ.get("XMR_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "xmr")
