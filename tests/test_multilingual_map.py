"""The MLP map from e5 into the English tower's space (issue 35): trained by torch, run by numpy
(the same numbers), fused with the pivot as the docstring says, and the shipped one landing its
own English phrases where the tower puts them."""

from __future__ import annotations

import numpy as np
import pytest

from retrieval.models.heads import MlpHead
from retrieval.models.multilingual import BANK_FILE, PivotBank
from retrieval.train.multilingual import keyword_pairs


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_trained_map_runs_the_same_in_numpy_and_learns_the_pairs() -> None:
    torch = pytest.importorskip("torch")
    from retrieval.train.multilingual_map import fit_mlp_map

    rng = np.random.default_rng(0)
    groups = np.arange(600) // 3  # three inputs a target text, as translations share their English
    centres = _unit(rng.standard_normal((200, 24)))
    x = _unit(centres[groups] + 0.1 * rng.standard_normal((600, 24))).astype(np.float32)
    y = _unit(np.tanh(centres @ rng.standard_normal((24, 8))))[groups].astype(np.float32)
    tensors = fit_mlp_map(x, y, groups, hidden=64, epochs=30, batch=100, lr=1e-2)
    head = MlpHead(tensors)
    mapped = head(x)
    with torch.no_grad():  # the slow reference: torch's own layers with the same tensors
        t = {k: torch.from_numpy(v) for k, v in tensors.items()}
        fc1, fc2 = torch.nn.Linear(24, 64), torch.nn.Linear(64, 8)
        fc1.weight[:], fc1.bias[:] = t["head.fc1.weight"], t["head.fc1.bias"]
        fc2.weight[:], fc2.bias[:] = t["head.fc2.weight"], t["head.fc2.bias"]
        xs = (torch.from_numpy(x) - t["head.mean"]) / t["head.std"]
        ref = torch.nn.functional.normalize(fc2(torch.nn.functional.gelu(fc1(xs))), dim=-1).numpy()
    np.testing.assert_allclose(mapped, ref, atol=1e-5)
    before = float(np.mean(np.sum(_unit(x @ rng.standard_normal((24, 8))) * y, axis=1)))
    after = float(np.mean(np.sum(mapped * y, axis=1)))
    assert after > 0.8 > 0.1 > before, (before, after)


def test_project_fuses_the_pivot_the_mlp_and_the_snap() -> None:
    rng = np.random.default_rng(1)
    tensors = {
        "head.fc1.weight": rng.standard_normal((32, 16)).astype(np.float32),
        "head.fc1.bias": rng.standard_normal(32).astype(np.float32),
        "head.fc2.weight": rng.standard_normal((8, 32)).astype(np.float32),
        "head.fc2.bias": rng.standard_normal(8).astype(np.float32),
        "head.mean": np.zeros(16, np.float32),
        "head.std": np.ones(16, np.float32),
    }
    bank = PivotBank(_unit(rng.standard_normal((40, 16))), _unit(rng.standard_normal((40, 8))), k=4, tau=0.1)
    bank.mlp, bank.map_weight = MlpHead(tensors), 2.0
    queries = _unit(rng.standard_normal((5, 16)))
    ref = _unit(bank.pivot(queries) + 2.0 * MlpHead(tensors)(queries))
    np.testing.assert_allclose(bank.project(queries), ref, atol=1e-6)

    bank.snap_weight, bank.snap_k, bank.snap_tau = 3.0, 6, 0.02
    for query, fast in zip(queries, bank.project(queries)):  # the slow reference, one query at a time
        mapped = MlpHead(tensors)(query[None])[0]
        sims = bank.target @ mapped
        top = np.argsort(-sims)[:6]
        weights = np.exp((sims[top] - sims[top].max()) / 0.02)
        snap = _unit(sum(w * bank.target[i] for w, i in zip(weights / weights.sum(), top)))
        ref = _unit(bank.pivot(query[None])[0] + 2.0 * mapped + 3.0 * snap)
        np.testing.assert_allclose(fast, ref, atol=1e-5)


def test_the_shipped_map_lands_english_phrases_on_their_tower_vectors() -> None:
    """The shipped bank's English phrases were among the map's training pairs (e5 vector -> tower
    vector): the map puts each near its own target, in the top 10 of the bank's for nearly all."""
    bank = PivotBank.load(BANK_FILE)
    assert bank.mlp is not None
    rows = np.random.default_rng(2).choice(len(bank.e5), 300, replace=False)
    mapped = bank.mlp(bank.e5[rows])
    own = np.sum(mapped * bank.target[rows], axis=1)
    assert float(np.median(own)) > 0.5  # (0.67 as shipped, three maps; against other phrases: 0.08)
    ranks = np.sum(mapped @ bank.target.T > own[:, None], axis=1)
    assert float(np.mean(ranks < 10)) > 0.9  # among 12,891 phrases (0.98 as shipped)


def test_keyword_translations_come_from_the_emoji_they_tag() -> None:
    names = {
        "a": {"en": {"keywords": ["cat", "pet"]}, "de": {"keywords": ["Katze", "Haustier"]}},
        "b": {"en": {"keywords": ["cat", "face"]}, "de": {"keywords": ["Katze", "Gesicht"]}},
        "c": {"en": {"keywords": ["dog", "pet"]}, "de": {"keywords": ["Hund", "Haustier"]}},
        "d": {"en": {"keywords": ["dog", "face"]}, "de": {"keywords": ["Hund", "Gesicht"]}},
    }
    src, dst = keyword_pairs(names, sorted(names), ["de"])
    assert dict(zip(src, dst)) == {"Gesicht": "face", "Haustier": "pet", "Hund": "dog", "Katze": "cat"}
    assert keyword_pairs(names, ["a", "c"], ["de"]) == (["Haustier"], ["pet"])  # one emoji each is too few


def test_no_word_of_a_held_out_emoji_reaches_the_map() -> None:
    """Emoji share keywords: a face that is not the tongue emoji is tagged ``Zunge``/``tongue``
    too. With the tongue emoji held out, neither that pair nor any pair naming it is trained on."""
    from retrieval.train.multilingual import cldr_pairs, held_out_words

    names = {
        "tongue": {
            "en": {"name": ["tongue"], "keywords": ["tongue", "body"]},
            "de": {"name": ["Zunge"], "keywords": ["Zunge", "Körper"]},
        },
        "face1": {
            "en": {"name": ["face with tongue"], "keywords": ["tongue", "face"]},
            "de": {"name": ["Gesicht mit Zunge"], "keywords": ["Zunge", "Gesicht"]},
        },
        "face2": {
            "en": {"name": ["winking face with tongue"], "keywords": ["tongue", "face"]},
            "de": {"name": ["zwinkerndes Gesicht mit Zunge"], "keywords": ["Zunge", "Gesicht"]},
        },
        "body": {
            "en": {"name": ["flexed biceps"], "keywords": ["body", "face"]},
            "de": {"name": ["Bizeps"], "keywords": ["Körper", "Gesicht"]},
        },
    }
    train = ["face1", "face2", "body"]
    leaky, _, _ = cldr_pairs(names, train, ["de"], set())
    assert "Zunge" in leaky  # what split by emoji alone lets through
    held = held_out_words(names, {"tongue"})
    src, dst, count = cldr_pairs(names, train, ["de"], held)
    assert not {s.lower() for s in src} & held and not {d.lower() for d in dst} & held
    assert ("Gesicht", "face") in set(zip(src, dst)) and count == 3  # the names stay; Zunge/Körper go


def test_a_bank_from_before_the_mlp_loads_and_projects_as_it_did(tmp_path) -> None:
    """A bank file with a ridge map and no ``mlp.*`` or ``snap_*`` (as 1b49144 shipped it)."""
    import json

    from retrieval.models.multilingual import apply_map

    rng = np.random.default_rng(3)
    e5, target = _unit(rng.standard_normal((30, 16))), _unit(rng.standard_normal((30, 8)))
    ridge = rng.standard_normal((17, 8)).astype(np.float32)
    meta = {"k": 4, "tau": 0.05, "text_tower": "x", "map_weight": 2.0}
    path = tmp_path / "old-bank.npz"
    np.savez(
        path, e5=e5.astype(np.float16), target=target.astype(np.float16), map=ridge, meta=np.array(json.dumps(meta))
    )
    bank = PivotBank.load(path)
    assert bank.mlp is None and bank.snap_weight == 0.0
    queries = _unit(rng.standard_normal((3, 16)))
    expected = _unit(bank.pivot(queries) + 2.0 * apply_map(ridge, queries))
    np.testing.assert_allclose(bank.project(queries), expected, atol=1e-6)


def _head_tensors(rng: np.random.Generator, prefix: str) -> dict[str, np.ndarray]:
    shapes = {"fc1.weight": (12, 16), "fc1.bias": (12,), "fc2.weight": (8, 12), "fc2.bias": (8,)}
    out = {f"{prefix}head.{k}": rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}
    return out | {f"{prefix}head.mean": np.zeros(16, np.float32), f"{prefix}head.std": np.ones(16, np.float32)}


def test_a_bank_of_several_mlp_maps_projects_with_their_mean(tmp_path) -> None:
    """``mlp.0.head.*``, ``mlp.1.head.*``, ...: maps fitted with other seeds, their unit outputs
    averaged; a bank of one head (``mlp.head.*``) loads it alone, as it did before ensembles."""
    import json

    rng = np.random.default_rng(5)
    e5, target = _unit(rng.standard_normal((30, 16))), _unit(rng.standard_normal((30, 8)))
    meta = {"k": 4, "tau": 0.05, "text_tower": "x", "map_weight": 2.0, "snap_weight": 1.0}
    heads = {n: _head_tensors(rng, f"mlp.{n}.") for n in range(11)}  # mlp.1. is not a prefix of mlp.10.
    path = tmp_path / "bank.npz"
    tensors = {k: v for h in heads.values() for k, v in h.items()}
    np.savez(path, e5=e5, target=target, meta=np.array(json.dumps(meta)), **tensors)
    bank = PivotBank.load(path)
    queries = _unit(rng.standard_normal((4, 16)))
    one_by_one = [MlpHead({k[len(f"mlp.{n}.") :]: v for k, v in h.items()})(queries) for n, h in heads.items()]
    mean = _unit(sum(one_by_one))
    np.testing.assert_allclose(bank.mapped(queries), mean, atol=1e-6)
    expected = _unit(bank.pivot(queries) + 2.0 * mean + 1.0 * bank.snap(mean))
    np.testing.assert_allclose(bank.project(queries), expected, atol=1e-6)

    one = _head_tensors(rng, "mlp.")
    np.savez(path, e5=e5, target=target, meta=np.array(json.dumps(meta)), **one)
    single = PivotBank.load(path)
    assert isinstance(single.mlp, MlpHead)
    np.testing.assert_allclose(single.mapped(queries), MlpHead({k[4:]: v for k, v in one.items()})(queries), atol=1e-6)

    for broken, why in (
        (one | heads[0], "not both"),  # both layouts
        ({k: v for k, v in heads[0].items() if not k.endswith("fc2.bias")}, "lacks mlp.0.head.fc2.bias"),
    ):
        np.savez(path, e5=e5, target=target, meta=np.array(json.dumps(meta)), **broken)
        with pytest.raises(ValueError, match=why):
            PivotBank.load(path)


@pytest.mark.parametrize(
    "seeds, mlp",
    [(0, {}), (True, {}), (2.0, {}), (2, None), (1, {"seed": 1.9}), (1, {"seed": True}), (2, {"seed": -1})],
)
def test_bad_mlp_seeds_are_refused_before_any_work(seeds: object, mlp: dict | None) -> None:
    from retrieval.train.multilingual import check_settings

    with pytest.raises(ValueError, match="MLP seed"):
        check_settings(8, 0.05, 2.0, (0.0, 8, 0.05), mlp, seeds)


@pytest.mark.parametrize(
    "bad",
    [
        {"snap_k": 0},
        {"snap_k": 2.5},
        {"k": 2.0},
        {"k": True},
        {"snap_tau": 0.0},
        {"k": -1},
        {"tau": float("nan")},
        {"snap_weight": -1.0},
        {"map_weight": float("inf")},
    ],
)
def test_bad_route_settings_are_refused_when_the_bank_is_made(bad: dict) -> None:
    with pytest.raises(ValueError, match=next(iter(bad))):
        PivotBank(np.zeros((2, 4)), np.zeros((2, 4)), **bad)


def test_every_pair_is_trained_on_whatever_the_batch() -> None:
    pytest.importorskip("torch")
    from retrieval.train.multilingual_map import fit_mlp_map

    rng = np.random.default_rng(4)
    x, y = _unit(rng.standard_normal((7, 6))).astype(np.float32), _unit(rng.standard_normal((7, 4))).astype(np.float32)
    for batch in (3, 50):  # 7 pairs: a last batch of one; fewer pairs than a batch
        tensors = fit_mlp_map(x, y, np.arange(7), hidden=8, epochs=2, batch=batch)
        assert np.all(np.isfinite(MlpHead(tensors)(x)))
    for bad in ({"epochs": 0}, {"batch": 0}):
        with pytest.raises(ValueError, match="must be >= 1"):
            fit_mlp_map(x, y, np.arange(7), **bad)
    with pytest.raises(ValueError, match="needs pairs"):
        fit_mlp_map(x[:0], y[:0], np.arange(0))


def test_no_held_out_stamp_description_or_emoji_word_reaches_the_map_through_stamps() -> None:
    """Stamps are held out by their English caption, but a training stamp may share a held-out
    one's translation ("Un coniglietto." describes two rabbits) or be an emoji's word ("A frog.")."""
    from retrieval.train.multilingual import held_out_sentences, held_out_words, stamp_pairs, text_key, without_held

    stamps = {
        "A bunny.": {"it": "Un coniglietto.", "ja": "うさぎ"},
        "A small rabbit.": {"it": "Un coniglietto.", "ja": "小さなうさぎ"},
        "A frog.": {"it": "Una rana.", "ja": "カエル"},
        "A pear.": {"it": "Una pera.", "ja": "洋ナシ！"},
    }
    names = {"frog": {"en": {"name": ["frog"], "keywords": []}, "ja": {"name": ["カエル"], "keywords": []}}}
    held = held_out_words(names, {"frog"}) | held_out_sentences(stamps, {"A bunny."})
    src, dst = without_held(*stamp_pairs(stamps, {"A bunny."}, ["it", "ja"]), held)
    assert set(zip(src, dst)) == {
        ("小さなうさぎ", "A small rabbit."),
        ("Una pera.", "A pear."),
        ("洋ナシ！", "A pear."),
    }
    assert text_key("洋ナシ！") == "洋ナシ" and text_key("A frog.") == "frog" and text_key(".شمعة") == "شمعة"


@pytest.mark.parametrize("seeds", [1, 2])
def test_a_bank_built_with_several_seeds_holds_each_map_and_uses_their_mean(tmp_path, seeds: int) -> None:
    """build() end to end on a CLDR-shaped package: two MLP maps from seeds 5 and 6, stored in
    order under ``mlp.0.`` and ``mlp.1.``, read back as their mean; one seed, as before
    (``mlp.head.*``). Weights in float16, the input's mean and spread in float32."""
    import json

    pytest.importorskip("torch")
    from retrieval import create_model
    from retrieval.models.multilingual import MeanOfHeads
    from retrieval.train.multilingual import build
    from tests.test_bench_multilingual import EMOJI, _cldr
    from tests.test_models_multilingual import e5_or_skip

    e5_or_skip()
    vocabulary = tmp_path / "vocabulary"  # a bank's phrases and word lists, kept as they are
    vocabulary.mkdir()
    phrases = ["a dog", "a red apple", "a hot drink", "a mountain", "a bicycle", "fish", "books"]
    np.savez(vocabulary / "pivot-bank.npz", phrases=np.array(phrases))
    for name in ("english-words.txt", "foreign-words.txt"):
        (vocabulary / name).write_text("dog\napple\n", encoding="utf-8")
    mlp = {"hidden": 16, "epochs": 3, "batch": 8, "seed": 5}
    out = tmp_path / "bank"
    meta = build(
        [_cldr(tmp_path / "cldr")], tmp_path / "no-wordnet", [], create_model("xmr-mini", runtime="onnx"), out,
        locales=["de", "ja"], mlp=mlp, mlp_seeds=seeds, vocabulary=vocabulary,
    )  # fmt: skip
    assert meta["mlp_seeds"] == seeds and meta["map_name_pairs"] == 2 * len(EMOJI)
    with np.load(out / "pivot-bank.npz") as data:
        mlp_keys = [k for k in data.files if k.startswith("mlp")]
        dtypes = {k.split("head.")[1]: data[k].dtype for k in mlp_keys}
        first = {k[len("mlp.0.") :]: data[k] for k in mlp_keys if k.startswith("mlp.0.")}
    assert dtypes == {
        "fc1.weight": np.float16, "fc1.bias": np.float16, "fc2.weight": np.float16, "fc2.bias": np.float16,
        "mean": np.float32, "std": np.float32,
    }  # fmt: skip
    bank = PivotBank.load(out / "pivot-bank.npz")
    if seeds == 1:
        assert {k.split("head.")[0] for k in mlp_keys} == {"mlp."} and isinstance(bank.mlp, MlpHead)
        return
    assert {k.split("head.")[0] for k in mlp_keys} == {"mlp.0.", "mlp.1."}
    assert isinstance(bank.mlp, MeanOfHeads) and len(bank.mlp.heads) == 2
    one, two = (h(bank.e5) for h in bank.mlp.heads)
    assert not np.allclose(one, two)  # other seeds, other maps
    np.testing.assert_allclose(bank.mapped(bank.e5), _unit(one + two), atol=1e-6)
    np.testing.assert_allclose(one, MlpHead(first)(bank.e5), atol=1e-6)
    assert json.loads((out / "pivot-bank.json").read_text())["mlp"] == mlp
