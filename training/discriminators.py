"""The discriminators of §3.3: image D_I with eq. 7's projection head, mouth D_M, dynamics D_D.

All are pix2pixHD-style PatchGANs (4x4 convolutions, LeakyReLU 0.2) applied at several spatial
scales (the input average-pooled by 2 between scales), returning every layer's features for
feature matching. Normalisation: spectral norm on every convolution and no instance norm
(`spectral_norm: true`), the SN-GAN setting of the hinge loss and projection head the paper takes
from Zakharov et al. [55]; `spectral_norm: false` falls back to pix2pixHD's instance norms.

D_I's score map is eq. 7 per patch: `r(y, x, i) = v(y, x)ᵀ (W_i + w_0) + b`, with v the last
convolution's (identity_dim)-channel features at each patch. One identity table W (and one w_0, b)
serves every spatial scale, so eq. 8 has a single W_i to match ê_i against.

D_D sees K consecutive frames and the K−1 optical flows of the real frames, stacked on channels
(3K + 2(K−1)), at three temporal scales: frame steps 1, 2, 4 (the paper: "sub-sampling the frames by
a factor of two for each scale"); one D_D per temporal scale, as in vid2vid.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Self

import torch
from pydantic import Field, model_validator
from torch import Tensor, nn
from torch.nn import functional
from torch.nn.utils.parametrizations import spectral_norm

import configs
from inference.networks.config import model_size_section


class PatchGANConfig(configs.StrictConfig):
    """One multi-scale PatchGAN."""

    ndf: int = Field(64, ge=1, description="channels of the first layer; doubled per layer up to 512")
    n_layers: int = Field(3, ge=1, description="stride-2 layers (the receptive field grows with them)")
    scales: int = Field(2, ge=1, description="spatial scales; the input is average-pooled by 2 between them")


class DiscriminatorsConfig(configs.StrictConfig):
    """D_I, D_M and D_D of one model size (configs/models.yaml, section `discriminators`)."""

    identity_dim: int = Field(512, ge=1, description="length of v(y, x), W_i and w_0 (equals ê's length)")
    image: PatchGANConfig = PatchGANConfig()
    mouth: PatchGANConfig = PatchGANConfig(ndf=32, scales=1)
    mouth_px: int = Field(64, ge=16, description="square size mouth crops are resized to before D_M")
    dynamics: PatchGANConfig = PatchGANConfig()
    dynamics_frames: int = Field(3, ge=2, description="K: consecutive frames D_D sees")
    temporal_steps: tuple[int, ...] = Field((1, 2, 4), description="frame step of each temporal scale of D_D")
    spectral_norm: bool = Field(True, description="spectral norm on every convolution (else instance norm)")

    @model_validator(mode="after")
    def _steps_positive(self) -> Self:
        if not self.temporal_steps or any(step < 1 for step in self.temporal_steps):
            raise ValueError(f"temporal_steps must be positive frame steps, got {self.temporal_steps}")
        return self

    @property
    def dynamics_channels(self) -> int:
        """Return D_D's input channels: 3K frame channels and 2(K−1) flow channels."""
        k = self.dynamics_frames
        return 3 * k + 2 * (k - 1)


def load_discriminator_config(size: str) -> DiscriminatorsConfig:
    """Return the discriminators' configuration of `size` ('tiny' or 'base') from configs/models.yaml."""
    section: dict[str, Any] = model_size_section(size).get("discriminators", {})
    return DiscriminatorsConfig.model_validate(section)


@dataclass(frozen=True)
class DiscriminatorOutput:
    """A multi-scale discriminator's answer.

    scores: one score map per spatial scale, (B, 1, h_s, w_s) float (higher: more real).
    features: per scale, the intermediate activations (B, C_l, h_l, w_l) before the score, for feature matching.
    """

    scores: list[Tensor]
    features: list[list[Tensor]]


def _conv(in_channels: int, out_channels: int, stride: int, use_spectral_norm: bool) -> nn.Module:
    """Return a PatchGAN 4x4 convolution (padding 2, as pix2pixHD), spectrally normalised when asked."""
    conv = nn.Conv2d(in_channels, out_channels, 4, stride=stride, padding=2)
    return spectral_norm(conv) if use_spectral_norm else conv


class PatchGAN(nn.Module):
    """pix2pixHD's NLayerDiscriminator at one scale: returns its layers' activations, the last one the output."""

    def __init__(self, in_channels: int, config: PatchGANConfig, out_channels: int, use_spectral_norm: bool) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.Sequential(_conv(in_channels, config.ndf, 2, use_spectral_norm), nn.LeakyReLU(0.2))
        ]
        channels = config.ndf
        for index in range(1, config.n_layers + 1):
            # The last hidden layer keeps the resolution (stride 1), as in pix2pixHD.
            stride = 2 if index < config.n_layers else 1
            wider = min(channels * 2, 512)
            norm: nn.Module = nn.Identity() if use_spectral_norm else nn.InstanceNorm2d(wider)
            layers.append(nn.Sequential(_conv(channels, wider, stride, use_spectral_norm), norm, nn.LeakyReLU(0.2)))
            channels = wider
        layers.append(_conv(channels, out_channels, 1, use_spectral_norm))
        self.layers = nn.ModuleList(layers)

    def forward(self, x: Tensor) -> list[Tensor]:
        """Return every layer's output for x (B, in_channels, H, W); the last is (B, out_channels, h, w)."""
        outputs = []
        for layer in self.layers:
            x = layer(x)
            outputs.append(x)
        return outputs


def _downsample(x: Tensor) -> Tensor:
    """Return x (B, C, H, W) average-pooled to (B, C, ⌈H/2⌉, ⌈W/2⌉), pix2pixHD's step between scales."""
    return functional.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)


class MultiScalePatchGAN(nn.Module):
    """PatchGANs at `config.scales` spatial scales (D_M, and each temporal scale of D_D)."""

    def __init__(
        self, in_channels: int, config: PatchGANConfig, use_spectral_norm: bool, out_channels: int = 1
    ) -> None:
        super().__init__()
        self.scales = nn.ModuleList(
            PatchGAN(in_channels, config, out_channels, use_spectral_norm) for _ in range(config.scales)
        )

    def run(self, x: Tensor) -> list[list[Tensor]]:
        """Return, per scale, every layer's output for x (B, in_channels, H, W)."""
        outputs = []
        for index, scale in enumerate(self.scales):
            if index:
                x = _downsample(x)
            outputs.append(scale(x))
        return outputs

    def forward(self, x: Tensor) -> DiscriminatorOutput:
        """Return the score maps and intermediate features of every scale for x (B, in_channels, H, W)."""
        outputs = self.run(x)
        return DiscriminatorOutput(scores=[o[-1] for o in outputs], features=[o[:-1] for o in outputs])


class IdentityProjection(nn.Module):
    """Eq. 7's head: `r = vᵀ (W_i + w_0) + b` per patch; W has one row per training identity."""

    def __init__(self, num_identities: int, identity_dim: int) -> None:
        super().__init__()
        self.identities = nn.Embedding(num_identities, identity_dim)
        nn.init.normal_(self.identities.weight, std=0.02)
        self.shared = nn.Parameter(torch.zeros(identity_dim))
        self.bias = nn.Parameter(torch.zeros(()))

    def forward(self, v: Tensor, identity_index: Tensor) -> Tensor:
        """Return scores (B, 1, h, w) for patch features v (B, D, h, w) and identity indices (B,) int64."""
        direction = self.identities(identity_index) + self.shared
        return torch.einsum("bdhw,bd->bhw", v, direction).unsqueeze(1) + self.bias

    def use_single_identity(self, identity: Tensor) -> None:
        """Replace W, in place, by a single row initialised to ê (D,) (§3.4); w_0 and b are kept."""
        table = nn.Embedding(1, identity.numel()).to(self.identities.weight)
        with torch.no_grad():
            table.weight.copy_(identity.reshape(1, -1))
        self.identities = table


class ImageDiscriminator(nn.Module):
    """D_I: a conditional multi-scale PatchGAN on frame ⊕ NMFC with eq. 7's projection head."""

    def __init__(self, config: DiscriminatorsConfig, num_identities: int, nmfc_channels: int = 3) -> None:
        super().__init__()
        self.body = MultiScalePatchGAN(3 + nmfc_channels, config.image, config.spectral_norm, config.identity_dim)
        self.projection = IdentityProjection(num_identities, config.identity_dim)

    @property
    def num_identities(self) -> int:
        """Return the rows of W (1 after `use_single_identity`)."""
        return self.projection.identities.num_embeddings

    def forward(self, frame: Tensor, nmfc: Tensor, identity_index: Tensor | None = None) -> DiscriminatorOutput:
        """Return eq. 7's per-patch scores and the features of every scale.

        frame: (B, 3, H, W) in [−1, 1]; nmfc: (B, 3, H, W) in [0, 1] (the NMFC of the same time step);
        identity_index: (B,) int64 row of W per sample; may be omitted when W has one row.
        """
        if identity_index is None:
            if self.num_identities != 1:
                raise ValueError(f"D_I has {self.num_identities} identities: pass identity_index (B,)")
            identity_index = torch.zeros(frame.shape[0], dtype=torch.long, device=frame.device)
        outputs = self.body.run(torch.cat((frame, nmfc), 1))
        scores = [self.projection(o[-1], identity_index) for o in outputs]
        return DiscriminatorOutput(scores=scores, features=[o[:-1] for o in outputs])

    def identity_rows(self, identity_index: Tensor) -> Tensor:
        """Return W_i (B, identity_dim) for indices (B,) int64, for eq. 8's embedding matching."""
        rows: Tensor = self.projection.identities(identity_index)
        return rows

    def use_single_identity(self, identity: Tensor) -> None:
        """Replace W by one vector initialised to the target's ê (identity_dim,) for fine-tuning (§3.4).

        The row is a new parameter: build D_I's optimiser afterwards. The state-dict keys stay the same.
        """
        self.projection.use_single_identity(identity.detach())


class MouthDiscriminator(MultiScalePatchGAN):
    """D_M: a multi-scale PatchGAN on mouth crops (B, 3, mouth_px, mouth_px) in [−1, 1]."""

    def __init__(self, config: DiscriminatorsConfig) -> None:
        super().__init__(3, config.mouth, config.spectral_norm)


def temporal_indices(length: int, frames: int, step: int) -> list[int]:
    """Return the indices of K=`frames` frames `step` apart ending at the last of `length` frames.

    Raises ValueError when the sequence is shorter than 1 + step·(K−1).
    """
    span = 1 + step * (frames - 1)
    if length < span:
        raise ValueError(f"{frames} frames {step} apart need a sequence of {span}, got {length}")
    return list(range(length - span, length, step))


class DynamicsDiscriminator(nn.Module):
    """D_D: one multi-scale PatchGAN per temporal scale on K frames ⊕ the real frames' K−1 flows."""

    def __init__(self, config: DiscriminatorsConfig) -> None:
        super().__init__()
        self.frames = config.dynamics_frames
        self.steps = tuple(config.temporal_steps)
        self.temporal_scales = nn.ModuleList(
            MultiScalePatchGAN(config.dynamics_channels, config.dynamics, config.spectral_norm) for _ in self.steps
        )

    @property
    def sequence_length(self) -> int:
        """Return the shortest sequence every temporal scale can sample: 1 + max(step)·(K−1)."""
        return 1 + max(self.steps) * (self.frames - 1)

    def scale_indices(self, length: int) -> list[list[int]]:
        """Return, per temporal scale, the frame indices it sees in a sequence of `length` frames."""
        return [temporal_indices(length, self.frames, step) for step in self.steps]

    def forward(self, sequence: Tensor, flows: list[Tensor]) -> list[DiscriminatorOutput]:
        """Return one DiscriminatorOutput per temporal scale.

        sequence: (B, T, 3, H, W) frames in [−1, 1] (real or generated), T ≥ `sequence_length`.
        flows: per temporal scale, (B, K−1, 2, H, W) float optical flow (pixels) between the consecutive
        *real* frames at `scale_indices(T)[s]` (training.flow.sequence_flow computes them).
        """
        if len(flows) != len(self.steps):
            raise ValueError(f"expected {len(self.steps)} flow stacks (one per temporal scale), got {len(flows)}")
        outputs = []
        for indices, flow, discriminator in zip(
            self.scale_indices(sequence.shape[1]), flows, self.temporal_scales, strict=True
        ):
            frames = sequence[:, indices].flatten(1, 2)
            outputs.append(discriminator(torch.cat((frames, flow.flatten(1, 2)), 1)))
        return outputs
