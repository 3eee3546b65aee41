"""The Octo network (Octo Model Team 2024), written here on torch.nn from the published
architecture, with diffusers' DDPM scheduler.

One transformer runs over

    [task tokens; t=0: camera patches, proprio, readout; t=1: camera patches, proprio, readout]

under a block-wise causal mask. Task tokens (the prompt) attend only to task tokens.
Observation tokens attend to the task and to observation tokens of their own or earlier
timesteps. Readout tokens attend to the task, to observations of their own or earlier
timesteps and to readouts of their own or earlier timesteps, and nothing attends to them: they
read the sequence without changing it. A diffusion head (an MLP-ResNet, 20 DDPM steps,
ε-prediction) turns the readout embedding of the last timestep into a chunk of actions.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler
from diffusers.utils.torch_utils import randn_tensor
from torch import nn

from pi0bench.policies.octo.config import OctoConfig
from pi0bench.policies.pi0.tokenizer import ByteTokenizer

TASK, OBSERVATION, READOUT = 0, 1, 2  # token kinds


def noise_scheduler(cfg: OctoConfig) -> DDPMScheduler:
    """Octo's DDPM: the cosine schedule (s = 0.008, betas capped at 0.999, which is diffusers'
    squaredcos_cap_v2), ε-prediction and ancestral sampling with variance β_t ("fixed_large").

    Beyond Octo, each step's estimate of the clean chunk is clipped to ± max_action (the model
    clips the sample too, as Octo does). With 20 steps the capped schedule leaves ᾱ ≈ 6e-6 at
    the last step, so the first reverse step divides the ε error by √α ≈ 0.03; unclipped, a
    trained octo-tiny sampled chunks 2.6 z-units from the demonstrations' actions on training
    windows, clipped 0.29 (ε itself was predicted well at every step)."""
    return DDPMScheduler(num_train_timesteps=cfg.diffusion_steps, beta_schedule="squaredcos_cap_v2",
                         prediction_type="epsilon", variance_type="fixed_large", clip_sample=True,
                         clip_sample_range=cfg.max_action)


def transformer(width: int, depth: int, heads: int, mlp: int) -> nn.TransformerEncoder:
    """Pre-norm ViT blocks (LayerNorm, attention, residual; LayerNorm, GELU MLP, residual)
    and a final LayerNorm, without dropout, as Octo-Small."""
    layer = nn.TransformerEncoderLayer(width, heads, mlp, dropout=0.0, activation="gelu",
                                       batch_first=True, norm_first=True)
    return nn.TransformerEncoder(layer, depth, norm=nn.LayerNorm(width), enable_nested_tensor=False)


class StdConv2d(nn.Conv2d):
    """A convolution with weight standardisation (zero mean, unit variance per output channel),
    which makes GroupNorm stems train well."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight
        mean = w.mean(dim=(1, 2, 3), keepdim=True)
        std = w.std(dim=(1, 2, 3), keepdim=True, unbiased=False)
        return F.conv2d(x, (w - mean) / (std + 1e-5), self.bias, self.stride, self.padding)


class ConvStem(nn.Module):
    """Octo's SmallStem: 3x3 stride-2 convolutions with GroupNorm and ReLU, then a 1x1
    convolution, so every 2**n x 2**n patch of the image becomes one token."""

    def __init__(self, features: tuple[int, ...], out_features: int):
        super().__init__()
        layers, channels = [], 3
        for c in features:
            layers += [StdConv2d(channels, c, 3, stride=2, padding=1), nn.GroupNorm(math.gcd(32, c), c), nn.ReLU()]
            channels = c
        self.convs = nn.Sequential(*layers)
        self.embedding = nn.Conv2d(channels, out_features, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """[N, 3, S, S] in [-1, 1] -> [N, (S / 2**n)², out_features]."""
        return self.embedding(self.convs(images)).flatten(2).transpose(1, 2)


class TextEncoder(nn.Module):
    """Byte tokens -> contextual embeddings: a small transformer learned with the policy, in
    place of Octo's frozen, pre-trained T5-Base (nothing is downloaded here)."""

    def __init__(self, cfg: OctoConfig):
        super().__init__()
        self.embed = nn.Embedding(ByteTokenizer.vocab_size, cfg.text_width)
        self.position = nn.Parameter(torch.randn(1, cfg.max_prompt_tokens, cfg.text_width) * 0.02)
        self.encoder = transformer(cfg.text_width, cfg.text_depth, cfg.text_heads, 4 * cfg.text_width)

    def forward(self, tokens: torch.Tensor, token_mask: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens) + self.position[:, : tokens.shape[1]]
        return self.encoder(x, src_key_padding_mask=~token_mask)


class FourierFeatures(nn.Module):
    """Learnable Fourier features of the diffusion step: cos and sin of 2π·t·w, w ~ N(0, 0.2²)."""

    def __init__(self, dim: int):
        super().__init__()
        self.kernel = nn.Parameter(torch.randn(dim // 2, 1) * 0.2)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        angle = 2 * math.pi * t.float()[:, None] @ self.kernel.T
        return torch.cat([angle.cos(), angle.sin()], -1)


class MLPResNetBlock(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.up = nn.Linear(width, 4 * width)
        self.down = nn.Linear(4 * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.down(F.silu(self.up(self.norm(x))))


class DiffusionHead(nn.Module):
    """Octo's score network: [time encoding, readout embedding, noisy flat chunk] -> an
    MLP-ResNet (LayerNorm, 4x expansion, swish) -> the predicted noise of the chunk."""

    def __init__(self, cfg: OctoConfig):
        super().__init__()
        flat = cfg.horizon * cfg.action_dim
        self.time_features = FourierFeatures(cfg.time_dim)
        self.time_mlp = nn.Sequential(nn.Linear(cfg.time_dim, 2 * cfg.time_dim), nn.SiLU(),
                                      nn.Linear(2 * cfg.time_dim, cfg.time_dim))
        self.inp = nn.Linear(cfg.time_dim + cfg.width + flat, cfg.head_hidden)
        self.blocks = nn.Sequential(*[MLPResNetBlock(cfg.head_hidden) for _ in range(cfg.head_blocks)])
        self.out = nn.Linear(cfg.head_hidden, flat)

    def forward(self, embedding: torch.Tensor, noisy: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """embedding [B, width], noisy [B, horizon·action_dim], t [B] diffusion steps."""
        time = self.time_mlp(self.time_features(t))
        x = self.blocks(self.inp(torch.cat([time, embedding, noisy], -1)))
        return self.out(F.silu(x))


class OctoModel(nn.Module):
    def __init__(self, cfg: OctoConfig):
        super().__init__()
        if not (cfg.state_dim and cfg.action_dim):
            raise ValueError("OctoConfig needs state_dim and action_dim (from the datasets)")
        if any(size % cfg.patch for size in cfg.image_sizes):
            raise ValueError(f"image sizes {cfg.image_sizes} must be multiples of the {cfg.patch} px patch")
        self.cfg = cfg
        d, steps = cfg.width, cfg.max_horizon

        def position(*shape: int) -> nn.Parameter:
            return nn.Parameter(torch.randn(1, *shape, d) * 0.02)

        self.text_encoder = TextEncoder(cfg)
        self.task_projection = nn.Linear(cfg.text_width, d)
        self.task_position = position(cfg.max_prompt_tokens)
        slots = range(len(cfg.image_sizes))
        self.stems = nn.ModuleList([ConvStem(cfg.stem_features, cfg.patch_features) for _ in slots])
        self.camera_projections = nn.ModuleList([nn.Linear(cfg.patch_features, d) for _ in slots])
        self.camera_positions = nn.ParameterList([position(steps, cfg.tokens_per_camera(i)) for i in slots])
        self.proprio_projection = nn.Linear(cfg.state_dim, d)
        self.proprio_position = position(steps, 1)
        self.readout_position = position(steps, cfg.readout_tokens)  # readouts are their position alone
        self.transformer = transformer(d, cfg.depth, cfg.heads, cfg.mlp)
        self.head = DiffusionHead(cfg)
        self.scheduler = noise_scheduler(cfg)

    # -- token layout ------------------------------------------------------------------
    @property
    def tokens_per_step(self) -> int:
        cameras = sum(self.cfg.tokens_per_camera(i) for i in range(len(self.cfg.image_sizes)))
        return cameras + 1 + self.cfg.readout_tokens

    def layout(self, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Kind (TASK, OBSERVATION, READOUT) and timestep (−1 for the task) of every token."""
        n_task, per_step = self.cfg.max_prompt_tokens, self.tokens_per_step
        kinds = [TASK] * n_task
        times = [-1] * n_task
        for t in range(steps):
            kinds += [OBSERVATION] * (per_step - self.cfg.readout_tokens) + [READOUT] * self.cfg.readout_tokens
            times += [t] * per_step
        return torch.tensor(kinds), torch.tensor(times)

    @staticmethod
    def attention_rule(kinds: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
        """[L, L], True where query token i may attend to key token j (Octo's rules)."""
        q_kind, k_kind = kinds[:, None], kinds[None, :]
        not_future = times[None, :] <= times[:, None]
        return ((k_kind == TASK)
                | ((q_kind != TASK) & (k_kind == OBSERVATION) & not_future)
                | ((q_kind == READOUT) & (k_kind == READOUT) & not_future))

    # -- embeddings --------------------------------------------------------------------
    def embed(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """The whole token sequence [B, L, width] and which tokens are real [B, L]:
        padding of the prompt and camera slots the robot does not have are not."""
        cfg, state = self.cfg, batch["state"]
        b, steps = state.shape[:2]
        task = self.task_projection(self.text_encoder(batch["tokens"], batch["token_mask"])) + self.task_position
        groups, valid = [], []
        for i, images in enumerate(batch["images"]):  # each [B, T, 3, S, S]
            patches = self.camera_projections[i](self.stems[i](images.flatten(0, 1)))
            groups.append(patches.view(b, steps, -1, cfg.width) + self.camera_positions[i][:, :steps])
            valid.append(batch["image_mask"][:, i, None, None].expand(b, steps, patches.shape[1]))
        groups.append(self.proprio_projection(state)[:, :, None] + self.proprio_position[:, :steps])
        groups.append(self.readout_position[:, :steps].expand(b, -1, -1, -1))
        valid.append(torch.ones(b, steps, 1 + cfg.readout_tokens, dtype=torch.bool, device=state.device))
        per_step = torch.cat(groups, 2).flatten(1, 2)
        return torch.cat([task, per_step], 1), torch.cat([batch["token_mask"], torch.cat(valid, 2).flatten(1)], 1)

    def forward_tokens(self, tokens: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Every token through the transformer under the block-wise mask."""
        steps = (tokens.shape[1] - self.cfg.max_prompt_tokens) // self.tokens_per_step
        allowed = self.attention_rule(*self.layout(steps)).to(tokens.device)
        return self.transformer(tokens, mask=~allowed, src_key_padding_mask=~valid)

    def readout(self, batch: dict) -> torch.Tensor:
        """The mean readout embedding of the last timestep, [B, width] (what the head reads)."""
        out = self.forward_tokens(*self.embed(batch))
        return out[:, -self.cfg.readout_tokens:].mean(1)

    # -- training and sampling ---------------------------------------------------------
    def loss(self, batch: dict, generator: torch.Generator | None = None) -> torch.Tensor:
        """ε-prediction MSE at a uniformly drawn DDPM step, over the real action dims of
        unpadded chunk rows. Actions are clipped to ± max_action first, as in Octo."""
        cfg = self.cfg
        actions = batch["actions"].clamp(-cfg.max_action, cfg.max_action).flatten(1)
        b = actions.shape[0]
        noise = torch.randn(actions.shape, generator=generator, dtype=actions.dtype)
        t = torch.randint(0, cfg.diffusion_steps, (b,), generator=generator)
        noisy = self.scheduler.add_noise(actions, noise, t)
        predicted = self.head(self.readout(batch), noisy, t)
        weight = batch["action_weight"].flatten(1)
        return ((predicted - noise) ** 2 * weight).sum() / weight.sum().clamp(min=1.0)

    @torch.no_grad()
    def sample(self, batch: dict, noise: torch.Tensor, action_mask: torch.Tensor,
               generator: torch.Generator | list[torch.Generator] | None = None) -> torch.Tensor:
        """Ancestral DDPM sampling from `noise` [B, horizon, action_dim], one transformer pass,
        20 head passes. The sample is clipped to ± max_action after every step, and the padded
        dims (False in `action_mask` [B, action_dim]) are reset to the noise they carry at that
        step in training, so the head sees what it was trained on. `generator` may be one per
        row, so a batch of episodes draws what each would alone."""
        cfg = self.cfg
        embedding = self.readout(batch)
        keep = action_mask[:, None, :].expand(-1, cfg.horizon, -1).flatten(1)
        alphas = self.scheduler.alphas_cumprod
        self.scheduler.set_timesteps(cfg.diffusion_steps)
        x = noise.flatten(1)
        for t in self.scheduler.timesteps:
            eps = self.head(embedding, x, t.expand(x.shape[0]).to(x.device))
            x = self.scheduler.step(eps, t, x, generator=generator).prev_sample
            x = x.clamp(-cfg.max_action, cfg.max_action)
            if t > 0:
                padded = (1 - alphas[t - 1]).sqrt() * randn_tensor(x.shape, generator=generator, device=x.device, dtype=x.dtype)
                x = torch.where(keep, x, padded)
        return x.view(-1, cfg.horizon, cfg.action_dim)
