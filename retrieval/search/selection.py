"""How a search asks FAISS: how many extra hits, and an id filter, shared by whole files
(:mod:`.engine`) and their moments (:mod:`.moments`)."""

from __future__ import annotations

from typing import Any

import numpy as np

OVERFETCH = 16  # extra hits asked of FAISS, for vectors whose row an indexer has not committed yet


def id_selector(ids: np.ndarray) -> Any:
    """A FAISS selector of exactly ``ids`` (copied)."""
    import faiss

    return faiss.IDSelectorBatch(np.ascontiguousarray(ids, dtype=np.int64))
