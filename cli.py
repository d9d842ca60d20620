"""The ``xmr`` command line: thin Typer wiring over the ``retrieval`` and ``indexer`` libraries."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

class _progress:
    """A rich progress bar on a terminal, else a plain log line every 10 s; yields a callback."""

    def __init__(self, label: str, unit: str) -> None:
        self.label, self.unit = label, unit
        self.bar = None
        self.last = 0.0

    def __enter__(self):  # noqa: ANN204
        if sys.stderr.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn(f"[bold]{self.label}"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("{task.fields[rate]}"), TimeRemainingColumn(), transient=True)
            self.bar.start()
            self.task = self.bar.add_task(self.label, total=None, rate="")
        self.started = time.monotonic()
        return self.update

    def update(self, done: int, total: int) -> None:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = f"{done / elapsed:.1f} {self.unit}/s"
        if self.bar is not None:
            self.bar.update(self.task, completed=done, total=total, rate=rate)
        elif total and (time.monotonic() - self.last > 10 or done == total) and done:
            self.last = time.monotonic()
            logging.getLogger("xmr").info("%s: %d/%d %s (%s)", self.label, done, total, self.unit, rate)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()


app = typer.Typer(help="xmr: cross-modal retrieval over images, audio and text.", no_args_is_help=True, add_completion=False)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is now (a progress bar swaps it to print above the bar)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def _setup_logging(verbose: bool, quiet: bool = False) -> None:
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _fail(message: str, code: int = 2) -> None:
    typer.echo(f"xmr: error: {message}", err=True)
    raise typer.Exit(code)


@app.command()
def models(
    openclip: Annotated[bool, typer.Option(help="Also list open_clip's pretrained tags (imports open_clip).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list.")] = False,
) -> None:
    """List the model names `--model` accepts."""
    from retrieval import list_models

    names = list_models(openclip=openclip)
    typer.echo(json.dumps(names) if as_json else "\n".join(names))


@app.command()
def train(
    data: Annotated[list[Path], typer.Option("--data", help="Pairs manifest (JSONL) to train on; repeatable.")],
    out: Annotated[Path, typer.Option("--out", help="Output folder: checkpoints (last/, best/), log.jsonl, curves.png.")],
    modality: Annotated[list[str], typer.Option("--modality", help="Tower to train: image and/or audio; repeatable.")] = ["image", "audio"],  # noqa: B006
    val: Annotated[list[Path], typer.Option("--val", help="Validation manifest; repeatable. Recall@k every epoch picks best/.")] = [],  # noqa: B006
    model: Annotated[str, typer.Option("--model", help="Model config to train (see `xmr models`).")] = "xmr-mini",
    into: Annotated[Optional[str], typer.Option("--into", help="Bind into an open_clip model's text space, e.g. openclip:ViT-B-32/laion2b_s34b_b79k.")] = None,
    epochs: Annotated[int, typer.Option(min=1, help="Epoch budget (sets the learning-rate schedule).")] = 10,
    minutes: Annotated[Optional[float], typer.Option(min=0.1, help="Stop after this many minutes (resume later with --resume).")] = None,
    batch_size: Annotated[int, typer.Option(min=2, help="Image-text batch size.")] = 256,
    audio_batch_size: Annotated[int, typer.Option(min=2, help="Audio-text batch size.")] = 128,
    lr: Annotated[float, typer.Option(help="Peak learning rate (AdamW).")] = 2e-3,
    seed: Annotated[int, typer.Option(help="Seed of data order, augmentation and dropout.")] = 0,
    threads: Annotated[Optional[int], typer.Option(min=1, help="Torch CPU threads.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from OUT/last exactly where it stopped.")] = False,
    verbose: Annotated[bool, typer.Option("-v", "--verbose")] = False,
) -> None:
    """Train towers into the frozen text space with symmetric InfoNCE."""
    _setup_logging(verbose)
    from retrieval.train import TrainConfig, Trainer

    for path in [*data, *val]:
        if not path.is_file():
            _fail(f"manifest not found: {path}")
    if (out / "last").exists() and not resume:
        _fail(f"{out} already holds a run: pass --resume to continue it, or choose another --out")
    if into and not into.startswith("openclip:"):
        _fail("--into takes an open_clip model name, openclip:ARCH/TAG")
    cfg = TrainConfig(
        data=[str(p.resolve()) for p in data], out=str(out), model=model, val=[str(p.resolve()) for p in val],
        modalities=list(modality), epochs=epochs, minutes=minutes, batch_size=batch_size,
        audio_batch_size=audio_batch_size, lr=lr, seed=seed, threads=threads, into=into,
    )
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("[bold]train"), BarColumn(), TextColumn("{task.completed}/{task.total} steps"),
                  TextColumn("{task.fields[info]}"), TimeRemainingColumn(), transient=False, disable=not sys.stderr.isatty()) as bar:
        try:
            trainer = Trainer(cfg, on_progress=lambda p: bar.update(task, completed=p.step, info=f"epoch {p.epoch} loss {p.loss:.3f} {p.samples_per_s:.0f}/s"))
        except (ValueError, FileNotFoundError) as exc:
            _fail(str(exc))
        task = bar.add_task("train", total=trainer.total_steps, info="")
        if resume and not trainer.resume():
            typer.echo(f"no checkpoint in {out}/last: starting a new run", err=True)
        result = trainer.run()
    typer.echo(json.dumps(result))


@app.command()
def index(
    folder: Annotated[Path, typer.Argument(help="The media folder to index (recursively).")],
    index_dir: Annotated[Optional[Path], typer.Option("--index", help="Index folder (default: FOLDER/.xmr).")] = None,
    model: Annotated[Optional[str], typer.Option("--model", help="Model (see `xmr models`); default: the index's model, else xmr-mini.")] = None,
    db: Annotated[Optional[str], typer.Option("--db", help="SQLAlchemy URL of the metadata database (default: SQLite in the index folder).")] = None,
    exclude: Annotated[list[str], typer.Option("--exclude", help="Glob of paths to leave out (relative to FOLDER, * crosses /); repeatable.")] = [],  # noqa: B006
    texts: Annotated[list[Path], typer.Option("--texts", help="File of texts to index as text items (one per line, or JSONL with 'text'); repeatable.")] = [],  # noqa: B006
    rebuild: Annotated[bool, typer.Option("--rebuild", help="Drop every stored vector and re-embed everything (e.g. with a new model).")] = False,
    workers: Annotated[Optional[int], typer.Option(min=0, help="Decode worker processes (default: cores - 1; 0 decodes in this process).")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Items per encoder batch.")] = 64,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    shard_size: Annotated[int, typer.Option(min=1, help="Most vectors in one FAISS shard (a new index only).")] = 250_000,
    index_type: Annotated[str, typer.Option(help="FAISS factory string, e.g. Flat, HNSW32, IVF1024,SQ8 (a new index only).")] = "Flat",
    wait: Annotated[float, typer.Option(min=0, help="Seconds to wait for another indexer on the same index.")] = 0.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON summary at the end.")] = False,
    verbose: Annotated[bool, typer.Option("-v", "--verbose")] = False,
) -> None:
    """Index a media folder (images, audio, text); run again to bring the index up to date."""
    _setup_logging(verbose, quiet=as_json)
    import indexer
    from indexer.build import resolve_model_name

    if not folder.is_dir():
        _fail(f"not a folder: {folder}")
    for path in texts:
        if not path.is_file():
            _fail(f"texts file not found: {path}")
    if device not in ("auto", "cpu", "cuda"):
        _fail(f"--device must be auto, cpu or cuda, not {device!r}")
    options = indexer.IndexOptions(
        index_dir=str(index_dir) if index_dir else None, db_url=db, exclude=list(exclude), texts=[str(p) for p in texts],
        batch_size=batch_size, workers=workers, shard_size=shard_size, index_type=index_type, rebuild=rebuild, wait=wait,
    )
    try:
        name = resolve_model_name(folder, options, model)
        encoder = _create_model(name, device)
        with _progress("index", "items") as progress:
            summary = indexer.index_folder(folder, encoder, options, progress=progress)
    except (indexer.XmrIndexError, ValueError, FileNotFoundError, RuntimeError) as exc:
        _fail(str(exc), code=1)
    if as_json:
        typer.echo(json.dumps(summary.to_dict(), ensure_ascii=True))
    else:
        _print_summary(summary)


def _create_model(name: str, device: str):
    from retrieval import create_model

    return create_model(name, device=None if device == "auto" else device)


def _print_summary(summary) -> None:  # noqa: ANN001 - indexer.Summary, imported lazily
    counts = ", ".join(f"{n} {m}" for m, n in sorted(summary.counts.items())) or "empty"
    state = "interrupted, progress saved" if summary.interrupted else "done"
    typer.echo(
        f"{state} in {summary.seconds:.1f}s: {summary.added} added, {summary.updated} updated, {summary.moved} moved, "
        f"{summary.removed} removed, {summary.unchanged} unchanged, {len(summary.skipped)} skipped{' (listed above; --json lists them too)' if summary.skipped else ''}; index holds {counts} "
        f"({summary.index})"
    )


def main() -> None:
    app()


if __name__ == "__main__":
    main()
