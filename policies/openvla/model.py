"""The OpenVLA network (Kim et al. 2024) and its OFT variant (Kim et al. 2025), written here on
transformers' SigLIP, DINOv2 and Llama modules (facts in REFERENCE.md and the papers).

Image: SigLIP and DINOv2 patch features, read before each tower's final norm, concatenated
channel-wise (DINOv2 first), then projected into the LM by an MLP with GELUs (3 layers when
fused, 2 with SigLIP alone). The projected patches fill the image slots of the token
sequence (see inputs.py), so the LM reads [BOS, patches, prompt, actions].

- autoregressive (OpenVLA): a causal Llama; an action is D tokens from the last 256 ids of
  the vocabulary, trained with cross-entropy on those tokens only and decoded greedily, one
  token at a time with a key/value cache, each step restricted to the 256 action ids.
- oft (OpenVLA-OFT): the action slots hold empty (zero) embeddings, attention is
  bidirectional over the whole sequence (as in OFT's release), and one forward pass gives
  every slot's hidden state. Each step's action_dim slots are concatenated and an MLP-ResNet
  head regresses that step's actions in [-1, 1], trained with L1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import (
    Dinov2WithRegistersConfig,
    Dinov2WithRegistersModel,
    DynamicCache,
    LlamaConfig,
    LlamaModel,
    SiglipVisionConfig,
    SiglipVisionModel,
)

from pi0bench.policies.openvla.config import OFT, OpenVlaConfig
from pi0bench.policies.openvla.inputs import ACTION, IMAGE, PADDING, PROPRIO

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # DINOv2's input scaling


class ImageEncoder(nn.Module):
    """[B, 3, S, S] in [0, 1] -> patch features [B, patches, dino width + siglip width]."""

    def __init__(self, cfg: OpenVlaConfig):
        super().__init__()
        s = cfg.siglip
        self.siglip = SiglipVisionModel(SiglipVisionConfig(
            hidden_size=s.width, intermediate_size=s.mlp, num_hidden_layers=s.layers,
            num_attention_heads=s.heads, patch_size=cfg.patch_size, image_size=cfg.image_size,
            vision_use_head=False))
        self.dino = None
        if cfg.dino is not None:
            d = cfg.dino
            if d.mlp % d.width:
                raise ValueError("DINOv2's MLP width must be a multiple of its width (an integer mlp_ratio)")
            self.dino = Dinov2WithRegistersModel(Dinov2WithRegistersConfig(
                hidden_size=d.width, mlp_ratio=d.mlp // d.width, num_hidden_layers=d.layers,
                num_attention_heads=d.heads, patch_size=cfg.patch_size, image_size=cfg.image_size,
                num_register_tokens=cfg.dino_registers))
            self.register_buffer("dino_mean", torch.tensor(IMAGENET_MEAN)[:, None, None], persistent=False)
            self.register_buffer("dino_std", torch.tensor(IMAGENET_STD)[:, None, None], persistent=False)
        self.skip = 1 + cfg.dino_registers  # DINOv2's CLS and register tokens precede the patches
        self.width = s.width + (cfg.dino.width if cfg.dino else 0)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        siglip = self.siglip(pixel_values=pixels * 2.0 - 1.0, output_hidden_states=True).hidden_states[-1]
        if self.dino is None:
            return siglip
        scaled = (pixels - self.dino_mean) / self.dino_std
        dino = self.dino(pixel_values=scaled, output_hidden_states=True).hidden_states[-1][:, self.skip:]
        return torch.cat([dino, siglip], -1)


def projector(vision: int, width: int, fused: bool) -> nn.Sequential:
    """Prismatic's projectors: fused features go through a 4x-wide first layer."""
    if fused:
        return nn.Sequential(nn.Linear(vision, 4 * vision), nn.GELU(), nn.Linear(4 * vision, width), nn.GELU(),
                             nn.Linear(width, width))
    return nn.Sequential(nn.Linear(vision, width), nn.GELU(), nn.Linear(width, width))


class ResidualBlock(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.ffn = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.ffn(x)


class L1Head(nn.Module):
    """OFT's regression head: an MLP-ResNet (2 pre-norm residual blocks) from a step's
    concatenated slot states to that step's actions."""

    def __init__(self, inputs: int, hidden: int, outputs: int):
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(inputs), nn.Linear(inputs, hidden), nn.ReLU(),
                                 ResidualBlock(hidden), ResidualBlock(hidden), nn.LayerNorm(hidden),
                                 nn.Linear(hidden, outputs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class OpenVlaModel(nn.Module):
    def __init__(self, cfg: OpenVlaConfig):
        super().__init__()
        if cfg.mode == OFT and not (cfg.action_dim and cfg.state_dim):
            raise ValueError("an oft config needs action_dim and state_dim (from the datasets)")
        self.cfg = cfg
        self.vision = ImageEncoder(cfg)
        self.projector = projector(self.vision.width, cfg.width, fused=cfg.dino is not None)
        self.llm = LlamaModel(LlamaConfig(
            hidden_size=cfg.width, intermediate_size=cfg.mlp, num_hidden_layers=cfg.depth,
            num_attention_heads=cfg.heads, num_key_value_heads=cfg.heads, vocab_size=cfg.vocab_size,
            max_position_embeddings=4096, rms_norm_eps=1e-5, pad_token_id=None))
        if cfg.mode == OFT:
            self.proprio_projector = nn.Sequential(nn.Linear(cfg.state_dim, cfg.width), nn.GELU(),
                                                   nn.Linear(cfg.width, cfg.width))
            self.action_head = L1Head(cfg.action_dim * cfg.width, cfg.width, cfg.action_dim)
        else:
            self.lm_head = nn.Linear(cfg.width, cfg.vocab_size, bias=False)

    # -- the sequence ------------------------------------------------------------------
    def embed(self, batch: dict) -> torch.Tensor:
        """Token embeddings with the projected patches (and OFT's proprio token) in their slots
        and OFT's action slots emptied."""
        kinds = batch["kinds"]
        x = self.llm.embed_tokens(batch["tokens"])
        patches = self.projector(self.vision(batch["pixels"])).to(x.dtype)
        x = x.masked_scatter((kinds == IMAGE)[..., None], patches)
        if self.cfg.mode == OFT:
            x = x.masked_scatter((kinds == PROPRIO)[..., None], self.proprio_projector(batch["state"]).to(x.dtype))
            x = x * (kinds != ACTION)[..., None].to(x.dtype)
        return x

    def attention(self, kinds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, 1, L, L] mask (True = may attend) and rotary positions [B, L]. Left padding is
        never attended to; a padding query sees itself, so no row of the mask is empty."""
        valid = kinds != PADDING
        b, n = kinds.shape
        allowed = valid[:, None, :].expand(b, n, n)
        if self.cfg.mode != OFT:
            allowed = allowed & torch.ones(n, n, dtype=torch.bool, device=kinds.device).tril()
        allowed = allowed | torch.eye(n, dtype=torch.bool, device=kinds.device)
        return allowed[:, None], (valid.cumsum(1) - 1).clamp(min=0)

    def hidden(self, batch: dict) -> torch.Tensor:
        mask, positions = self.attention(batch["kinds"])
        return self.llm(inputs_embeds=self.embed(batch), attention_mask=mask, position_ids=positions).last_hidden_state

    # -- autoregressive ----------------------------------------------------------------
    def action_logits(self, h: torch.Tensor) -> torch.Tensor:
        """Logits over the 256 action ids only (decoding is restricted to them)."""
        return F.linear(h, self.lm_head.weight[-self.cfg.bins:])

    @torch.no_grad()
    def decode(self, batch: dict, steps: int) -> torch.Tensor:
        """Greedy decoding of `steps` action tokens after each (left-padded) prefix -> [B, steps]."""
        kinds = batch["kinds"]
        mask, positions = self.attention(kinds)
        cache = DynamicCache(config=self.llm.config)
        out = self.llm(inputs_embeds=self.embed(batch), attention_mask=mask, position_ids=positions,
                       past_key_values=cache, use_cache=True)
        valid, last = kinds != PADDING, positions[:, -1:]
        offset = self.cfg.vocab_size - self.cfg.bins
        tokens = []
        for step in range(steps):
            token = self.action_logits(out.last_hidden_state[:, -1]).argmax(-1) + offset
            tokens.append(token)
            if step + 1 == steps:
                break
            valid = torch.cat([valid, torch.ones_like(valid[:, :1])], 1)
            out = self.llm(inputs_embeds=self.llm.embed_tokens(token)[:, None], attention_mask=valid[:, None, None],
                           position_ids=last + step + 1, past_key_values=cache, use_cache=True)
        return torch.stack(tokens, 1)

    # -- oft -----------------------------------------------------------------------------
    def predict_chunk(self, batch: dict) -> torch.Tensor:
        """One parallel pass -> actions [B, chunk, action_dim] in [q01, q99]'s [-1, 1] scale."""
        h = self.hidden(batch)
        slots = h[batch["kinds"] == ACTION].view(h.shape[0], self.cfg.chunk, self.cfg.action_dim * self.cfg.width)
        return self.action_head(slots)

    # -- training ------------------------------------------------------------------------
    def loss(self, batch: dict) -> torch.Tensor:
        if self.cfg.mode == OFT:
            weight = batch["action_weight"]  # real dims of unpadded steps
            error = (self.predict_chunk(batch) - batch["actions"]).abs()
            return (error * weight).sum() / weight.sum().clamp(min=1.0)
        # each action token is predicted from the position before it; nothing else is scored
        h = self.hidden(batch)
        scored = batch["kinds"][:, 1:] == ACTION
        logits = self.lm_head(h[:, :-1][scored])
        return F.cross_entropy(logits, batch["tokens"][:, 1:][scored])
