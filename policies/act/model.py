"""The ACT network (Zhao et al. 2023), written here on torch.nn.

Training: a CVAE encoder reads [CLS, state, the demonstrated action chunk] and gives a
32-D style latent z. The policy's transformer encoder reads [z, state, image features of every
camera]; the decoder's chunk query tokens cross-attend to it and each becomes one action. Loss:
L1 on the actions plus KL(z) x 10. At inference z = 0 (the prior's mean).

Layers are DETR's: post-norm, with the positional embeddings added to queries and keys at
every layer rather than once to the input.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from pi0bench.policies.act.config import ActConfig
from pi0bench.policies.resnet import ResNet18


def sine_table(n: int, dim: int) -> torch.Tensor:
    """[n, dim] fixed sinusoidal position table (the CVAE encoder's)."""
    position = torch.arange(n, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(n, dim)
    table[:, 0::2] = torch.sin(position * freq)
    table[:, 1::2] = torch.cos(position * freq[: dim // 2])
    return table


def sine_2d(h: int, w: int, dim: int) -> torch.Tensor:
    """[h*w, dim] DETR's normalised 2-D sine embedding: half the channels for y, half for x."""
    half = dim // 2
    freq = 10000.0 ** (2 * (torch.arange(half) // 2) / half)
    ys = (torch.arange(1, h + 1, dtype=torch.float32) / h * 2 * math.pi)[:, None] / freq
    xs = (torch.arange(1, w + 1, dtype=torch.float32) / w * 2 * math.pi)[:, None] / freq
    ys = torch.stack([ys[:, 0::2].sin(), ys[:, 1::2].cos()], -1).flatten(1)
    xs = torch.stack([xs[:, 0::2].sin(), xs[:, 1::2].cos()], -1).flatten(1)
    return torch.cat([ys[:, None].expand(h, w, half), xs[None].expand(h, w, half)], -1).reshape(h * w, dim)


class EncoderLayer(nn.Module):
    def __init__(self, cfg: ActConfig):
        super().__init__()
        self.attn = nn.MultiheadAttention(cfg.dim, cfg.heads, dropout=cfg.dropout, batch_first=True)
        self.ff = nn.Sequential(nn.Linear(cfg.dim, cfg.ff), nn.ReLU(), nn.Dropout(cfg.dropout),
                                nn.Linear(cfg.ff, cfg.dim))
        self.norm1, self.norm2 = nn.LayerNorm(cfg.dim), nn.LayerNorm(cfg.dim)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, pos: torch.Tensor, pad: torch.Tensor | None = None) -> torch.Tensor:
        q = x + pos
        x = self.norm1(x + self.drop(self.attn(q, q, x, key_padding_mask=pad, need_weights=False)[0]))
        return self.norm2(x + self.drop(self.ff(x)))


class DecoderLayer(nn.Module):
    def __init__(self, cfg: ActConfig):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(cfg.dim, cfg.heads, dropout=cfg.dropout, batch_first=True)
        self.cross_attn = nn.MultiheadAttention(cfg.dim, cfg.heads, dropout=cfg.dropout, batch_first=True)
        self.ff = nn.Sequential(nn.Linear(cfg.dim, cfg.ff), nn.ReLU(), nn.Dropout(cfg.dropout),
                                nn.Linear(cfg.ff, cfg.dim))
        self.norms = nn.ModuleList([nn.LayerNorm(cfg.dim) for _ in range(3)])
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, query_pos: torch.Tensor, memory: torch.Tensor,
                memory_pos: torch.Tensor) -> torch.Tensor:
        q = x + query_pos
        x = self.norms[0](x + self.drop(self.self_attn(q, q, x, need_weights=False)[0]))
        attended = self.cross_attn(x + query_pos, memory + memory_pos, memory, need_weights=False)[0]
        x = self.norms[1](x + self.drop(attended))
        return self.norms[2](x + self.drop(self.ff(x)))


class ActModel(nn.Module):
    def __init__(self, cfg: ActConfig):
        super().__init__()
        if not (cfg.state_dim and cfg.action_dim and cfg.cameras):
            raise ValueError("ActConfig needs state_dim, action_dim and cameras (from the dataset)")
        self.cfg = cfg
        d = cfg.dim
        # CVAE encoder
        self.cls = nn.Embedding(1, d)
        self.vae_state = nn.Linear(cfg.state_dim, d)
        self.vae_action = nn.Linear(cfg.action_dim, d)
        self.vae_layers = nn.ModuleList([EncoderLayer(cfg) for _ in range(cfg.vae_layers)])
        self.to_latent = nn.Linear(d, 2 * cfg.latent)
        self.register_buffer("vae_pos", sine_table(2 + cfg.chunk, d), persistent=False)
        # policy
        self.backbone = ResNet18(cfg.backbone_width, norm="frozen_bn", maxpool=cfg.backbone_maxpool)
        self.image_proj = nn.Conv2d(self.backbone.out_channels, d, 1)
        self.camera_embed = nn.Embedding(cfg.cameras, d)
        self.latent_in = nn.Linear(cfg.latent, d)
        self.state_in = nn.Linear(cfg.state_dim, d)
        self.extra_pos = nn.Embedding(2, d)  # [latent, state] tokens
        self.encoder = nn.ModuleList([EncoderLayer(cfg) for _ in range(cfg.encoder_layers)])
        self.queries = nn.Embedding(cfg.chunk, d)
        self.decoder = nn.ModuleList([DecoderLayer(cfg) for _ in range(cfg.decoder_layers)])
        self.decoder_norm = nn.LayerNorm(d)
        self.action_head = nn.Linear(d, cfg.action_dim)

    def encode_style(self, state: torch.Tensor, actions: torch.Tensor,
                     action_is_pad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(μ, log σ²) of z from the state and the demonstrated chunk; padded rows are masked."""
        b = state.shape[0]
        x = torch.cat([self.cls.weight[None].expand(b, -1, -1), self.vae_state(state)[:, None],
                       self.vae_action(actions)], 1)
        pad = torch.cat([torch.zeros(b, 2, dtype=torch.bool, device=state.device), action_is_pad], 1)
        for layer in self.vae_layers:
            x = layer(x, self.vae_pos[None], pad)
        mu, logvar = self.to_latent(x[:, 0]).chunk(2, -1)
        return mu, logvar

    def forward(self, images: torch.Tensor, state: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """images [B, C, 3, H, W] in [0, 1], state [B, S], z [B, latent] -> actions [B, chunk, A]."""
        b, c = images.shape[:2]
        features = self.image_proj(self.backbone(images.flatten(0, 1)))  # [B*C, d, h, w]
        _, d, h, w = features.shape
        tokens = features.flatten(2).transpose(1, 2).reshape(b, c * h * w, d)
        image_pos = sine_2d(h, w, d).to(features)[None] + self.camera_embed.weight[:c, None]
        extra = torch.stack([self.latent_in(z), self.state_in(state)], 1)
        memory = torch.cat([extra, tokens], 1)
        pos = torch.cat([self.extra_pos.weight, image_pos.reshape(c * h * w, d)], 0)[None]
        for layer in self.encoder:
            memory = layer(memory, pos)
        x = torch.zeros(b, self.cfg.chunk, d, device=state.device, dtype=memory.dtype)
        for layer in self.decoder:
            x = layer(x, self.queries.weight[None], memory, pos)
        return self.action_head(self.decoder_norm(x))

    def loss(self, batch: dict, generator: torch.Generator | None = None) -> torch.Tensor:
        """L1 over unpadded actions + kl_weight · KL(q(z | state, actions) || N(0, I))."""
        mu, logvar = self.encode_style(batch["state"], batch["actions"], batch["action_is_pad"])
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        z = mu + (0.5 * logvar).exp() * eps
        predicted = self(batch["images"], batch["state"], z)
        valid = (~batch["action_is_pad"]).unsqueeze(-1).to(predicted.dtype)
        l1 = (F.l1_loss(predicted, batch["actions"], reduction="none") * valid).sum() / (
            valid.sum() * predicted.shape[-1]).clamp(min=1.0)
        kl = (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp())).sum(-1).mean()
        return l1 + self.cfg.kl_weight * kl

    @torch.no_grad()
    def predict(self, images: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        z = torch.zeros(state.shape[0], self.cfg.latent, device=state.device, dtype=state.dtype)
        return self(images, state, z)
