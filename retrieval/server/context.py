"""The state the routes of one app share, built once by ``create_app`` and handed to each
router: the engine, the token, the thread pools and their bounds, the thumbnail cache."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import anyio

from ..search.engine import Engine
from .files import ThumbnailCache
from .guards import LoginThrottle
from .uploads import UPLOADS_IN_FLIGHT


@dataclass(frozen=True)
class ServerContext:
    """What every router of one app is given (see :func:`build_context`)."""

    engine: Engine
    token: str | None  # None: no token is asked for (the Guard answers only named hosts instead)
    links: str  # how the index followed links: its files are opened by the same rule
    thumbs: ThumbnailCache
    limiter: anyio.CapacityLimiter  # threads for blocking work (encoding, FAISS, SQL): one per core
    heavy_pool: ThreadPoolExecutor  # one thread: uploads' decoding and embedding, and long texts
    upload_slots: anyio.Semaphore  # uploads decoded and embedded at once
    throttle: LoginThrottle

    async def blocking(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)`` off the event loop, on a thread of the pool sized to the cores."""
        return await anyio.to_thread.run_sync(partial(fn, *args, **kwargs), limiter=self.limiter)

    async def heavy(self, fn: Callable[[], Any]) -> Any:
        """``fn()`` on the heavy thread, after the heavy work queued before it."""
        return await asyncio.get_running_loop().run_in_executor(self.heavy_pool, fn)


def build_context(engine: Engine, token: str | None = None, thumbs: ThumbnailCache | None = None) -> ServerContext:
    """The state of one app serving ``engine``: thumbnails in ``thumbs``, or by default under
    ``$XMR_CACHE_DIR`` (``~/.cache/xmr``) in a folder named after the index."""
    cores = max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 2)
    links, cache_name = index_settings(engine)
    if thumbs is None:
        base = Path(os.environ.get("XMR_CACHE_DIR") or Path.home() / ".cache" / "xmr")
        thumbs = ThumbnailCache(base / "thumbs" / cache_name)
    return ServerContext(
        engine=engine,
        token=token,
        links=links,
        thumbs=thumbs,
        limiter=anyio.CapacityLimiter(cores),
        # Uploads' decoding and embedding, and long texts: one at a time on a thread of their own, so
        # they never hold every thread, and their large buffers stay in one thread's malloc arena.
        heavy_pool=ThreadPoolExecutor(1, thread_name_prefix="xmr-heavy"),
        upload_slots=anyio.Semaphore(UPLOADS_IN_FLIGHT),
        throttle=LoginThrottle(),
    )


def index_settings(engine: Engine) -> tuple[str, str]:
    """All the server reads of the index's manifest: how the index followed links (``"inside"``
    unless it was made otherwise) and the name its thumbnails are cached under (its uuid, or
    when it was created)."""
    manifest = engine.manifest
    return manifest.recorded.get("links", "inside"), str(manifest.index_uuid or manifest.created or "index")
