"""Shared fixtures: offline, seeded, everything written under pytest's tmp folders."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--slow", action="store_true", help="run the long versions of the slow tests")


@pytest.fixture(scope="session", autouse=True)
def _cache_dir(tmp_path_factory: pytest.TempPathFactory) -> None:
    os.environ["XMR_CACHE_DIR"] = str(tmp_path_factory.mktemp("xmr-cache"))


@pytest.fixture(scope="session")
def tiny():
    """The tiny all-modality model (torch runtime)."""
    from retrieval import create_model

    return create_model("xmr-tiny", device="cpu")


def sine(freq: float, seconds: float, rate: int, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)
