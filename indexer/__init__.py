"""xmr's indexer: a media folder into sharded FAISS indexes with SQL metadata.

It takes an encoder as an argument (anything with ``encode_image / encode_audio_features /
encode_text``, ``preprocess_image / preprocess_audio``, ``name``, ``weights_hash`` and
``embed_dim``) and never imports a model class.
"""

from typing import Any

from .storage.errors import OptionError
from .storage.layout import (
    IndexBusyError,
    IndexCorruptError,
    IndexMismatchError,
    IndexNotFoundError,
    Layout,
    MassRemovalError,
    XmrIndexError,
)

__all__ = [
    "IndexBusyError",
    "IndexCorruptError",
    "IndexMismatchError",
    "IndexNotFoundError",
    "IndexOptions",
    "Layout",
    "MassRemovalError",
    "OptionError",
    "Summary",
    "XmrIndexError",
    "index_folder",
]


def __getattr__(name: str) -> Any:
    # The indexing pipeline (multiprocessing, decoders) loads only when asked for: a query
    # process that reads the index storage never pays for it.
    if name in ("IndexOptions", "Summary", "index_folder"):
        from .ingest import build

        return getattr(build, name)
    raise AttributeError(f"module 'indexer' has no attribute {name!r}")
