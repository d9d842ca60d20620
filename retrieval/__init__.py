"""xmr's models and query layer: one vector space for images, audio and text.

Heavy modules (torch, faiss, SQLAlchemy) load only when used, so importing ``retrieval`` stays cheap.
"""

from __future__ import annotations

from typing import Any

from .models.encoder import MODALITIES, Encoder, ModalityError
from .models.registry import UnknownModelError, create_model, list_models, resolve
from .search.query import Hit, QueryError, Weighted

__all__ = [
    "MODALITIES",
    "Encoder",
    "Engine",
    "Hit",
    "ModalityError",
    "QueryError",
    "UnknownModelError",
    "Weighted",
    "create_model",
    "list_models",
    "resolve",
]


def __getattr__(name: str) -> Any:
    if name == "Engine":  # the query layer pulls in SQLAlchemy and the index storage
        from .search.engine import Engine

        return Engine
    raise AttributeError(f"module 'retrieval' has no attribute {name!r}")
