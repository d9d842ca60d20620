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


def _postgres_admin():
    """A connection to the local PostgreSQL server (Unix socket, current user), or the reason why not."""
    try:
        import psycopg
    except ImportError:
        return None, "psycopg is not installed (pip install -e '.[dev]')"
    try:
        return psycopg.connect(dbname="postgres", autocommit=True, connect_timeout=3), ""
    except Exception as exc:  # noqa: BLE001 - any failure means: no server to test against here
        return None, f"no PostgreSQL server answers on the default socket ({str(exc).splitlines()[0]})"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path) -> str:
    """The same storage tests against SQLite and a real PostgreSQL server (a fresh database each).

    Without a server the PostgreSQL case skips, saying why; under CI (CI=true) it must run.
    """
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'items.db'}"
        return
    admin, reason = _postgres_admin()
    if admin is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but PostgreSQL is unavailable: {reason}")
        pytest.skip(reason)
    name = f"xmr_test_{os.getpid()}_{abs(hash(str(tmp_path))) % 10**8}"
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg:///{name}"
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
