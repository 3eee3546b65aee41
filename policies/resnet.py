"""ResNet-18 written with torch.nn (the CPU wheel has no torchvision), the image backbone of
ACT and Diffusion Policy, with the two normalisations they use, and spatial-softmax keypoints.

Nothing is pretrained here (no downloads), so both baselines train their backbones from
scratch. The last norm of every residual branch starts at zero, so each block starts as the
identity: that is what keeps the frozen-statistics variant trainable without pretrained weights.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class FrozenStatsBatchNorm2d(nn.Module):
    """BatchNorm whose statistics never update (ACT's frozen BN: batch statistics of a few
    correlated demos are worse than fixed ones). The affine scale and shift still learn,
    because with no pretrained weights the fixed statistics are the identity."""

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        shift = self.bias - self.running_mean * scale
        return x * scale[None, :, None, None] + shift[None, :, None, None]


def norm_layer(kind: str) -> Callable[[int], nn.Module]:
    """'frozen_bn' (ACT) or 'group' (Diffusion Policy: GroupNorm with 16 channels a group)."""
    if kind == "frozen_bn":
        return FrozenStatsBatchNorm2d
    if kind == "group":
        return lambda channels: nn.GroupNorm(max(1, channels // 16), channels)
    raise ValueError(f"unknown norm {kind!r}")


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, norm: Callable[[int], nn.Module]):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.norm1 = norm(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.norm2 = norm(cout)
        nn.init.zeros_(self.norm2.weight)
        self.shortcut = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), norm(cout))
                         if stride != 1 or cin != cout else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.norm1(self.conv1(x)))
        return F.relu(self.norm2(self.conv2(y)) + self.shortcut(x))


class ResNet18(nn.Module):
    """The ResNet-18 trunk (stem, 4 stages of 2 basic blocks) without pooling or classifier;
    `width` is the first stage's channels (64 in the original; smaller for CPU configs).
    Input: [N, 3, H, W] in [0, 1]; output: [N, 8·width, H/32, W/32], or H/16 without the
    stem's max-pool (small images: 64 px would leave a 2 x 2 map)."""

    def __init__(self, width: int = 64, norm: str = "frozen_bn", maxpool: bool = True):
        super().__init__()
        make_norm = norm_layer(norm)
        self.stem = nn.Sequential(nn.Conv2d(3, width, 7, 2, 3, bias=False), make_norm(width), nn.ReLU(),
                                  nn.MaxPool2d(3, 2, 1) if maxpool else nn.Identity())
        stages, cin = [], width
        for i, cout in enumerate(width * m for m in (1, 2, 4, 8)):
            stride = 1 if i == 0 else 2
            stages.append(nn.Sequential(BasicBlock(cin, cout, stride, make_norm), BasicBlock(cout, cout, 1, make_norm)))
            cin = cout
        self.stages = nn.Sequential(*stages)
        self.out_channels = cin
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN)[None, :, None, None], persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD)[None, :, None, None], persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem((images - self.mean) / self.std))


class SpatialSoftmax(nn.Module):
    """Feature map -> K keypoints: a 1x1 conv makes K heat maps, each softmaxed over space,
    and the expected (x, y) of each is a feature (Levine et al. 2016; Diffusion Policy)."""

    def __init__(self, channels: int, keypoints: int = 32):
        super().__init__()
        self.keypoints = nn.Conv2d(channels, keypoints, 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        maps = self.keypoints(features)
        n, k, h, w = maps.shape
        attention = maps.flatten(2).softmax(-1).view(n, k, h, w)
        ys = torch.linspace(-1.0, 1.0, h, device=maps.device, dtype=maps.dtype)
        xs = torch.linspace(-1.0, 1.0, w, device=maps.device, dtype=maps.dtype)
        x = (attention.sum(2) * xs).sum(-1)
        y = (attention.sum(3) * ys).sum(-1)
        return torch.stack([x, y], -1).flatten(1)  # [N, 2K]


def images_to_unit(images: torch.Tensor) -> torch.Tensor:
    """uint8 [..., H, W, 3] -> float [..., 3, H, W] in [0, 1]."""
    return images.movedim(-1, -3).float() / 255.0
