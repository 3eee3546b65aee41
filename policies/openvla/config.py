"""OpenVLA sizes: the released 7B model's shape, and small ones with the same code path that
train on a CPU. One config class covers both decoders: `mode` "autoregressive" is OpenVLA
(one action, D tokens decoded greedily), "oft" is OpenVLA-OFT (an action chunk decoded in
one parallel pass, continuous values from an L1 regression head)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

AUTOREGRESSIVE, OFT = "autoregressive", "oft"


@dataclass(frozen=True)
class TowerConfig:
    """One ViT image encoder. Prismatic reads patch features from the second-to-last layer,
    so the published tower's last layer is never used; `layers` counts the layers used, and
    only those are built."""

    width: int
    mlp: int
    layers: int
    heads: int


@dataclass(frozen=True)
class OpenVlaConfig:
    name: str = "openvla-7b"
    mode: str = AUTOREGRESSIVE
    image_size: int = 224
    patch_size: int = 14  # both towers see the same patches, concatenated channel-wise
    siglip: TowerConfig = field(default_factory=lambda: TowerConfig(1152, 4304, 26, 16))  # So400m/14 (27 layers)
    dino: TowerConfig | None = field(default_factory=lambda: TowerConfig(1024, 4096, 23, 16))  # DINOv2 ViT-L/14 reg4
    dino_registers: int = 4
    width: int = 4096  # Llama-2 7B
    depth: int = 32
    mlp: int = 11008
    heads: int = 32
    vocab_size: int = 32000  # the last `bins` ids are the action tokens
    bins: int = 256
    tokenizer: str = "llama"  # Llama-2's SentencePiece model (not shipped); small configs use "bytes"
    chunk: int = 1  # actions predicted per query
    action_dim: int = 0  # oft: action slots per step, the widest robot's D (from the datasets)
    state_dim: int = 0  # oft: the widest robot's state, projected into one proprio token
    lr: float = 2e-5  # OpenVLA's fine-tuning rate; from scratch the small configs use more

    @property
    def horizon(self) -> int:
        """The chunk, by the name the other families' configs (and `Recipe.chunk`) use."""
        return self.chunk

    @property
    def patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> OpenVlaConfig:
        data = dict(data, siglip=TowerConfig(**data["siglip"]))
        data["dino"] = TowerConfig(**data["dino"]) if data.get("dino") else None
        return cls(**data)


OPENVLA_7B = OpenVlaConfig()
# 2.0M parameters. 8 px patches of 64 px images (64 patches, as pi0-small); both towers fused,
# as in the released model; the byte tokenizer's 260 ids plus 256 action ids. The LM costs
# ~85 % of a training step (the byte-level prompt is 61-87 tokens), so it is 128 wide: a batch
# of 32 takes ~0.3 s on 2 cores (~0.5 s with OFT's longer sequence; README, Speed).
OPENVLA_SMALL = OpenVlaConfig(
    name="openvla-small", image_size=64, patch_size=8,
    siglip=TowerConfig(width=128, mlp=512, layers=2, heads=4), dino=TowerConfig(width=96, mlp=384, layers=2, heads=4),
    width=128, depth=4, mlp=384, heads=4, vocab_size=260 + 256, tokenizer="bytes", lr=3e-4,
)
# OFT's LIBERO chunk (8) for both robots; the loop executes it whole, as OFT does.
OPENVLA_OFT_SMALL = replace(OPENVLA_SMALL, name="openvla-oft-small", mode=OFT, chunk=8)
CONFIGS = {"openvla-7b": OPENVLA_7B, "openvla-small": OPENVLA_SMALL}
OFT_CONFIGS = {"openvla-oft-small": OPENVLA_OFT_SMALL}
