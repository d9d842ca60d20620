"""xmr's models and query layer: one vector space for images, audio and text.

Heavy modules (torch, faiss) load only when used, so importing ``retrieval`` stays cheap.
"""

from __future__ import annotations

from .encoder import MODALITIES, Encoder, ModalityError
from .registry import UnknownModelError, create_model, list_models, resolve

__all__ = ["MODALITIES", "Encoder", "ModalityError", "UnknownModelError", "create_model", "list_models", "resolve"]
