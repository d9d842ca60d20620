"""xmr-mini-real: Whisper's encoder under a trained head, fused with xmr-mini's scratch audio
tower, beside xmr-mini-photo's image tower; on ONNX Runtime and CTranslate2 with nothing
downloaded; checked against a reference built piece by piece."""

from __future__ import annotations

import json

import numpy as np
import pytest

from retrieval import create_model, list_models
from retrieval.models.spec import WEIGHTS_DIR
from retrieval.models.whisper_audio import WhisperBackbone, front_end

RATE = 16000
CONFIG = json.loads((WEIGHTS_DIR.parent / "model_configs" / "xmr-mini-real.json").read_text())


@pytest.fixture(scope="module")
def real():
    if not (WEIGHTS_DIR / "nanodet-features.onnx").is_file():
        pytest.skip("the NanoDet graph is not installed (made by benchmarks/convert_nanodet.py; 15 MB)")
    return create_model("xmr-mini-real")


def clips() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    t = np.arange(12 * RATE) / RATE
    tone = 0.3 * np.sin(2 * np.pi * (220 + 30 * t) * t) * (1 + np.sin(2 * np.pi * 3 * t)) / 2
    noise = 0.1 * rng.standard_normal(int(1.5 * RATE))
    return [tone.astype(np.float32), noise.astype(np.float32), tone[: int(0.7 * RATE)].astype(np.float32)]


def test_registered_and_embeds_audio_as_unit_vectors(real) -> None:
    assert "xmr-mini-real" in list_models()
    assert real.runtime == "onnx" and real.modalities == ("image", "audio", "text")
    vecs = real.encode_audio(clips())
    assert vecs.shape == (3, 384) and vecs.dtype == np.float32 and np.isfinite(vecs).all()
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    hashes = {create_model(n).weights_hash for n in ("xmr-mini", "xmr-mini-photo")}
    assert real.weights_hash not in hashes
    # the image tower is xmr-mini-photo's: the same vectors
    from PIL import Image

    img = Image.fromarray(np.random.default_rng(1).integers(0, 255, (90, 120, 3), dtype=np.uint8))
    np.testing.assert_allclose(real.encode_image([img]), create_model("xmr-mini-photo").encode_image([img]), atol=1e-6)


def test_audio_tower_matches_a_reference_built_piece_by_piece(real) -> None:
    torch = pytest.importorskip("torch")
    from safetensors.numpy import load_file

    cfg = CONFIG["audio_cfg"]
    w = load_file(str(WEIGHTS_DIR / cfg["head"]))
    mlp = torch.nn.Sequential(torch.nn.Linear(768, 1024), torch.nn.GELU(), torch.nn.Linear(1024, 384))
    with torch.no_grad():
        for layer, name in ((mlp[0], "fc1"), (mlp[2], "fc2")):
            layer.weight.copy_(torch.from_numpy(w[f"head.{name}.weight"]))
            layer.bias.copy_(torch.from_numpy(w[f"head.{name}.bias"]))
    backbone = WhisperBackbone(threads=1)
    whisper_front = front_end()
    mini = create_model("xmr-mini", runtime="onnx")
    unit = lambda v: v / np.linalg.norm(v, axis=-1, keepdims=True)  # noqa: E731
    expected = []
    for clip in clips():
        summaries = backbone.summaries(whisper_front((clip, RATE)))  # the feature cache's own path
        with torch.no_grad():
            head = unit(mlp(torch.from_numpy((summaries - w["head.mean"]) / w["head.std"])).numpy())
        windows = mini.preprocess_audio((clip, RATE))
        tower = unit(mini.encode_audio_features([windows[i : i + 1] for i in range(len(windows))]))
        fused = cfg["fusion"]["head"] * head + cfg["fusion"]["tower"] * tower
        expected.append(unit(unit(fused).sum(axis=0)))  # the clip: its windows' unit vectors averaged
    assert len(whisper_front((clips()[0], RATE))) == 3  # 12 s: three 5 s windows
    np.testing.assert_allclose(real.encode_audio(clips()), np.stack(expected), atol=2e-4)


def test_a_changed_scratch_tower_is_refused(real) -> None:
    with pytest.raises(ValueError, match="audio_cfg differs"):
        create_model("xmr-mini-real", tower_audio_cfg={"d_model": 128})


def test_indexes_and_searches_audio_with_no_torch_installed(real, tmp_path) -> None:
    # The light install's own check (test_models_light_install), with this model and a recording.
    from tests.helpers import make_media
    from tests.test_models_light_install import HEAVY, _without, _xmr

    root = make_media(tmp_path / "media", images=1, audio=2, texts=1)
    env = _without(tmp_path, HEAVY)
    done = _xmr(env, "index", str(root), "--model", "xmr-mini-real", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["added"] == 4
    clip = next(p for p in root.rglob("*.wav"))
    by_file = _xmr(env, "search", "--audio", str(clip), "--to", "audio", "--index", str(root / ".xmr"), "--json")
    assert by_file.returncode == 0, by_file.stderr
    assert json.loads(by_file.stdout)[0]["path"] == str(clip)


def test_a_front_end_the_scratch_tower_cannot_read_is_refused(real) -> None:
    with pytest.raises(ValueError, match="window_seconds differs from the scratch tower"):
        create_model("xmr-mini-real", audio_cfg={"window_seconds": 2.0})


def test_xmr_train_says_the_backbone_model_is_not_its_to_train(real, tmp_path) -> None:
    import subprocess
    import sys

    manifest = tmp_path / "pairs.jsonl"
    manifest.write_text('{"audio": "a.wav", "text": "a dog barking"}\n')
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "cli",
            "train",
            "--model",
            "xmr-mini-real",
            "--data",
            str(manifest),
            "--out",
            str(tmp_path / "run"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2, done.stderr
    assert "frozen pretrained backbones" in done.stderr and "train xmr-mini" in done.stderr
    assert "Traceback" not in done.stderr
