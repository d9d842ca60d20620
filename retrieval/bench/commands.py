"""The ``xmr bench`` commands: a Typer app that ``cli.py`` mounts as ``xmr bench``. Each command
reads its options, runs one measurement of this package and prints its table or JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from retrieval.console import fail, memory_bytes, need_train_extra, say, setup_logging

bench_app = typer.Typer(
    help="Benchmarks: recall@k on real data, search, embedding and training speed.", no_args_is_help=True
)


def _int_list(value: str, name: str) -> list[int]:
    """Comma-separated positive whole numbers (``10000,1e5``); exits 2 on anything else."""
    try:
        out = [int(float(v)) for v in value.split(",") if v.strip()]
    except ValueError:
        fail(f"{name} takes comma-separated whole numbers, e.g. 10000,100000, not {value!r}")
    if not out or min(out) <= 0:
        fail(f"{name} needs at least one positive number")
    return out


@bench_app.command("speed")
def bench_speed(
    sizes: Annotated[str, typer.Option(help="Collection sizes, comma-separated.")] = "10000,100000,1000000",
    index_types: Annotated[
        Optional[str],
        typer.Option(
            "--index-types",
            help="FAISS factory strings, comma-separated (default: Flat at every size, "
            "HNSW32/IVF1024,Flat/SQ8/Flat-fp16 at 100k).",
        ),
    ] = None,
    batches: Annotated[str, typer.Option(help="Query batch sizes.")] = "1,64",
    model: Annotated[
        str, typer.Option(help="Model whose index the cold query opens (its size sets the dimension).")
    ] = "xmr-mini",
    cold_runs: Annotated[int, typer.Option(min=0, help="Cold CLI queries to time (0: skip).")] = 5,
    cache: Annotated[
        Optional[str],
        typer.Option(
            help="Where built indexes are kept between runs (default: $XMR_CACHE_DIR/bench, ~/.cache/xmr/bench); "
            "the run ends saying how much they take."
        ),
    ] = None,
    keep: Annotated[
        bool,
        typer.Option("--keep/--no-keep", help="Keep the built indexes for the next run, or remove them at the end."),
    ] = True,
    out: Annotated[Path, typer.Option(help="Folder for JSON, Markdown and PNG results.")] = Path("xmr-results"),
    as_json: Annotated[bool, typer.Option("--json", help="Print the results object as JSON.")] = False,
    verbose: Annotated[bool, typer.Option("-v", "--verbose")] = False,
) -> None:
    """Search latency and QPS of the Engine against a numpy top-k, at several sizes and index types."""
    setup_logging(verbose, quiet=as_json)
    from retrieval.bench.speed import SpeedConfig, run_speed

    cfg = SpeedConfig(
        sizes=_int_list(sizes, "--sizes"),
        batches=_int_list(batches, "--batches"),
        cold_runs=cold_runs,
        cache=cache,
        model=model,
        index_types=_split_factories(index_types),
        keep=keep,
    )
    result = run_speed(cfg, out_dir=str(out))
    if as_json:
        typer.echo(json.dumps(result))
    else:
        typer.echo(Path(result["files"]["md"]).read_text())
        cache_used = result["cache"]
        if cache_used["kept"]:
            say(
                f"the benchmark's {len(cache_used['folders'])} indexes take {cache_used['bytes'] / 1e6:,.1f} MB "
                f"under {cache_used['path']}, kept for the next run; remove them with "
                f"rm -rf {cache_used['path']}/*-c (or run with --no-keep)"
            )
        else:
            say(f"the benchmark's indexes were removed from {cache_used['path']} (--no-keep)")


@bench_app.command("recall")
def bench_recall(
    manifests: Annotated[
        list[Path], typer.Argument(help="Pairs manifests (JSONL), Karpathy JSON or AudioCaps/Clotho CSV.")
    ],
    model: Annotated[str, typer.Option(help="Any registered model (see `xmr models`).")] = "xmr-mini",
    via_index: Annotated[
        bool, typer.Option("--via-index", help="Build a real index and score through Engine searches.")
    ] = False,
    split: Annotated[str, typer.Option(help="Split of a Karpathy JSON.")] = "test",
    media_dir: Annotated[
        Optional[Path], typer.Option(help="Folder of the media files (default: the manifest's folder).")
    ] = None,
    out: Annotated[Path, typer.Option(help="Folder for JSON, Markdown and PNG results.")] = Path("xmr-results"),
    as_json: Annotated[
        bool, typer.Option("--json", help="Print an object keyed by direction (one manifest) or by manifest.")
    ] = False,
    verbose: Annotated[bool, typer.Option("-v", "--verbose")] = False,
) -> None:
    """Recall@1/5/10, median and mean rank per direction, with chance level."""
    setup_logging(verbose, quiet=as_json)
    from retrieval.bench.recall import missing_manifest_hint, run_recall

    for path in manifests:
        if not path.is_file():
            fail(f"not found: {path}; {missing_manifest_hint(path)}")
    try:
        result = run_recall(
            [str(p) for p in manifests],
            model,
            via_index=via_index,
            split=split,
            media_dir=str(media_dir) if media_dir else None,
            out_dir=str(out),
        )
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        fail(str(exc), code=1)
    if as_json:
        sets = result["sets"]
        typer.echo(json.dumps(next(iter(sets.values())) if len(sets) == 1 else sets))
    else:
        typer.echo(Path(result["files"]["md"]).read_text())


@bench_app.command("multilingual")
def bench_multilingual(
    manifests: Annotated[
        list[Path], typer.Argument(help="Emoji test manifests (JSONL; pictures named <codepoints>.png).")
    ],
    cldr: Annotated[
        list[Path],
        typer.Option(
            help="CLDR annotation packages, npm .tgz or unpacked (cldr-annotations-full and "
            "cldr-annotations-derived-full 48.2); give the option once for each."
        ),
    ],
    locales: Annotated[
        Optional[str],
        typer.Option(help="Languages, comma-separated CLDR locale codes (default: 14, de,fr,...,ja,zh,ko)."),
    ] = None,
    model: Annotated[str, typer.Option(help="A model with a multilingual route (see `xmr models`).")] = "xmr-mini",
    cache: Annotated[
        Optional[Path], typer.Option(help="Folder kept between runs: e5 vectors, unpacked packages.")
    ] = None,
    english: Annotated[
        Optional[list[Path]],
        typer.Option(help="Test manifests (any set) on which English R@10 today and now are compared; repeatable."),
    ] = None,
    map_emoji: Annotated[
        int, typer.Option(min=1, help="Emoji (of no test split) whose names train the measured map, at most.")
    ] = 100_000,
    cold_runs: Annotated[int, typer.Option(min=0, help="Cold `xmr search` runs per query (0: no query times).")] = 3,
    sentences: Annotated[
        Optional[list[Path]],
        typer.Option(help="Tux Paint manifests whose stamps are queried by their translated descriptions; repeatable."),
    ] = None,
    stamps: Annotated[
        Optional[Path], typer.Option(help="Tux Paint's stamps folder (usr/share/tuxpaint/stamps), for --sentences.")
    ] = None,
    out: Annotated[Path, typer.Option(help="Folder for JSON and Markdown results.")] = Path("xmr-results"),
    as_json: Annotated[bool, typer.Option("--json")] = False,
    verbose: Annotated[bool, typer.Option("-v", "--verbose")] = False,
) -> None:
    """Text->image R@10 per language beside English on the same emoji drawings (and, with
    --sentences, stamps queried by sentences), for each route into the English tower's space;
    text->text across languages; cold and warm query time."""
    setup_logging(verbose, quiet=as_json)
    from retrieval.bench.multilingual import LOCALES, MultilingualConfig, run_multilingual

    for path in [*manifests, *cldr, *(english or []), *(sentences or []), *([stamps] if stamps else [])]:
        if not path.exists():
            fail(f"not found: {path}")
    if sentences and not stamps:
        fail("--sentences needs --stamps (the folder their translations are read from)")
    if stamps and not sentences:
        fail("--stamps is read only for --sentences: name the Tux Paint manifests to query too")
    if stamps and not stamps.is_dir():
        fail(f"--stamps must be Tux Paint's stamps folder (usr/share/tuxpaint/stamps), not a file: {stamps}")
    cfg = MultilingualConfig(
        manifests=[str(p) for p in manifests],
        cldr=[str(p) for p in cldr],
        locales=tuple(x.strip() for x in locales.split(",") if x.strip()) if locales else LOCALES,
        model=model,
        cache=str(cache) if cache else None,
        english=[str(p) for p in english or []],
        map_emoji=map_emoji,
        cold_runs=cold_runs,
        sentences=[str(p) for p in sentences or []],
        stamps=str(stamps) if stamps else None,
    )
    try:
        result = run_multilingual(cfg, out_dir=str(out))
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        fail(str(exc), code=1)
    typer.echo(json.dumps(result) if as_json else Path(result["files"]["md"]).read_text())


@bench_app.command("index")
def bench_index(
    folder: Annotated[Path, typer.Argument(help="A media folder (read only; the index goes to a temporary folder).")],
    model: Annotated[str, typer.Option(help="Model to index with.")] = "xmr-mini",
    batch_size: Annotated[int, typer.Option(min=1)] = 64,
    workers: Annotated[Optional[int], typer.Option(min=0, help="Decode workers (default as `xmr index`).")] = None,
    repeat: Annotated[int, typer.Option(min=1, help="Runs of each measurement; medians are reported.")] = 3,
    ray: Annotated[
        bool, typer.Option("--ray", help="Against a local Ray cluster of --nodes one-CPU nodes (xmr[ray]).")
    ] = False,
    nodes: Annotated[int, typer.Option(min=1, help="Nodes of the local Ray cluster (--ray).")] = 2,
    out: Annotated[Path, typer.Option(help="Folder for JSON and Markdown results.")] = Path("xmr-results"),
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Indexing throughput end to end against the encoder alone (encoder-busy ratio); with
    --ray, through a local Ray cluster against the local path."""
    setup_logging(False, quiet=True)
    from retrieval.bench.indexing import run_indexing

    if not folder.is_dir():
        fail(f"not a folder: {folder}")
    if ray:
        from retrieval.bench.ray_index import run_ray_indexing
        from retrieval.extras import require_extra

        require_extra("ray", "ray", "xmr bench index --ray")
        result = run_ray_indexing(str(folder), model, nodes=nodes, repeat=repeat, out_dir=str(out))
        typer.echo(json.dumps(result) if as_json else Path(result["files"]["md"]).read_text())
        return
    result = run_indexing(folder, model, batch_size=batch_size, workers=workers, out_dir=str(out), repeat=repeat)
    typer.echo(json.dumps(result) if as_json else Path(result["files"]["md"]).read_text())


@bench_app.command("moments")
def bench_moments(
    manifests: Annotated[
        Optional[list[Path]], typer.Argument(help="Captioned audio manifests (test splits) to hide clips from.")
    ] = None,
    model: Annotated[str, typer.Option(help="Model to index with.")] = "xmr-mini",
    files: Annotated[int, typer.Option(min=1, help="Long recordings to make.")] = 10,
    clips: Annotated[int, typer.Option(min=1, help="Clips in each recording.")] = 20,
    seed: Annotated[int, typer.Option(help="Seed of the clips chosen and the gaps between them.")] = 0,
    hour: Annotated[bool, typer.Option("--hour/--no-hour", help="Also time indexing a one-hour recording.")] = True,
    images: Annotated[
        Optional[list[Path]],
        typer.Option("--images", help="Captioned image manifest (test split) to make videos from; repeatable."),
    ] = None,
    video_files: Annotated[int, typer.Option(min=1, help="Videos to make.")] = 5,
    pictures: Annotated[int, typer.Option(min=1, help="Pictures in each video (captions spoken over them).")] = 20,
    video_minutes: Annotated[
        float, typer.Option(min=0, help="Length of the 720p video timed alone, minutes (0: not timed).")
    ] = 10.0,
    out: Annotated[Path, typer.Option(help="Folder for JSON and Markdown results.")] = Path("xmr-results"),
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Find the moment: clips hidden in long recordings, and pictures with spoken captions in
    videos (--images), searched by their captions."""
    setup_logging(False, quiet=True)
    from retrieval.bench.moments import run_moments

    try:
        result = run_moments(
            [str(m) for m in manifests or []],
            model,
            files,
            clips,
            seed,
            hour,
            out_dir=str(out),
            images=[str(m) for m in images or []],
            video_files=video_files,
            pictures=pictures,
            video_minutes=video_minutes,
        )
    except (ValueError, FileNotFoundError) as exc:
        fail(str(exc), code=1)
    typer.echo(json.dumps(result) if as_json else Path(result["files"]["md"]).read_text())


@bench_app.command("speech")
def bench_speech(
    model: Annotated[str, typer.Option(help="Model to index with.")] = "xmr-mini",
    files: Annotated[int, typer.Option(min=1, help="Long recordings a set.")] = 4,
    clips: Annotated[int, typer.Option(min=1, help="Clips in each recording.")] = 12,
    seed: Annotated[int, typer.Option(help="Seed of the clips, queries and gaps.")] = 0,
    asterisk: Annotated[
        Optional[Path], typer.Option(help="The Asterisk prompts' folder (default: Debian's en_US_f_Allison).")
    ] = None,
    wer_prompts: Annotated[int, typer.Option(min=0, help="Asterisk prompts the word error rate is measured on.")] = 120,
    quiet_minutes: Annotated[
        float, typer.Option(min=0.1, help="Minutes of music, and of silence, transcription is timed on.")
    ] = 10.0,
    out: Annotated[Path, typer.Option(help="Folder for JSON and Markdown results.")] = Path("xmr-results"),
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """What was said, found: speech hidden in long recordings, searched by a few of its words, with
    transcripts and with the audio tower alone; word error rate; transcription speed."""
    setup_logging(False, quiet=True)
    from retrieval.bench.speech import run_speech

    try:
        result = run_speech(
            str(out), model, files, clips, seed, str(asterisk) if asterisk else None, wer_prompts, quiet_minutes
        )
    except (ValueError, FileNotFoundError) as exc:
        fail(str(exc), code=1)
    typer.echo(json.dumps(result) if as_json else Path(result["files"]["md"]).read_text())


@bench_app.command("ocr")
def bench_ocr(
    model: Annotated[str, typer.Option(help="Model to index with.")] = "xmr-mini",
    pictures: Annotated[
        int, typer.Option(min=1, help="Pictures of each kind (signs, pages, screens), and photos.")
    ] = 40,
    photos: Annotated[
        Optional[Path], typer.Option(help="A folder of photos for the signs and the pictures without text.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the phrases and pictures.")] = 0,
    out: Annotated[Path, typer.Option(help="Folder for JSON and Markdown results.")] = Path("xmr-results"),
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Text in pictures, found: phrases drawn into signs, pages and screens among photos, searched
    by the phrase and by a part of it, with text read and with the image tower alone; speed."""
    setup_logging(False, quiet=True)
    from retrieval.bench.ocr import run_ocr
    from retrieval.models.ocr import OcrUnavailable

    try:
        result = run_ocr(str(out), model, pictures, str(photos) if photos else None, seed)
    except OcrUnavailable as exc:
        fail(str(exc))
    typer.echo(json.dumps(result) if as_json else Path(result["files"]["md"]).read_text())


@bench_app.command("duplicates")
def bench_duplicates(
    model: Annotated[str, typer.Option(help="Model to index with.")] = "xmr-mini",
    originals: Annotated[int, typer.Option(min=1, help="Photos copied ten ways each.")] = 40,
    others: Annotated[int, typer.Option(min=0, help="Other photos of the same kinds of scene, not copied.")] = 80,
    photos: Annotated[
        Optional[Path], typer.Option(help="A folder of photos (default: photo-like pictures drawn here).")
    ] = None,
    audio: Annotated[int, typer.Option(min=0, help="Melodies copied four ways (and as many others; 0: none).")] = 12,
    videos: Annotated[int, typer.Option(min=0, help="Clips copied two ways (and as many others; 0: none).")] = 6,
    scale: Annotated[
        int, typer.Option(min=0, help="Synthetic image vectors to time finding copies in (0: none).")
    ] = 100_000,
    seed: Annotated[int, typer.Option(help="Seed of the pictures, melodies and clips.")] = 0,
    out: Annotated[Path, typer.Option(help="Folder for JSON and Markdown results.")] = Path("xmr-results"),
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Copies found: photos copied ten ways (resized, re-saved, cropped, turned, mirrored, grey,
    captioned, framed), melodies and clips re-encoded, among others of the same kinds; pair
    precision and recall per kind and over thresholds; time for --scale image vectors."""
    setup_logging(False, quiet=True)
    from retrieval.bench.duplicates import run_duplicates

    result = run_duplicates(
        str(out), model, originals, others, str(photos) if photos else None, audio, videos, scale, seed
    )
    typer.echo(json.dumps(result) if as_json else Path(result["files"]["md"]).read_text())


@bench_app.command("scale")
def bench_scale(
    vectors: Annotated[int, typer.Option(min=1_000, help="Synthetic 384-d vectors to index.")] = 1_000_000,
    max_memory: Annotated[str, typer.Option("--max-memory", help="Search-memory budget for auto.")] = "2G",
    block: Annotated[int, typer.Option(min=100, help="Vectors a checkpoint (and a generated block).")] = 100_000,
    work: Annotated[
        Optional[Path], typer.Option(help="Where the index is built and kept (resumable; default in the cache).")
    ] = None,
    out: Annotated[Path, typer.Option(help="Folder for JSON and Markdown results.")] = Path("xmr-results"),
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """An index of N synthetic vectors through xmr's own storage (--index-type auto): build time,
    memory, bytes, query times, recall@10 against exact. Run again to resume a cut-short build."""
    setup_logging(False, quiet=as_json)
    from retrieval.bench.scale import budget_label, run_scale
    from retrieval.models.encoder import cache_dir

    budget = memory_bytes(max_memory)
    folder = work or Path(cache_dir()) / "bench" / (
        f"scale-{vectors}-{budget_label(budget)}" + (f"-b{block}" if block != 100_000 else "")
    )
    try:
        result = run_scale(vectors, folder, budget, out, block)
    except RuntimeError as exc:
        fail(str(exc), code=1)
    files = result.pop("files")
    typer.echo(json.dumps(result) if as_json else Path(files["md"]).read_text())


@bench_app.command("memory")
def bench_memory(
    sizes: Annotated[
        str, typer.Option(help="Photo counts, comma-separated (each indexed into a fresh index).")
    ] = "500,5000",
    width: Annotated[int, typer.Option(min=64, help="Width of the generated 4:3 photos, pixels.")] = 1600,
    model: Annotated[str, typer.Option(help="Model to index with.")] = "xmr-mini",
    workers: Annotated[Optional[int], typer.Option(min=0, help="Decode workers (default as `xmr index`).")] = None,
    cache: Annotated[
        str, typer.Option(help="Where the generated photos are kept between runs.")
    ] = "~/.cache/xmr/bench",
    out: Annotated[Path, typer.Option(help="Folder for JSON and Markdown results.")] = Path("xmr-results"),
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Peak memory (RSS of the indexer and its workers) while indexing N photos, for several N."""
    setup_logging(False, quiet=as_json)
    from retrieval.bench.memory import run_memory

    result = run_memory(
        _int_list(sizes, "--sizes"), width=width, model=model, workers=workers, cache=cache, out_dir=str(out)
    )
    typer.echo(json.dumps(result) if as_json else Path(result["files"]["md"]).read_text())


@bench_app.command("serve")
def bench_serve(
    items: Annotated[
        int, typer.Option(min=100, help="Image items in the index (rows over ~500 real JPEGs).")
    ] = 100_000,
    clients: Annotated[int, typer.Option(min=1, help="Concurrent clients of the load test.")] = 16,
    seconds: Annotated[float, typer.Option(min=1, help="Length of the load test.")] = 60.0,
    repeat: Annotated[int, typer.Option(min=3, help="Timed requests per measurement.")] = 50,
    cache: Annotated[
        str, typer.Option(help="Where the index and photos are kept between runs.")
    ] = "~/.cache/xmr/bench",
    out: Annotated[Path, typer.Option(help="Folder for JSON and Markdown results.")] = Path("xmr-results"),
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Serving speed: HTTP search against Engine.search, cached thumbnails, concurrent clients, the page."""
    setup_logging(False, quiet=as_json)
    from retrieval.bench.serve import run_serve

    result = run_serve(items=items, clients=clients, seconds=seconds, repeat=repeat, cache=cache, out_dir=str(out))
    typer.echo(json.dumps(result) if as_json else Path(result["files"]["md"]).read_text())


@bench_app.command("embed")
def bench_embed(
    model: Annotated[list[str], typer.Option("--model", help="Model(s) to time; repeatable.")] = ["xmr-mini"],  # noqa: B006
    runtime: Annotated[list[str], typer.Option("--runtime", help="torch and/or onnx; repeatable.")] = ["torch", "onnx"],  # noqa: B006
    items: Annotated[int, typer.Option(min=1, help="Items per modality.")] = 256,
    batch_size: Annotated[int, typer.Option(min=1)] = 64,
    out: Annotated[Path, typer.Option(help="Folder for JSON and Markdown results.")] = Path("xmr-results"),
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Embedding speed: images/s, five-second audio windows/s and texts/s per model and runtime."""
    setup_logging(False, quiet=True)
    from retrieval.bench.embedding import run_embedding

    result = run_embedding(list(model), list(runtime), n=items, batch=batch_size, out_dir=str(out))
    typer.echo(json.dumps(result) if as_json else Path(result["files"]["md"]).read_text())


@bench_app.command("train")
def bench_train(
    model: Annotated[str, typer.Option(help="Model whose trainable towers are timed.")] = "xmr-mini",
    image_batch: Annotated[int, typer.Option(min=2, help="Image-text batch size (as `xmr train --batch-size`).")] = 256,
    audio_batch: Annotated[
        int, typer.Option(min=2, help="Audio-text batch size (as `xmr train --audio-batch-size`).")
    ] = 128,
    reps: Annotated[int, typer.Option(min=1, help="Timed steps per tower and layout (the median is reported).")] = 5,
    threads: Annotated[Optional[int], typer.Option(min=1, help="Torch CPU threads.")] = None,
    out: Annotated[Path, typer.Option(help="Folder for JSON and Markdown results.")] = Path("xmr-results"),
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Training speed: seconds per optimizer step of each trainable tower, NCHW against channels-last."""
    setup_logging(False, quiet=True)
    need_train_extra("xmr bench train")
    from retrieval.bench.training import run_train_speed

    try:
        result = run_train_speed(model, image_batch, audio_batch, reps, threads, out_dir=str(out))
    except (KeyError, ValueError) as exc:
        fail(str(exc))
    typer.echo(json.dumps(result) if as_json else Path(result["files"]["md"]).read_text())


def _split_factories(value: str | None) -> list[str] | None:
    """Comma-separated factory strings; a comma inside one (IVF1024,Flat) stays when the next
    piece is not an index type of its own."""
    if not value:
        return None
    out: list[str] = []
    for piece in (p.strip() for p in value.split(",")):
        if (
            out
            and piece.split("x")[0] in ("Flat", "PQ8", "PQ16", "PQ32", "SQ8", "SQ4", "SQfp16", "RFlat")
            and out[-1].startswith(("IVF", "OPQ", "PCA"))
        ):
            out[-1] += "," + piece
        elif piece:
            out.append(piece)
    return out
