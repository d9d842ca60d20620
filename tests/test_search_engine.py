"""The query layer against brute force: every direction, filters, fusion, batches, the CLI."""

from __future__ import annotations

import fnmatch
import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import indexer
from indexer.storage.layout import Layout
from indexer.storage.paths import unescape_path
from indexer.storage.shards import ShardSet
from indexer.storage.store import Store
from retrieval import Engine, QueryError, Weighted
from tests.helpers import make_media, write_text

ROOT = Path(__file__).parent.parent


@pytest.fixture(scope="module")
def built(tmp_path_factory, tiny):
    """A small sharded index (5 vectors a shard) over real files, with a texts file."""
    base = tmp_path_factory.mktemp("engine")
    root = make_media(base / "media", images=12, audio=6, texts=5)
    os.utime(root / "pics/img0.jpg", (1_500_000_000, 1_500_000_000))  # 2017: for the date filters
    labels = write_text(
        base / "labels.txt", "a dog\na cat on a sofa\nrain on a window\n50% off_sale; DROP TABLE items\n"
    )
    indexer.index_folder(root, tiny, indexer.IndexOptions(workers=0, shard_size=5, texts=[str(labels)]))
    return root, labels


@pytest.fixture(scope="module")
def engine(built, tiny):
    root, _ = built
    with Engine.open(root, model=tiny) as e:
        yield e


def brute_force(root: Path, modality: str, query: np.ndarray, k: int, keep=lambda row: True) -> list[tuple[int, float]]:
    """Top-k (id, score) from every stored vector of ``modality``: the slow, obvious reference."""
    layout = Layout(root / ".xmr")
    store = Store(f"sqlite:///{layout.database}")
    rows = [r for r in store.items() if r.modality == modality and keep(r)]
    store.close()
    if not rows:
        return []
    ids = np.array([r.id for r in rows], dtype=np.int64)
    vectors = ShardSet(layout.shards, modality, len(query)).load().reconstruct(ids)
    scores = vectors @ query
    order = sorted(range(len(ids)), key=lambda n: (-scores[n], ids[n]))[:k]
    return [(int(ids[n]), float(scores[n])) for n in order]


def assert_same(hits, reference, tie: float = 1e-5) -> None:
    """Same hits in the same order, except that items whose scores differ by float noise
    (a tiny random model scores many items almost alike) may trade places."""
    assert len(hits) == len(reference)
    np.testing.assert_allclose([h.score for h in hits], [s for _, s in reference], rtol=1e-4, atol=tie)
    for hit, (ref_id, ref_score) in zip(hits, reference):
        if hit.id != ref_id:
            assert abs(hit.score - ref_score) <= tie, (hit.id, ref_id)
            assert (
                hit.id in [i for i, s in reference if abs(s - ref_score) <= 2 * tie]
                or abs(reference[-1][1] - ref_score) <= tie
            )
    assert [h.rank for h in hits] == list(range(1, len(hits) + 1))


QUERIES = {
    "text": lambda root: {"text": "a dog on a beach"},
    "image": lambda root: {"image": str(root / "photos/img1.png")},
    "audio": lambda root: {"audio": str(root / "sounds/clip2.flac")},
}


@pytest.mark.parametrize("source", ["text", "image", "audio"])
@pytest.mark.parametrize("target", ["text", "image", "audio"])
def test_every_direction_matches_brute_force(engine, built, tiny, source: str, target: str) -> None:
    root, _ = built
    query = QUERIES[source](root)
    vector = {"text": tiny.encode_text, "image": tiny.encode_image, "audio": tiny.encode_audio}[source](
        [query[source]]
    )[0]
    hits = engine.search(**query, to=target, k=7)
    assert all(h.modality == target for h in hits)
    assert_same(hits, brute_force(root, target, vector, 7))


def test_default_targets_and_k_per_modality(engine, built) -> None:
    hits = engine.search(text="rain", k=3)
    assert [h.modality for h in hits] == ["image"] * 3 + ["audio"] * 3  # every modality but the query's
    everything = engine.search(text="rain", to="all", k=100)
    counts = {m: sum(h.modality == m for h in everything) for m in ("image", "audio", "text")}
    assert counts == {"image": 12, "audio": 6, "text": 9}  # k beyond the collection: all of it


def test_hits_carry_paths_texts_and_metadata(engine, built) -> None:
    root, labels = built
    texts = engine.search(image=str(root / "pics/img0.jpg"), to="text", k=20)
    lines = {h.line: h for h in texts if h.line is not None}
    assert set(lines) == {1, 2, 3, 4} and lines[2].text == "a cat on a sofa"
    assert all(h.path == str(labels.resolve()) for h in lines.values())
    notes = [h for h in texts if h.line is None]
    assert {Path(h.path).name for h in notes} == {f"note{i}.txt" for i in range(5)}
    image = engine.search(text="x", to="image", k=1, path="pics/img0.jpg")[0]
    assert image.path == str(root / "pics/img0.jpg") and Path(image.path).is_file()
    assert image.metadata["width"] == 48 and image.metadata["ext"] == "jpg"
    assert set(image.to_dict()) >= {"rank", "score", "id", "modality", "path", "text"}
    json.dumps(image.to_dict())


def _row_path(row) -> str:
    return unescape_path(row.path)


@pytest.mark.parametrize(
    "filters, keep",
    [
        ({"path": "photos/*"}, lambda r: fnmatch.fnmatchcase(_row_path(r), "photos/*")),
        ({"path": "*img1*"}, lambda r: "img1" in _row_path(r)),
        ({"path": "pics/img?.JPG"}, lambda r: False),  # globs are case-sensitive
        ({"ext": ["JPG"]}, lambda r: r.ext == "jpg"),
        ({"ext": ".png"}, lambda r: r.ext == "png"),
        ({"min_size": 6000}, lambda r: r.size >= 6000),
        ({"max_size": 6000, "ext": "png"}, lambda r: r.size <= 6000 and r.ext == "png"),
        ({"before": "2018-01-01"}, lambda r: r.mtime_ns < datetime(2018, 1, 1).timestamp() * 1e9),
        ({"after": datetime(2018, 1, 1)}, lambda r: r.mtime_ns >= datetime(2018, 1, 1).timestamp() * 1e9),
    ],
)
def test_filters_match_brute_force(engine, built, tiny, filters, keep) -> None:
    root, _ = built
    vector = tiny.encode_text(["stripes"])[0]
    hits = engine.search(text="stripes", to="image", k=4, **filters)
    assert_same(hits, brute_force(root, "image", vector, 4, keep))


def test_duration_filter_and_k_results_despite_filtering(engine, built, tiny) -> None:
    root, _ = built
    vector = tiny.encode_text(["bell"])[0]
    hits = engine.search(text="bell", to="audio", k=3, min_duration=0.5, max_duration=2.0)
    assert_same(
        hits, brute_force(root, "audio", vector, 3, lambda r: r.duration is not None and 0.5 <= r.duration <= 2.0)
    )
    assert len(hits) == 3
    assert engine.search(text="bell", to="audio", min_duration=5) == []


@pytest.mark.parametrize("glob", ["'; DROP TABLE items; --", "50%", "off_sale", "%", "_", "*\\*", 'a"b', "caf\udce9*"])
def test_hostile_globs_change_only_the_results(engine, built, glob: str) -> None:
    hits = engine.search(text="x", to="text", k=50, path=glob)
    assert hits == [] or all(fnmatch.fnmatchcase(h.path, glob) for h in hits)
    assert len(engine.search(text="x", to="text", k=50)) == 9  # the table is still there


def test_weighted_fusion(engine, built, tiny) -> None:
    root, _ = built
    a, b = tiny.encode_text(["a red bird"])[0], tiny.encode_image([root / "pics/img2.png"])[0]
    fused = a - 0.5 * b
    fused /= np.linalg.norm(fused)
    hits = engine.search(text="a red bird", image=Weighted(str(root / "pics/img2.png"), -0.5), to="image", k=5)
    assert_same(hits, brute_force(root, "image", fused, 5))
    by_vector = engine.search(vector=fused, to="image", k=5)
    assert [h.id for h in by_vector] == [h.id for h in hits]


def test_search_batch_equals_single_searches(engine, built) -> None:
    root, _ = built
    queries = [{"text": "rain"}, {"image": str(root / "pics/img0.jpg"), "to": "text"}, {"text": "dog", "ext": "png"}]
    batch = engine.search_batch(queries, to="image", k=4)
    singles = [engine.search(**{"to": "image", **q}, k=4) for q in queries]
    assert [[h.id for h in hits] for hits in batch] == [[h.id for h in hits] for hits in singles]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"text": ""}, "empty text query"),
        ({}, "empty query"),
        ({"text": "a", "k": 0}, "k must be a positive"),
        ({"image": "/no/such.jpg"}, "not found"),
        ({"text": "a", "to": "pictures"}, "unknown target modality"),
        ({"text": "a", "after": "last week"}, "ISO date"),
        ({"text": "a", "colour": "red"}, "unknown search option"),
        ({"vector": [1.0, 2.0]}, "finite numbers"),
        ({"text": ["a", Weighted("a", -1.0)]}, "cancel out"),
    ],
)
def test_bad_queries_say_what_is_wrong(engine, kwargs, message: str) -> None:
    with pytest.raises(QueryError, match=message):
        engine.search(**kwargs)


def test_not_an_image_query(engine, built) -> None:
    root, _ = built
    with pytest.raises(QueryError, match="cannot be read"):
        engine.search(image=str(root / "notes/note0.txt"))


def test_default_engine_runs_the_onnx_model(built, engine) -> None:
    root, _ = built
    with Engine.open(root / ".xmr") as fresh:
        hits = fresh.search(text="a dog on a beach", to="image", k=5)
        assert fresh.encoder.runtime == "onnx"
    ref = engine.search(text="a dog on a beach", to="image", k=5)
    np.testing.assert_allclose([h.score for h in hits], [h.score for h in ref], atol=1e-4)


def test_missing_modality_of_the_model(tmp_path: Path) -> None:
    from retrieval import create_model

    root = make_media(tmp_path / "media", images=2, audio=1, texts=1)
    model = create_model("xmr-tiny-image", device="cpu")
    indexer.index_folder(root, model, indexer.IndexOptions(workers=0))
    with Engine.open(root, model=model) as e:
        with pytest.raises(QueryError, match="no audio tower"):
            e.search(audio=str(root / "sounds/clip0.flac"))
        with pytest.raises(QueryError, match="no audio tower"):
            e.search(text="x", to="audio")


# --- the CLI --------------------------------------------------------------------------------
def cli(*args: str, cwd: Path | None = None):
    from cli import app

    old = os.getcwd()
    os.chdir(cwd or old)
    try:
        return CliRunner().invoke(app, list(args))
    finally:
        os.chdir(old)


def test_cli_search_json_paths_and_table(built, engine) -> None:
    root, _ = built
    index = str(root / ".xmr")
    result = cli("search", "a dog on a beach", "--index", index, "--json", "-k", "3", "--to", "image")
    assert result.exit_code == 0, result.output
    hits = json.loads(result.stdout)
    assert [h["rank"] for h in hits] == [1, 2, 3]
    assert {"rank", "score", "id", "modality", "path", "text"} <= set(hits[0])
    ref = engine.search(text="a dog on a beach", to="image", k=3)
    assert [h["id"] for h in hits] == [h.id for h in ref]
    paths = cli(
        "search", "--image", str(root / "pics/img0.jpg"), "--to", "text", "--paths", "-k", "2", "--ext", "txt", cwd=root
    )
    assert paths.exit_code == 0, paths.output
    assert all(Path(p).suffix == ".txt" for p in paths.stdout.split())
    table = cli("search", "rain^0.7", "--text", "sun^-0.2", "--to", "audio", "--min-size", "1K", cwd=root / "sounds")
    assert table.exit_code == 0 and "== audio ==" in table.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["search", "a", "--index", "{tmp}"], "no xmr index"),
        (["search", "--image", "{tmp}/none.jpg", "--index", "{index}"], "not found"),
        (["search", "", "--index", "{index}"], "empty text query"),
        (["search", "a", "-k", "0", "--index", "{index}"], "k must be"),
        (["search", "a", "--min-size", "lots", "--index", "{index}"], "--min-size"),
        (["search", "--image", "{root}/notes/note0.txt", "--index", "{index}"], "cannot be read"),
    ],
)
def test_cli_errors_are_one_line(built, tmp_path: Path, args: list[str], message: str) -> None:
    root, _ = built
    args = [a.format(tmp=tmp_path, index=root / ".xmr", root=root) for a in args]
    result = cli(*args)
    assert result.exit_code != 0
    assert message in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_cli_finds_no_index_outside_one(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("XMR_INDEX", raising=False)
    result = cli("search", "a dog", cwd=tmp_path)
    assert result.exit_code == 1 and "no xmr index" in result.output
    monkeypatch.setenv("XMR_INDEX", str(tmp_path))
    assert "no xmr index" in cli("info").output


def test_cli_info_and_doctor(tmp_path: Path, tiny) -> None:
    root = make_media(tmp_path / "media", images=3, audio=2, texts=1)
    indexer.index_folder(root, tiny, indexer.IndexOptions(workers=0))
    info = cli("info", "--json", cwd=root / "pics")
    assert info.exit_code == 0, info.output
    facts = json.loads(info.stdout)
    assert facts["model"] == "xmr-tiny" and facts["counts"] == {"image": 3, "audio": 2, "text": 1}
    assert cli("doctor", "--index", str(root)).exit_code == 0
    (root / "pics/img0.jpg").unlink()
    sick = cli("doctor", "--index", str(root), "--json")
    assert sick.exit_code == 1
    assert [p["kind"] for p in json.loads(sick.stdout)["problems"]] == ["missing-file"]
    fixed = cli("doctor", "--index", str(root), "--fix")
    assert fixed.exit_code == 0, fixed.output
    assert json.loads(cli("info", "--json", "--index", str(root)).stdout)["counts"]["image"] == 2


def test_cli_search_as_a_real_process(built) -> None:
    root, _ = built
    env = {**os.environ, "XMR_INDEX": str(root / ".xmr")}
    proc = subprocess.run(
        [sys.executable, "-m", "cli", "search", "a note", "--to", "text", "--json", "-k", "2"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    hits = json.loads(proc.stdout)
    assert len(hits) == 2 and hits[0]["modality"] == "text"
    bad = subprocess.run(
        [sys.executable, "-m", "cli", "search", "--audio", "/no/such.wav"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
    )
    assert bad.returncode == 2 and bad.stderr.strip() == "xmr: error: query audio file not found: /no/such.wav"
