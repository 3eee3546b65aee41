"""π0 model sizes: the paper's, and a small one with the same code path that trains on a CPU."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from pi0bench.errors import UserError


@dataclass(frozen=True)
class VisionConfig:
    """A SigLIP vision tower (transformers' SiglipVisionConfig fields)."""

    hidden_size: int = 1152
    intermediate_size: int = 4304
    num_hidden_layers: int = 27
    num_attention_heads: int = 16
    patch_size: int = 14
    image_size: int = 224


@dataclass(frozen=True)
class Pi0Config:
    """Widths of the two token groups; they share attention, so heads and head_dim match."""

    name: str = "pi0"
    width: int = 2048  # Gemma-2B, the VLM over [image tokens, prompt tokens]
    depth: int = 18
    mlp: int = 16384
    heads: int = 8
    kv_heads: int = 1
    head_dim: int = 256
    expert_width: int = 1024  # the action expert over [state token, action tokens]
    expert_mlp: int = 4096
    vocab_size: int = 257152
    max_prompt_tokens: int = 48
    action_dim: int = 32  # state and actions are zero-padded to this many dims
    horizon: int = 50
    tokenizer: str = "sentencepiece"  # PaliGemma's tokenizer.model, kept beside the weights; or "bytes"
    image_pool: int = 1  # average k x k neighbouring patch tokens before the VLM (1: none, as π0)
    noise_draws: int = 1  # training only: (noise, time) draws a window, sharing one prefix (1: as π0)
    vision: VisionConfig = field(default_factory=VisionConfig)

    def __post_init__(self) -> None:
        grid = self.vision.image_size // self.vision.patch_size
        if self.image_pool < 1 or grid % self.image_pool:
            raise UserError(f"{self.name}: image_pool {self.image_pool} does not divide the {grid} x {grid} patch grid; "
                             f"use a divisor of {grid}")
        if self.noise_draws < 1:
            raise UserError(f"noise_draws must be at least 1 (got {self.noise_draws})")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Pi0Config:
        data = dict(data)
        data["vision"] = VisionConfig(**data["vision"])
        data.setdefault("tokenizer", "bytes")  # checkpoints written before the field existed
        data.setdefault("image_pool", 1)
        return cls(**data)


PI0 = Pi0Config()
# 5.1M parameters; the vision tower reads 8 px patches of 64 px images (an 8 x 8 grid), then
# 2 x 2 neighbours are averaged, so the VLM gets 16 tokens a camera: the 4 x 4 grid act-small's
# ResNet hands its transformer, and 2.1x the training steps a minute of 64 tokens a camera
# (benchmarks/results/train_speed_pi0_pool.json). Checkpoints written before image_pool existed load
# with 1, the architecture they were trained with.
PI0_SMALL = Pi0Config(
    name="pi0-small", width=192, depth=6, mlp=768, heads=4, kv_heads=1, head_dim=48,
    expert_width=96, expert_mlp=384, vocab_size=260, max_prompt_tokens=48, tokenizer="bytes", image_pool=2,
    vision=VisionConfig(hidden_size=128, intermediate_size=512, num_hidden_layers=3,
                        num_attention_heads=4, patch_size=8, image_size=64),
)
CONFIGS = {"pi0": PI0, "pi0-small": PI0_SMALL}
