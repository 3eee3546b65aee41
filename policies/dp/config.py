"""Diffusion Policy sizes: the paper's CNN variant, and a small one that trains on a CPU."""

from __future__ import annotations

from dataclasses import dataclass

from pi0bench.errors import UserError
from pi0bench.policies.visuomotor import PerTaskConfig


@dataclass(frozen=True)
class DpConfig(PerTaskConfig):
    name: str = "dp"
    obs_steps: int = 2  # observation frames the policy conditions on (t−1, t)
    horizon: int = 16  # actions denoised per query, starting at the current step
    execute: int = 8  # of which this many are executed before the next query
    down_dims: tuple[int, ...] = (512, 1024, 2048)
    kernel: int = 5
    groups: int = 8  # GroupNorm groups in the U-Net
    step_embed: int = 128  # diffusion-step embedding width
    keypoints: int = 32  # spatial-softmax keypoints a camera
    backbone_width: int = 64
    backbone_maxpool: bool = True
    image_size: int = 96
    train_steps: int = 100  # DDPM noise levels (squared-cosine schedule, ε-prediction)
    inference_steps: int = 10  # DDIM steps at inference
    lr: float = 1e-4
    # Noise draws per training window: the image condition (most of a step's cost) is computed
    # once and denoised at this many noise levels, more diffusion samples per step for little
    # more time. 1 is the usual recipe.
    noise_draws: int = 1

    def __post_init__(self) -> None:
        if self.noise_draws < 1:
            raise UserError(f"noise_draws must be at least 1 (got {self.noise_draws})")

    @classmethod
    def from_dict(cls, data: dict) -> DpConfig:
        return cls(**dict(data, down_dims=tuple(data["down_dims"])))


DP = DpConfig()
# ~6M parameters: the U-Net at an eighth of the paper's widths, ResNet-18 at a quarter, and
# 64 px images without the stem max-pool (a 4 x 4 map for the keypoints).
DP_SMALL = DpConfig(name="dp-small", down_dims=(64, 128, 256), step_embed=64, backbone_width=16,
                    backbone_maxpool=False, image_size=64, lr=3e-4)
CONFIGS = {"dp": DP, "dp-small": DP_SMALL}
