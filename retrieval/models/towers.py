"""The torch towers of xmr models: a BERT text encoder, a CNN image encoder, an audio encoder.

Each tower maps its preprocessed input to an un-normalised ``[N, embed_dim]`` tensor; the
model normalises. Shapes come from the model's JSON config (``text_cfg``, ``image_cfg``,
``audio_cfg``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class BertLayer(nn.Module):
    """One post-norm transformer layer with the parameter names of a Hugging Face BERT."""

    def __init__(self, hidden: int, heads: int, intermediate: int, eps: float) -> None:
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)
        self.attn_out = nn.Linear(hidden, hidden)
        self.attn_norm = nn.LayerNorm(hidden, eps=eps)
        self.ffn_in = nn.Linear(hidden, intermediate)
        self.ffn_out = nn.Linear(intermediate, hidden)
        self.ffn_norm = nn.LayerNorm(hidden, eps=eps)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        n, t, h = x.shape
        split = lambda y: y.view(n, t, self.heads, h // self.heads).transpose(1, 2)  # noqa: E731
        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        scores = q @ k.transpose(-1, -2) / math.sqrt(h // self.heads) + bias
        ctx = (scores.softmax(-1) @ v).transpose(1, 2).reshape(n, t, h)
        x = self.attn_norm(x + self.attn_out(ctx))
        return self.ffn_norm(x + self.ffn_out(F.gelu(self.ffn_in(x))))


class BertTextTower(nn.Module):
    """BERT encoder with mean pooling over the attention mask (sentence-transformers style)."""

    def __init__(self, cfg: dict, embed_dim: int) -> None:
        super().__init__()
        hidden = cfg["hidden_size"]
        eps = cfg.get("layer_norm_eps", 1e-12)
        self.word_embeddings = nn.Embedding(cfg["vocab_size"], hidden)
        self.position_embeddings = nn.Embedding(cfg.get("max_position_embeddings", 512), hidden)
        self.token_type_embeddings = nn.Embedding(cfg.get("type_vocab_size", 2), hidden)
        self.embed_norm = nn.LayerNorm(hidden, eps=eps)
        self.layers = nn.ModuleList(
            BertLayer(hidden, cfg["num_heads"], cfg["intermediate_size"], eps) for _ in range(cfg["num_layers"])
        )
        self.proj = nn.Identity() if embed_dim == hidden else nn.Linear(hidden, embed_dim, bias=False)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        x = self.word_embeddings(input_ids) + self.position_embeddings(positions)[None]
        x = self.embed_norm(x + self.token_type_embeddings.weight[0])
        mask = attention_mask.to(x.dtype)
        bias = ((1.0 - mask) * torch.finfo(x.dtype).min)[:, None, None, :]
        for layer in self.layers:
            x = layer(x, bias)
        pooled = (x * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1e-9)
        return self.proj(pooled)


class PreNormLayer(nn.Module):
    """A pre-norm transformer layer written out, so it exports to ONNX as plain operators."""

    def __init__(self, dim: int, heads: int, ffn: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, ffn), nn.GELU(), nn.Dropout(dropout), nn.Linear(ffn, dim))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(n, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        attn = (q @ k.transpose(-1, -2) / math.sqrt(d // self.heads)).softmax(-1)
        x = x + self.drop(self.out((attn @ v).transpose(1, 2).reshape(n, t, d)))
        return x + self.drop(self.mlp(self.norm2(x)))


def _conv_bn(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class ResBlock(nn.Module):
    """A basic residual block (two 3x3 convolutions), downsampling by ``stride``."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = _conv_bn(cin, cout, stride)
        self.conv2 = nn.Sequential(nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
        self.skip = (
            nn.Identity()
            if stride == 1 and cin == cout
            else nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv2(self.conv1(x)) + self.skip(x))


def _res_stages(cin: int, widths: list[int], depths: list[int], strides: list[int]) -> nn.Sequential:
    blocks: list[nn.Module] = []
    for width, depth, stride in zip(widths, depths, strides):
        for i in range(depth):
            blocks.append(ResBlock(cin, width, stride if i == 0 else 1))
            cin = width
    return nn.Sequential(*blocks)


class CnnImageTower(nn.Module):
    """A small ResNet over ``[N, 3, S, S]`` pixels, average-pooled, projected to ``embed_dim``."""

    def __init__(self, cfg: dict, embed_dim: int) -> None:
        super().__init__()
        widths, depths = cfg["widths"], cfg["depths"]
        self.stem = _conv_bn(3, cfg.get("stem_width", widths[0]), cfg.get("stem_stride", 2))
        strides = [1] + [2] * (len(widths) - 1)
        self.stages = _res_stages(cfg.get("stem_width", widths[0]), widths, depths, strides)
        self.head = nn.Sequential(
            nn.LayerNorm(widths[-1]), nn.Dropout(cfg.get("dropout", 0.0)), nn.Linear(widths[-1], embed_dim)
        )

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(pixels)).mean((2, 3)))


class ConvTransformerAudioTower(nn.Module):
    """Log-mel ``[N, n_mels, T]`` -> conv stages (downsample time and frequency) -> transformer
    over time -> mean pooling -> projection to ``embed_dim``."""

    def __init__(self, cfg: dict, embed_dim: int) -> None:
        super().__init__()
        widths, depths = cfg["widths"], cfg["depths"]
        # log(mel + 1e-6) lies roughly in [-14, 6]; centre it before the first convolution.
        self.register_buffer("in_shift", torch.tensor(float(cfg.get("input_shift", 6.0))), persistent=False)
        self.register_buffer("in_scale", torch.tensor(float(cfg.get("input_scale", 0.25))), persistent=False)
        stem_width, stem_stride = cfg.get("stem_width", widths[0]), cfg.get("stem_stride", 1)
        self.stem = _conv_bn(1, stem_width, stem_stride)
        self.stages = _res_stages(stem_width, widths, depths, [2] * len(widths))
        freq_out = cfg["n_mels"]
        for _ in range(len(widths) + (stem_stride == 2)):
            freq_out = (freq_out + 1) // 2
        d_model = cfg["d_model"]
        self.to_seq = nn.Linear(widths[-1] * freq_out, d_model)
        max_len = cfg.get("max_frames", 1024)
        self.pos = nn.Parameter(torch.zeros(1, max_len, d_model))
        nn.init.normal_(self.pos, std=0.02)
        self.encoder = nn.Sequential(
            *(
                PreNormLayer(d_model, cfg["num_heads"], cfg.get("ffn", 4 * d_model), cfg.get("dropout", 0.1))
                for _ in range(cfg["num_layers"])
            )
        )
        self.head = nn.Sequential(nn.LayerNorm(d_model), nn.Linear(d_model, embed_dim))

    def forward(self, mels: torch.Tensor) -> torch.Tensor:
        x = ((mels + self.in_shift) * self.in_scale)[:, None]
        x = self.stages(self.stem(x))  # [N, C, F', T']
        n, c, f, t = x.shape
        x = self.to_seq(x.permute(0, 3, 1, 2).reshape(n, t, c * f))
        x = self.encoder(x + self.pos[:, :t])
        return self.head(x.mean(1))


TOWERS = {"bert": BertTextTower, "cnn": CnnImageTower, "conv_transformer": ConvTransformerAudioTower}


def build_tower(cfg: dict, embed_dim: int) -> nn.Module:
    """Build the tower that ``cfg["arch"]`` names."""
    arch = cfg.get("arch")
    if arch not in TOWERS:
        raise ValueError(f"unknown tower arch {arch!r}; known: {', '.join(sorted(TOWERS))}")
    return TOWERS[arch](cfg, embed_dim)
