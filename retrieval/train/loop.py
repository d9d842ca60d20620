"""The training loop: towers trained into a frozen text space with InfoNCE.

Every step is a pure function of (seed, step) and the data, so a run killed at any point and
resumed from its last checkpoint continues exactly where an uninterrupted run would be.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..models.audio import AudioPreprocessor
from ..models.encoder import average_groups, l2_normalize
from ..models.registry import create_model, resolve
from ..models.torch_model import XmrModel
from .augment import TorchLogMel, augment_images, augment_waves, center_images, spec_augment
from .data import PairSet, load_pairs, manifest_hash, read_manifest, text_embeddings, unique_caption_batches
from .loss import InfoNCELoss
from .metrics import cross_modal_recall, source_score

log = logging.getLogger(__name__)
SELECTIONS = ("pooled", "sources")  # how validation picks best/: pooled mean R@10, or metrics.source_score


@dataclass
class TrainConfig:
    """What ``xmr train`` is asked to do."""

    data: list[str]
    out: str
    model: str = "xmr-mini"
    val: list[str] = field(default_factory=list)
    modalities: list[str] = field(default_factory=lambda: ["image", "audio"])
    epochs: int = 10
    minutes: float | None = None  # stop (resumably) after this long
    batch_size: int = 256
    audio_batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_steps: int = 200
    grad_clip: float = 1.0
    seed: int = 0
    threads: int | None = None
    save_every_minutes: float = 10.0
    max_steps: int | None = None  # stop after this global step (tests, partial runs)
    into: str | None = None  # bind the towers into this open_clip model's text space
    overrides: dict = field(default_factory=dict)
    passes: dict[str, int] = field(default_factory=dict)  # passes over a modality's pairs per epoch (default 1)
    spec_augment: bool = True  # SpecAugment masks on the training log-mel
    alt_text_prob: float = 0.0  # chance that an item's target is one of its alt_texts (keywords, tags)
    cache: str | None = None  # decoded media and caption embeddings (default: OUT/cache); runs can share one
    source_passes: dict[str, int] = field(
        default_factory=dict
    )  # manifest source -> times its items come per pass (default 1)
    select: str = "pooled"  # checkpoint choice: "pooled" mean R@10, or "sources" (each validation source alike)
    channels_last: bool = True  # NHWC convolution weights: the same results, faster steps on a CPU


@dataclass
class Progress:
    step: int
    total: int
    epoch: int
    loss: float
    samples_per_s: float
    eta_s: float


class Trainer:
    """Holds the model, data, optimizer and schedule of one training run."""

    def __init__(self, cfg: TrainConfig, on_progress: Callable[[Progress], None] | None = None) -> None:
        self.cfg = cfg
        self.out = Path(cfg.out)
        self.on_progress = on_progress
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        if "text" in cfg.modalities:
            raise ValueError("the text tower stays frozen: train image and/or audio")
        if cfg.into:
            # ImageBind-style binding: new towers (shaped as in cfg.model) trained against the
            # frozen text tower of an open_clip model.
            self.encoder = create_model(cfg.into, device="cpu")
            base = resolve(cfg.model, **cfg.overrides).config
            self.config = {
                "embed_dim": self.encoder.embed_dim,
                "seed": cfg.seed,
                **{f"{m}_cfg": base[f"{m}_cfg"] for m in cfg.modalities},
            }
            self.model = XmrModel(self.config)
        else:
            self.encoder = create_model(cfg.model, device="cpu", **cfg.overrides)
            if not hasattr(self.encoder, "model"):  # towers on frozen backbones (xmr-mini-photo, -real)
                towers_from = self.encoder.spec.config.get("towers_from", "xmr-mini")
                raise ValueError(
                    f"{cfg.model} runs on frozen pretrained backbones and is not trained by `xmr train` "
                    f"(its heads: benchmarks/backbone_image.py, benchmarks/backbone_audio.py); train {towers_from}"
                )
            for m in cfg.modalities:
                self.encoder.require(m)
            self.config = self.encoder.spec.config
            self.model = self.encoder.model
        # Channels-last (NHWC) convolution weights: a training step runs 1.3-1.4x faster
        # on this CPU (`xmr bench train`); results agree to float tolerance.
        for m in cfg.modalities if cfg.channels_last else []:
            self.model.towers[m].to(memory_format=torch.channels_last)
        self.preprocess_audio = (
            AudioPreprocessor.from_config(self.config["audio_cfg"]) if "audio" in cfg.modalities else None
        )
        self.image_size = self.config["image_cfg"]["image_size"] if "image" in cfg.modalities else 0
        self.cache = Path(cfg.cache) if cfg.cache else self.out / "cache"
        if cfg.select not in SELECTIONS:
            raise ValueError(f"select takes {' or '.join(SELECTIONS)}, not {cfg.select!r}")
        self.train_sets = self._load(cfg.data)
        unknown = set(cfg.source_passes) - {src for s in self.train_sets.values() for src in s.sources}
        if unknown:
            raise ValueError(
                f"--source-passes names sources the training data does not hold: {', '.join(sorted(unknown))}"
            )
        self.pools = {m: self._pool(s) for m, s in self.train_sets.items()}
        self.val_sets = self._load(cfg.val) if cfg.val else {}
        self.text_vecs = {
            m: torch.from_numpy(text_embeddings(self.encoder, s.texts, self.cache)) for m, s in self.train_sets.items()
        }
        self.val_text_vecs = {m: text_embeddings(self.encoder, s.texts, self.cache) for m, s in self.val_sets.items()}
        self.logmel = TorchLogMel(self.preprocess_audio) if "audio" in cfg.modalities else None
        params = [p for m in cfg.modalities for p in self.model.towers[m].parameters()] + [self.model.logit_scale]
        decay = [p for p in params if p.ndim >= 2]
        no_decay = [p for p in params if p.ndim < 2]
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr
        )
        self.loss_fn = InfoNCELoss()
        self.steps_per_epoch = len(self._raw_plan(0))
        self.total_steps = self.steps_per_epoch * cfg.epochs
        self.step = 0
        self.best = -1.0
        self.data_hash = manifest_hash(cfg.data)

    # --- data ------------------------------------------------------------------------------
    def _load(self, manifests: list[str]) -> dict[str, PairSet]:
        rows = [r for m in manifests for r in read_manifest(m)]
        pre = self.preprocess_audio
        return {
            m: load_pairs(rows, m, self.cache, pre)
            for m in self.cfg.modalities
            if any(r["modality"] == m for r in rows)
        }

    def _pool(self, pairs: PairSet) -> np.ndarray:
        """Item indexes one pass draws from: every item once, and the items of each source in
        ``source_passes`` that many times in all."""
        sources = np.array(pairs.sources)
        extra = [
            np.flatnonzero(sources == src) for src, k in sorted(self.cfg.source_passes.items()) for _ in range(k - 1)
        ]
        return np.concatenate([np.arange(len(pairs)), *extra]) if extra else np.arange(len(pairs))

    def _plan(self, epoch: int) -> list[tuple[str, np.ndarray]]:
        """The ``steps_per_epoch`` batches of one epoch, fixed by (seed, epoch).

        Caption-unique batching makes the natural count vary a little between epochs; a fixed
        count keeps (epoch, offset) a pure function of the global step, which resume relies on.
        """
        batches: list[tuple[str, np.ndarray]] = []
        part = 0
        while len(batches) < self.steps_per_epoch:
            batches += self._raw_plan(epoch, part)
            part += 1
        return batches[: self.steps_per_epoch]

    def _raw_plan(self, epoch: int, part: int = 0) -> list[tuple[str, np.ndarray]]:
        """One pass of caption-unique batches over every modality (``passes[m]`` passes over
        modality ``m``), interleaved at random."""
        rng = np.random.default_rng([self.cfg.seed, epoch, part])
        batches = []
        for m, pairs in sorted(self.train_sets.items()):
            size = self.cfg.batch_size if m == "image" else self.cfg.audio_batch_size
            pool = self.pools[m]
            for _ in range(self.cfg.passes.get(m, 1)):
                batches += [(m, pool[b]) for b in unique_caption_batches(pairs.caption[pool], size, rng)]
        order = rng.permutation(len(batches))
        return [batches[i] for i in order]

    def _lr(self, step: int) -> float:
        if step < self.cfg.warmup_steps:
            return self.cfg.lr * (step + 1) / self.cfg.warmup_steps
        progress = (step - self.cfg.warmup_steps) / max(1, self.total_steps - self.cfg.warmup_steps)
        return self.cfg.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    def _inputs(self, modality: str, idx: np.ndarray, gen: torch.Generator) -> torch.Tensor:
        pairs = self.train_sets[modality]
        if modality == "image":
            return augment_images(torch.from_numpy(pairs.images[idx]), self.image_size, gen)
        clips = [pairs.audio[pairs.offsets[i] : pairs.offsets[i + 1]] for i in idx]
        lengths = torch.tensor([len(c) for c in clips])
        waves = torch.zeros(len(clips), int(lengths.max()))
        for row, clip in enumerate(clips):
            waves[row, : len(clip)] = torch.from_numpy(clip.astype(np.float32) / 32768.0)
        waves, mask = augment_waves(waves, lengths, self.preprocess_audio, gen)
        feats = self.logmel(waves, mask)
        return spec_augment(feats, gen) if self.cfg.spec_augment else feats

    def targets(self, modality: str, idx: np.ndarray) -> np.ndarray:
        """Caption index per item of a batch: its caption or, with ``alt_text_prob``, one of its
        alt texts, one that is no other item's target in the batch (a repeated text
        would be a false negative to InfoNCE). Fixed by (seed, step)."""
        pairs = self.train_sets[modality]
        target = pairs.caption[idx].copy()
        if self.cfg.alt_text_prob <= 0 or not pairs.alt:
            return target
        rng = np.random.default_rng([self.cfg.seed, self.step, 17])
        draws = rng.random(len(idx))
        picks = rng.integers(0, 1 << 30, len(idx))
        for row, item in enumerate(idx):
            alts = pairs.alt.get(int(item))
            if alts and draws[row] < self.cfg.alt_text_prob:
                start = picks[row] % len(alts)
                free = [a for a in alts[start:] + alts[:start] if a not in target]  # from a random one on
                if free:
                    target[row] = free[0]
        return target

    # --- steps -----------------------------------------------------------------------------
    def train_step(self, modality: str, idx: np.ndarray) -> float:
        """One optimizer step on one batch; randomness fixed by (seed, step)."""
        gen = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + self.step)
        torch.manual_seed(self.cfg.seed * 7_919 + self.step)  # dropout
        self.model.train()
        x = self._inputs(modality, idx, gen)
        feats = torch.nn.functional.normalize(self.model.towers[modality](x), dim=-1)
        texts = self.text_vecs[modality][self.targets(modality, idx)]
        loss = self.loss_fn(feats, texts, self.model.logit_scale.exp().clamp(max=100.0))
        for group in self.optimizer.param_groups:
            group["lr"] = self._lr(self.step)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(
            [p for g in self.optimizer.param_groups for p in g["params"]], self.cfg.grad_clip
        )
        self.optimizer.step()
        self.step += 1
        return float(loss.item())

    @torch.no_grad()
    def embed_items(self, modality: str, pairs: PairSet, batch: int = 256) -> np.ndarray:
        """Eval-mode embeddings of a set's items, through the inference front-ends."""
        self.model.eval()
        out = []
        for start in range(0, len(pairs), batch):
            idx = np.arange(start, min(start + batch, len(pairs)))
            if modality == "image":
                x = center_images(torch.from_numpy(pairs.images[idx]), self.image_size)
                out.append(self.model.towers["image"](x).numpy())
            else:
                pre = self.preprocess_audio
                feats = [
                    pre.log_mel(
                        pre.split_windows(
                            pairs.audio[pairs.offsets[i] : pairs.offsets[i + 1]].astype(np.float32) / 32768.0
                        )
                    )
                    for i in idx
                ]
                owner = np.repeat(np.arange(len(feats)), [f.shape[0] for f in feats])
                vecs = self.model.towers["audio"](torch.from_numpy(np.concatenate(feats))).numpy()
                out.append(average_groups(vecs, owner, len(feats)))
        return l2_normalize(np.concatenate(out)) if out else np.zeros((0, self.encoder.embed_dim), np.float32)

    def validate(self, by_source: dict | None = None) -> dict[str, dict[str, float]]:
        """Recall over each modality's validation pairs pooled in one gallery (what selects
        checkpoints). Given a dict, ``by_source`` also gets each source's recall within its own
        pairs, so a small set that the pooled score hardly sees (ten digit words) shows."""
        results = {}
        for m, pairs in self.val_sets.items():
            vecs = self.embed_items(m, pairs)
            results.update(self._recall(m, pairs, vecs, np.arange(len(pairs))))
            if by_source is not None:
                sources = np.array(pairs.sources)
                for src in sorted(set(pairs.sources)):
                    by_source.setdefault(src, {}).update(self._recall(m, pairs, vecs, np.flatnonzero(sources == src)))
        return results

    def _recall(self, modality: str, pairs: PairSet, vecs: np.ndarray, rows: np.ndarray) -> dict[str, dict[str, float]]:
        """Recall both ways among the items ``rows`` and their captions."""
        used = np.unique(pairs.caption[rows])  # alt captions have no items of their own
        return cross_modal_recall(
            vecs[rows],
            [pairs.texts[c] for c in pairs.caption[rows]],
            self.val_text_vecs[modality][used],
            [pairs.texts[c] for c in used],
            modality,
        )

    # --- checkpoints -----------------------------------------------------------------------
    def save(self, name: str, extra: dict | None = None) -> Path:
        """Write a self-describing checkpoint folder atomically (temp folder, then rename)."""
        from safetensors.torch import save_file

        final = self.out / name
        tmp = self.out / f".{name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        state = {k: v.contiguous() for k, v in self.model.state_dict().items() if not k.startswith("towers.text.")}
        save_file(state, str(tmp / "weights.safetensors"))
        torch.save({"optimizer": self.optimizer.state_dict(), "step": self.step, "best": self.best}, tmp / "trainer.pt")
        meta = {
            "model": self.cfg.model,
            "model_config": self.config,
            "train_config": asdict(self.cfg),
            "step": self.step,
            "total_steps": self.total_steps,
            "data_hash": self.data_hash,
            **(extra or {}),
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
        for f in tmp.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        old = self.out / f".{name}.old"
        shutil.rmtree(old, ignore_errors=True)
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
        return final

    def resume(self) -> bool:
        """Load ``out/last`` if it exists; returns whether it did."""
        from safetensors.torch import load_file

        folder = self.out / "last"
        if not (folder / "meta.json").is_file():
            return False
        meta = json.loads((folder / "meta.json").read_text())
        if meta["data_hash"] != self.data_hash:
            raise ValueError(
                f"{folder}: the checkpoint was trained on other data (manifest hash differs); use a new --out"
            )
        self.model.load_state_dict(load_file(str(folder / "weights.safetensors")), strict=False)
        state = torch.load(folder / "trainer.pt", weights_only=False)
        self.optimizer.load_state_dict(state["optimizer"])
        self.step, self.best = state["step"], state["best"]
        log.info("resumed from %s at step %d", folder, self.step)
        return True

    # --- the run ---------------------------------------------------------------------------
    def run(self) -> dict:
        """Train until the epoch budget (or the time budget, or ``max_steps``) is spent."""
        self.out.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        last_save = started
        samples = 0
        first_step = self.step
        logf = open(self.out / "log.jsonl", "a", encoding="utf-8")
        try:
            while self.step < self.total_steps:
                epoch, offset = divmod(self.step, self.steps_per_epoch)
                plan = self._plan(epoch)
                for modality, idx in plan[offset:]:
                    loss = self.train_step(modality, idx)
                    samples += len(idx)
                    elapsed = time.monotonic() - started
                    rate = samples / max(elapsed, 1e-6)
                    record = {
                        "step": self.step,
                        "epoch": epoch,
                        "modality": modality,
                        "loss": loss,
                        "lr": self._lr(self.step - 1),
                        "scale": float(self.model.logit_scale.detach().exp()),
                        "time": elapsed,
                    }
                    logf.write(json.dumps(record) + "\n")
                    if self.step % 50 == 0:
                        log.info(
                            "step %d/%d epoch %d %s loss %.3f, %.0f samples/s",
                            self.step,
                            self.total_steps,
                            epoch,
                            modality,
                            loss,
                            rate,
                        )
                    if self.on_progress:
                        eta = (self.total_steps - self.step) * elapsed / max(1, self.step - first_step)
                        self.on_progress(Progress(self.step, self.total_steps, epoch, loss, rate, eta))
                    if self.step % self.steps_per_epoch == 0 or (
                        self.cfg.max_steps and self.step >= self.cfg.max_steps
                    ):
                        break
                    if time.monotonic() - last_save > self.cfg.save_every_minutes * 60:
                        logf.flush()  # the log holds every step the checkpoint holds
                        self.save("last")
                        last_save = time.monotonic()
                    if self.cfg.minutes and time.monotonic() - started > self.cfg.minutes * 60:
                        break
                if self.step % self.steps_per_epoch == 0:
                    self._end_epoch(logf)
                logf.flush()
                self.save("last")
                last_save = time.monotonic()
                if (self.cfg.max_steps and self.step >= self.cfg.max_steps) or (
                    self.cfg.minutes and time.monotonic() - started > self.cfg.minutes * 60
                ):
                    break
        finally:
            logf.close()
        plot_log(self.out)
        return {"step": self.step, "total_steps": self.total_steps, "best": self.best}

    def _end_epoch(self, logf) -> None:
        if not self.val_sets:
            return
        by_source: dict = {}
        results = self.validate(by_source)
        pooled = float(np.mean([r["R@10"] for r in results.values()]))
        balanced = source_score(by_source)
        score = balanced if self.cfg.select == "sources" else pooled
        logf.write(
            json.dumps(
                {
                    "step": self.step,
                    "val": results,
                    "val_mean_R@10": pooled,
                    "val_sources_score": balanced,
                    "val_by_source": by_source,
                }
            )
            + "\n"
        )
        logf.flush()
        log.info(
            "step %d: validation mean R@10 %.1f, per-source score %.1f (%s)",
            self.step,
            pooled,
            balanced,
            ", ".join(f"{k} {v['R@10']:.1f}" for k, v in results.items()),
        )
        if score > self.best:
            self.best = score
            self.save(
                "best",
                {"val": results, "val_mean_R@10": pooled, "val_sources_score": balanced, "val_by_source": by_source},
            )


def plot_log(out: Path) -> Path | None:
    """PNG of the loss (per modality) and validation recall curves of ``out/log.jsonl``."""
    path = out / "log.jsonl"
    if not path.is_file():
        return None
    from ..extras import pyplot

    plt = pyplot(out / "curves.png")
    if plt is None:
        return None

    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for m in sorted({r["modality"] for r in records if "modality" in r}):
        pts = [(r["step"], r["loss"]) for r in records if r.get("modality") == m]
        steps, losses = zip(*pts)
        k = max(1, len(losses) // 100)
        smooth = np.convolve(losses, np.ones(k) / k, mode="valid")
        ax1.plot(steps[len(steps) - len(smooth) :], smooth, label=f"{m}-text loss")
    ax1.set_xlabel("step")
    ax1.legend()
    vals = [r for r in records if "val" in r]
    for direction in sorted({d for r in vals for d in r["val"]}):
        ax2.plot(
            [r["step"] for r in vals if direction in r["val"]],
            [r["val"][direction]["R@10"] for r in vals if direction in r["val"]],
            marker="o",
            label=direction,
        )
    ax2.set_xlabel("step")
    ax2.set_ylabel("validation R@10 (%)")
    if vals:
        ax2.legend()
    fig.tight_layout()
    png = out / "curves.png"
    fig.savefig(png, dpi=100)
    plt.close(fig)
    return png
