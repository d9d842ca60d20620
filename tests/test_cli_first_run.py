"""Faults a new user meets running the README's commands: odd file names on a strict UTF-8
terminal, real MP3s shorter than their header says, a root reached through a link, benchmark
output, forced offline mode, and the small print of the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from retrieval import Engine
from tests.helpers import RATE, make_media, write_image
from tests.test_ingest_indexer import run

ROOT = Path(__file__).parent.parent


def _cli(*args: str):
    from cli import app

    return CliRunner().invoke(app, list(args))


def _xmr(*args: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``xmr ARGS`` as a real subprocess, stdout as bytes."""
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        capture_output=True,
        timeout=180,
        cwd=cwd or ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
    )


def test_odd_file_names_print_in_every_mode_on_a_strict_utf8_terminal(tmp_path: Path, tiny) -> None:
    root = make_media(tmp_path / "media", images=2, audio=0, texts=0)
    odd = [b"caf\xe9 latin-1.png", b"two\nlines.png"]
    for n, name in enumerate(odd):
        write_image(root / os.fsdecode(name), seed=40 + n)
    run(root, tiny)
    strict = {"PYTHONIOENCODING": "utf-8:strict"}
    common = ["search", "x", "--index", str(root), "--to", "image", "-k", "10"]
    table = _xmr(*common, env=strict)
    assert table.returncode == 0, table.stderr
    assert b"caf\\xe9 latin-1.png" in table.stdout
    paths = _xmr(*common, "--paths", env=strict)
    assert paths.returncode == 0 and bytes(root) + b"/caf\xe9 latin-1.png\n" in paths.stdout
    nul = _xmr(*common, "-0", env=strict)
    assert nul.returncode == 0
    names = set(nul.stdout.split(b"\0")[:-1])
    assert {bytes(root) + b"/" + n for n in odd} <= names and len(names) == 4
    as_json = _xmr(*common, "--json", env=strict)
    found = {os.fsencode(h["path"]) for h in json.loads(as_json.stdout)}  # the documented round trip
    assert {bytes(root) + b"/" + n for n in odd} <= found


def test_an_mp3_shorter_than_its_header_says_is_decoded_as_far_as_it_goes(tmp_path: Path, tiny) -> None:
    root = tmp_path / "media"
    root.mkdir()
    t = np.arange(RATE * 12) / RATE
    try:
        sf.write(tmp_path / "full.mp3", (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), RATE, format="MP3")
    except (sf.LibsndfileError, TypeError, ValueError):
        pytest.skip("this libsndfile cannot write MP3")
    data = (tmp_path / "full.mp3").read_bytes()
    (root / "cut.mp3").write_bytes(data[: len(data) // 3])  # its Xing header still counts 12 s
    assert sf.info(root / "cut.mp3").duration == pytest.approx(12.0)
    summary = run(root, tiny)
    assert summary.skipped == [] and summary.counts == {"audio": 1}
    with Engine.open(root, model=tiny) as engine:
        (hit,) = engine.search(audio=str(root / "cut.mp3"), to="audio", k=1)  # as a query, too
    assert hit.score == pytest.approx(1.0, abs=1e-5)
    assert 2.0 < hit.metadata["duration"] < 6.0  # what is really there, not the header's 12 s


def test_a_root_reached_through_a_link_is_the_same_folder(tmp_path: Path, tiny) -> None:
    real = make_media(tmp_path / "real", images=3, audio=1, texts=1)
    link = tmp_path / "link"
    link.symlink_to(real)
    assert run(real, tiny).added == 5
    again = run(link, tiny)  # was refused: "belongs to .../real, not .../link"
    assert (again.added, again.removed, again.unchanged) == (0, 0, 5)


def test_benchmarks_write_to_the_current_folder_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    committed = ROOT / "benchmarks/results/embed_speed.md"
    before = committed.read_bytes() if committed.exists() else None
    monkeypatch.chdir(tmp_path)
    out = _cli("bench", "embed", "--model", "xmr-tiny", "--runtime", "torch", "--items", "4", "--batch-size", "4")
    assert out.exit_code == 0, out.output
    assert (tmp_path / "xmr-results/embed_speed.md").is_file()
    assert (committed.read_bytes() if committed.exists() else None) == before


def test_the_cli_no_longer_forces_offline_mode(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    probe = (
        "import os, sys\nfrom cli import app\n"
        "try:\n    app(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
        "print('HF_HUB_OFFLINE=' + str(os.environ.get('HF_HUB_OFFLINE')))\n"
    )
    for args, expected in (
        (["doctor", "--index", str(tmp_path)], "None"),
        (["doctor", "--index", str(tmp_path), "--offline"], "1"),
    ):
        proc = subprocess.run(
            [sys.executable, "-c", probe, *args], capture_output=True, text=True, timeout=120, cwd=ROOT, env=env
        )
        assert proc.stdout.strip().splitlines()[-1] == f"HF_HUB_OFFLINE={expected}", proc.stderr


def test_pretrained_weights_in_the_cache_load_without_the_network(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An open_clip tag whose weights lie in the Hugging Face cache loads through open_clip's own
    loading with the hub offline (the tests never reach the network)."""
    import huggingface_hub
    import open_clip
    import torch
    from open_clip import pretrained as registry

    from retrieval import create_model

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf/hub"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf/hub"))  # read once, at import
    source = create_model("openclip:xmr-openclip-tiny", device="cpu", seed=3)
    snapshot = tmp_path / "hf/hub/models--xmr-test--tiny-clip/snapshots/0123456789abcdef"
    snapshot.mkdir(parents=True)
    torch.save(source.model.state_dict(), snapshot / "open_clip_pytorch_model.bin")
    (tmp_path / "hf/hub/models--xmr-test--tiny-clip/refs").mkdir()
    (tmp_path / "hf/hub/models--xmr-test--tiny-clip/refs/main").write_text("0123456789abcdef")
    monkeypatch.setitem(
        registry._PRETRAINED, "xmr-openclip-tiny", {"cached": registry._pcfg(hf_hub="xmr-test/tiny-clip/")}
    )
    assert "cached" in open_clip.list_pretrained_tags_by_model("xmr-openclip-tiny")
    loaded = create_model("openclip:xmr-openclip-tiny/cached", device="cpu")
    texts = ["a dog", "a cat"]
    np.testing.assert_allclose(loaded.encode_text(texts), source.encode_text(texts), atol=1e-6)


def test_the_small_print(tmp_path: Path, tiny) -> None:
    root = make_media(tmp_path / "media", images=2, audio=1, texts=1)
    empty = _cli("search", "--index", str(root))
    assert (
        empty.exit_code == 2 and "--text" in empty.output and "--image" in empty.output and "text=" not in empty.output
    )
    run(root, tiny)
    info = _cli("info", "--index", str(root))
    last = next(line for line in info.output.splitlines() if line.startswith("last run"))
    for word in ("added", "updated", "moved", "removed", "unchanged", "kept", "skipped"):
        assert word in last, last
    faiss = next(line for line in info.output.splitlines() if line.startswith("faiss") and "GPU(s) seen" in line)
    assert "faiss-" in faiss  # which package: faiss-gpu and faiss-cpu must never share an environment
