"""A non-linear map from multilingual-e5 vectors into an English text tower's space (issue 35).

Pairs ``(e5 vector of a text, tower vector of its English)``: English phrases (the text and its
English are the same) and translations (CLDR emoji names, Tux Paint's stamp descriptions). The map
is the shape of the backbone towers' heads (:class:`retrieval.models.heads.MlpHead`: standardised
input -> Linear -> GELU -> Linear -> unit vector), so it runs in numpy at query time, and is trained
with torch here on two losses:

* InfoNCE against the batch's English targets (Oord et al. 2018; pairs that share an English text
  are one class, so the 14 translations of a name are not each other's negatives):
  ``-log softmax(f(x_i) . t_j / tau)[class(i)]`` over the distinct targets ``t_j`` of the batch;
* the cosine gap to the pair's own target, ``1 - f(x_i) . y_i`` (keeps unseen texts near where
  their English would land, not only ranked above the batch).
"""

from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)


def fit_mlp_map(
    x: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    hidden: int = 1024,
    epochs: int = 20,
    batch: int = 1024,
    lr: float = 2e-3,
    weight_decay: float = 1e-4,
    tau: float = 0.05,
    nce: float = 1.0,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Tensors of :class:`~retrieval.models.heads.MlpHead` (``head.*``) mapping unit e5 vectors
    ``x`` ``[N, 384]`` to unit targets ``y`` ``[N, D]``; ``groups[i]`` names pair ``i``'s English
    text (pairs with the same group are positives of each other's target)."""
    if len(x) == 0 or len(x) != len(y) or len(x) != len(groups):
        raise ValueError(f"a map needs pairs: {len(x)} inputs, {len(y)} targets, {len(groups)} groups")
    if epochs < 1 or batch < 1:
        raise ValueError(f"epochs and batch must be >= 1, not {epochs} and {batch}")
    import torch
    import torch.nn.functional as F

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    mean, std = x.mean(0), x.std(0) + 1e-6
    xs = torch.from_numpy(((x - mean) / std).astype(np.float32))
    ys = torch.from_numpy(y.astype(np.float32))
    gs = torch.from_numpy(np.asarray(groups, dtype=np.int64))
    fc1, fc2 = torch.nn.Linear(x.shape[1], hidden), torch.nn.Linear(hidden, y.shape[1])
    params = [*fc1.parameters(), *fc2.parameters()]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    per_epoch = -(-len(x) // batch)  # the last, smaller batch too
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * per_epoch, pct_start=0.1)
    for epoch in range(epochs):
        order = torch.from_numpy(rng.permutation(len(x)))
        total = 0.0
        for start in range(0, len(x), batch):
            idx = order[start : start + batch]
            out = F.normalize(fc2(F.gelu(fc1(xs[idx]))), dim=-1)
            g = gs[idx]
            classes, label = torch.unique(g, return_inverse=True)
            first = torch.zeros(len(classes), dtype=torch.long).scatter_(0, label, torch.arange(len(g)))
            targets = ys[idx][first]  # one target per English text of the batch
            loss = (1 - (out * ys[idx]).sum(-1)).mean()
            if nce > 0:
                loss = loss + nce * F.cross_entropy(out @ targets.T / tau, label)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach())
        log.info("map epoch %d: loss %.4f", epoch, total / per_epoch)
    return {
        "head.fc1.weight": fc1.weight.detach().numpy().copy(),
        "head.fc1.bias": fc1.bias.detach().numpy().copy(),
        "head.fc2.weight": fc2.weight.detach().numpy().copy(),
        "head.fc2.bias": fc2.bias.detach().numpy().copy(),
        "head.mean": mean.astype(np.float32),
        "head.std": std.astype(np.float32),
    }
