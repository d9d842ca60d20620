"""The ``xmr`` command line: thin Typer wiring over the ``retrieval`` and ``indexer`` libraries."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

app = typer.Typer(help="xmr: cross-modal retrieval over images, audio and text.", no_args_is_help=True, add_completion=False)


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
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


def main() -> None:
    app()


if __name__ == "__main__":
    main()
