"""The model registry: every model's tiny form encodes every modality it has, the same way
every time and in every runtime."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import retrieval
from retrieval import ModalityError, UnknownModelError, create_model
from tests.conftest import sine

TINY_MODELS = ["xmr-tiny", "xmr-tiny-image", "openclip:xmr-openclip-tiny"]


def _inputs(model, n: int = 8) -> dict[str, list]:
    rng = np.random.default_rng(0)
    return {
        "text": [f"a photo of thing number {i}" + " and more words" * i for i in range(n)],
        "image": [Image.fromarray(rng.integers(0, 255, (40 + i, 50, 3), dtype=np.uint8)) for i in range(n)],
        "audio": [sine(200.0 * (i + 1), 0.5 + 0.3 * i, 16000) for i in range(n)],
    }


@pytest.fixture(scope="module", params=TINY_MODELS)
def model(request):
    return create_model(request.param, device="cpu")


def test_registry_lists_every_config() -> None:
    names = retrieval.list_models()
    assert {"xmr-mini", "xmr-tiny", "xmr-tiny-image", "openclip:xmr-openclip-tiny"} <= set(names)


def test_unknown_name_lists_the_valid_ones() -> None:
    with pytest.raises(UnknownModelError, match="xmr-mini"):
        create_model("no-such-model")


def test_each_modality_shape_norm_determinism_and_batching(model) -> None:
    inputs = _inputs(model)
    for modality in model.modalities:
        vecs = model.encode(modality, inputs[modality])
        assert vecs.shape == (8, model.embed_dim) and vecs.dtype == np.float32
        assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
        assert np.array_equal(vecs, model.encode(modality, inputs[modality])), "encoding must be deterministic"
        single = model.encode(modality, inputs[modality][3:4])
        assert np.abs(single - vecs[3:4]).max() < 1e-4, (
            f"{modality}: batch of 1 differs from the same item in a batch of 8"
        )
        assert np.abs(vecs[0] - vecs[1]).max() > 1e-4, f"{modality}: different inputs gave the same vector"


def test_missing_modality_is_a_clear_error() -> None:
    model = create_model("xmr-tiny-image", device="cpu")
    with pytest.raises(ModalityError, match="no audio tower"):
        model.encode_audio([sine(440, 1, 16000)])


def test_preprocessed_batches_equal_raw_items(tiny) -> None:
    imgs = _inputs(tiny)["image"][:3]
    pixels = np.stack([tiny.preprocess_image(i) for i in imgs])
    assert np.allclose(tiny.encode_image(pixels), tiny.encode_image(imgs), atol=1e-6)
    import torch

    waves = np.stack([sine(300, 1.0, 16000), sine(900, 1.0, 16000)])
    assert np.allclose(tiny.encode_audio(torch.from_numpy(waves)), tiny.encode_audio([w for w in waves]), atol=1e-6)
    assert np.allclose(
        tiny.encode_audio([(sine(300, 1.0, 8000), 8000)]), tiny.encode_audio([(sine(300, 1.0, 8000), 8000)])
    )


def test_long_text_is_chunked_and_averaged(tiny) -> None:
    long = "word " * 500  # far past the tiny tower's 64 tokens
    chunks, owner = tiny.tokenizer.chunks([long, "short"])
    assert owner.count(0) > 1 and owner.count(1) == 1
    assert all(len(c) <= 64 for c in chunks)
    assert tiny.encode_text([long]).shape == (1, tiny.embed_dim)


def test_onnx_runtime_matches_torch(tiny) -> None:
    onnx = create_model("xmr-tiny", runtime="onnx")
    assert onnx.runtime == "onnx" and onnx.weights_hash == tiny.weights_hash
    inputs = _inputs(tiny)
    for modality in tiny.modalities:
        diff = np.abs(onnx.encode(modality, inputs[modality]) - tiny.encode(modality, inputs[modality])).max()
        assert diff < 1e-4, f"{modality}: ONNX and torch differ by {diff}"


def test_text_query_path_imports_no_torch(tiny) -> None:
    create_model("xmr-tiny", runtime="onnx")  # make sure the export exists
    code = (
        "import sys, retrieval; m = retrieval.create_model('xmr-tiny', runtime='onnx'); "
        "v = m.encode_text(['a dog on a beach']); "
        "print(v.shape, 'torch' in sys.modules, 'transformers' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["(1,", "32)", "False", "False"], out


def test_random_init_is_the_same_in_every_process(tiny) -> None:
    code = (
        "import json, retrieval, numpy as np; m = retrieval.create_model('xmr-tiny', device='cpu'); "
        "print(json.dumps(m.encode_text(['same weights']).round(6).tolist()))"
    )
    other = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert np.allclose(other, tiny.encode_text(["same weights"]), atol=1e-6)


def test_minilm_text_tower_matches_the_reference_implementation() -> None:
    """Our BERT over the shipped weights against Hugging Face's BertModel + mean pooling over the
    same weights (renamed back), with Hugging Face's tokenizer over the shipped tokenizer file."""
    import torch
    import transformers

    from retrieval.models.registry import TOKENIZER_FILE, resolve
    from retrieval.models.text_weights import HF_RENAMES, load_text_weights

    model = create_model("xmr-mini", device="cpu")
    texts = ["a dog on a beach", "Tax law reform passed the senate yesterday."]
    ours = model.encode_text(texts)
    cfg = resolve("xmr-mini").config["text_cfg"]
    ref = transformers.BertModel(
        transformers.BertConfig(
            vocab_size=cfg["vocab_size"],
            hidden_size=cfg["hidden_size"],
            num_hidden_layers=cfg["num_layers"],
            num_attention_heads=cfg["num_heads"],
            intermediate_size=cfg["intermediate_size"],
        ),
        add_pooling_layer=False,
    ).eval()
    back = {v: k for k, v in HF_RENAMES.items()}
    state = {}
    for name, value in load_text_weights(resolve("xmr-mini").text_weights_file).items():
        if name.startswith("layers."):
            _, index, module, param = name.split(".")
            key = f"encoder.layer.{index}.{back[module]}.{param}"
        else:
            key = "embeddings." + name.replace("embed_norm", "LayerNorm")
        state[key] = torch.from_numpy(value)
    missing, unexpected = ref.load_state_dict(state, strict=False)
    assert not unexpected and all("position_ids" in m for m in missing), (missing, unexpected)
    tok = transformers.PreTrainedTokenizerFast(tokenizer_file=str(TOKENIZER_FILE), pad_token="[PAD]")
    batch = tok(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = ref(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    expected = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).numpy()
    assert np.abs(ours - expected).max() < 1e-4
    sims = ours @ model.encode_text(["a puppy at the seaside"]).T
    assert sims[0, 0] > sims[1, 0] + 0.3, "the pretrained tower must rank a paraphrase above an unrelated text"


def test_openclip_without_cached_weights_says_how_to_use_a_local_file(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    from retrieval.models.openclip_model import PretrainedWeightsError

    with pytest.raises(PretrainedWeightsError, match=r"ViT-B-32.*openclip:ViT-B-32@"):
        create_model("openclip:ViT-B-32/laion2b_s34b_b79k", device="cpu")
    with pytest.raises(FileNotFoundError, match="not found"):
        create_model(f"openclip:ViT-B-32@{tmp_path}/missing.bin", device="cpu")


def test_large_jpeg_decodes_at_reduced_scale_close_to_a_full_decode(tmp_path) -> None:
    """The fast path (JPEG draft at reduced scale, one decode) against the slow reference (a
    full decode): the same pixels to within JPEG-scaling noise, and the true size reported."""
    import io

    from PIL import ImageOps

    from retrieval.models.image import ImagePreprocessor

    rng = np.random.default_rng(0)
    small = rng.integers(0, 255, (12, 16, 3), dtype=np.uint8)
    big = Image.fromarray(small).resize((1600, 1200), Image.BICUBIC)
    exif = big.getexif()
    exif[0x0112] = 6  # shown rotated by 90 degrees
    buf = io.BytesIO()
    big.save(buf, format="JPEG", quality=92, exif=exif)
    pre = ImagePreprocessor(image_size=64)
    fast, meta = pre.process(buf.getvalue())
    assert (meta["width"], meta["height"]) == (1200, 1600)
    with Image.open(io.BytesIO(buf.getvalue())) as full:
        reference = pre.from_rgb(ImageOps.exif_transpose(full.convert("RGB")))
    assert fast.shape == reference.shape == (3, 64, 64)
    assert np.abs(fast - reference).mean() < 0.05, np.abs(fast - reference).mean()
