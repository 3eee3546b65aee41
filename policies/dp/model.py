"""Diffusion Policy, CNN variant (Chi et al. 2023), written here on torch.nn, with diffusers'
DDPM (training) and DDIM (inference) schedulers.

Each camera image goes through a ResNet-18 with GroupNorm whose last feature map becomes 32
spatial-softmax keypoints; the keypoints of every camera and the state, over the last
`obs_steps` frames, are the global condition. A 1-D temporal U-Net denoises the action
sequence, every residual block modulated by the condition and the diffusion step through FiLM
(a per-channel scale and shift).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMScheduler
from torch import nn

from pi0bench.policies.dp.config import DpConfig
from pi0bench.policies.resnet import ResNet18, SpatialSoftmax


def noise_schedulers(cfg: DpConfig) -> tuple[DDPMScheduler, DDIMScheduler]:
    """The training (DDPM) and sampling (DDIM) schedulers over the same noise levels. Actions
    are z-scored, not squashed into [-1, 1], so samples are not clipped."""
    common = dict(num_train_timesteps=cfg.train_steps, beta_schedule="squaredcos_cap_v2",
                  prediction_type="epsilon", clip_sample=False)
    return DDPMScheduler(**common), DDIMScheduler(**common)


def step_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    half = dim // 2
    freq = torch.exp(torch.arange(half, device=t.device) * (-math.log(10000.0) / (half - 1)))
    angle = t.float()[:, None] * freq[None]
    return torch.cat([angle.sin(), angle.cos()], -1)


def conv_block(cin: int, cout: int, kernel: int, groups: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv1d(cin, cout, kernel, padding=kernel // 2), nn.GroupNorm(groups, cout), nn.Mish())


class FiLMResidualBlock(nn.Module):
    def __init__(self, cin: int, cout: int, cond_dim: int, cfg: DpConfig):
        super().__init__()
        self.conv1 = conv_block(cin, cout, cfg.kernel, cfg.groups)
        self.conv2 = conv_block(cout, cout, cfg.kernel, cfg.groups)
        self.film = nn.Sequential(nn.Mish(), nn.Linear(cond_dim, 2 * cout))
        self.skip = nn.Conv1d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        scale, shift = self.film(cond)[..., None].chunk(2, 1)
        return self.conv2(self.conv1(x) * scale + shift) + self.skip(x)


class TemporalUnet(nn.Module):
    """[B, horizon, action_dim] noisy actions, diffusion step, condition -> predicted noise."""

    def __init__(self, cfg: DpConfig, cond_dim: int):
        super().__init__()
        e = cfg.step_embed
        self.step_mlp = nn.Sequential(nn.Linear(e, 4 * e), nn.Mish(), nn.Linear(4 * e, e))
        cond_dim += e
        dims = [cfg.action_dim, *cfg.down_dims]
        levels = list(zip(dims[:-1], dims[1:]))
        self.down = nn.ModuleList()
        for i, (cin, cout) in enumerate(levels):
            last = i == len(levels) - 1
            self.down.append(nn.ModuleList([
                FiLMResidualBlock(cin, cout, cond_dim, cfg), FiLMResidualBlock(cout, cout, cond_dim, cfg),
                nn.Identity() if last else nn.Conv1d(cout, cout, 3, 2, 1)]))
        top = cfg.down_dims[-1]
        self.mid = nn.ModuleList([FiLMResidualBlock(top, top, cond_dim, cfg) for _ in range(2)])
        self.up = nn.ModuleList()
        for cout, cin in reversed(levels[1:]):
            self.up.append(nn.ModuleList([
                FiLMResidualBlock(2 * cin, cout, cond_dim, cfg), FiLMResidualBlock(cout, cout, cond_dim, cfg),
                nn.ConvTranspose1d(cout, cout, 4, 2, 1)]))
        self.out = nn.Sequential(conv_block(cfg.down_dims[0], cfg.down_dims[0], cfg.kernel, cfg.groups),
                                 nn.Conv1d(cfg.down_dims[0], cfg.action_dim, 1))
        self.step_embed = e

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        cond = torch.cat([self.step_mlp(step_embedding(t, self.step_embed)), cond], -1)
        x = x.transpose(1, 2)  # convolve over time
        skips = []
        for block1, block2, downsample in self.down:
            x = block2(block1(x, cond), cond)
            skips.append(x)
            x = downsample(x)
        for block in self.mid:
            x = block(x, cond)
        for block1, block2, upsample in self.up:
            x = upsample(block2(block1(torch.cat([x, skips.pop()], 1), cond), cond))
        return self.out(x).transpose(1, 2)


class DpModel(nn.Module):
    def __init__(self, cfg: DpConfig):
        super().__init__()
        if not (cfg.state_dim and cfg.action_dim and cfg.cameras):
            raise ValueError("DpConfig needs state_dim, action_dim and cameras (from the dataset)")
        if cfg.horizon % 2 ** (len(cfg.down_dims) - 1):
            raise ValueError(f"horizon {cfg.horizon} must halve {len(cfg.down_dims) - 1} times")
        self.cfg = cfg
        self.backbone = ResNet18(cfg.backbone_width, norm="group", maxpool=cfg.backbone_maxpool)
        self.keypoints = SpatialSoftmax(self.backbone.out_channels, cfg.keypoints)
        self.keypoint_out = nn.Linear(2 * cfg.keypoints, 2 * cfg.keypoints)
        per_frame = cfg.cameras * 2 * cfg.keypoints + cfg.state_dim
        self.unet = TemporalUnet(cfg, cfg.obs_steps * per_frame)
        self.train_scheduler, self.sample_scheduler = noise_schedulers(cfg)

    def condition(self, images: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """images [B, T, C, 3, H, W] in [0, 1], state [B, T, S] -> [B, T·(C·2K + S)]."""
        b, t, c = images.shape[:3]
        features = F.relu(self.keypoint_out(self.keypoints(self.backbone(images.flatten(0, 2)))))
        return torch.cat([features.view(b, t, -1), state], -1).flatten(1)

    def loss(self, batch: dict, generator: torch.Generator | None = None) -> torch.Tensor:
        """ε-prediction MSE at uniformly drawn noise levels (`noise_draws` a window, sharing one
        image condition), over unpadded action rows."""
        draws = self.cfg.noise_draws
        actions = batch["actions"].repeat(draws, 1, 1)
        noise = torch.randn(actions.shape, generator=generator, dtype=actions.dtype)
        steps = torch.randint(0, self.cfg.train_steps, (actions.shape[0],), generator=generator)
        noisy = self.train_scheduler.add_noise(actions, noise, steps)
        condition = self.condition(batch["images"], batch["state"]).repeat(draws, 1)
        predicted = self.unet(noisy, steps, condition)
        valid = (~batch["action_is_pad"].repeat(draws, 1)).unsqueeze(-1).to(predicted.dtype)
        return ((predicted - noise) ** 2 * valid).sum() / (valid.sum() * actions.shape[-1]).clamp(min=1.0)

    @torch.no_grad()
    def sample(self, images: torch.Tensor, state: torch.Tensor, noise: torch.Tensor,
               steps: int | None = None) -> torch.Tensor:
        """DDIM from `noise` [B, horizon, action_dim] in `steps` steps (default the config's)."""
        cond = self.condition(images, state)
        scheduler = self.sample_scheduler
        scheduler.set_timesteps(steps or self.cfg.inference_steps)
        x = noise
        for t in scheduler.timesteps:
            eps = self.unet(x, t.expand(x.shape[0]).to(x.device), cond)
            x = scheduler.step(eps, t, x).prev_sample
        return x
