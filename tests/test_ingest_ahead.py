"""indexer/ingest/ahead.py: decoded files read ahead of the encoder by a thread, bounded by a
count and by bytes; the order kept, errors raised where the caller is, an early stop that ends
the thread and the workers. Then the same through real decode workers."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from indexer.ingest.ahead import read_ahead
from tests.helpers import CountedJobs, write_image


def counted(n: int, log: dict, fail_at: int | None = None):
    try:
        for i in range(n):
            if i == fail_at:
                raise OSError(f"item {i} cannot be read")
            log["made"] = i + 1
            yield i
    finally:
        log["closed"] = True


def test_items_come_in_order_while_a_thread_reads_ahead_up_to_its_count() -> None:
    log: dict = {}
    seen, ahead = [], []
    for item in read_ahead(counted(30, log), lambda: None, lambda _: 1, max_items=5, max_bytes=1 << 30):
        time.sleep(0.02)  # a slow encoder: the thread fills its five places meanwhile
        ahead.append(log["made"] - len(seen) - 1)
        seen.append(item)
    assert seen == list(range(30)) and log["closed"]
    assert max(ahead) == 5 + 1  # five waiting, and the thread holding the next until a place frees


def test_the_byte_budget_holds_back_all_but_one_item() -> None:
    log: dict = {}
    ahead = []
    items = read_ahead(counted(10, log), lambda: None, lambda _: 40, max_items=100, max_bytes=100)
    for n, _ in enumerate(items):
        time.sleep(0.02)
        ahead.append(log["made"] - n - 1)
    assert max(ahead) == 2 + 1  # two of 40 bytes fit in 100; the thread holds a third until one goes
    big: dict = {}
    assert list(read_ahead(counted(3, big), lambda: None, lambda _: 10**9, 100, 100)) == [0, 1, 2]  # one always passes


def test_an_error_comes_after_the_items_before_it() -> None:
    log: dict = {}
    got = []
    with pytest.raises(OSError, match="item 4 cannot be read"):
        for item in read_ahead(counted(10, log, fail_at=4), lambda: None, lambda _: 1, 8, 1 << 30):
            got.append(item)
    assert got == [0, 1, 2, 3] and log["closed"]


def test_stopping_early_ends_the_thread_and_closes_the_source() -> None:
    log: dict = {}
    asked = []
    before = threading.active_count()
    items = read_ahead(counted(1000, log), lambda: asked.append(True), lambda _: 1, 4, 1 << 30)
    assert next(items) == 0
    time.sleep(0.05)
    items.close()
    assert asked == [True] and log["closed"] and log["made"] <= 6
    assert threading.active_count() == before


def test_workers_decode_ahead_of_a_slow_encoder_and_stop_with_it(tmp_path: Path, tiny) -> None:
    """Through real decode workers (``_decode_all``): more files decoded ahead than the pool's
    two slots a worker, never more than ``ahead``; closing the iterator stops the workers."""
    from indexer.ingest import build

    files = [write_image(tmp_path / f"{n}.png", seed=n) for n in range(40)]
    jobs = CountedJobs(files, tiny.preprocess_image)

    ahead, keys = [], []
    for done, result in enumerate(build._decode_all(jobs, 1, 120.0, ahead=8), 1):
        assert result.ok and isinstance(result.features, np.ndarray)
        keys.append(result.key)
        time.sleep(0.05)  # a slow encoder
        ahead.append(jobs.taken - done)
    assert keys == list(range(40))  # one worker: completion order is the files' order
    assert 2 < max(ahead) <= 8 + 2  # beyond the pool's own two, within the read-ahead's eight (+ two in flight)

    before = decode_workers()
    stream = build._decode_all(CountedJobs(files, tiny.preprocess_image), 1, 120.0, ahead=8)
    next(stream)
    started = decode_workers() - before
    assert started
    stream.close()
    assert not decode_workers() & started  # stopped and reaped when the caller closed the stream


def decode_workers() -> set[int]:
    """This process's live decode-worker children (``python -m indexer.ingest.workers``), by /proc."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == os.getpid() and fields[0] != "Z" and b"indexer.ingest.workers" in cmdline:
            found.add(int(stat.parent.name))
    return found


def test_a_second_interrupt_still_waits_for_the_thread() -> None:
    """The indexer's first Ctrl-C asks to stop and later ones raise: the join goes on until the
    thread (which still uses the decode workers) is over, then the interrupt is raised."""
    from indexer.ingest.ahead import _join

    class Interrupted:
        def __init__(self) -> None:
            self.joins = 0

        def is_alive(self) -> bool:
            return self.joins < 3

        def join(self) -> None:
            self.joins += 1
            if self.joins == 1:
                raise KeyboardInterrupt

    thread = Interrupted()
    with pytest.raises(KeyboardInterrupt):
        _join(thread)
    assert thread.joins == 3


def test_only_plain_preprocessors_pass_crops_and_only_crops_are_normalised(tiny) -> None:
    """Decode workers pass uint8 crops only for a preprocessor whose ``process`` is its class's
    plain one; a subclass or a wrapper with its own ``process`` keeps it; ``encode_batch``
    normalises a batch only when told it holds crops."""
    from indexer.ingest.build import encode_batch
    from indexer.ingest.decode import Crops, crops_of
    from retrieval.models.image import ImagePreprocessor
    from retrieval.models.photo import StretchPreprocessor

    assert isinstance(crops_of(ImagePreprocessor(image_size=32)), Crops)
    assert isinstance(crops_of(StretchPreprocessor(image_size=64)), Crops)

    class Grey(ImagePreprocessor):
        def process(self, source):  # noqa: ANN001, ANN201
            pixels, meta = super().process(source)
            return pixels.mean(0, keepdims=True).repeat(3, 0), meta

    class Wrapper:
        def __init__(self, inner: ImagePreprocessor) -> None:
            self.inner = inner

        def process(self, source):  # noqa: ANN001, ANN201
            return self.inner.process(source)

        def __getattr__(self, name: str):  # noqa: ANN204
            return getattr(self.inner, name)

    grey, wrapped = Grey(image_size=32), Wrapper(ImagePreprocessor(image_size=32))
    assert crops_of(grey) is grey and crops_of(wrapped) is wrapped and crops_of(None) is None

    crop = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    want = tiny.encode_image(tiny.preprocess_image.normalize(crop[None]))
    np.testing.assert_allclose(encode_batch(tiny, "image", [crop], crops=True), want, atol=1e-5)

    class Raw:  # a model that takes uint8 pixels as they are
        preprocess_image = None

        def encode_image(self, pixels: np.ndarray) -> np.ndarray:
            return pixels

    assert encode_batch(Raw(), "image", [crop]).dtype == np.uint8  # not normalised unless they are crops
