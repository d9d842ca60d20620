"""Sounds and speech with Whisper's ears: a head on the frozen encoder, alone or fused with today's tower.

Measures, against today's xmr-mini audio tower and with its frozen text tower as the target
space, on every audio test split (speech, everyday sounds, sets never trained on):

* ``today``: xmr-mini's audio vector (the conv + transformer tower trained from scratch here);
* ``head-linear`` / ``head-mlp``: a head on the cached Whisper summaries of each 5 s window
  (``benchmarks/cache_audio_features.py``; :mod:`retrieval.models.whisper_audio`) trained with
  InfoNCE into the text space on xmr-mini's audio training sets (an epoch: every caption once,
  one of its clips and one of that clip's windows drawn at random), the epoch chosen by mean
  validation R@10; a clip's vector is the mean of its windows' unit vectors, as the tower does;
* ``today+head``: the two unit vectors fused, ``normalize((1 - w) * today + w * head)``, the
  weight chosen on the validation splits (best mean R@10); the test splits never choose.

R@k follows ``xmr bench recall`` (distinct captions, chance beside each). Writes
``--out/backbone_audio.{json,md}``; ``--ship DIR`` writes the MLP head as safetensors.

Needs the feature cache and torch (the train extra).

Usage:
    PYTHONPATH=. nice -n 10 python benchmarks/backbone_audio.py --out benchmarks/results
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.backbone_image import fuse, mean_r10, text_vectors
from benchmarks.cache_audio_features import extractor_name, load_summaries
from benchmarks.cache_features import cache_folder
from retrieval.bench.recall import Captioned, directions, load_captioned
from retrieval.models.encoder import l2_normalize
from retrieval.models.whisper_audio import WhisperBackbone

log = logging.getLogger("backbone_audio")
DATA = Path("/root/xmr-data/data")
TRAIN_SPLITS = (
    "tuxpaint-sounds/train",
    "tuxpaint-speech/train",
    "asterisk/train",
    "fsdd/train",
    "speech/train-1v",  # one espeak-ng reading of each training caption of three (one_reading)
    "speech-flite/train",
    "gm-instruments/train",
    "sample-libraries/train",
    "game-sounds/train",
    "sound-mixes/train",
)
VAL_SETS = (
    "tuxpaint-sounds",
    "tuxpaint-speech",
    "asterisk",
    "fsdd",
    "speech",
    "gm-instruments",
    "sample-libraries",
    "game-sounds",
)
TESTS = (
    "gm-instruments/test",
    "gm-instruments/test-unseen-font",
    "sample-libraries/test",
    "game-sounds/test",
    "gcompris-sounds/test",
    "speech/test",
    "speech-flite/test",
    "asterisk/test",
    "fsdd/test",
    "tuxpaint-sounds/test",
    "minetest-sounds/test",
)
SHIPPED = "xmr-mini-real-audio"  # the head's file in retrieval/models/weights/
WEIGHTS = tuple(round(w, 2) for w in np.arange(0.0, 1.0001, 0.1))


def one_reading(manifest: Path, out: Path) -> None:
    """``out``: one row of ``manifest`` for each caption, the reading picked by the caption's hash
    (so the voices stay mixed): a third of the speech set's clips, for a third of the caching."""
    rows = [json.loads(line) for line in open(manifest, encoding="utf-8") if line.strip()]
    readings: dict[str, list[dict]] = {}
    for row in rows:
        readings.setdefault(row["text"], []).append(row)
    picked = [r[int(hashlib.sha256(t.encode()).hexdigest(), 16) % len(r)] for t, r in readings.items()]
    out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in picked), encoding="utf-8")


class Split:
    """One manifest's distinct clips with their cached window summaries and captions."""

    def __init__(self, name: str, extractor: str, cache: Path, data: Path) -> None:
        self.name = name
        self.path = data / f"{name}.jsonl"
        rows = [json.loads(line) for line in open(self.path) if line.strip()]
        self.items: list[Captioned] = load_captioned(self.path)
        folder = cache_folder(cache, self.path.resolve(), extractor, len(rows))
        meta = folder / "meta.json"
        shards = json.loads(meta.read_text())["shards"] if meta.is_file() else -1
        if len(list(folder.glob("shard-*.npz"))) != shards:
            raise FileNotFoundError(f"{name}: features not cached (yet) in {folder}")
        feats = load_summaries(folder)
        where = {int(r): n for n, r in enumerate(feats["rows"])}
        first_row: dict[str, int] = {}
        for n, row in enumerate(rows):
            first_row.setdefault(str(self.path.parent / row["audio"]), n)
        keep = [it for it in self.items if first_row[it.path] in where]
        if len(keep) < len(self.items):
            log.warning("%s: %d clips without features (unreadable)", name, len(self.items) - len(keep))
        self.items = keep
        self.windows = [feats["windows"][where[first_row[it.path]]] for it in self.items]
        self.texts = list(dict.fromkeys(c for it in self.items for c in it.captions))


def score(split: Split, vecs: np.ndarray, text_store: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    return directions(split.items, vecs, split.texts, np.stack([text_store[t] for t in split.texts]))


def today_windows(encoder, split: Split, work: Path) -> np.ndarray:
    """xmr-mini's vector of every window of every clip (``[sum W, 384]``, in the clips' order):
    fusion is per window, as the tower fuses (:mod:`retrieval.models.ears`)."""
    path = work / f"today-windows-{split.name.replace('/', '-')}-{encoder.weights_hash[:12]}.npy"
    count = sum(len(w) for w in split.windows)
    if path.is_file():
        vecs = np.load(path)
        if len(vecs) == count:
            return vecs
    rows = []
    for it, summaries in zip(split.items, split.windows):
        windows = encoder.preprocess_audio(it.path)
        if len(windows) != len(summaries):  # one front end cuts both: the same windows
            raise ValueError(f"{it.path}: {len(windows)} windows here, {len(summaries)} in the feature cache")
        rows.extend(windows[i : i + 1] for i in range(len(windows)))
    vecs = np.concatenate([encoder.encode_audio_features(rows[i : i + 256]) for i in range(0, len(rows), 256)])
    np.save(path, vecs)
    return vecs


def clip_vectors(split: Split, windows: np.ndarray) -> np.ndarray:
    """Window vectors ``[sum W, D]`` -> each clip's: the mean of its windows' unit vectors (the
    encoder's rule for long audio), renormalised."""
    owner = np.repeat(np.arange(len(split.windows)), [len(w) for w in split.windows])
    out = np.zeros((len(split.windows), windows.shape[1]), np.float32)
    np.add.at(out, owner, l2_normalize(windows))
    return l2_normalize(out)


def per_clip(apply, split: Split) -> np.ndarray:
    """The head on every window of every clip, averaged per clip (the tower's rule)."""
    return clip_vectors(split, apply(np.concatenate(split.windows)))


def train_head(
    kind: str,
    train: list[Split],
    val: list[Split],
    text_store,
    epochs: int,
    seed: int = 0,
    passes: dict[str, int] | None = None,
):
    """Train a head (see the module docstring); ``passes``: how often an epoch draws each caption
    of the named training splits (else once). Returns ``(apply, info)``."""
    import torch
    from torch import nn

    from retrieval.train.loss import InfoNCELoss

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    clips = [w for s in train for w in s.windows]
    flat = np.concatenate(clips)
    mean, std = flat.mean(0), flat.std(0) + 1e-4
    starts = np.cumsum([0] + [len(w) for w in clips])
    captions = [it.captions for s in train for it in s.items]
    by_caption: dict[str, list[int]] = {}
    for n, caps in enumerate(captions):
        for c in caps:
            by_caption.setdefault(c, []).append(n)
    keys = list(by_caption)
    target = torch.from_numpy(np.stack([text_store[c] for c in keys]))
    draws = dict.fromkeys(keys, 1)
    for split in train:
        for it in split.items:
            for c in it.captions:
                draws[c] = max(draws[c], (passes or {}).get(split.name, 1))
    epoch_keys = np.repeat(np.arange(len(keys)), [draws[k] for k in keys])
    xs = torch.from_numpy((flat - mean) / std)
    dim = flat.shape[1]
    if kind == "linear":
        net = nn.Sequential(nn.Dropout(0.2), nn.Linear(dim, 384))
    else:
        net = nn.Sequential(nn.Dropout(0.2), nn.Linear(dim, 1024), nn.GELU(), nn.Dropout(0.2), nn.Linear(1024, 384))
    logit_scale = nn.Parameter(torch.tensor(np.log(1 / 0.07), dtype=torch.float32))
    params = list(net.parameters()) + [logit_scale]
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.05)
    batch = 256
    steps = epochs * ((len(epoch_keys) + batch - 1) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-3, total_steps=steps, pct_start=0.05)
    loss_fn = InfoNCELoss()

    def apply(x: np.ndarray) -> np.ndarray:
        net.eval()
        with torch.no_grad():
            return l2_normalize(net(torch.from_numpy(((x - mean) / std).astype(np.float32))).numpy())

    best, best_state, history = -1.0, None, []
    for epoch in range(epochs):
        net.train()
        order = rng.permutation(epoch_keys)
        losses = []
        for start in range(0, len(order), batch):
            cap = order[start : start + batch]
            clip = [by_caption[keys[c]][rng.integers(len(by_caption[keys[c]]))] for c in cap]
            pick = [starts[n] + rng.integers(starts[n + 1] - starts[n]) for n in clip]
            vec = nn.functional.normalize(net(xs[pick]), dim=-1)
            loss = loss_fn(vec, target[cap], logit_scale.exp().clamp(max=100))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
        val_r10 = mean_r10([score(s, per_clip(apply, s), text_store) for s in val])
        history.append({"epoch": epoch + 1, "loss": float(np.mean(losses)), "val_R@10": val_r10})
        log.info("%s head epoch %d: loss %.3f, validation mean R@10 %.2f", kind, epoch + 1, np.mean(losses), val_r10)
        if val_r10 > best:
            best, best_state = val_r10, {k: v.clone() for k, v in net.state_dict().items()}
    net.load_state_dict(best_state)
    info = {"kind": kind, "epochs": epochs, "passes": passes or {}, "best_val_R@10": best, "history": history}
    info["params"] = sum(p.numel() for p in params)
    info["state"] = {k: v.numpy() for k, v in net.state_dict().items()}
    info["standardise"] = {"mean": mean, "std": std}
    return apply, info


def ship_head(folder: Path, state: dict, standardise: dict, info: dict, train: list[str], fusion: float) -> None:
    """``SHIPPED.safetensors`` (the MLP head and its input standardisation, float32) and its
    record ``SHIPPED.json`` (sha256, how it was made, the fusion weight chosen on validation), as
    :mod:`retrieval.models.ears` reads them."""
    from safetensors.numpy import save_file

    tensors = {
        "head.fc1.weight": state["1.weight"],
        "head.fc1.bias": state["1.bias"],
        "head.fc2.weight": state["4.weight"],
        "head.fc2.bias": state["4.bias"],
        "head.mean": standardise["mean"],
        "head.std": standardise["std"],
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{SHIPPED}.safetensors"
    save_file({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in tensors.items()}, str(path))
    os.chmod(path, 0o644)  # safetensors writes 0600: every user's install reads it
    record = {
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "head": {k: v for k, v in info.items() if k != "history"},
        "history": info["history"],
        "fusion": {"head": fusion, "tower": round(1 - fusion, 2)},
        "train_sets": train,
        "made_by": "PYTHONPATH=. python benchmarks/backbone_audio.py " + " ".join(sys.argv[1:]),
    }
    path.with_suffix(".json").write_text(json.dumps(record, indent=1, default=float))
    config = folder.parent / "model_configs" / "xmr-mini-real.json"  # the model reads the weight there
    if config.is_file():
        cfg = json.loads(config.read_text())
        cfg["audio_cfg"]["fusion"] = record["fusion"]
        config.write_text(json.dumps(cfg, indent=2) + "\n")


def report_table(results: dict[str, dict], tests: list[Split]) -> str:
    labels = list(results)
    lines = ["| set | direction | chance@10 | " + " | ".join(labels) + " |", "|---|---|---|" + "---|" * len(labels)]
    for split in tests:
        for direction in results[labels[0]]["sets"][split.name]:
            first = results[labels[0]]["sets"][split.name][direction]
            metric = "R@1" if split.name.startswith("fsdd") and direction == "audio->text" else "R@10"
            cells = [f"{results[lab]['sets'][split.name][direction][metric]:.1f}" for lab in labels]
            lines.append(
                f"| {split.name} | {direction} ({metric}) | {first.get('chance@10', 0):.2f} | "
                + " | ".join(cells)
                + " |"
            )
    lines.append("")
    lines.append(
        "weights (today, head) and validation mean R@10: "
        + "; ".join(f"{lab}: {results[lab]['weights']} {results[lab]['val_mean_R@10']:.2f}" for lab in labels)
    )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--cache", type=Path, default=Path("/root/xmr-data/cache/whisper"))
    parser.add_argument("--work", type=Path, default=Path("/root/xmr-data/cache/backbone-audio"))
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--train", default=",".join(TRAIN_SPLITS), help="training splits")
    parser.add_argument("--tests", default=",".join(TESTS))
    parser.add_argument(
        "--passes", default="", help="captions of a training split drawn N times an epoch: SPLIT=N,SPLIT=N"
    )
    parser.add_argument("--ship", type=Path, help="write the MLP head here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import torch

    from retrieval.bench.report import machine_info
    from retrieval.models.registry import create_model

    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    args.work.mkdir(parents=True, exist_ok=True)
    extractor = extractor_name(WhisperBackbone())
    if not (args.data / "speech/train-1v.jsonl").is_file() and (args.data / "speech/train.jsonl").is_file():
        one_reading(args.data / "speech/train.jsonl", args.data / "speech/train-1v.jsonl")
    encoder = create_model("xmr-mini", runtime="onnx")

    def splits(names: list[str]) -> list[Split]:
        out = []
        for name in names:
            try:
                out.append(Split(name, extractor, args.cache, args.data))
            except FileNotFoundError as exc:
                log.warning("left out: %s", exc)
        return out

    train = splits(args.train.split(","))
    val = splits([f"{s}/val" for s in VAL_SETS])
    tests = splits(args.tests.split(","))
    all_texts = [t for s in train + val + tests for it in s.items for t in it.captions]
    text_store = text_vectors(encoder, all_texts, args.work / f"text-{encoder.weights_hash[:12]}.npz")
    log.info("%d train, %d val, %d test clips", *(sum(len(s.items) for s in g) for g in (train, val, tests)))

    heads = {}
    for kind in ("linear", "mlp"):
        passes = {k: int(v) for k, v in (item.split("=") for item in args.passes.split(",") if item)}
        apply, info = train_head(kind, train, val, text_store, args.epochs, passes=passes)
        state, standardise = info.pop("state"), info.pop("standardise")
        heads[kind] = (apply, info | {"state": state, "standardise": standardise})

    def parts_of(split: Split) -> dict[str, np.ndarray]:  # window vectors of each part
        return {"today": today_windows(encoder, split, args.work)} | {
            f"head-{k}": apply(np.concatenate(split.windows)) for k, (apply, _) in heads.items()
        }

    def scored(splits: list[Split], parts: list[dict], names: list[str], weights: list[float]) -> list[dict]:
        return [
            score(s, clip_vectors(s, fuse([p[n] for n in names], weights)), text_store) for s, p in zip(splits, parts)
        ]

    val_parts = [parts_of(s) for s in val]
    test_parts = [parts_of(s) for s in tests]
    variants: dict[str, tuple[list[str], list[float]]] = {
        "today": (["today"], [1.0]),
        "head-linear": (["head-linear"], [1.0]),
        "head-mlp": (["head-mlp"], [1.0]),
    }
    for head in ("head-linear", "head-mlp"):
        sweep = [(mean_r10(scored(val, val_parts, ["today", head], [1 - w, w])), w) for w in WEIGHTS]
        val_score, w = max(sweep, key=lambda t: t[0])
        variants[f"today+{head}"] = (["today", head], [round(1 - w, 2), w])
        log.info("today+%s: weight %.1f best on validation (mean R@10 %.2f)", head, w, val_score)
        if head == "head-mlp" and args.ship:
            info = dict(heads["mlp"][1])
            ship_head(args.ship, info.pop("state"), info.pop("standardise"), info, [s.name for s in train], w)
    results: dict[str, dict] = {}
    for label, (names, weights) in variants.items():
        val_score = mean_r10(scored(val, val_parts, names, weights))
        per_set = dict(zip((s.name for s in tests), scored(tests, test_parts, names, weights)))
        results[label] = {
            "parts": names,
            "weights": [float(w) for w in weights],
            "val_mean_R@10": val_score,
            "sets": per_set,
        }
    payload = {
        "machine": machine_info(),
        "extractor": extractor,
        "text_tower": encoder.weights_hash,
        "train_sets": {s.name: len(s.items) for s in train},
        "val_sets": {s.name: len(s.items) for s in val},
        "heads": {
            k: {n: v for n, v in info.items() if n not in ("state", "standardise")} for k, (_, info) in heads.items()
        },
        "variants": results,
        "seconds": time.perf_counter() - started,
    }
    table = report_table(results, tests)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "backbone_audio.json").write_text(json.dumps(payload, indent=1, default=float))
    (args.out / "backbone_audio.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
