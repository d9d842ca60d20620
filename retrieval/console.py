"""Terminal output and option parsing shared by the ``xmr`` commands: ``cli.py`` and the
``xmr bench`` commands (:mod:`retrieval.bench.commands`).

Library code logs and raises; the commands and this module alone print, and turn errors into
exit codes (README "Exit codes"). Only the commands may import it (tests/test_layers.py).
"""

from __future__ import annotations

import logging
import sys
from typing import NoReturn

import typer


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is now (a progress bar swaps it to print above the bar)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def setup_logging(verbose: bool, quiet: bool = False) -> None:
    """Log to stderr: DEBUG with ``verbose``, only warnings when ``quiet``, else INFO."""
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)


def shown(text: str, stream: object = None) -> str:
    """``text`` as the stream can print it: a file name's undecodable bytes (surrogate escapes)
    as ``\\xNN``, characters the stream's encoding lacks as ``\\uNNNN``."""
    encoding = getattr(stream or sys.stdout, "encoding", None) or "utf-8"
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return text.encode(encoding, "backslashreplace").decode(encoding, "replace")


def say(text: str, err: bool = False) -> None:
    """Print a line on stdout (stderr with ``err``) as the stream can show it (see :func:`shown`)."""
    typer.echo(shown(text, sys.stderr if err else sys.stdout), err=err)


def fail(message: str, code: int = 2) -> NoReturn:
    """Say ``xmr: error: MESSAGE`` on stderr and exit with ``code`` (2: a bad option or argument,
    1: the command could not do its job)."""
    say(f"xmr: error: {message}", err=True)
    raise typer.Exit(code)


def need_train_extra(what: str) -> None:
    """Exit 2 with the install hint unless the ``train`` extra (torch, open_clip) is installed."""
    from retrieval.extras import MissingExtraError, require_extra

    try:
        for module in ("torch", "open_clip"):
            require_extra(module, "train", what)
    except MissingExtraError as exc:
        fail(str(exc))


def memory_bytes(value: str | None) -> int | None:
    """``--max-memory``: a size such as 2G, in bytes (None when not given); exits 2 on a bad one."""
    if value is None:
        return None
    from indexer.storage.autotype import parse_memory

    try:
        return parse_memory(value)
    except ValueError as exc:
        fail(str(exc))
