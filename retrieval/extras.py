"""What the optional parts of xmr need, and a clear message when one is missing.

The core install indexes and searches with xmr-mini on ONNX Runtime. The extras add:
``train`` (torch, torchvision, open_clip, matplotlib: ``xmr train``, ``xmr ship``, ``openclip:``
models, models without shipped graphs, plots), ``serve`` (``xmr serve``), ``postgres`` (a
PostgreSQL ``--db``), ``ray`` (Ray Data: ``xmr index --ray``), ``ocr`` (rapidocr-onnxruntime:
text read in pictures), and ``dev`` (train, serve, postgres, ray and ocr, and the test tools).
"""

from __future__ import annotations

import importlib.util
import logging


class MissingExtraError(ImportError):
    """A feature needs a package of an extra that is not installed; the message says which."""


def has_module(module: str) -> bool:
    """Whether ``module`` can be imported (found without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def require_extra(module: str, extra: str, what: str) -> None:
    """Raise :class:`MissingExtraError` unless ``module`` is installed.

    Args:
        module: the import name needed (``torch``).
        extra: the extra that brings it (``train``).
        what: what needs it, for the message (``xmr train``).
    """
    if not has_module(module):
        raise MissingExtraError(
            f"{what} needs {module}, which the core install leaves out: pip install 'xmr[{extra}]' "
            f"(from a clone: pip install '.[{extra}]')"
        )


def pyplot(path: object) -> object | None:
    """matplotlib's pyplot (Agg backend) to draw ``path``; None, with a log line saying what to
    install, where matplotlib is missing (the numbers are written all the same)."""
    if not has_module("matplotlib"):
        logging.getLogger(__name__).warning(
            "plot %s not drawn: matplotlib is in the train extra: pip install 'xmr[train]'", path
        )
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
