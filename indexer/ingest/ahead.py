"""Decoded files read ahead of the encoder, so decode workers work while a batch is embedded.

Without it the run took the workers' results only between batches: a worker decoded at most
``depth`` files ahead (two), then waited with its answer in the pipe while the encoder ran, and
the encoder waited in turn for the next batch to be decoded. Measured with xmr-mini-photo on
1,000 pictures, the run spent 0.9 s of 10.6 s waiting for decoded pictures, with xmr-mini-real
on 363 sound files 1.9 s of 12.4 s (``cProfile`` of ``indexer.index_folder``).

:func:`read_ahead` runs the decoding iterator on a thread that keeps up to ``max_items``
results (and ``max_bytes`` of them) ready; the caller alone handles what it receives, so the
index, the store and the encoder stay on the caller's thread. A result that carries a long
file's moments (scratch files on disk) counts as the whole byte budget: one such file at a time
waits ahead.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")


def read_ahead(
    source: Iterator[T],
    stop_soon: Callable[[], None],
    cost: Callable[[T], int],
    max_items: int,
    max_bytes: int,
) -> Iterator[T]:
    """``source``'s items, in its order, taken from a thread that reads ahead: at most
    ``max_items`` waiting, and no more once their ``cost`` reaches ``max_bytes`` (one item is
    always let through). An error of ``source`` is raised here, where the caller is. When the
    caller stops early (``close``), ``stop_soon`` is called so that ``source`` returns at its
    next step; the thread closes ``source`` itself and is waited for."""
    ready: deque = deque()
    held = [0]  # the cost of the items waiting
    state: dict[str, Any] = {"done": False, "error": None, "stop": False}
    changed = threading.Condition()

    def run() -> None:
        try:
            for item in source:
                if state["stop"]:
                    break
                price = cost(item)
                with changed:
                    while ready and not state["stop"] and (len(ready) >= max_items or held[0] + price > max_bytes):
                        changed.wait()
                    if state["stop"]:
                        break
                    ready.append((item, price))
                    held[0] += price
                    changed.notify_all()
        except BaseException as exc:  # noqa: BLE001 - raised again on the caller's thread
            state["error"] = exc
        finally:
            try:
                close = getattr(source, "close", None)
                if close is not None:
                    close()  # on this thread: the iterator's own clean-up runs here
            except BaseException as exc:  # noqa: BLE001 - the caller hears of it
                state["error"] = state["error"] or exc
            finally:
                with changed:
                    state["done"] = True
                    changed.notify_all()

    thread = threading.Thread(target=run, name="decode-ahead", daemon=True)
    thread.start()
    try:
        while True:
            with changed:
                while not ready and not state["done"]:
                    changed.wait()
                if ready:
                    item, price = ready.popleft()
                    held[0] -= price
                    changed.notify_all()
                elif state["error"] is not None:
                    raise state["error"]
                else:
                    return
            yield item
    finally:
        with changed:
            state["stop"] = True
            changed.notify_all()
        stop_soon()
        _join(thread)


def _join(thread: threading.Thread) -> None:
    """Wait for ``thread`` even through a second Ctrl-C (the indexer's first one only asks to
    stop; later ones raise): the thread still uses the decode workers, which the caller stops
    right after, so it must be over first. The interrupt is raised again once it is."""
    interrupted = None
    while thread.is_alive():
        try:
            thread.join()
        except KeyboardInterrupt as exc:
            interrupted = exc
    if interrupted is not None:
        raise interrupted
