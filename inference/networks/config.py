"""Typed configurations of the served networks (generator G, identity embedder E), filled from configs/models.yaml.

`configs/models.yaml` holds one section per model size (`tiny`, `base`). Each size has a `generator`, an
`embedder` and a `discriminators` section; the first two are read here, the third by
`training.discriminators` (inference never imports training, so the served side does not know the
discriminators' fields).
"""

from __future__ import annotations

from typing import Any, Self

from pydantic import Field, model_validator

import configs

MODEL_SIZES = ("tiny", "base")


class GeneratorConfig(configs.StrictConfig):
    """G of eq. 5: two encoders (NMFC stack, previous generated frames), residual blocks, one decoder."""

    identity_dim: int = Field(512, ge=1, description="length of the identity vector ê that drives every AdaIN")
    nmfc_frames: int = Field(3, ge=1, description="NMFC frames x_{t-2..t} stacked on channels (3 channels each)")
    previous_frames: int = Field(2, ge=1, description="generated frames ỹ_{t-2..t-1} stacked on channels")
    ngf: int = Field(64, ge=1, description="channels after the 7x7 stem; doubled at every downsampling")
    max_channels: int = Field(512, ge=1, description="cap on channels at the bottleneck")
    n_downsampling: int = Field(3, ge=0, description="stride-2 convolutions per encoder (and upsamplings after)")
    n_blocks: int = Field(9, ge=0, description="residual blocks after the encoders' features are summed")
    warp_references: int = Field(
        0,
        ge=0,
        description="K reference frames of the target warped along the mesh and blended by G (inference/warp.py); "
        "0: G paints every pixel from the NMFC (the paper's G, kept as the no-warp ablation)",
    )

    @property
    def nmfc_channels(self) -> int:
        """Return the NMFC encoder's input channels (3 per frame)."""
        return 3 * self.nmfc_frames

    @property
    def warp_channels(self) -> int:
        """Return the warp input's channels: per reference its warped RGB, warped mask and blend prior."""
        return 5 * self.warp_references

    @property
    def condition_channels(self) -> int:
        """Return the channels of G's first input: the NMFC stack, then the warp input."""
        return self.nmfc_channels + self.warp_channels

    @property
    def previous_channels(self) -> int:
        """Return the previous-frames encoder's input channels (3 per frame)."""
        return 3 * self.previous_frames

    def channels_at(self, level: int) -> int:
        """Return the feature channels after `level` downsamplings (level 0 is the stem)."""
        return min(self.ngf * 2**level, self.max_channels)


class EmbedderConfig(configs.StrictConfig):
    """E: an InceptionResnetV1 (FaceNet) whose widths and block counts can be scaled down."""

    identity_dim: int = Field(512, ge=1, description="length of the L2-normalised embedding")
    input_px: int = Field(160, ge=112, description="frames are resized to this square size first (FaceNet: 160)")
    width: float = Field(1.0, gt=0, le=1, description="multiplier on every channel count (1.0: InceptionResnetV1)")
    blocks: tuple[int, int, int] = Field(
        (5, 10, 5), description="repeats of Block35, Block17, Block8 (InceptionResnetV1: 5, 10, 5)"
    )
    dropout: float = Field(0.6, ge=0, lt=1, description="dropout before the embedding layer (FaceNet: 0.6)")

    @model_validator(mode="after")
    def _blocks_are_counts(self) -> Self:
        if any(b < 0 for b in self.blocks):
            raise ValueError(f"embedder blocks must be non-negative counts, got {self.blocks}")
        return self


class ModelConfig(configs.StrictConfig):
    """The served networks of one model size."""

    size: str = Field(description="the size's name in configs/models.yaml")
    size_px: int = Field(ge=16, description="square frame size the networks are trained and served at")
    generator: GeneratorConfig
    embedder: EmbedderConfig

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.generator.identity_dim != self.embedder.identity_dim:
            raise ValueError(
                f"generator.identity_dim ({self.generator.identity_dim}) and embedder.identity_dim "
                f"({self.embedder.identity_dim}) must be equal: E's output drives G's AdaIN layers"
            )
        if self.size_px % 2**self.generator.n_downsampling:
            raise ValueError(
                f"size_px {self.size_px} must be divisible by 2**n_downsampling = {2**self.generator.n_downsampling}"
            )
        return self

    @property
    def identity_dim(self) -> int:
        """Return the identity vector's length (shared by E, G and D_I's projection)."""
        return self.generator.identity_dim


def model_size_section(size: str) -> dict[str, Any]:
    """Return the raw mapping of one size in configs/models.yaml; ValueError names the known sizes."""
    sizes = configs.load("models")
    if size not in sizes:
        raise ValueError(f"unknown model size {size!r}: configs/models.yaml defines {', '.join(sorted(sizes))}")
    section = sizes[size]
    if not isinstance(section, dict):
        raise ValueError(f"configs/models.yaml: size {size!r} must be a mapping")
    return section


def load_model_config(size: str) -> ModelConfig:
    """Return the typed generator and embedder configuration of `size` ('tiny' or 'base') from configs/models.yaml."""
    section = model_size_section(size)
    served = {key: value for key, value in section.items() if key != "discriminators"}
    return ModelConfig.model_validate({"size": size, **served})
