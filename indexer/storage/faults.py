"""Crash points for the crash tests: ``XMR_CRASH_AT=NAME[:N]`` kills this process with SIGKILL
the N-th time (default the first) it reaches the point ``NAME``, as a power cut or the OOM
killer would at that moment. Unset (always, outside the tests), a point costs one lookup.

Points: ``index-registered`` (the index's row claimed in the database, the manifest not yet
written), ``shard-written`` (a shard file renamed into place; its SQL rows not yet committed,
other shards of the same checkpoint maybe not yet written), ``shard-merged`` (a shard's next
base written, holding its deltas; the base and deltas it replaces not yet removed),
``vectors-written`` (a checkpoint's vectors flushed, its rows not yet committed; bulk loads
too),
``rows-committed`` (a checkpoint's rows committed), ``rebuild-rows-deleted`` (a rebuild's rows
gone, its shards not yet), ``rebuild-wiped`` (rows and shards gone, the new manifest not yet written), ``retype-built``
(a modality's shards rebuilt as another type under a new prefix, the manifest not yet naming
them), ``retype-switched`` (the manifest names them, the old files not yet removed).
"""

from __future__ import annotations

import os
import signal

_hits: dict[str, int] = {}


def crash_point(name: str) -> None:
    spec = os.environ.get("XMR_CRASH_AT")
    if not spec:
        return
    point, _, nth = spec.partition(":")
    if point != name:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
