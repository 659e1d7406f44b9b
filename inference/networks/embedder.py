"""The identity embedder E: an InceptionResnetV1 (FaceNet) built from scratch, and eq. 4's mean embedding.

The layout follows facenet-pytorch's InceptionResnetV1 (stem, 5×Block35, Reduction-A, 10×Block17,
Reduction-B, 5×Block8, a last Block8 without ReLU, average pool, dropout, a bias-free linear layer,
L2 normalisation). `EmbedderConfig.width` and `.blocks` scale it down for the `tiny` size; at
width 1.0 and blocks (5, 10, 5) the convolutional trunk has FaceNet's exact widths. One departure:
FaceNet's BatchNorm1d after the linear layer is left out, because it cannot train on a single
frame (batch 1) and the L2 normalisation that follows already fixes the embedding's scale.

Input: RGB frames (B, 3, H, W) float in [−1, 1] (FaceNet's standardisation gives the same range),
resized to `input_px`² inside. Output: (B, identity_dim) float, unit L2 norm.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional

from inference.networks.config import EmbedderConfig


class BasicConv2d(nn.Module):
    """Convolution without bias, BatchNorm (eps 1e-3, as FaceNet) and ReLU."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int | tuple[int, int],
        stride: int = 1,
        padding: int | tuple[int, int] = 0,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(out_channels, eps=1e-3, momentum=0.1)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        """Return ReLU(BN(conv(x))), (B, out_channels, H', W')."""
        return self.relu(self.bn(self.conv(x)))


class _Widths:
    """FaceNet channel counts scaled by `width` (at least 8 channels each)."""

    def __init__(self, width: float) -> None:
        self.width = width

    def __call__(self, channels: int) -> int:
        """Return FaceNet's `channels` scaled by the width (at least 8)."""
        return max(8, round(channels * self.width))


class Block35(nn.Module):
    """Inception-ResNet-A (35×35 grid in Inception-v4's 299-pixel terms): three branches, scaled residual."""

    def __init__(self, channels: int, c: _Widths, scale: float = 0.17) -> None:
        super().__init__()
        self.scale = scale
        self.branch0 = BasicConv2d(channels, c(32), 1)
        self.branch1 = nn.Sequential(BasicConv2d(channels, c(32), 1), BasicConv2d(c(32), c(32), 3, padding=1))
        self.branch2 = nn.Sequential(
            BasicConv2d(channels, c(32), 1),
            BasicConv2d(c(32), c(32), 3, padding=1),
            BasicConv2d(c(32), c(32), 3, padding=1),
        )
        self.conv2d = nn.Conv2d(3 * c(32), channels, 1)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        """Return ReLU(x + scale·up(concat(branches))), same shape as x."""
        mixed = torch.cat((self.branch0(x), self.branch1(x), self.branch2(x)), 1)
        return self.relu(x + self.scale * self.conv2d(mixed))


class Block17(nn.Module):
    """Inception-ResNet-B: a 1x1 branch and a factorised 1x7/7x1 branch, scaled residual."""

    def __init__(self, channels: int, c: _Widths, scale: float = 0.10) -> None:
        super().__init__()
        self.scale = scale
        self.branch0 = BasicConv2d(channels, c(128), 1)
        self.branch1 = nn.Sequential(
            BasicConv2d(channels, c(128), 1),
            BasicConv2d(c(128), c(128), (1, 7), padding=(0, 3)),
            BasicConv2d(c(128), c(128), (7, 1), padding=(3, 0)),
        )
        self.conv2d = nn.Conv2d(2 * c(128), channels, 1)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        """Return ReLU(x + scale·up(concat(branches))), same shape as x."""
        mixed = torch.cat((self.branch0(x), self.branch1(x)), 1)
        return self.relu(x + self.scale * self.conv2d(mixed))


class Block8(nn.Module):
    """Inception-ResNet-C: a 1x1 branch and a factorised 1x3/3x1 branch, scaled residual, optional ReLU."""

    def __init__(self, channels: int, c: _Widths, scale: float = 0.20, relu: bool = True) -> None:
        super().__init__()
        self.scale = scale
        self.branch0 = BasicConv2d(channels, c(192), 1)
        self.branch1 = nn.Sequential(
            BasicConv2d(channels, c(192), 1),
            BasicConv2d(c(192), c(192), (1, 3), padding=(0, 1)),
            BasicConv2d(c(192), c(192), (3, 1), padding=(1, 0)),
        )
        self.conv2d = nn.Conv2d(2 * c(192), channels, 1)
        self.relu: nn.Module = nn.ReLU(inplace=True) if relu else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        """Return [ReLU](x + scale·up(concat(branches))), same shape as x."""
        mixed = torch.cat((self.branch0(x), self.branch1(x)), 1)
        return self.relu(x + self.scale * self.conv2d(mixed))


class Mixed6a(nn.Module):
    """Reduction-A: stride-2 convolution branches and a max pool, concatenated."""

    def __init__(self, channels: int, c: _Widths) -> None:
        super().__init__()
        self.branch0 = BasicConv2d(channels, c(384), 3, stride=2)
        self.branch1 = nn.Sequential(
            BasicConv2d(channels, c(192), 1),
            BasicConv2d(c(192), c(192), 3, padding=1),
            BasicConv2d(c(192), c(256), 3, stride=2),
        )
        self.branch2 = nn.MaxPool2d(3, stride=2)
        self.out_channels = c(384) + c(256) + channels

    def forward(self, x: Tensor) -> Tensor:
        """Return the concatenated branches, (B, out_channels, ⌊(H−3)/2⌋+1, ⌊(W−3)/2⌋+1)."""
        return torch.cat((self.branch0(x), self.branch1(x), self.branch2(x)), 1)


class Mixed7a(nn.Module):
    """Reduction-B: three stride-2 convolution branches and a max pool, concatenated."""

    def __init__(self, channels: int, c: _Widths) -> None:
        super().__init__()
        self.branch0 = nn.Sequential(BasicConv2d(channels, c(256), 1), BasicConv2d(c(256), c(384), 3, stride=2))
        self.branch1 = nn.Sequential(BasicConv2d(channels, c(256), 1), BasicConv2d(c(256), c(256), 3, stride=2))
        self.branch2 = nn.Sequential(
            BasicConv2d(channels, c(256), 1),
            BasicConv2d(c(256), c(256), 3, padding=1),
            BasicConv2d(c(256), c(256), 3, stride=2),
        )
        self.branch3 = nn.MaxPool2d(3, stride=2)
        self.out_channels = c(384) + c(256) + c(256) + channels

    def forward(self, x: Tensor) -> Tensor:
        """Return the concatenated branches, (B, out_channels, ⌊(H−3)/2⌋+1, ⌊(W−3)/2⌋+1)."""
        return torch.cat((self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)), 1)


class IdentityEmbedder(nn.Module):
    """E: frames (B, 3, H, W) in [−1, 1] → L2-normalised identity embeddings (B, identity_dim)."""

    def __init__(self, config: EmbedderConfig) -> None:
        super().__init__()
        self.config = config
        c = _Widths(config.width)
        self.stem = nn.Sequential(
            BasicConv2d(3, c(32), 3, stride=2),
            BasicConv2d(c(32), c(32), 3),
            BasicConv2d(c(32), c(64), 3, padding=1),
            nn.MaxPool2d(3, stride=2),
            BasicConv2d(c(64), c(80), 1),
            BasicConv2d(c(80), c(192), 3),
            BasicConv2d(c(192), c(256), 3, stride=2),
        )
        repeats35, repeats17, repeats8 = config.blocks
        self.repeat_1 = nn.Sequential(*(Block35(c(256), c) for _ in range(repeats35)))
        self.mixed_6a = Mixed6a(c(256), c)
        self.repeat_2 = nn.Sequential(*(Block17(self.mixed_6a.out_channels, c) for _ in range(repeats17)))
        self.mixed_7a = Mixed7a(self.mixed_6a.out_channels, c)
        final = self.mixed_7a.out_channels
        self.repeat_3 = nn.Sequential(*(Block8(final, c) for _ in range(repeats8)))
        self.block8 = Block8(final, c, scale=1.0, relu=False)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(config.dropout)
        self.last_linear = nn.Linear(final, config.identity_dim, bias=False)

    def forward(self, frames: Tensor) -> Tensor:
        """Return unit-norm embeddings (B, identity_dim) float for RGB frames (B, 3, H, W) in [−1, 1]."""
        size = self.config.input_px
        if frames.shape[-2:] != (size, size):
            frames = functional.interpolate(frames, size=(size, size), mode="bilinear", align_corners=False)
        h = self.mixed_6a(self.repeat_1(self.stem(frames)))
        h = self.block8(self.repeat_3(self.mixed_7a(self.repeat_2(h))))
        embedding = self.last_linear(self.dropout(self.pool(h).flatten(1)))
        return functional.normalize(embedding, dim=1)


def mean_identity(embedder: IdentityEmbedder, frames: Tensor, batch_size: int = 32) -> Tensor:
    """Return eq. 4's ê = (1/K) Σ_k E(y^(k)), (identity_dim,) float, for frames (K, 3, H, W) in [−1, 1].

    For frames (B, K, 3, H, W) (B people) it returns (B, identity_dim).
    The mean of unit vectors is not renormalised (eq. 4 is a plain mean); frames go through E in
    chunks of `batch_size` so that hundreds of enrolment frames fit in memory.
    """
    if frames.dim() not in (4, 5) or 0 in frames.shape[: frames.dim() - 3]:
        raise ValueError(f"expected frames (K, 3, H, W) or (B, K, 3, H, W) with K >= 1, got {tuple(frames.shape)}")
    flat = frames.flatten(0, 1) if frames.dim() == 5 else frames
    embeddings = torch.cat([embedder(chunk) for chunk in flat.split(batch_size)])
    if frames.dim() == 5:
        return embeddings.view(frames.shape[0], frames.shape[1], -1).mean(1)
    return embeddings.mean(0)
