"""Benchmark code at tiny sizes: the chunked recall against a naive reference, recall through
the index against recall from the encoder, the speed and indexing runs' outputs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from retrieval.bench.recall import Captioned, directions, load_captioned, recall
from tests.helpers import write_audio, write_image


def naive_recall(
    item_caps: list[list[str]], item_vecs: np.ndarray, texts: list[str], text_vecs: np.ndarray, k: int
) -> tuple[float, float]:
    """R@k both ways from the full similarity matrix, one query at a time, pessimistic ties."""
    sims = text_vecs @ item_vecs.T
    t_hits = []
    for t, caption in enumerate(texts):
        relevant = [n for n, caps in enumerate(item_caps) if caption in caps]
        best = max(sims[t, n] for n in relevant)
        rank = sum(1 for n in range(len(item_caps)) if sims[t, n] >= best and n not in relevant) + 1
        t_hits.append(rank <= k)
    x_hits = []
    for n, caps in enumerate(item_caps):
        relevant = [texts.index(c) for c in caps]
        best = max(sims[t, n] for t in relevant)
        rank = sum(1 for t in range(len(texts)) if sims[t, n] >= best and t not in relevant) + 1
        x_hits.append(rank <= k)
    return 100 * float(np.mean(t_hits)), 100 * float(np.mean(x_hits))


def test_chunked_recall_matches_naive_reference() -> None:
    rng = np.random.default_rng(0)
    vocab = [f"caption {i}" for i in range(40)]
    item_caps = [list(dict.fromkeys(rng.choice(vocab, size=rng.integers(1, 4)).tolist())) for _ in range(90)]
    items = [Captioned("image", f"{n}.png", caps) for n, caps in enumerate(item_caps)]
    texts = list(dict.fromkeys(c for caps in item_caps for c in caps))
    item_vecs = rng.standard_normal((90, 8)).astype(np.float32)
    text_vecs = rng.standard_normal((len(texts), 8)).astype(np.float32)
    result = directions(items, item_vecs, texts, text_vecs, chunk=7)
    for k in (1, 5, 10):
        t2x, x2t = naive_recall(item_caps, item_vecs, texts, text_vecs, k)
        assert result["text->image"][f"R@{k}"] == pytest.approx(t2x)
        assert result["image->text"][f"R@{k}"] == pytest.approx(x2t)
    assert result["text->image"]["queries"] == len(texts) and result["image->text"]["gallery"] == len(texts)
    relevant = np.array([sum(c in caps for caps in item_caps) for c in texts])
    assert result["text->image"]["chance@10"] == pytest.approx(100 * np.minimum(1, 10 * relevant / 90).mean())


def test_a_constant_model_scores_chance() -> None:
    items = [Captioned("audio", f"{n}.wav", [f"c{n % 5}"]) for n in range(50)]
    texts = [f"c{i}" for i in range(5)]
    result = directions(items, np.ones((50, 4), np.float32), texts, np.ones((5, 4), np.float32))
    assert result["audio->text"]["R@1"] == 0.0 and result["text->audio"]["median_rank"] == 41


@pytest.fixture
def captioned_set(tmp_path: Path) -> Path:
    rows = []
    for n in range(12):
        write_image(tmp_path / "img" / f"{n}.png", seed=n)
        rows.append({"image": f"img/{n}.png", "text": f"picture number {n % 9}"})  # some captions shared
    for n in range(6):
        write_audio(tmp_path / "snd" / f"{n}.wav", seed=100 + n)
        rows.append({"audio": f"snd/{n}.wav", "text": f"sound number {n}"})
    manifest = tmp_path / "pairs.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return manifest


def test_recall_through_the_index_equals_recall_from_the_encoder(captioned_set: Path, tiny) -> None:
    items = load_captioned(captioned_set)
    direct = recall(items, tiny)
    via = recall(items, tiny, via_index=True)
    assert set(direct) == {"text->image", "image->text", "text->audio", "audio->text"}
    for direction, numbers in direct.items():
        for key in ("R@1", "R@5", "R@10", "queries", "gallery", "chance@10"):
            assert via[direction][key] == pytest.approx(numbers[key]), (direction, key)


def test_standard_formats(tmp_path: Path) -> None:
    karpathy = {
        "images": [
            {
                "filename": "a.jpg",
                "filepath": "val2014",
                "split": "test",
                "sentences": [{"raw": "A dog. "}, {"raw": "A pup."}],
            },
            {"filename": "b.jpg", "split": "train", "sentences": [{"raw": "x"}]},
        ]
    }
    (tmp_path / "k.json").write_text(json.dumps(karpathy))
    items = load_captioned(tmp_path / "k.json", media_dir=str(tmp_path / "imgs"))
    assert [(Path(i.path).relative_to(tmp_path).as_posix(), i.captions) for i in items] == [
        ("imgs/val2014/a.jpg", ["A dog.", "A pup."])
    ]
    with open(tmp_path / "clotho.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file_name", "caption_1", "caption_2"])
        w.writerow(["rain.wav", "rain falls", "it rains"])
    assert load_captioned(tmp_path / "clotho.csv")[0].captions == ["rain falls", "it rains"]
    with pytest.raises(ValueError, match="unknown format"):
        load_captioned(tmp_path / "notes.txt")


def test_cli_bench_recall_json(captioned_set: Path, tmp_path: Path) -> None:
    from cli import app

    result = CliRunner().invoke(
        app, ["bench", "recall", str(captioned_set), "--model", "xmr-tiny", "--json", "--out", str(tmp_path / "out")]
    )
    assert result.exit_code == 0, result.output
    numbers = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(numbers) == {"text->image", "image->text", "text->audio", "audio->text"}
    assert {"R@1", "R@5", "R@10", "median_rank", "mean_rank", "queries", "gallery", "chance@10"} <= set(
        numbers["text->image"]
    )
    assert (tmp_path / "out/recall-xmr-tiny.png").exists() and (tmp_path / "out/recall-xmr-tiny.md").exists()


def test_speed_benchmark_runs_and_reports(tmp_path: Path) -> None:
    from cli import app

    args = [
        "bench",
        "speed",
        "--sizes",
        "300",
        "--index-types",
        "Flat,HNSW8,IVF4,Flat",
        "--batches",
        "1,4",
        "--cold-runs",
        "1",
        "--model",
        "xmr-tiny",
        "--cache",
        str(tmp_path / "cache"),
        "--out",
        str(tmp_path / "out"),
        "--json",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout.strip().splitlines()[-1])
    cases = {(r["index"], r["batch"]) for r in payload["results"]}
    assert cases == {(t, b) for t in ("Flat", "HNSW8", "IVF4,Flat") for b in (1, 4)}
    for r in payload["results"]:
        assert r["n"] == 300 and r["dim"] == 32 and r["engine_p50_ms"] > 0 and r["numpy_p50_ms"] > 0 and r["qps"] > 0
        assert (r["recall_at_10"] is None) == (r["index"] == "Flat")
        if r["recall_at_10"] is not None:
            assert 0 <= r["recall_at_10"] <= 1
    assert payload["cold_cli"]["runs"] == 1
    assert (tmp_path / "out/search_speed.png").exists()


def test_indexing_benchmark(tmp_path: Path) -> None:
    from retrieval.bench.indexing import run_indexing

    for n in range(6):
        write_image(tmp_path / "media" / f"{n}.png", seed=n)
    write_audio(tmp_path / "media" / "a.wav", seed=1)
    result = run_indexing(
        tmp_path / "media", "xmr-tiny", batch_size=4, workers=0, out_dir=str(tmp_path / "out"), repeat=3
    )
    assert result["items"] == 7 and result["encoder_busy"] > 0
    assert 0 < result["encoder_busy_in_run"] <= 1
    assert all(0 < r["encoder_in_run_s"] < r["end_to_end_s"] for r in result["runs"])
    runs = result["runs"]
    assert len(runs) == 3 and sorted(r["end_to_end_s"] for r in runs)[1] == result["end_to_end_s"]  # the median
    assert (tmp_path / "out/index_speed-xmr-tiny.json").exists()
    assert {r["modality"] for r in result["per_modality"]} == {"image", "audio"}
    assert all(r["end_to_end_items_per_s"] > 0 for r in result["per_modality"])
    assert not (tmp_path / "media/.xmr").exists()


def test_timed_encoder_counts_the_seconds_of_its_encode_calls_only() -> None:
    import time

    from retrieval.bench.indexing import TimedEncoder

    class Slow:
        name = "slow"

        def encode_text(self, texts: list[str]) -> list[int]:
            time.sleep(0.05)
            return [len(t) for t in texts]

        def encode_image(self, pixels: object) -> None:
            raise ValueError("bad pixels")

        def warm(self, modalities: list[str]) -> None:
            time.sleep(0.05)

    timed = TimedEncoder(Slow())
    assert timed.name == "slow" and timed.encode_text(["ab", "c"]) == [2, 1]
    with pytest.raises(ValueError, match="bad pixels"):  # a failing call still counts, and still fails
        timed.encode_image(None)
    timed.warm(["text"])  # not an encode call: not counted
    assert 0.05 <= timed.seconds < 0.1
    import copy

    assert copy.copy(timed).name == "slow"  # a copy looks its attributes up without recursing


def test_embedding_benchmark(tmp_path: Path) -> None:
    from retrieval.bench.embedding import run_embedding

    result = run_embedding(["xmr-tiny"], ["torch", "onnx"], n=8, batch=4, out_dir=str(tmp_path))
    assert [r["runtime"] for r in result["results"]] == ["torch", "onnx"]
    assert all(
        r["images_per_s"] > 0 and r["audio_windows_per_s"] > 0 and r["texts_per_s"] > 0 for r in result["results"]
    )
    assert (tmp_path / "embed_speed.md").exists()


def test_training_benchmark_times_each_trainable_tower_in_both_layouts(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cli import app

    res = CliRunner().invoke(
        app,
        [
            "bench",
            "train",
            "--model",
            "xmr-tiny",
            "--image-batch",
            "8",
            "--audio-batch",
            "4",
            "--reps",
            "1",
            "--out",
            str(tmp_path),
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)["results"]
    assert [r["tower"] for r in rows] == ["image", "audio"]  # the frozen text tower is not timed
    assert all(r["s_per_step_contiguous"] > 0 and r["s_per_step_channels_last"] > 0 for r in rows)
    assert all(abs(r["speedup"] - r["s_per_step_contiguous"] / r["s_per_step_channels_last"]) < 1e-9 for r in rows)
    assert "channels_last" in (tmp_path / "train_speed.md").read_text()
    bad = CliRunner().invoke(app, ["bench", "train", "--model", "no-such-model"])
    assert bad.exit_code != 0 and "no-such-model" in bad.output


def test_serve_benchmark_runs_and_reports(tmp_path: Path) -> None:
    pytest.importorskip("fastapi")
    from retrieval.bench.serve import run_serve

    result = run_serve(
        items=300,
        photos=12,
        clients=2,
        seconds=1.0,
        repeat=3,
        model="xmr-tiny",
        cache=str(tmp_path / "cache"),
        out_dir=str(tmp_path / "out"),
    )
    assert result["search"]["http_p50_ms"] > 0 and result["cached_thumbnail"]["p50_ms"] > 0
    assert result["load"]["errors"] == 0 and result["load"]["requests"] > 0
    assert "HTTP / in-process search" in (tmp_path / "out" / "serve_speed.md").read_text()


def test_moments_benchmark_finds_clips_hidden_in_long_recordings(tmp_path: Path, tiny) -> None:
    """Distinct tones as captioned clips, xmr-tiny: the numbers are in range and consistent."""
    import soundfile as sf

    from retrieval.bench.moments import run_moments

    rows = []
    for n in range(8):
        t = np.arange(16000) / 16000
        wave = 0.3 * np.sin(2 * np.pi * (200 + 150 * n) * t)
        sf.write(tmp_path / f"tone{n}.wav", wave.astype(np.float32), 16000)
        rows.append({"audio": f"tone{n}.wav", "text": f"tone number {n}"})
    manifest = tmp_path / "tones.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = run_moments(
        [str(manifest)], "xmr-tiny", files=2, clips=4, hour=False, out_dir=str(tmp_path / "out"), encoder=tiny
    )
    r = result["result"]
    assert r["queries"] == 8 and r["segments"] > 0 and r["recorded_seconds"] > 8
    assert 0 <= r["moment_accuracy"] <= r["file_R@1"] <= r["file_R@5"] <= 100
    assert (tmp_path / "out" / "moments.md").read_text().count("|") > 10


def test_video_moments_benchmark_finds_pictures_and_spoken_captions(tmp_path: Path, tiny) -> None:
    """Drawn pictures with espeak-ng speaking their captions, xmr-tiny: the videos are made,
    indexed and searched both ways, and the numbers are in range."""
    import os
    import shutil

    from PIL import Image

    from retrieval.bench.moments import run_moments

    if shutil.which("espeak-ng") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true but espeak-ng is not installed (apt-get install espeak-ng)")
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    rows = []
    for n in range(6):
        pixels = np.zeros((48, 64, 3), np.uint8)
        pixels[:, : 8 * (n + 1)] = (40 * n, 255 - 40 * n, 120)
        Image.fromarray(pixels).save(tmp_path / f"p{n}.png")
        rows.append({"image": f"p{n}.png", "text": f"picture number {n}"})
    manifest = tmp_path / "pictures.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = run_moments(
        [],
        "xmr-tiny",
        images=[str(manifest)],
        video_files=2,
        pictures=3,
        video_minutes=0,
        out_dir=str(tmp_path / "out"),
        encoder=tiny,
    )
    video = result["result"]["video"]
    assert video["queries"] == 6 and video["segments"] > 6 and "speed" not in video
    for part in ("frames", "soundtrack"):
        r = video[part]
        assert 0 <= r["moment_accuracy"] <= r["file_R@1"] <= r["file_R@5"] <= 100 and r["file_R@5"] == 100
    assert "soundtrack" in (tmp_path / "out" / "moments.md").read_text()


def test_scale_benchmark_resumes_and_measures_exact_recall(tmp_path: Path) -> None:
    """Killed after a block's vectors are written (their rows not yet), the build goes on from
    the rows it holds; an exact (Flat) index of the same vectors must score recall 1.0, so a
    fault in the ids, the exact answers or the recall would show."""
    import os
    import subprocess
    import sys

    from retrieval.bench.scale import run_scale

    work = tmp_path / "work"
    cmd = [sys.executable, "-m", "retrieval.bench.scale", "build", str(work), "3000", str(1 << 30), "1000"]
    env = {**os.environ, "XMR_CRASH_AT": "vectors-written:2"}
    root = Path(__file__).resolve().parent.parent
    assert subprocess.run(cmd, cwd=root, env=env, check=False, capture_output=True).returncode == -9
    result = run_scale(3000, work, 1 << 30, tmp_path / "out", block=1000)
    assert result["build_runs"] == 2 and result["vectors"] == 3000 and result["type"] == "Flat"
    assert result["recall_at_10"] == 1.0 and result["types_during_build"] == ["Flat"]
    assert result["codes_bytes"] > 3000 * 384 * 4 and result["sql_bytes"] > 0 and result["stored_vectors_bytes"] == 0
    assert (tmp_path / "out" / "scale-3000-1G.md").exists() and "recall_at_10" in result["files"]["md"].read_text()


def test_a_missing_benchmark_set_names_the_command_that_prepares_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cli import app

    monkeypatch.chdir(tmp_path)  # a fresh clone: no data/ yet
    result = CliRunner().invoke(app, ["bench", "recall", "data/openmoji/test.jsonl"])
    assert result.exit_code == 2
    said = " ".join(result.output.split())
    assert "not found: data/openmoji/test.jsonl" in said
    assert "python -m benchmarks.datasets.openmoji --out data/openmoji --cache data/cache" in said, said
    other = CliRunner().invoke(app, ["bench", "recall", "mine/pairs.jsonl"])  # no set of that name
    assert other.exit_code == 2
    assert "python -m benchmarks.datasets.all --out data --cache data/cache" in " ".join(other.output.split())
    fsdd = CliRunner().invoke(app, ["bench", "recall", "data/fsdd/test.jsonl"])  # a set with its own options
    assert "python -m benchmarks.datasets.fsdd --help" in " ".join(fsdd.output.split())


def _du(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def test_speed_benchmark_says_where_its_indexes_are_and_no_keep_removes_them(tmp_path: Path) -> None:
    from cli import app

    cache = tmp_path / "cache"
    common = ["bench", "speed", "--sizes", "300", "--index-types", "Flat", "--batches", "1", "--cold-runs", "0"]
    common += ["--model", "xmr-tiny", "--cache", str(cache), "--out", str(tmp_path / "out")]
    kept = CliRunner().invoke(app, [*common, "--json"])
    assert kept.exit_code == 0, kept.output
    payload = json.loads(kept.stdout.strip().splitlines()[-1])
    assert payload["cache"]["path"] == str(cache) and payload["cache"]["kept"] is True
    assert payload["cache"]["bytes"] == _du(cache) > 300 * 32 * 4  # what is really on disk
    said = CliRunner().invoke(app, common)  # the table, then where the indexes are and how to remove them
    assert said.exit_code == 0, said.output
    text = " ".join(said.output.split())
    assert str(cache) in text and "--no-keep" in text and "MB" in text, text
    (cache / "unrelated").mkdir()
    gone = CliRunner().invoke(app, [*common, "--no-keep", "--json"])
    assert gone.exit_code == 0, gone.output
    payload = json.loads(gone.stdout.strip().splitlines()[-1])
    assert payload["cache"]["kept"] is False and payload["cache"]["bytes"] == 0
    assert [p.name for p in cache.iterdir()] == ["unrelated"]  # only what the benchmark built goes


def test_speed_benchmark_caches_under_xmr_cache_dir_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    from retrieval.bench.speed import SpeedConfig, cache_folder

    monkeypatch.setenv("XMR_CACHE_DIR", "/somewhere/xmr")
    assert cache_folder(SpeedConfig()) == Path("/somewhere/xmr/bench")


def _speed_rows() -> list[dict]:
    """Results shaped as the default run's: Flat at three sizes, four approximate types at 100k
    whose latencies lie close together (their labels would pile up)."""
    rows = []
    for n, ms in ((10_000, 0.4), (100_000, 3.1), (1_000_000, 38.0)):
        for batch in (1, 64):
            rows.append({"n": n, "index": "Flat", "batch": batch, "engine_p50_ms": ms * batch**0.5, "numpy_p50_ms": ms})
    for factory, ms in (("HNSW32", 0.21), ("IVF1024,Flat", 0.24), ("SQ8", 2.9), ("Flat-fp16", 3.0)):
        for batch in (1, 64):
            rows.append(
                {"n": 100_000, "index": factory, "batch": batch, "engine_p50_ms": ms * batch**0.5, "numpy_p50_ms": 3.1}
            )
    return rows


def test_the_speed_plot_labels_neither_overlap_nor_leave_the_figure(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="the train extra is not installed (pip install -e '.[dev]')")
    from matplotlib.text import Text

    from retrieval.bench.speed import speed_figure

    fig = speed_figure(_speed_rows())
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    page = fig.bbox
    (ax,) = fig.axes
    texts = [*ax.texts, ax.title, ax.xaxis.label, ax.yaxis.label]
    if ax.get_legend() is not None:
        texts += ax.get_legend().get_texts()
    for axis in (ax.xaxis, ax.yaxis):  # the tick labels drawn: those of ticks within the axis' view
        low, high = sorted(axis.get_view_interval())
        texts += [t.label1 for t in axis.get_major_ticks() if low <= t.get_loc() <= high]
    texts = [t for t in texts if isinstance(t, Text) and t.get_visible() and t.get_text().strip()]
    boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in texts]
    for label, box in boxes:
        assert page.x0 <= box.x0 and box.x1 <= page.x1 and page.y0 <= box.y0 and box.y1 <= page.y1, label
    names = {"HNSW32", "IVF1024,Flat", "SQ8", "Flat-fp16"}
    assert all(any(label.startswith(n) for label, _ in boxes) for n in names)  # every approximate type is named
    for i, (a, box_a) in enumerate(boxes):
        for b, box_b in boxes[i + 1 :]:
            assert not box_a.overlaps(box_b), (a, b)


@pytest.mark.slow  # xmr-mini and Whisper over three small sets: left out by -m "not slow"
def test_speech_benchmark_finds_what_was_said_and_measures_it(tmp_path: Path) -> None:
    """Prompts of the person's voice and Flite's rms between music and noise: with transcripts
    every set's words are found; the report holds both signals, the word error rate and speeds."""
    import os
    import shutil

    from retrieval.bench.speech import ASTERISK, ASTERISK_TEXT, run_speech

    if not (ASTERISK.is_dir() and ASTERISK_TEXT.is_file() and shutil.which("flite")):
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true but flite or the Asterisk prompts are not installed (see .ci/run)")
        pytest.skip("apt-get install flite asterisk-core-sounds-en-wav asterisk-core-sounds-en")
    result = run_speech(str(tmp_path), files=2, clips=3, wer_prompts=4, quiet_minutes=0.2)
    for name in ("person", "sentences", "words"):
        by = result["sets"][name]
        assert by["queries"] == 6 and set(by) == {"queries", "fused", "audio_tower"}
        assert by["fused"]["file_R@1"] >= 50 and 0 <= by["audio_tower"]["moment_accuracy"] <= 1
    assert 0 <= result["wer"]["wer"] < 0.5 and result["wer"]["words"] > 0
    speed = result["speed"]
    assert speed["music_words"] == speed["silence_words"] == 0 and speed["speech_x_real_time"] > 1
    assert (tmp_path / "speech.md").read_text().count("| person |") == 2


@pytest.mark.slow  # xmr-mini and PP-OCRv4 over a few pictures: left out by -m "not slow"
def test_ocr_benchmark_finds_phrases_in_pictures_and_measures_it(tmp_path: Path) -> None:
    """Phrases drawn into signs, pages and screens are found by text read in them, beside the
    image tower alone; the report holds both signals, the textures' noise and the speeds."""
    from retrieval.bench.ocr import KINDS, run_ocr
    from tests.helpers import ocr_reader

    ocr_reader()  # skips (fails under CI) without the extra ocr
    result = run_ocr(str(tmp_path), pictures=3)
    for kind in KINDS:
        assert result["fused"][kind]["part_R@5"] >= 2 / 3 * 100 >= result["image_tower"][kind]["phrase_R@1"]
    assert 0 <= result["fused"]["textless_in_top5"] <= 1 and result["speed"]["seconds_with_text"] > 0
    speed = result["speed"]
    assert speed["photos_indexing_speed_with_ocr"] > 0 and speed["video_frames_read"] <= speed["video_frames"]
    assert speed["video_caption_shown"][0] == pytest.approx(20.0, abs=0.11)  # the caption, with its times
    assert (tmp_path / "ocr.md").read_text().count("| sign |") == 2
