"""xmr's models and query layer: one vector space for images, audio and text.

Every name here loads its module on first use (numpy with the models, SQLAlchemy and faiss with
the ``Engine``), so importing ``retrieval`` or one of its light modules stays cheap: the ``xmr``
command loads ``retrieval.console`` and the ``xmr bench`` commands on every start, ``--help`` too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .models.encoder import MODALITIES, Encoder, ModalityError
    from .models.registry import UnknownModelError, create_model, list_models, resolve
    from .search.engine import Engine
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
    if name in ("MODALITIES", "Encoder", "ModalityError"):
        from .models import encoder as home
    elif name in ("UnknownModelError", "create_model", "list_models", "resolve"):
        from .models import registry as home
    elif name in ("Hit", "QueryError", "Weighted"):
        from .search import query as home
    elif name == "Engine":
        from .search import engine as home
    else:
        raise AttributeError(f"module 'retrieval' has no attribute {name!r}")
    return getattr(home, name)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
