"""The π0 network: a PaliGemma-style VLM and a flow-matching action expert that share every
attention layer (REFERENCE.md has the facts; the code is written here on transformers'
Gemma and SigLIP building blocks).

Tokens come in three blocks: [images, prompt] (the prefix, seen by the VLM weights), [state]
and [H noisy actions] (the suffix, seen by the narrower expert weights). Attention is joint:
each layer projects every token with its own group's weights, then all tokens attend
together under the 3-block mask — a block sees itself and the blocks before it, so the prefix
never sees the robot, the state token never sees the actions, and the actions see everything.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GemmaConfig, SiglipVisionConfig, SiglipVisionModel
from transformers.models.gemma.modeling_gemma import (
    GemmaMLP,
    GemmaRMSNorm,
    GemmaRotaryEmbedding,
    apply_rotary_pos_emb,
)

from pi0bench.policies.pi0.config import Pi0Config

PREFIX, STATE, ACTIONS = 0, 1, 2  # attention blocks


def gemma_config(cfg: Pi0Config, width: int, mlp: int) -> GemmaConfig:
    return GemmaConfig(hidden_size=width, intermediate_size=mlp, num_hidden_layers=cfg.depth,
                       num_attention_heads=cfg.heads, num_key_value_heads=cfg.kv_heads,
                       head_dim=cfg.head_dim, vocab_size=cfg.vocab_size,
                       hidden_activation="gelu_pytorch_tanh")


class GroupWeights(nn.Module):
    """One token group's weights in one layer: norms, attention projections, MLP."""

    def __init__(self, gemma: GemmaConfig):
        super().__init__()
        width, heads, kv, dim = gemma.hidden_size, gemma.num_attention_heads, gemma.num_key_value_heads, gemma.head_dim
        self.input_layernorm = GemmaRMSNorm(width, eps=gemma.rms_norm_eps)
        self.q_proj = nn.Linear(width, heads * dim, bias=False)
        self.k_proj = nn.Linear(width, kv * dim, bias=False)
        self.v_proj = nn.Linear(width, kv * dim, bias=False)
        self.o_proj = nn.Linear(heads * dim, width, bias=False)
        self.post_attention_layernorm = GemmaRMSNorm(width, eps=gemma.rms_norm_eps)
        self.mlp = GemmaMLP(gemma)


class JointLayer(nn.Module):
    """A transformer layer whose attention spans both groups (prefix and suffix)."""

    def __init__(self, cfg: Pi0Config, vlm: GemmaConfig, expert: GemmaConfig):
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = cfg.heads, cfg.kv_heads, cfg.head_dim
        self.groups = nn.ModuleList([GroupWeights(vlm), GroupWeights(expert)])

    def forward(self, xs: list[torch.Tensor | None], cos: torch.Tensor, sin: torch.Tensor,
                mask: torch.Tensor, past: tuple[torch.Tensor, torch.Tensor] | None = None):
        """xs: per group [B, L_g, width_g] or None; cos/sin for the present tokens; mask
        [B, L_q, L_past + L_q] (True = may attend). Returns the new xs and this call's (k, v)."""
        present = [(g, x) for g, x in enumerate(xs) if x is not None]
        qs, ks, vs = [], [], []
        for g, x in present:
            w = self.groups[g]
            h = w.input_layernorm(x)
            b, n, _ = h.shape
            qs.append(w.q_proj(h).view(b, n, self.heads, self.head_dim).transpose(1, 2))
            ks.append(w.k_proj(h).view(b, n, self.kv_heads, self.head_dim).transpose(1, 2))
            vs.append(w.v_proj(h).view(b, n, self.kv_heads, self.head_dim).transpose(1, 2))
        q, k, v = torch.cat(qs, 2), torch.cat(ks, 2), torch.cat(vs, 2)
        q, k = apply_rotary_pos_emb(q, k, cos, sin)
        new_kv = (k, v)
        if past is not None:
            k, v = torch.cat([past[0], k], 2), torch.cat([past[1], v], 2)
        repeat = self.heads // self.kv_heads
        attended = F.scaled_dot_product_attention(
            q, k.repeat_interleave(repeat, 1), v.repeat_interleave(repeat, 1), attn_mask=mask[:, None])
        attended = attended.transpose(1, 2).flatten(2)
        out, start = list(xs), 0
        for g, x in present:
            w, n = self.groups[g], x.shape[1]
            y = x + w.o_proj(attended[:, start:start + n])
            out[g] = y + w.mlp(w.post_attention_layernorm(y))
            start += n
        return out, new_kv


def sinusoidal_embedding(t: torch.Tensor, dim: int, min_period: float = 4e-3, max_period: float = 4.0) -> torch.Tensor:
    """Sine-cosine embedding of flow time t ∈ [0, 1] over periods from min to max."""
    fraction = torch.linspace(0.0, 1.0, dim // 2, dtype=torch.float32, device=t.device)
    period = min_period * (max_period / min_period) ** fraction
    angle = t[:, None].float() * (2 * math.pi / period[None])
    return torch.cat([torch.sin(angle), torch.cos(angle)], dim=-1)


class Pi0Model(nn.Module):
    def __init__(self, cfg: Pi0Config):
        super().__init__()
        self.cfg = cfg
        vlm, expert = gemma_config(cfg, cfg.width, cfg.mlp), gemma_config(cfg, cfg.expert_width, cfg.expert_mlp)
        v = cfg.vision
        self.vision_tower = SiglipVisionModel(SiglipVisionConfig(
            hidden_size=v.hidden_size, intermediate_size=v.intermediate_size,
            num_hidden_layers=v.num_hidden_layers, num_attention_heads=v.num_attention_heads,
            patch_size=v.patch_size, image_size=v.image_size, vision_use_head=False))
        self.multi_modal_projector = nn.Linear(v.hidden_size, cfg.width)
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.width)
        self.layers = nn.ModuleList([JointLayer(cfg, vlm, expert) for _ in range(cfg.depth)])
        self.norms = nn.ModuleList([GemmaRMSNorm(cfg.width), GemmaRMSNorm(cfg.expert_width)])
        self.rotary = GemmaRotaryEmbedding(config=vlm)
        self.state_proj = nn.Linear(cfg.action_dim, cfg.expert_width)
        self.action_in_proj = nn.Linear(cfg.action_dim, cfg.expert_width)
        self.action_time_mlp_in = nn.Linear(2 * cfg.expert_width, cfg.expert_width)
        self.action_time_mlp_out = nn.Linear(cfg.expert_width, cfg.expert_width)
        self.action_out_proj = nn.Linear(cfg.expert_width, cfg.action_dim)

    # -- embeddings --------------------------------------------------------------------
    def embed_prefix(self, images: torch.Tensor, image_mask: torch.Tensor, tokens: torch.Tensor,
                     token_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """images [B, C, 3, H, W] in [-1, 1], image_mask [B, C], tokens/token_mask [B, T]
        -> embeddings [B, L, width] and validity [B, L]."""
        b, c = images.shape[:2]
        patches = self.pool_patches(self.vision_tower(pixel_values=images.flatten(0, 1)).last_hidden_state)
        image_tokens = self.multi_modal_projector(patches).view(b, c * patches.shape[1], -1)
        image_valid = image_mask[:, :, None].expand(b, c, patches.shape[1]).reshape(b, -1)
        text = self.embed_tokens(tokens) * math.sqrt(self.cfg.width)
        return torch.cat([image_tokens, text], 1), torch.cat([image_valid, token_mask.bool()], 1)

    def pool_patches(self, patches: torch.Tensor) -> torch.Tensor:
        """[N, g*g, D] patch features -> [N, (g/k)^2, D] averaged over k x k neighbours
        (k = cfg.image_pool): the VLM's cost grows with its tokens, the vision tower still sees
        fine patches."""
        k = self.cfg.image_pool
        if k == 1:
            return patches
        n, count, dim = patches.shape
        grid = math.isqrt(count)
        square = patches.transpose(1, 2).reshape(n, dim, grid, grid)
        return F.avg_pool2d(square, k).flatten(2).transpose(1, 2)

    def embed_suffix(self, state: torch.Tensor, noisy_actions: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """[state token, H action tokens] with the flow time mixed into each action token."""
        state_token = self.state_proj(state)[:, None]
        actions = self.action_in_proj(noisy_actions)
        time = sinusoidal_embedding(t, self.cfg.expert_width).to(actions.dtype)
        time = time[:, None].expand_as(actions)
        mixed = self.action_time_mlp_out(F.silu(self.action_time_mlp_in(torch.cat([actions, time], -1))))
        return torch.cat([state_token, mixed], 1)

    # -- attention plumbing ------------------------------------------------------------
    @staticmethod
    def block_mask(blocks_q: torch.Tensor, blocks_k: torch.Tensor, valid_k: torch.Tensor) -> torch.Tensor:
        """[B, Lq, Lk]: a query may attend to a valid key of its own block or an earlier one."""
        return (blocks_k[:, None, :] <= blocks_q[:, :, None]) & valid_k[:, None, :]

    def _token_layout(self, prefix_valid: torch.Tensor):
        """Attention block, validity and rotary position of every token of
        [prefix; state; H actions]."""
        (b, n), device = prefix_valid.shape, prefix_valid.device
        blocks = torch.full((b, n + 1 + self.cfg.horizon), ACTIONS, device=device)
        blocks[:, :n] = PREFIX
        blocks[:, n] = STATE
        valid = torch.cat([prefix_valid, torch.ones((b, 1 + self.cfg.horizon), dtype=torch.bool, device=device)], 1)
        return blocks, valid, torch.cumsum(valid, 1) - 1

    def _run(self, xs, positions, mask, cache=None):
        cos, sin = self.rotary(xs[0] if xs[0] is not None else xs[1], positions)
        new_cache = []
        for i, layer in enumerate(self.layers):
            xs, kv = layer(xs, cos, sin, mask, None if cache is None else cache[i])
            new_cache.append(kv)
        return xs, new_cache

    def velocity(self, prefix: torch.Tensor, prefix_valid: torch.Tensor, state: torch.Tensor,
                 noisy_actions: torch.Tensor, t: torch.Tensor, cache=None) -> torch.Tensor:
        """Predicted flow u = ε − A for the noisy actions at time t. With `cache` (the
        prefix's keys and values from `prefix_cache`) the prefix is not run again."""
        suffix = self.embed_suffix(state, noisy_actions, t)
        if cache is None:
            xs = self.forward_tokens(prefix, prefix_valid, suffix)
        else:
            blocks, valid, positions = self._token_layout(prefix_valid)
            n = prefix_valid.shape[1]
            mask = self.block_mask(blocks[:, n:], blocks, valid)
            xs, _ = self._run([None, suffix], positions[:, n:], mask, cache)
        actions_out = self.norms[1](xs[1][:, 1:])
        return self.action_out_proj(actions_out)

    def forward_tokens(self, prefix: torch.Tensor, prefix_valid: torch.Tensor,
                       suffix: torch.Tensor) -> list[torch.Tensor]:
        """Both token groups through every layer under the 3-block mask (no cache); returns
        the final hidden states [prefix, suffix] before the output norms."""
        blocks, valid, positions = self._token_layout(prefix_valid)
        xs, _ = self._run([prefix, suffix], positions, self.block_mask(blocks, blocks, valid))
        return xs

    def prefix_cache(self, prefix: torch.Tensor, prefix_valid: torch.Tensor):
        """Every layer's keys and values of the prefix, which sampling steps reuse."""
        n = prefix_valid.shape[1]
        blocks, valid, positions = (x[:, :n] for x in self._token_layout(prefix_valid))
        _, cache = self._run([prefix, None], positions, self.block_mask(blocks, blocks, valid))
        return cache

    # -- training and sampling ---------------------------------------------------------
    def loss(self, batch: dict, generator: torch.Generator | None = None) -> torch.Tensor:
        """Flow-matching loss: τ ~ Beta(1.5, 1) in [0.001, 1], x_τ = τ·ε + (1−τ)·A, target
        ε − A, mean squared error over real action dims and unpadded chunk rows. Each window's
        prefix (images, prompt) runs once; its cached keys and values serve `noise_draws`
        (ε, τ) draws of the action expert, so extra draws cost only the suffix."""
        draws = self.cfg.noise_draws
        actions = batch["actions"].repeat(draws, 1, 1)
        b = actions.shape[0]
        noise = torch.randn(actions.shape, generator=generator, device=actions.device, dtype=actions.dtype)
        beta = torch.distributions.Beta(torch.tensor(1.5), torch.tensor(1.0))
        tau = (beta.sample((b,)) * 0.999 + 0.001).to(actions.device, actions.dtype)
        x_t = tau[:, None, None] * noise + (1 - tau[:, None, None]) * actions
        prefix, valid = self.embed_prefix(batch["images"], batch["image_mask"], batch["tokens"], batch["token_mask"])
        cache = [(keys.repeat(draws, 1, 1, 1), values.repeat(draws, 1, 1, 1))
                 for keys, values in self.prefix_cache(prefix, valid)]
        predicted = self.velocity(prefix, valid.repeat(draws, 1), batch["state"].repeat(draws, 1), x_t, tau, cache)
        error = (predicted - (noise - actions)) ** 2
        weight = batch["action_weight"].repeat(draws, 1, 1)  # [B, H, action_dim]: real dims of unpadded rows
        return (error * weight).sum() / weight.sum().clamp(min=1.0)

    @torch.no_grad()
    def sample(self, batch: dict, steps: int = 10, noise: torch.Tensor | None = None,
               use_cache: bool = True, guidance: Guidance | None = None) -> torch.Tensor:
        """Integrate the flow from τ = 1 (noise) to 0 in `steps` Euler steps; with `guidance`,
        each step is steered towards its target (real-time chunking's inpainting)."""
        state = batch["state"]
        shape = (state.shape[0], self.cfg.horizon, self.cfg.action_dim)
        x = torch.randn(shape, device=state.device, dtype=state.dtype) if noise is None else noise.clone()
        prefix, valid = self.embed_prefix(batch["images"], batch["image_mask"], batch["tokens"], batch["token_mask"])
        cache = self.prefix_cache(prefix, valid) if use_cache else None
        dt = -1.0 / steps
        t = torch.ones(shape[0], device=state.device, dtype=state.dtype)
        for _ in range(steps):
            if guidance is None:
                velocity = self.velocity(prefix, valid, state, x, t, cache)
            else:
                velocity = self._guided_velocity(prefix, valid, state, x, t, cache, guidance)
            x = x + dt * velocity
            t = t + dt
        return x

    def _guided_velocity(self, prefix, valid, state, x, t, cache, guidance: Guidance) -> torch.Tensor:
        """ΠGDM guidance as real-time chunking uses it: the flow plus a step along the gradient
        that brings the predicted clean chunk x − τ·u closer to the target where the weights
        say so, scaled by (τ² + (1 − τ)²) / (τ(1 − τ)) clipped at `max_weight`."""
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            flow = self.velocity(prefix, valid, state, x, t, cache)
            clean = x - t[:, None, None] * flow
            error = 0.5 * (guidance.weights * (guidance.target - clean) ** 2).sum()
            (gradient,) = torch.autograd.grad(error, x)
        tau = t[:, None, None]
        scale = torch.clamp((tau**2 + (1 - tau) ** 2) / (tau * (1 - tau)), max=guidance.max_weight)
        return flow.detach() + scale * gradient


@dataclass(frozen=True)
class Guidance:
    """What a guided sample should continue: target [B, H, action_dim] in the model's
    normalised action space, per-entry weights in [0, 1] of the same shape, and the largest
    guidance scale (the RTC paper's β)."""

    target: torch.Tensor
    weights: torch.Tensor
    max_weight: float = 5.0
