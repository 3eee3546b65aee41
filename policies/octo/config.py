"""Octo sizes: Octo-Small as published, and a tiny one with the same code path that trains on
this CPU."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class OctoConfig:
    """One transformer over [task tokens; per timestep: camera patches, proprio, readout].

    Camera slots are filled in the order a robot lists its cameras (the first is the primary,
    the rest wrists; empty slots are masked), each with its own conv stem and image size.
    `state_dim` and `action_dim` are the largest of the training robots' (0 until the datasets
    are known); smaller robots are zero-padded and masked."""

    name: str = "octo-small"
    width: int = 384  # token embedding size (ViT-S)
    depth: int = 12
    heads: int = 6
    mlp: int = 1536
    window: int = 2  # observation timesteps a query sees
    max_horizon: int = 10  # timesteps the learned position embeddings cover
    horizon: int = 4  # actions each readout predicts
    readout_tokens: int = 1
    image_sizes: tuple[int, ...] = (256, 128, 128)  # per camera slot: primary, wrists
    stem_features: tuple[int, ...] = (32, 96, 192, 384)  # 3x3 stride-2 convs; patch = 2**len
    patch_features: int = 512  # the stem's 1x1 patch embedding, projected to `width`
    max_prompt_tokens: int = 48  # bytes of the prompt (+ BOS, EOS)
    text_width: int = 256  # the learned text encoder standing in for the frozen T5-Base
    text_depth: int = 2
    text_heads: int = 4
    head_hidden: int = 256  # diffusion head: MLP-ResNet width
    head_blocks: int = 3
    time_dim: int = 32  # learnable Fourier features of the diffusion step
    diffusion_steps: int = 20  # DDPM, cosine schedule, ε-prediction
    max_action: float = 5.0  # z-scored actions are clipped to ± this
    state_dim: int = 0
    action_dim: int = 0
    lr: float = 3e-4

    @property
    def patch(self) -> int:
        return 2 ** len(self.stem_features)

    def tokens_per_camera(self, slot: int) -> int:
        return (self.image_sizes[slot] // self.patch) ** 2

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> OctoConfig:
        return cls(**dict(data, image_sizes=tuple(data["image_sizes"]),
                          stem_features=tuple(data["stem_features"])))


OCTO_SMALL = OctoConfig()
OCTO_TINY = OctoConfig(
    name="octo-tiny", width=160, depth=4, heads=4, mlp=640, max_horizon=2, image_sizes=(64, 64, 64),
    stem_features=(16, 32, 64, 128), patch_features=128, text_width=96, text_depth=1, text_heads=4,
    head_hidden=192,
)
CONFIGS = {"octo-small": OCTO_SMALL, "octo-tiny": OCTO_TINY}
