"""The video rendering generator G of eq. 5: `(ỹ_t, m̃_t) = G(x_{t−2:t}, ỹ_{t−2:t−1}; ê)`.

Layout after vid2vid / head2head: two identical encoders (the NMFC stack; the previously generated
frames), their features summed, residual blocks, one decoder with an RGB head (tanh) and a
foreground-mask head (sigmoid). Every normalisation layer (encoders, residual blocks, decoder) is
AdaIN driven by the identity vector ê (eq. 6); `convert_adain_to_instance_norm` bakes one target's
ê into plain instance norms for fine-tuning and serving (§3.4).

Tensors: NMFC in [0, 1], frames in [−1, 1], all float32 (B, C, H, W) with H and W divisible by
2**n_downsampling. At the start of a sequence the caller repeats the first NMFC frame and passes
zeros (mid-grey) for the missing previous frames.

With `warp_references` K > 0 (the default sizes), G's first input — the *condition* — carries,
after the NMFC stack, the target's K reference frames warped to this frame along the mesh
(inference/warp.py: per reference its warped RGB, warped mask and blend prior). G then does not
paint the face: it predicts a per-pixel blend of the warped references (logits added to the log
prior), a residual added to the blend, and a correction of the blended mask. The three heads start
at zero, so an untrained G shows the prior's blend of the warped references and its mask; training
teaches only what no reference holds (inner mouth, teeth, disocclusions, lighting). The condition
stays one tensor so every runtime (ONNX, TensorRT, CUDA graphs) serves G with the same two inputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from inference.networks.adain import AdaIN, IdentityNorm, replace_adain
from inference.networks.config import GeneratorConfig


@dataclass(frozen=True)
class GeneratorOutput:
    """What G returns for one time step.

    frame: (B, 3, H, W) float, RGB in [−1, 1] (tanh).
    mask: (B, 1, H, W) float, foreground probability in [0, 1] (sigmoid).
    """

    frame: Tensor
    mask: Tensor


class ConvNormReLU(nn.Module):
    """A convolution (or transposed convolution), an identity-conditioned norm and a ReLU."""

    def __init__(self, conv: nn.Conv2d | nn.ConvTranspose2d, identity_dim: int, relu: bool = True) -> None:
        super().__init__()
        self.conv = conv
        self.norm: IdentityNorm = AdaIN(conv.out_channels, identity_dim)
        self.relu = nn.ReLU(inplace=True) if relu else nn.Identity()

    def forward(self, h: Tensor, identity: Tensor | None) -> Tensor:
        """Return the block's output (B, C_out, H', W') for input h (B, C_in, H, W)."""
        return self.relu(self.norm(self.conv(h), identity))


class ResidualBlock(nn.Module):
    """Two reflection-padded 3x3 convolutions with AdaIN and an identity shortcut (pix2pixHD's ResnetBlock)."""

    def __init__(self, channels: int, identity_dim: int) -> None:
        super().__init__()
        self.pad1 = nn.ReflectionPad2d(1)
        self.first = ConvNormReLU(nn.Conv2d(channels, channels, 3), identity_dim)
        self.pad2 = nn.ReflectionPad2d(1)
        self.second = ConvNormReLU(nn.Conv2d(channels, channels, 3), identity_dim, relu=False)

    def forward(self, h: Tensor, identity: Tensor | None) -> Tensor:
        """Return h + F(h), shape (B, C, H, W)."""
        return h + self.second(self.pad2(self.first(self.pad1(h), identity)), identity)


class Encoder(nn.Module):
    """A 7x7 stem and `n_downsampling` stride-2 3x3 convolutions, each with AdaIN and ReLU."""

    def __init__(self, in_channels: int, config: GeneratorConfig) -> None:
        super().__init__()
        self.stem_pad = nn.ReflectionPad2d(3)
        self.stem = ConvNormReLU(nn.Conv2d(in_channels, config.channels_at(0), 7), config.identity_dim)
        self.down = nn.ModuleList(
            ConvNormReLU(
                nn.Conv2d(config.channels_at(level), config.channels_at(level + 1), 3, stride=2, padding=1),
                config.identity_dim,
            )
            for level in range(config.n_downsampling)
        )

    def forward(self, x: Tensor, identity: Tensor | None) -> Tensor:
        """Return features (B, C_bottleneck, H / 2**n, W / 2**n) for input x (B, C_in, H, W)."""
        h = self.stem(self.stem_pad(x), identity)
        for block in self.down:
            h = block(h, identity)
        return h


class Decoder(nn.Module):
    """Residual blocks, `n_downsampling` transposed convolutions with AdaIN, and the frame and mask heads."""

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        bottleneck = config.channels_at(config.n_downsampling)
        self.blocks = nn.ModuleList(ResidualBlock(bottleneck, config.identity_dim) for _ in range(config.n_blocks))
        # With warp references the heads refine real pixels, and a transposed convolution's uneven
        # overlap prints a checkerboard into them within a few hundred steps (Odena et al., 2016):
        # that G upsamples by nearest neighbour and a 3x3 convolution instead. The NMFC-only G keeps
        # vid2vid's transposed convolutions (and so its checkpoints).
        self.up = nn.ModuleList(
            ConvNormReLU(
                nn.Conv2d(
                    config.channels_at(level + 1), config.channels_at(level), 3, padding=1, padding_mode="reflect"
                )
                if config.warp_references
                else nn.ConvTranspose2d(
                    config.channels_at(level + 1),
                    config.channels_at(level),
                    3,
                    stride=2,
                    padding=1,
                    output_padding=1,
                ),
                config.identity_dim,
            )
            for level in reversed(range(config.n_downsampling))
        )
        self.resize: nn.Module = (
            nn.Upsample(scale_factor=2, mode="nearest") if config.warp_references else nn.Identity()
        )
        if config.warp_references == 0:
            self.frame_head = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(config.channels_at(0), 3, 7), nn.Tanh())
            self.mask_head = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(config.channels_at(0), 1, 7), nn.Sigmoid())
        else:
            self.residual_head = _zero_head(config.channels_at(0), 3)
            self.blend_head = _zero_head(config.channels_at(0), config.warp_references)
            self.mask_head = _zero_head(config.channels_at(0), 1)

    def forward(self, h: Tensor, identity: Tensor | None, warped: Tensor | None = None) -> GeneratorOutput:
        """Return the frame (B, 3, H, W) and mask (B, 1, H, W) decoded from bottleneck features h
        (and, with warp references, the warp input (B, 5·K, H, W) they refine)."""
        for block in self.blocks:
            h = block(h, identity)
        for up in self.up:
            h = up(self.resize(h), identity)
        if warped is None:
            return GeneratorOutput(frame=self.frame_head(h), mask=self.mask_head(h))
        batch, _, height, width = warped.shape
        references = warped.view(batch, -1, 5, height, width)
        rgb, reference_masks, prior = references[:, :, :3], references[:, :, 3:4], references[:, :, 4:5]
        logits = self.blend_head(h)[:, :, None] + torch.log(prior.clamp(min=PRIOR_EPS))
        blend = torch.softmax(logits, dim=1)
        # The blend is a convex combination of frames in [−1, 1]; the clamp keeps G's contract once the
        # residual is added.
        frame = ((blend * rgb).sum(1) + torch.tanh(self.residual_head(h))).clamp(-1, 1)
        mask = (blend * reference_masks).sum(1).clamp(PRIOR_EPS, 1 - PRIOR_EPS)
        mask = torch.sigmoid(torch.logit(mask) + self.mask_head(h))
        return GeneratorOutput(frame=frame, mask=mask)


# Where a prior or a blended mask is 0 or 1 its log or logit is infinite: clamped this far inside.
PRIOR_EPS = 1e-4


def _zero_head(channels: int, out_channels: int) -> nn.Sequential:
    """Return a reflection-padded 7x7 output convolution whose weights and bias start at zero."""
    conv = nn.Conv2d(channels, out_channels, 7)
    nn.init.zeros_(conv.weight)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    return nn.Sequential(nn.ReflectionPad2d(3), conv)


class Generator(nn.Module):
    """G of eq. 5. Call with (nmfc, previous, identity) before conversion and (nmfc, previous) after it."""

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        self.config = config
        self.nmfc_encoder = Encoder(config.condition_channels, config)
        self.previous_encoder = Encoder(config.previous_channels, config)
        self.decoder = Decoder(config)
        self.converted = False

    def forward(self, nmfc: Tensor, previous: Tensor, identity: Tensor | None = None) -> GeneratorOutput:
        """Return frame ỹ_t (B, 3, H, W) in [−1, 1] and mask m̃_t (B, 1, H, W) in [0, 1].

        nmfc: (B, 3·nmfc_frames + 5·warp_references, H, W) float, x_{t−2..t} oldest first, in
            [0, 1], then the warp input of frame t (inference/warp.py `warp_input`).
        previous: (B, 3·previous_frames, H, W) float, ỹ_{t−2..t−1} oldest first, in [−1, 1].
        identity: (B, identity_dim) float ê before conversion; None after it.
        """
        self._check_inputs(nmfc, previous, identity)
        features = self.nmfc_encoder(nmfc, identity) + self.previous_encoder(previous, identity)
        warped = nmfc[:, self.config.nmfc_channels :] if self.config.warp_references else None
        output: GeneratorOutput = self.decoder(features, identity, warped)
        return output

    def convert_adain_to_instance_norm(self, identity: Tensor) -> int:
        """Return the number of AdaIN layers replaced, in place, by instance norms initialised to P_γ ê, P_β ê.

        identity: (identity_dim,) float, the target's mean embedding ê (eq. 9). Afterwards G takes no
        identity and, at the moment of conversion, computes exactly what it computed with ê. Build
        optimisers after converting (the norms are new parameters); to load a converted checkpoint,
        convert a fresh G with any ê first, then `load_state_dict`.
        """
        if self.converted:
            raise ValueError("this generator was already converted to one target's instance norms")
        replaced = replace_adain(self, identity.detach())
        self.converted = True
        return replaced

    def _check_inputs(self, nmfc: Tensor, previous: Tensor, identity: Tensor | None) -> None:
        """Raise ValueError, saying what is wrong, when the inputs do not fit this generator."""
        config = self.config
        if nmfc.shape[1] != config.condition_channels or previous.shape[1] != config.previous_channels:
            raise ValueError(
                f"expected {config.condition_channels} NMFC (and warp) and {config.previous_channels} "
                "previous-frame channels, "
                f"got {nmfc.shape[1]} and {previous.shape[1]}"
            )
        if nmfc.shape[-2:] != previous.shape[-2:]:
            raise ValueError(f"NMFC {tuple(nmfc.shape[-2:])} and previous frames {tuple(previous.shape[-2:])} differ")
        step = 2**config.n_downsampling
        if nmfc.shape[-2] % step or nmfc.shape[-1] % step:
            raise ValueError(f"frame size {tuple(nmfc.shape[-2:])} must be divisible by {step}")
        if self.converted and identity is not None:
            raise ValueError("this generator was converted to one target and takes no identity vector")
        if not self.converted and identity is None:
            raise ValueError("this generator needs the identity vector ê (B, identity_dim)")
