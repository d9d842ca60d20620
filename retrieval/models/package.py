"""``python -m retrieval.models.package [NAME]``: (re)write a model's packaged ONNX graphs from its
shipped config and weights (above both the registry and the exporter)."""

from __future__ import annotations

from pathlib import Path

from .export import export_packaged
from .packaged import graphs_dir
from .registry import create_model


def package_graphs(name: str = "xmr-mini") -> Path:
    """(Re)write the packaged graphs of a model from its shipped config and weights files. The
    graphs hold no weights, so a ship of new weights leaves them valid; a change of architecture
    needs this (``python -m retrieval.models.package NAME``; ``tests/test_models_light_install.py`` notices)."""
    return export_packaged(create_model(name, device="cpu", runtime="torch"), graphs_dir(name))


if __name__ == "__main__":  # python -m retrieval.models.package [NAME]: package a model's graphs
    import sys

    print(package_graphs(*sys.argv[1:2]))
