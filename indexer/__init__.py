"""xmr's indexer: a media folder into sharded FAISS indexes with SQL metadata.

It takes an encoder as an argument (anything with ``encode_image / encode_audio_features /
encode_text``, ``preprocess_image / preprocess_audio``, ``name``, ``weights_hash`` and
``embed_dim``) and never imports a model class.
"""

from .build import IndexOptions, Summary, index_folder
from .layout import IndexBusyError, IndexCorruptError, IndexMismatchError, IndexNotFoundError, Layout, XmrIndexError

__all__ = [
    "IndexBusyError", "IndexCorruptError", "IndexMismatchError", "IndexNotFoundError", "IndexOptions", "Layout",
    "Summary", "XmrIndexError", "index_folder",
]
