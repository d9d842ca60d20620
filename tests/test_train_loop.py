"""Training: the loss against its formula, a tiny model that learns, exact resume, binding."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from retrieval.train import TrainConfig, Trainer
from retrieval.train.data import unique_caption_batches
from retrieval.train.loss import InfoNCELoss

pytestmark = pytest.mark.slow  # minutes of kills, rebuilds, clusters or training: left out by -m "not slow"


COLOURS = {"red": (220, 30, 30), "green": (30, 180, 40), "blue": (30, 60, 220), "yellow": (240, 220, 20)}
SHAPES = ("square", "circle", "triangle", "cross")


def naive_infonce(a: torch.Tensor, b: torch.Tensor, scale: float) -> float:
    """The docstring's formula, one term at a time."""
    n = a.shape[0]
    total = 0.0
    for i in range(n):
        row = [float(scale * a[i] @ b[j]) for j in range(n)]
        col = [float(scale * b[i] @ a[j]) for j in range(n)]
        total += row[i] - np.log(np.sum(np.exp(row))) + col[i] - np.log(np.sum(np.exp(col)))
    return -total / (2 * n)


def test_loss_matches_the_formula() -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.nn.functional.normalize(torch.randn(7, 5, generator=g), dim=-1)
    b = torch.nn.functional.normalize(torch.randn(7, 5, generator=g), dim=-1)
    got = float(InfoNCELoss()(a, b, torch.tensor(3.5)))
    assert abs(got - naive_infonce(a, b, 3.5)) < 1e-5


def test_batches_never_repeat_a_caption() -> None:
    caption = np.array([0, 0, 0, 1, 1, 2, 3, 4, 5, 5, 6, 7] * 5)
    seen = 0
    for batch in unique_caption_batches(caption, 6, np.random.default_rng(0)):
        assert len(set(caption[batch])) == len(batch)
        seen += len(batch)
    assert seen > len(caption) // 2


def draw(colour: str, shape: str, jitter: int) -> Image.Image:
    img = Image.new("RGB", (48, 48), "white")
    d = ImageDraw.Draw(img)
    box = (8 + jitter, 8, 40 - jitter, 40)
    fill = COLOURS[colour]
    if shape == "square":
        d.rectangle(box, fill=fill)
    elif shape == "circle":
        d.ellipse(box, fill=fill)
    elif shape == "triangle":
        d.polygon([(24, 6), (6 + jitter, 42), (42 - jitter, 42)], fill=fill)
    else:
        d.rectangle((20, 6, 28, 42), fill=fill)
        d.rectangle((6, 20, 42, 28), fill=fill)
    return img


@pytest.fixture(scope="module")
def shapes_manifest(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("shapes")
    (root / "img").mkdir()
    with open(root / "pairs.jsonl", "w") as f:
        for colour in COLOURS:
            for shape in SHAPES:
                for k in range(3):
                    name = f"img/{colour}-{shape}-{k}.png"
                    draw(colour, shape, k * 2).save(root / name)
                    f.write(json.dumps({"image": name, "text": f"a {colour} {shape}", "source": "test"}) + "\n")
    return root / "pairs.jsonl"


def _config(manifest: Path, out: Path, **kw) -> TrainConfig:
    base = dict(
        data=[str(manifest)],
        val=[str(manifest)],
        out=str(out),
        model="xmr-tiny-image",
        modalities=["image"],
        epochs=40,
        batch_size=16,
        lr=3e-3,
        warmup_steps=5,
        threads=1,
        save_every_minutes=1e9,
    )
    base.update(kw)
    return TrainConfig(**base)


def test_tiny_model_learns(shapes_manifest: Path, tmp_path: Path) -> None:
    trainer = Trainer(_config(shapes_manifest, tmp_path / "run", max_steps=60))
    before = trainer.validate()["text->image"]["R@1"]
    losses = []
    plan = [b for e in range(100) for b in trainer._plan(e)]
    for modality, idx in plan[:60]:
        losses.append(trainer.train_step(modality, idx))
    after = trainer.validate()
    chance = after["text->image"]["chance@1"]
    assert np.mean(losses[-10:]) < np.mean(losses[:10]) - 0.3
    assert after["text->image"]["R@1"] > max(3 * chance, before + 20), (before, after)


def test_passes_repeat_a_modality_within_an_epoch(shapes_manifest: Path, tmp_path: Path) -> None:
    one = Trainer(_config(shapes_manifest, tmp_path / "one"))
    three = Trainer(_config(shapes_manifest, tmp_path / "three", passes={"image": 3}))
    assert three.steps_per_epoch == 3 * one.steps_per_epoch
    seen = np.concatenate([idx for _, idx in three._plan(0)])
    assert np.array_equal(np.bincount(seen), np.full(len(three.train_sets["image"]), 3))


def test_resume_equals_an_uninterrupted_run(shapes_manifest: Path, tmp_path: Path) -> None:
    whole = Trainer(_config(shapes_manifest, tmp_path / "whole", max_steps=12, epochs=10))
    whole.run()
    part = Trainer(_config(shapes_manifest, tmp_path / "part", max_steps=5, epochs=10))
    part.run()
    resumed = Trainer(_config(shapes_manifest, tmp_path / "part", max_steps=12, epochs=10))
    assert resumed.resume() and resumed.step == 5
    resumed.run()
    a, b = whole.model.state_dict(), resumed.model.state_dict()
    for key in a:
        assert torch.allclose(a[key].float(), b[key].float(), atol=1e-6), key
    meta = json.loads((tmp_path / "part" / "last" / "meta.json").read_text())
    assert meta["step"] == 12 and meta["data_hash"] and meta["model_config"]["image_cfg"]
    assert (tmp_path / "part" / "curves.png").stat().st_size > 1000


def test_runs_share_a_cache_keyed_by_the_text_tower(shapes_manifest: Path, tmp_path: Path) -> None:
    from retrieval.models.registry import resolve

    shipped, fresh = resolve("xmr-mini"), resolve("xmr-mini", weights=False)
    assert shipped.weights_hash() != fresh.weights_hash()
    assert shipped.text_hash() == fresh.text_hash(), "new image/audio weights keep the caption cache"
    assert resolve("xmr-tiny-image").text_hash() != shipped.text_hash()
    shared = tmp_path / "shared"
    Trainer(_config(shapes_manifest, tmp_path / "a", max_steps=1, cache=str(shared)))
    files = sorted(p.name for p in shared.iterdir())
    assert any(f.startswith("text-") for f in files) and any(f.startswith("image-") for f in files)
    assert not (tmp_path / "a" / "cache").exists()
    Trainer(_config(shapes_manifest, tmp_path / "b", max_steps=1, cache=str(shared)))
    assert sorted(p.name for p in shared.iterdir()) == files  # the second run reuses, adds nothing


def test_media_cache_is_kept_per_manifest_and_matches_direct_decoding(tmp_path: Path) -> None:
    import soundfile as sf

    from retrieval.models.audio import AudioPreprocessor
    from retrieval.train.data import _load_clip, load_pairs, read_manifest
    from tests.conftest import sine

    pre = AudioPreprocessor(window_seconds=1.0)
    manifests = []
    for name, rates in (("a", (8000, 22050, 16000)), ("b", (44100, 16000))):
        (tmp_path / name).mkdir()
        lines = []
        for k, rate in enumerate(rates):
            sf.write(tmp_path / name / f"{k}.wav", sine(200.0 * (k + 1), 0.5 + 0.4 * k, rate), rate)
            lines.append({"audio": f"{k}.wav", "text": f"{name} tone {k}", "source": name})
        (tmp_path / name / "bad.wav").write_bytes(b"RIFF not a wave")  # skipped, not fatal
        lines.append({"audio": "bad.wav", "text": f"{name} broken", "source": name})
        (tmp_path / name / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
        manifests.append(tmp_path / name / "pairs.jsonl")
    cache = tmp_path / "cache"
    load_pairs(read_manifest(manifests[0]), "audio", cache, pre)
    first = {p.name: p.stat().st_mtime_ns for p in cache.iterdir()}
    rows = [r for m in manifests for r in read_manifest(m)]
    pairs = load_pairs(rows, "audio", cache, pre)
    after = {p.name: p.stat().st_mtime_ns for p in cache.iterdir()}
    assert len(first) == 1 and len(after) == 2 and all(after[k] == v for k, v in first.items()), (
        "the first manifest's cache is reused"
    )
    good = [r for r in rows if "broken" not in r["text"]]
    assert len(pairs) == len(good) == 5 and pairs.sources == [r["source"] for r in good]
    assert [pairs.texts[c] for c in pairs.caption] == [r["text"] for r in good]
    for i, row in enumerate(good):
        np.testing.assert_array_equal(
            pairs.audio[pairs.offsets[i] : pairs.offsets[i + 1]], _load_clip(row["path"], pre)
        )
    again = load_pairs(rows, "audio", tmp_path / "fresh", pre)
    np.testing.assert_array_equal(again.audio, pairs.audio)
    np.testing.assert_array_equal(again.offsets, pairs.offsets)


def test_cached_audio_is_assembled_without_holding_every_part_twice(tmp_path: Path) -> None:
    import tracemalloc

    import soundfile as sf

    from retrieval.models.audio import AudioPreprocessor
    from retrieval.train.data import load_pairs, read_manifest
    from tests.conftest import sine

    pre = AudioPreprocessor()  # 5 s windows: each clip is kept as 5.75 s of int16
    rows = []
    for name in "abc":
        (tmp_path / name).mkdir()
        lines = []
        for k in range(8):
            sf.write(tmp_path / name / f"{k}.wav", sine(100.0 + 37 * k, 6.0, 16000), 16000)
            lines.append({"audio": f"{k}.wav", "text": f"{name} tone {k}"})
        (tmp_path / name / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
        rows += read_manifest(tmp_path / name / "pairs.jsonl")
    cache = tmp_path / "cache"
    reference = load_pairs(rows, "audio", cache, pre)  # decodes and caches each manifest
    part = reference.audio.nbytes // 3
    tracemalloc.start()
    pairs = load_pairs(rows, "audio", cache, pre)  # from the cache files
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    np.testing.assert_array_equal(pairs.audio, reference.audio)
    np.testing.assert_array_equal(pairs.offsets, reference.offsets)
    assert pairs.audio.nbytes == 24 * int(5.75 * 16000) * 2
    # the result, one manifest's array and numpy's 256 KiB read chunks: not all three parts
    # plus their copy (which peaks at twice the result)
    assert peak < pairs.audio.nbytes + part + 2**20, (peak, pairs.audio.nbytes)


def test_alt_texts_stand_in_for_captions_without_repeating_a_target(shapes_manifest: Path, tmp_path: Path) -> None:
    rows = [json.loads(line) for line in shapes_manifest.read_text().splitlines()]
    for r in rows:  # one alt text of its own per colour-shape, and one shared by every item
        r["alt_texts"] = [r["text"].replace("a ", "the colour ", 1), "a shape"]
        r["image"] = str(shapes_manifest.parent / r["image"])
    manifest = tmp_path / "alt.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    trainer = Trainer(_config(manifest, tmp_path / "run", val=[], alt_text_prob=1.0, max_steps=1))
    pairs = trainer.train_sets["image"]
    modality, idx = trainer._plan(0)[0]
    target = trainer.targets(modality, idx)
    assert len(set(target.tolist())) == len(idx), "no text is two items' target"
    texts = [pairs.texts[t] for t in target]
    assert texts.count("a shape") <= 1
    assert sum(t.startswith("the colour ") for t in texts) >= len(idx) - 2  # the rest: the shared one, or its caption
    assert np.array_equal(target, trainer.targets(modality, idx))  # fixed by (seed, step)
    trainer.cfg.alt_text_prob = 0.0
    assert np.array_equal(trainer.targets(modality, idx), pairs.caption[idx])


def _two_sources(shapes_manifest: Path, out: Path) -> Path:
    """The shapes set with its circles as one source and the rest as another."""
    rows = [json.loads(line) for line in shapes_manifest.read_text().splitlines()]
    for r in rows:
        r["source"] = "circles" if "circle" in r["text"] else "others"
        r["image"] = str(shapes_manifest.parent / r["image"])
    manifest = out / "two.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return manifest


def test_validation_reports_each_source_within_its_own_pairs(shapes_manifest: Path, tmp_path: Path) -> None:
    manifest = _two_sources(shapes_manifest, tmp_path)
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    trainer = Trainer(_config(manifest, tmp_path / "run", max_steps=1))
    by_source: dict = {}
    pooled = trainer.validate(by_source)
    circles = sum(r["source"] == "circles" for r in rows)
    assert set(by_source) == {"circles", "others"}
    assert by_source["circles"]["image->text"]["queries"] == circles
    assert by_source["others"]["image->text"]["queries"] == len(rows) - circles
    assert pooled["image->text"]["queries"] == len(rows)
    assert by_source["circles"]["text->image"]["gallery"] == circles  # its own pairs only
    assert by_source["circles"]["text->image"]["chance@10"] > pooled["text->image"]["chance@10"]


def test_source_passes_repeat_one_source_within_a_pass(shapes_manifest: Path, tmp_path: Path) -> None:
    manifest = _two_sources(shapes_manifest, tmp_path)
    plain = Trainer(_config(manifest, tmp_path / "plain"))
    trainer = Trainer(_config(manifest, tmp_path / "run", source_passes={"circles": 3}))
    pairs = trainer.train_sets["image"]
    circles = np.array([s == "circles" for s in pairs.sources])
    seen = np.bincount(np.concatenate([idx for _, idx in trainer._raw_plan(0)]), minlength=len(pairs))
    assert np.all(seen[~circles] == 1)
    assert np.all(seen[circles] == 3)  # four circle captions, at most one of each per batch: all fit
    for _, idx in trainer._raw_plan(0):
        assert len(set(pairs.caption[idx].tolist())) == len(idx)
    assert trainer.steps_per_epoch > plain.steps_per_epoch
    # no source_passes: the very batches of a run that predates the option (resume relies on it)
    rng = np.random.default_rng([0, 0, 0])  # (seed, epoch, part)
    old = list(unique_caption_batches(pairs.caption, 16, rng))
    old = [old[i] for i in rng.permutation(len(old))]
    new = [idx for _, idx in plain._raw_plan(0)]
    assert len(new) == len(old) and all(np.array_equal(a, b) for a, b in zip(new, old))
    with pytest.raises(ValueError, match="squares"):
        Trainer(_config(manifest, tmp_path / "bad", source_passes={"squares": 2}))


def test_selection_by_sources_weighs_each_source_alike(shapes_manifest: Path, tmp_path: Path) -> None:
    from retrieval.train.metrics import source_score

    by_source = {
        "big": {
            "text->audio": {"R@1": 40.0, "R@10": 80.0, "queries": 900},
            "audio->text": {"R@1": 20.0, "R@10": 60.0, "queries": 1000},
        },
        "digits": {
            "text->audio": {"R@1": 100.0, "R@10": 100.0, "queries": 10},
            "audio->text": {"R@1": 50.0, "R@10": 100.0, "queries": 500},
        },
        "five clips": {
            "text->audio": {"R@1": 0.0, "R@10": 100.0, "queries": 5},
            "audio->text": {"R@1": 0.0, "R@10": 100.0, "queries": 5},
        },
    }
    assert source_score(by_source) == pytest.approx(((60 + 40) / 2 + (100 + 75) / 2) / 2)  # five clips left out
    assert source_score({"five clips": by_source["five clips"]}) == pytest.approx(50.0)  # unless nothing else is there
    manifest = _two_sources(shapes_manifest, tmp_path)
    trainer = Trainer(_config(manifest, tmp_path / "run", epochs=2, max_steps=None, select="sources"))
    trainer.run()
    record = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines() if '"val"' in line]
    scores = [r["val_sources_score"] for r in record]
    assert scores == [pytest.approx(source_score(r["val_by_source"])) for r in record]
    best = json.loads((tmp_path / "run" / "best" / "meta.json").read_text())
    assert best["val_sources_score"] == pytest.approx(max(scores))
    with pytest.raises(ValueError, match="select"):
        Trainer(_config(manifest, tmp_path / "bad", select="best"))


def test_resume_refuses_other_data(shapes_manifest: Path, tmp_path: Path) -> None:
    Trainer(_config(shapes_manifest, tmp_path / "run", max_steps=2, epochs=1)).run()
    other = tmp_path / "other.jsonl"
    other.write_text(
        "\n".join(shapes_manifest.read_text().splitlines()[:20]).replace('"img/', f'"{shapes_manifest.parent}/img/')
    )
    with pytest.raises(ValueError, match="other data"):
        Trainer(_config(other, tmp_path / "run", val=[], max_steps=4, epochs=1)).resume()


@pytest.fixture(scope="module")
def tones_manifest(tmp_path_factory) -> Path:
    import soundfile as sf

    from tests.conftest import sine

    root = tmp_path_factory.mktemp("tones")
    with open(root / "pairs.jsonl", "w") as f:
        for freq in (150, 300, 600, 1200, 2400, 4800):
            for k in range(3):
                name = f"tone-{freq}-{k}.wav"
                sf.write(root / name, sine(freq * (1 + 0.02 * k), 0.6 + 0.1 * k, 16000), 16000)
                f.write(json.dumps({"audio": name, "text": f"a tone of {freq} hertz", "source": "test"}) + "\n")
    return root / "pairs.jsonl"


def test_bind_an_audio_tower_into_an_open_clip_text_space(tones_manifest: Path, tmp_path: Path) -> None:
    from retrieval import create_model

    cfg = TrainConfig(
        data=[str(tones_manifest)],
        val=[str(tones_manifest)],
        out=str(tmp_path / "bind"),
        model="xmr-tiny",
        into="openclip:xmr-openclip-tiny",
        modalities=["audio"],
        epochs=30,
        audio_batch_size=6,
        lr=3e-3,
        warmup_steps=3,
        threads=1,
        max_steps=40,
    )
    trainer = Trainer(cfg)
    before = trainer.validate()["audio->text"]["R@1"]
    trainer.run()
    after = trainer.validate()["audio->text"]
    assert after["R@1"] > max(before, after["chance@1"] * 2), (before, after)
    bound = create_model("openclip:xmr-openclip-tiny", device="cpu", audio_checkpoint=str(tmp_path / "bind" / "last"))
    assert "audio" in bound.modalities
    clip = str(tones_manifest.parent / "tone-600-0.wav")
    vec = bound.encode_audio([clip])
    texts = bound.encode_text([f"a tone of {f} hertz" for f in (150, 300, 600, 1200, 2400, 4800)])
    assert vec.shape == (1, bound.embed_dim)
    assert np.allclose(vec, trainer.embed_items("audio", trainer.val_sets["audio"])[[6]], atol=1e-4)
    assert (texts @ vec.T).shape == (6, 1)


def test_ship_only_better_checkpoints(tmp_path) -> None:
    import json as _json

    from retrieval.train.ship import ShipError, ship

    def checkpoint(name: str, score: float | None, model: str = "xmr-tiny") -> Path:
        folder = tmp_path / name
        folder.mkdir()
        (folder / "weights.safetensors").write_bytes(name.encode())
        (folder / "meta.json").write_text(_json.dumps({"model": model, "step": 7, "val_mean_R@10": score}))
        return folder

    shipped = tmp_path / "weights"
    ship(checkpoint("first", 40.0), "xmr-tiny", weights_dir=shipped)
    assert (shipped / "xmr-tiny.safetensors").read_bytes() == b"first"
    with pytest.raises(ShipError, match="not better"):
        ship(checkpoint("worse", 39.0), "xmr-tiny", weights_dir=shipped)
    with pytest.raises(ShipError, match=r"scores mean validation R@10 40\.00; this checkpoint 39\.99: not better"):
        ship(checkpoint("close", 39.98765), "xmr-tiny", weights_dir=shipped)
    with pytest.raises(ShipError, match="this checkpoint none: not better"):  # a run that never validated
        ship(checkpoint("unscored", None), "xmr-tiny", weights_dir=shipped)
    ship(checkpoint("better", 41.5), "xmr-tiny", weights_dir=shipped)
    assert (shipped / "xmr-tiny.safetensors").read_bytes() == b"better"
    record = _json.loads((shipped / "xmr-tiny.json").read_text())
    assert record["val_mean_R@10"] == 41.5
    assert record["sha256"] == __import__("hashlib").sha256(b"better").hexdigest()  # what a load verifies
    with pytest.raises(ShipError, match="holds a 'xmr-mini' model"):
        ship(checkpoint("other", 99.0, model="xmr-mini"), "xmr-tiny", weights_dir=shipped)


def test_ship_a_partial_run_replaces_only_its_towers(tmp_path) -> None:
    import json as _json

    from safetensors.numpy import load_file, save_file

    from retrieval.train.ship import ShipError, ship

    def r10(value: float) -> dict:
        return {"R@10": value}

    shipped = tmp_path / "weights"
    shipped.mkdir()
    save_file(
        {
            "towers.image.w": np.zeros(3, np.float32),
            "towers.audio.w": np.zeros(2, np.float32),
            "logit_scale": np.ones(1, np.float32),
        },
        str(shipped / "xmr-tiny.safetensors"),
    )
    old_val = {"text->image": r10(30.0), "image->text": r10(30.0), "text->audio": r10(60.0), "audio->text": r10(60.0)}
    (shipped / "xmr-tiny.json").write_text(
        _json.dumps({"model": "xmr-tiny", "step": 3, "val_mean_R@10": 45.0, "val": old_val})
    )

    def image_run(name: str, image_r10: float) -> Path:
        folder = tmp_path / name
        folder.mkdir()
        # The run's stale copy of the audio tower must not be shipped.
        save_file(
            {
                "towers.image.w": np.ones(3, np.float32),
                "towers.audio.w": np.full(2, 5, np.float32),
                "logit_scale": np.ones(1, np.float32),
            },
            str(folder / "weights.safetensors"),
        )
        val = {"text->image": r10(image_r10), "image->text": r10(image_r10)}
        (folder / "meta.json").write_text(
            _json.dumps(
                {
                    "model": "xmr-tiny",
                    "step": 9,
                    "val": val,
                    "val_mean_R@10": image_r10,
                    "train_config": {"modalities": ["image"]},
                }
            )
        )
        return folder

    # 32 on images alone is below the shipped 45 mean, but the merged model (32, 32, 60, 60) is better.
    with pytest.raises(ShipError, match="not better"):
        ship(image_run("worse", 29.0), "xmr-tiny", weights_dir=shipped)
    ship(image_run("better", 32.0), "xmr-tiny", weights_dir=shipped)
    weights = load_file(str(shipped / "xmr-tiny.safetensors"))
    assert weights["towers.image.w"].tolist() == [1, 1, 1]
    assert weights["towers.audio.w"].tolist() == [0, 0]
    assert (shipped / "xmr-tiny.safetensors").stat().st_mode & 0o777 == 0o644, "packaged weights readable by all"
    record = _json.loads((shipped / "xmr-tiny.json").read_text())
    assert record["val_mean_R@10"] == pytest.approx(46.0)
    assert record["val"]["text->audio"]["R@10"] == 60.0 and record["val"]["image->text"]["R@10"] == 32.0
    assert record["towers"]["image"]["step"] == 9 and record["towers"]["audio"]["step"] == 3


def test_ship_a_sources_selected_run_by_its_per_source_score(tmp_path) -> None:
    import json as _json

    from safetensors.numpy import save_file

    from retrieval.train.metrics import source_score
    from retrieval.train.ship import ShipError, ship

    def recall(r1: float, r10: float) -> dict:
        return {"R@1": r1, "R@10": r10}

    shipped = tmp_path / "weights"
    shipped.mkdir()
    save_file(
        {"towers.image.w": np.zeros(3, np.float32), "towers.audio.w": np.zeros(2, np.float32)},
        str(shipped / "xmr-tiny.safetensors"),
    )
    old_by_source = {
        "pictures": {"text->image": recall(10, 40), "image->text": recall(10, 40)},
        "speech": {"text->audio": recall(30, 70), "audio->text": recall(30, 70)},
        "digits": {"text->audio": recall(100, 100), "audio->text": recall(80, 100)},
    }
    old_val = {
        "text->image": recall(10, 40),
        "image->text": recall(10, 40),
        "text->audio": recall(30, 70),
        "audio->text": recall(30, 70),
    }
    record = {"model": "xmr-tiny", "step": 3, "val_mean_R@10": 55.0, "val": old_val, "val_by_source": old_by_source}
    (shipped / "xmr-tiny.json").write_text(_json.dumps(record))

    def audio_run(name: str, speech_r10: float, digits_r1: float) -> Path:
        folder = tmp_path / name
        folder.mkdir()
        save_file({"towers.audio.w": np.ones(2, np.float32)}, str(folder / "weights.safetensors"))
        by_source = {
            "speech": {"text->audio": recall(30, speech_r10), "audio->text": recall(30, speech_r10)},
            "digits": {"text->audio": recall(100, 100), "audio->text": recall(digits_r1, 100)},
        }
        val = {"text->audio": recall(30, speech_r10), "audio->text": recall(30, speech_r10)}
        meta = {
            "model": "xmr-tiny",
            "step": 9,
            "val": val,
            "val_mean_R@10": speech_r10,
            "val_by_source": by_source,
            "train_config": {"modalities": ["audio"], "select": "sources"},
        }
        (folder / "meta.json").write_text(_json.dumps(meta))
        return folder

    # pooled R@10 falls (70 -> 69) but the digits gain more than speech loses: ships
    with pytest.raises(ShipError, match="per-source validation score"):
        ship(audio_run("worse", 69.0, 81.0), "xmr-tiny", weights_dir=shipped)
    ship(audio_run("better", 69.0, 90.0), "xmr-tiny", weights_dir=shipped)
    new = _json.loads((shipped / "xmr-tiny.json").read_text())
    assert new["val_mean_R@10"] == pytest.approx((40 + 40 + 69 + 69) / 4)
    assert set(new["val_by_source"]) == {"pictures", "speech", "digits"}  # the image tower's sources stay
    assert new["val_by_source"]["digits"]["audio->text"]["R@1"] == 90.0
    assert new["val_sources_score"] == pytest.approx(source_score(new["val_by_source"]))
    assert new["val_sources_score"] > source_score(old_by_source)
    # a run validated without the digits: their old entry measured the replaced tower, so it goes
    no_digits = audio_run("no digits", 75.0, 0.0)
    meta = _json.loads((no_digits / "meta.json").read_text())
    del meta["val_by_source"]["digits"]
    (no_digits / "meta.json").write_text(_json.dumps(meta))
    ship(no_digits, "xmr-tiny", weights_dir=shipped, force=True)
    assert set(_json.loads((shipped / "xmr-tiny.json").read_text())["val_by_source"]) == {"pictures", "speech"}
    # a shipped record without per-source recall cannot judge such a run
    del record["val_by_source"]
    (shipped / "xmr-tiny.json").write_text(_json.dumps(record))
    with pytest.raises(ShipError, match="no per-source"):
        ship(audio_run("any", 80.0, 99.0), "xmr-tiny", weights_dir=shipped)


@pytest.mark.parametrize("modality", ["image", "audio"])
def test_channels_last_steps_match_the_contiguous_reference(
    modality: str, shapes_manifest: Path, tones_manifest: Path, tmp_path: Path
) -> None:
    if modality == "image":
        runs = [Trainer(_config(shapes_manifest, tmp_path / str(fast), channels_last=fast)) for fast in (True, False)]
    else:
        runs = [
            Trainer(
                TrainConfig(
                    data=[str(tones_manifest)],
                    out=str(tmp_path / str(fast)),
                    model="xmr-tiny",
                    modalities=["audio"],
                    epochs=5,
                    audio_batch_size=6,
                    lr=3e-3,
                    warmup_steps=2,
                    threads=1,
                    channels_last=fast,
                )
            )
            for fast in (True, False)
        ]
    fast, slow = runs
    convs = [p for p in fast.model.towers[modality].parameters() if p.ndim == 4]
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
    assert any(not p.is_contiguous() for p in convs)  # (1x1 kernels and one-channel inputs are both layouts at once)
    assert all(p.is_contiguous() for p in slow.model.towers[modality].parameters())
    plan = fast._plan(0)[:4]
    first = fast.train_step(*plan[0]), slow.train_step(*plan[0])
    assert abs(first[0] - first[1]) < 1e-5
    grads = [
        (name, p.grad, dict(slow.model.towers[modality].named_parameters())[name].grad)
        for name, p in fast.model.towers[modality].named_parameters()
    ]
    for name, g_fast, g_slow in grads:  # one step from equal weights: equal gradients
        assert float((g_fast - g_slow).norm()) <= 1e-2 * float(g_slow.norm()) + 1e-8, name  # float rounding only
    losses = [(fast.train_step(m, idx), slow.train_step(m, idx)) for m, idx in plan[1:]]
    assert np.allclose(*zip(*losses), atol=1e-3), losses


def test_ship_measures_the_shipped_weights_on_sources_their_record_lacks(
    shapes_manifest: Path, tmp_path: Path, caplog
) -> None:
    """A run validated on a new data set is compared with the shipped weights measured on the
    same validation pairs, not with a record that never saw them."""
    import json as _json
    import logging

    from retrieval.train.ship import measure_by_source, ship

    extra = tmp_path / "extra.jsonl"
    rows = [_json.loads(line) for line in shapes_manifest.read_text().splitlines()][::2]
    extra.write_text(
        "".join(
            _json.dumps({**r, "image": str(shapes_manifest.parent / r["image"]), "source": "extra"}) + "\n"
            for r in rows
        )
    )
    first = Trainer(_config(shapes_manifest, tmp_path / "first", epochs=1, select="sources"))
    first.run()
    weights = tmp_path / "weights"
    ship(tmp_path / "first" / "best", "xmr-tiny-image", weights_dir=weights)
    record = _json.loads((weights / "xmr-tiny-image.json").read_text())
    assert set(record["val_by_source"]) == {"test"}
    again = measure_by_source(
        "xmr-tiny-image", weights / "xmr-tiny-image.safetensors", [str(shapes_manifest)], ["image"], None
    )
    for direction, numbers in record["val_by_source"]["test"].items():  # measured as training measures
        assert again["test"][direction] == pytest.approx(numbers)
    second = Trainer(
        _config(
            shapes_manifest, tmp_path / "second", epochs=8, select="sources", val=[str(shapes_manifest), str(extra)]
        )
    )
    second.run()
    with caplog.at_level(logging.INFO, logger="retrieval.train.ship"):
        ship(tmp_path / "second" / "best", "xmr-tiny-image", weights_dir=weights)
    assert "never validated on extra" in caplog.text
    assert set(_json.loads((weights / "xmr-tiny-image.json").read_text())["val_by_source"]) == {"test", "extra"}
