"""Decode workers that may crash or hang without taking the run with them.

Each worker is a plain ``python -m indexer.ingest.workers`` subprocess (not a multiprocessing child:
it never re-imports the caller's ``__main__``, so the library works from a script without an
``if __name__ == "__main__":`` guard) that reads jobs from a pipe and answers each in turn.
The parent keeps at most ``depth`` jobs in flight per worker, so decoded results never pile
up faster than they are taken (the run takes them on a thread, a bounded batch ahead of the
encoder: :mod:`indexer.ingest.ahead`), and watches every worker:

- **Crash** (killed by a signal, the OOM killer, a segfault in a codec): noticed within a
  second through the process sentinel. The job it was decoding is retried once alone in a
  fresh worker; if that crashes too, the file is reported as ``decoder crashed (signal N)``.
  Jobs queued behind it are handed out again.
- **Hang**: a worker that makes no progress for ``timeout`` seconds is killed and its file
  reported as ``decoder made no progress for N s``. Progress is bytes read (``rchar`` of
  ``/proc/PID/io``), so a long file that keeps reading is never cut; where ``/proc`` cannot be
  read, the whole job's time counts.

Results come back in completion order.

What native decoders write to a worker's stderr (libmpg123's ``Note: Illegal Audio-MPEG-Header``,
FFmpeg's warnings) is not the user's business unless asked: it goes to the log at DEBUG level
(``xmr -v`` shows it), never across the terminal's progress bar. A worker that exits by itself
has its last lines of stderr logged as a warning, since they say why.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

from .decode import Decoded, decode

log = logging.getLogger(__name__)
_MAIN_HINT = "; define preprocessors in an importable module (workers never import your script), or use workers=0"
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
POLL_SECONDS = 0.5
STDERR_TAIL = 20  # lines of a worker's stderr kept to explain its exit


@dataclass
class _Worker:
    proc: subprocess.Popen
    send: Connection
    recv: Connection
    inflight: deque = field(default_factory=deque)  # (job, alone) in the order sent
    progress_at: float = field(default_factory=time.monotonic)
    io: int | None = None
    stderr_tail: deque = field(default_factory=lambda: deque(maxlen=STDERR_TAIL))
    drain: threading.Thread | None = None

    def read_io(self) -> int | None:
        try:
            with open(f"/proc/{self.proc.pid}/io", "rb") as f:
                for line in f:
                    if line.startswith(b"rchar:"):
                        return int(line.split()[1])
        except (OSError, ValueError):
            return None
        return None


class DecodePool:
    """``workers`` decode subprocesses, supervised (see the module docstring)."""

    def __init__(self, workers: int, timeout: float = 120.0, depth: int = 2) -> None:
        self.size, self.timeout, self.depth = max(1, workers), timeout, max(1, depth)
        self.workers: list[_Worker] = []
        self.crashes = 0
        self._stopping = False

    def __enter__(self) -> "DecodePool":
        self._stopping = False
        self.workers = [self._start() for _ in range(self.size)]
        return self

    def __exit__(self, *exc: object) -> None:
        for w in self.workers:
            self._stop(w, gently=True)
        self.workers = []

    # --- processes -----------------------------------------------------------------------
    def _start(self) -> _Worker:
        job_r, job_w = os.pipe()
        res_r, res_w = os.pipe()
        env = dict(os.environ)
        env.update({k: "1" for k in THREAD_VARS})  # a worker's log-mel must not spread over the encoder's cores
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        proc = subprocess.Popen(
            [sys.executable, "-m", "indexer.ingest.workers", str(job_r), str(res_w)],
            pass_fds=(job_r, res_w),
            env=env,
            stdin=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=False,
        )
        os.close(job_r)
        os.close(res_w)
        w = _Worker(proc, Connection(job_w, readable=False), Connection(res_r, writable=False))
        w.drain = threading.Thread(target=_drain_stderr, args=(proc, w.stderr_tail), daemon=True)
        w.drain.start()
        return w

    def _stop(self, w: _Worker, gently: bool = False) -> int | None:
        try:
            if gently:
                w.send.send(None)
        except OSError:
            pass
        for conn in (w.send, w.recv):
            conn.close()
        try:
            code = w.proc.wait(timeout=5 if gently else 1)
        except subprocess.TimeoutExpired:
            w.proc.kill()
            code = w.proc.wait()
        if w.drain is not None:
            w.drain.join(timeout=1)  # its stderr read to the end (a grandchild may hold it open: not for long)
        return code

    def _replace(self, w: _Worker) -> _Worker:
        fresh = self._start()
        self.workers[self.workers.index(w)] = fresh
        return fresh

    # --- work ----------------------------------------------------------------------------
    def call(self, fn: Callable, *args: Any) -> Any:
        """Run ``fn(*args)`` in a worker and return its result (for checks and tests)."""
        w = self.workers[0]
        w.send.send((fn, args))
        return w.recv.recv()

    def stop_soon(self) -> None:
        """Make :meth:`map` return at its next step (within ``POLL_SECONDS``), from any thread:
        its caller has stopped taking results (see :mod:`indexer.ingest.ahead`)."""
        self._stopping = True

    def map(self, jobs: Iterable[tuple]) -> Iterator[Decoded]:
        """Decode ``jobs`` (``(key, path, modality, preprocessor)``), yielding every job's
        :class:`Decoded` once, whatever happens to the workers (until :meth:`stop_soon`)."""
        source = iter(jobs)
        queue: deque = deque()  # jobs handed back after a crash, sent before new ones
        retry: deque = deque()  # jobs to decode alone in a fresh worker
        exhausted = False
        while not self._stopping:
            for w in self.workers:
                exhausted = self._feed(w, queue, retry, source, exhausted)
            busy = [w for w in self.workers if w.inflight]
            if not busy:
                if exhausted and not queue and not retry:
                    return
                continue
            # A worker's death closes its end of the result pipe: the pipe becomes ready too.
            ready = wait([w.recv for w in busy], timeout=POLL_SECONDS)
            for w in busy:
                if w.recv in ready or w.recv.poll():
                    try:
                        result = w.recv.recv()
                    except (EOFError, OSError):
                        yield from self._crashed(w, queue, retry)
                        continue
                    (job, _), *_rest = w.inflight
                    w.inflight.popleft()
                    w.progress_at = time.monotonic()
                    if isinstance(result, WorkerFailure):
                        log.warning("%s: %s", job[1], result.reason)
                        result = Decoded(job[0], False, result.reason + _MAIN_HINT)
                    yield result
                elif w.proc.poll() is not None:
                    yield from self._crashed(w, queue, retry)
                else:
                    yield from self._check_progress(w, queue)

    def _feed(self, w: _Worker, queue: deque, retry: deque, source: Iterator, exhausted: bool) -> bool:
        if w.inflight and w.inflight[0][1]:
            return exhausted  # decoding a retried job alone
        if retry and not w.inflight and not any(x.inflight and x.inflight[0][1] for x in self.workers):
            self._send(w, retry.popleft(), alone=True)
            return exhausted
        while len(w.inflight) < self.depth:
            if queue:
                job = queue.popleft()
            elif not exhausted:
                job = next(source, None)
                if job is None:
                    return True
            else:
                return exhausted
            self._send(w, job)
        return exhausted

    def _send(self, w: _Worker, job: tuple, alone: bool = False) -> None:
        if not w.inflight:
            w.progress_at = time.monotonic()
            w.io = w.read_io()
        w.inflight.append((job, alone))
        try:
            w.send.send((decode, (job,)))
        except OSError:
            pass  # the worker is gone: its sentinel says so on the next wait

    def _crashed(self, w: _Worker, queue: deque, retry: deque) -> Iterator[Decoded]:
        code = self._stop(w)
        self._replace(w)
        if not w.inflight:
            return
        (job, alone), *rest = w.inflight
        queue.extendleft(reversed([j for j, _ in rest]))  # sent but never started: hand them out again
        killed = code is not None and code < 0
        how = f"signal {-code}" if killed else f"exit code {code}"
        if alone:
            self.crashes += 1
            log.warning("decoder crashed again (%s) on %s: skipping it", how, job[1])
            # Only a death by a signal (a codec's segfault, the OOM killer) is the file's doing and
            # remembered; a worker that exits by itself could not run at all (its environment).
            reason = f"decoder crashed ({how})" if killed else f"decode worker exited ({how}) while decoding it"
            if not killed and w.stderr_tail:
                log.warning("the decode worker's last words:\n%s", "\n".join(w.stderr_tail))
            yield Decoded(job[0], False, reason, remember=killed)
        else:
            log.warning("a decode worker died (%s) while decoding %s: retrying that file alone", how, job[1])
            retry.append(job)

    def _check_progress(self, w: _Worker, queue: deque) -> Iterator[Decoded]:
        io = w.read_io()
        now = time.monotonic()
        if io is not None and io != w.io:
            w.io, w.progress_at = io, now
            return
        if now - w.progress_at <= self.timeout:
            return
        w.proc.kill()
        self._stop(w)
        (job, _), *rest = w.inflight
        queue.extendleft(reversed([j for j, _ in rest]))
        self._replace(w)
        log.warning("decoder made no progress for %g s on %s: skipping it", self.timeout, job[1])
        yield Decoded(job[0], False, f"decoder made no progress for {self.timeout:g} s", remember=True)


def _drain_stderr(proc: subprocess.Popen, tail: deque) -> None:
    """Log what a worker writes to its stderr, a line at a time, at DEBUG level; keep the last lines."""
    for raw in proc.stderr:
        line = raw.decode("utf-8", "replace").rstrip()
        if line:
            tail.append(line)
            log.debug("decode worker %d: %s", proc.pid, line)
    proc.stderr.close()


def decode_in_process(jobs: Iterable[tuple]) -> Iterator[Decoded]:
    """``--workers 0``: decode here. A decoder that crashes takes the run with it, and one that
    hangs hangs it: only workers survive those."""
    return map(decode, jobs)


@dataclass(frozen=True)
class WorkerFailure:
    """A worker's answer for a job it could not even run (not the file's fault): the job or its
    result would not cross the pipe, say a preprocessor class defined in a script's ``__main__``,
    which workers never import."""

    reason: str


def _serve(job_fd: int, result_fd: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the process group: the parent saves and stops
    jobs, results = Connection(job_fd, writable=False), Connection(result_fd, readable=False)
    while True:
        try:
            message = jobs.recv()
        except (EOFError, OSError):
            return
        except Exception as exc:  # noqa: BLE001 - the job would not unpickle here: say so, go on
            answer: Any = WorkerFailure(f"the job cannot be loaded in a decode worker ({type(exc).__name__}: {exc})")
        else:
            if message is None:
                return
            fn, args = message
            answer = fn(*args)
        try:
            results.send(answer)
        except (BrokenPipeError, EOFError, OSError):
            return  # the parent is gone or stopping: nothing left to answer
        except Exception as exc:  # noqa: BLE001 - the result would not pickle
            results.send(WorkerFailure(f"the decoded result cannot be sent back ({type(exc).__name__}: {exc})"))


if __name__ == "__main__":
    # Run the module's own copy, not this __main__ one, so what it pickles (WorkerFailure) names
    # indexer.ingest.workers, which the parent knows.
    from indexer.ingest.workers import _serve as serve_jobs

    serve_jobs(int(sys.argv[1]), int(sys.argv[2]))
