"""ACT sizes: the paper's, and a small one with the same code path that trains on a CPU."""

from __future__ import annotations

from dataclasses import dataclass

from pi0bench.policies.visuomotor import PerTaskConfig


@dataclass(frozen=True)
class ActConfig(PerTaskConfig):
    name: str = "act"
    chunk: int = 100  # actions predicted per query (query tokens in the decoder)
    dim: int = 512  # transformer width
    heads: int = 8
    ff: int = 3200
    encoder_layers: int = 4
    decoder_layers: int = 1  # the original builds 7 but reads the first one's output
    vae_layers: int = 4  # the CVAE encoder over (state, action chunk)
    latent: int = 32
    kl_weight: float = 10.0
    dropout: float = 0.1
    backbone_width: int = 64  # ResNet-18's first-stage channels
    backbone_maxpool: bool = True
    image_size: int = 224
    lr: float = 1e-5  # the paper's, with an ImageNet backbone; from scratch needs more

    @property
    def horizon(self) -> int:
        """The chunk, by the name the other families' configs (and `Recipe.chunk`) use."""
        return self.chunk


ACT = ActConfig()
# ~2M parameters. 64 px images without the stem max-pool leave a 4 x 4 feature map a camera;
# a quarter of ResNet-18's width keeps a training step near half a second on 2 cores.
ACT_SMALL = ActConfig(name="act-small", chunk=50, dim=128, heads=4, ff=512, encoder_layers=2,
                      decoder_layers=1, vae_layers=2, backbone_width=16, backbone_maxpool=False,
                      image_size=64, lr=3e-4)
CONFIGS = {"act": ACT, "act-small": ACT_SMALL}
