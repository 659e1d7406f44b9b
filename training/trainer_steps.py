"""Stage-1 training (docs/method.md §3.3) as pure pieces: the configuration, the networks, one batch, one step.

Everything here is independent of Ray, so a step can be tested on its own; `training.pretrain`
runs these pieces on Ray Train workers. The stage-1 configuration lives here because the step is
what reads most of it.

Choices the paper leaves open, and what this module does:

- Eq. 4's K reference frames for ê are drawn at random from *all* training frames of the window's
  identity (any of its clips), not only from the window's clip.
- Eq. 5 is run sequentially over a window of `window` frames, feeding back the *generated* frames
  as ỹ_{t−2..t−1} (as vid2vid and as at serving time, so G learns to correct its own drift),
  detached from the graph (as vid2vid between its chunks: the backward pass stays one frame deep).
  At the window start the first NMFC frame is repeated and the missing previous frames are zeros
  (mid-grey), exactly as the serving path starts a session.
- The paper's generator objective has no pixel loss; its dense signal is VGG, which needs weights
  that do not exist offline. An L1 pixel reconstruction loss (`losses.pixel`) stands in so that
  training has a dense signal; set it to 0 for the paper's objective when VGG is configured.
- Eq. 8 trains E only (W_i is detached in L_EMB); W is learned by D_I's adversarial loss.
- D_D sees the temporal scales (frame steps) that fit in the window; the others are not built.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import torch
from pydantic import Field, model_validator
from torch import Tensor, nn
from torch.nn import functional

import configs
from face3d.warp import warp_topology
from inference.networks import Generator, IdentityEmbedder, ModelConfig
from inference.networks.config import model_size_section
from inference.warp import ReferenceFrames, prior_blend, warp_sequence
from training.checkpoint import TrainingError
from training.clips import Clip, ClipWindows
from training.discriminators import (
    DiscriminatorOutput,
    DiscriminatorsConfig,
    DynamicsDiscriminator,
    ImageDiscriminator,
    MouthDiscriminator,
    temporal_indices,
)
from training.flow import DISFlow, sequence_flow
from training.losses import (
    PerceptualLoss,
    embedding_matching_loss,
    feature_matching_loss,
    hinge_discriminator_loss,
    hinge_generator_loss,
    mask_loss,
)


class LossWeights(configs.StrictConfig):
    """The λ of the generator objective (L_adv has weight 1; vid2vid/head2head use 10 for FM and VGG)."""

    feature_matching: float = Field(10.0, ge=0, description="λ_FM: L1 between D_I's and D_M's features")
    vgg: float = Field(10.0, ge=0, description="λ_VGG: perceptual loss; only used when vgg_weights is set")
    mask: float = Field(10.0, ge=0, description="λ_mask: L1 between predicted and real foreground masks")
    embedding: float = Field(1.0, ge=0, description="weight of eq. 8's L_EMB = 1 − cos(ê_i, W_i) on E")
    pixel: float = Field(
        100.0, ge=0, description="L1 pixel reconstruction (not in the paper: the offline dense signal)"
    )


class PretrainConfig(configs.StrictConfig):
    """Stage-1 pretraining (configs/pretrain.yaml). Batches are per worker; steps count optimiser steps."""

    config_name = "pretrain"
    model_size: str = Field("tiny", description="a size in configs/models.yaml (tiny, base)")
    size_px: int | None = Field(None, ge=16, description="override the size's frame size (clips must match)")
    generator: dict[str, Any] = Field(default_factory=dict, description="overrides of the size's generator fields")
    embedder: dict[str, Any] = Field(default_factory=dict, description="overrides of the size's embedder fields")
    discriminators: dict[str, Any] = Field(default_factory=dict, description="overrides of the discriminators")
    steps: int = Field(20000, ge=1, description="optimiser steps of the whole run (G and D one each per step)")
    batch_size: int = Field(4, ge=1, description="windows per step and worker")
    window: int = Field(5, ge=1, description="consecutive frames G generates sequentially per window")
    reference_frames: int = Field(4, ge=1, description="K of eq. 4: frames of the identity E averages into ê")
    holdout_frames: int = Field(0, ge=0, description="last frames of every clip kept out of training (evaluation)")
    lr_generator: float = Field(2e-4, gt=0, description="Adam learning rate of G and E")
    lr_discriminator: float = Field(2e-4, gt=0, description="Adam learning rate of D_I, D_M, D_D")
    betas: tuple[float, float] = Field((0.5, 0.999), description="Adam betas (vid2vid: 0.5, 0.999)")
    losses: LossWeights = LossWeights()
    use_dynamics: bool = Field(True, description="train with the dynamics discriminator D_D (ablation: off)")
    use_mouth: bool = Field(True, description="train with the mouth discriminator D_M (ablation: off)")
    flow_preset: Literal["ultrafast", "fast", "medium"] = Field("medium", description="DIS preset for D_D's flows")
    sample_every: int = Field(500, ge=1, description="write a sample grid PNG every this many steps")
    checkpoint_every: int = Field(1000, ge=1, description="write a checkpoint every this many steps (and at the end)")
    keep_checkpoints: int = Field(3, ge=1, description="checkpoints kept; older ones are deleted")
    seed: int = Field(0, ge=0, description="seeds initial weights, data order and every step's randomness")
    bf16: bool = Field(False, description="bf16 autocast for the forward passes (CPUs with AVX-512 bf16, GPUs)")
    channels_last: bool = Field(False, description="channels-last memory format for networks and inputs")
    vgg_weights: str | None = Field(None, description="torchvision vgg19 state-dict file; None: no VGG loss")

    @model_validator(mode="after")
    def _known_size(self) -> PretrainConfig:
        model_size_section(self.model_size)
        return self

    def model_configs(self) -> tuple[ModelConfig, DiscriminatorsConfig]:
        """Return the served networks' and the discriminators' configurations with this config's overrides."""
        section = model_size_section(self.model_size)
        served = {key: value for key, value in section.items() if key != "discriminators"}
        if self.size_px is not None:
            served["size_px"] = self.size_px
        served["generator"] = {**served.get("generator", {}), **self.generator}
        served["embedder"] = {**served.get("embedder", {}), **self.embedder}
        model = ModelConfig.model_validate({"size": self.model_size, **served})
        critics = DiscriminatorsConfig.model_validate({**section.get("discriminators", {}), **self.discriminators})
        return model, critics

    def dynamics_steps(self, critics: DiscriminatorsConfig) -> tuple[int, ...]:
        """Return the temporal steps of D_D whose K frames fit in one window; TrainingError when none does."""
        fitting = tuple(s for s in critics.temporal_steps if 1 + s * (critics.dynamics_frames - 1) <= self.window)
        if self.use_dynamics and not fitting:
            raise TrainingError(
                f"a window of {self.window} frames is too short for D_D's {critics.dynamics_frames} frames: "
                f"use window ≥ {critics.dynamics_frames} or use_dynamics: false"
            )
        return fitting


class GeneratorWithEmbedder(nn.Module):
    """G and E together: one forward renders a whole window (one forward per backward, as DDP wants)."""

    def __init__(self, generator: Generator, embedder: IdentityEmbedder) -> None:
        super().__init__()
        self.generator = generator
        self.embedder = embedder

    def forward(self, nmfc: Tensor, references: Tensor, warped: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Return generated frames (B, L, 3, H, W), masks (B, L, 1, H, W) and ê (B, D).

        nmfc: (B, L, 3, H, W) in [0, 1], the window's NMFC frames; references: (B, K, 3, H, W) in
        [−1, 1], K frames of each window's identity (eq. 4); warped: (B, L, 5·K_w, H, W) each
        frame's warp input when G blends warped references (inference/warp.py).
        """
        batch, references_k = references.shape[:2]
        embeddings = self.embedder(references.flatten(0, 1))
        identity = embeddings.view(batch, references_k, -1).mean(1)
        frames, masks = generate_sequence(self.generator, nmfc, identity, warped=warped)
        return frames, masks, identity


def generate_sequence(
    generator: Generator,
    nmfc: Tensor,
    identity: Tensor | None,
    detach_feedback: bool = True,
    warped: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Return frames (B, L, 3, H, W) and masks (B, L, 1, H, W) generated one step at a time (eq. 5).

    nmfc: (B, L, 3, H, W) in [0, 1]; identity: (B, D) ê, or None for a converted generator;
    warped: (B, L, 5·K, H, W) each frame's warp input, required when G has warp references. Before
    the first frame the first NMFC frame is repeated and the previous frames are zeros; after it
    the generated frames are fed back (detached when `detach_feedback`).
    """
    n_nmfc, n_previous = generator.config.nmfc_frames, generator.config.previous_frames
    batch, length = nmfc.shape[:2]
    if generator.config.warp_references and warped is None:
        raise TrainingError(
            "this generator blends warped reference frames, but the frames carry no meshes to warp along: "
            "preprocess the videos again (clips written before meshes were kept have none)"
        )
    zeros = nmfc.new_zeros(batch, 3, *nmfc.shape[-2:])
    generated: list[Tensor] = []
    masks: list[Tensor] = []
    for t in range(length):
        stack = [nmfc[:, max(t - back, 0)] for back in reversed(range(n_nmfc))]
        previous = [generated[t - back] if t - back >= 0 else zeros for back in reversed(range(1, n_previous + 1))]
        if detach_feedback:
            previous = [p.detach() for p in previous]
        if generator.config.warp_references and warped is not None:
            stack.append(warped[:, t])
        output = generator(torch.cat(stack, 1), torch.cat(previous, 1), identity)
        generated.append(output.frame)
        masks.append(output.mask)
    return torch.stack(generated, 1), torch.stack(masks, 1)


def mouth_crops(frames: Tensor, boxes: Tensor, size_px: int) -> Tensor:
    """Return mouth crops (N, 3, size_px, size_px) cut from frames (N, 3, H, W) at boxes (N, 4) (x0, y0, x1, y1).

    Bilinear resampling through `grid_sample`, so gradients reach the generated frames. Boxes are
    in pixels, x1/y1 exclusive; degenerate boxes are widened to 2 pixels.
    """
    height, width = frames.shape[-2:]
    boxes = boxes.to(frames.dtype)
    x0, y0, x1, y1 = boxes.unbind(1)
    x1, y1 = torch.maximum(x1, x0 + 2), torch.maximum(y1, y0 + 2)
    # align_corners=False: the image spans [−1, 1] edge to edge, so a box edge x maps to 2x/W − 1.
    theta = torch.zeros(len(boxes), 2, 3, dtype=frames.dtype, device=frames.device)
    theta[:, 0, 0] = (x1 - x0) / width
    theta[:, 0, 2] = (x0 + x1) / width - 1
    theta[:, 1, 1] = (y1 - y0) / height
    theta[:, 1, 2] = (y0 + y1) / height - 1
    grid = functional.affine_grid(theta, [len(boxes), 3, size_px, size_px], align_corners=False)
    return functional.grid_sample(frames, grid, mode="bilinear", padding_mode="border", align_corners=False)


@dataclass(frozen=True)
class CriticOutputs:
    """What the discriminators say about a batch of windows.

    image: D_I over every frame (N·L samples); mouth: D_M over every frame's mouth crop, or None
    when off; dynamics: D_D, one output per temporal scale used (empty when off).
    """

    image: DiscriminatorOutput
    mouth: DiscriminatorOutput | None
    dynamics: list[DiscriminatorOutput]


def _split(output: DiscriminatorOutput, first: int) -> tuple[DiscriminatorOutput, DiscriminatorOutput]:
    """Return the output cut into its first `first` samples and the rest (real ⊕ fake batches)."""
    head = DiscriminatorOutput([s[:first] for s in output.scores], [[f[:first] for f in fs] for fs in output.features])
    tail = DiscriminatorOutput([s[first:] for s in output.scores], [[f[first:] for f in fs] for fs in output.features])
    return head, tail


def split_outputs(outputs: CriticOutputs, windows: int, length: int) -> tuple[CriticOutputs, CriticOutputs]:
    """Return (real, fake) outputs of critics run on real ⊕ fake windows (`windows` real ones of `length` frames)."""
    image_real, image_fake = _split(outputs.image, windows * length)
    mouth_real, mouth_fake = _split(outputs.mouth, windows * length) if outputs.mouth is not None else (None, None)
    dynamics = [_split(o, windows) for o in outputs.dynamics]
    real = CriticOutputs(image_real, mouth_real, [r for r, _ in dynamics])
    fake = CriticOutputs(image_fake, mouth_fake, [f for _, f in dynamics])
    return real, fake


class Critics(nn.Module):
    """D_I, D_M (optional) and D_D (optional) together: one forward judges a batch of windows."""

    def __init__(
        self, config: DiscriminatorsConfig, num_identities: int, use_mouth: bool, dynamics_steps: tuple[int, ...]
    ) -> None:
        super().__init__()
        self.mouth_px = config.mouth_px
        self.image = ImageDiscriminator(config, num_identities)
        self.mouth = MouthDiscriminator(config) if use_mouth else None
        dynamics_config = config.model_copy(update={"temporal_steps": dynamics_steps}) if dynamics_steps else None
        self.dynamics = DynamicsDiscriminator(dynamics_config) if dynamics_config is not None else None

    def forward(
        self, frames: Tensor, nmfc: Tensor, identity: Tensor, mouth_boxes: Tensor, flows: Sequence[Tensor]
    ) -> CriticOutputs:
        """Return every discriminator's scores and features for N windows.

        frames: (N, L, 3, H, W) in [−1, 1]; nmfc: (N, L, 3, H, W) in [0, 1]; identity: (N,) int64;
        mouth_boxes: (N, L, 4) int64 pixels; flows: per temporal scale of D_D, (N, K−1, 2, H, W).
        """
        length = frames.shape[1]
        flat = frames.flatten(0, 1)
        image = self.image(flat, nmfc.flatten(0, 1), identity.repeat_interleave(length))
        mouth = None
        if self.mouth is not None:
            mouth = self.mouth(mouth_crops(flat, mouth_boxes.flatten(0, 1), self.mouth_px))
        dynamics = self.dynamics(frames, list(flows)) if self.dynamics is not None else []
        return CriticOutputs(image, mouth, dynamics)


@dataclass
class StageOneModules:
    """The networks of stage 1 and the frozen perceptual loss."""

    renderer: GeneratorWithEmbedder
    critics: Critics
    perceptual: PerceptualLoss
    model_config: ModelConfig
    critics_config: DiscriminatorsConfig

    @property
    def generator(self) -> Generator:
        """Return G."""
        return self.renderer.generator

    @property
    def embedder(self) -> IdentityEmbedder:
        """Return E."""
        return self.renderer.embedder

    def parts(self) -> dict[str, nn.Module | None]:
        """Return checkpoint key → network (None for a discriminator that is switched off)."""
        return {
            "generator": self.generator,
            "embedder": self.embedder,
            "image_discriminator": self.critics.image,
            "mouth_discriminator": self.critics.mouth,
            "dynamics_discriminator": self.critics.dynamics,
        }

    def weights(self, keys: Sequence[str]) -> dict[str, Any]:
        """Return the named networks' state dicts by checkpoint key (None for a network that is off)."""
        parts = self.parts()
        return {key: None if (module := parts[key]) is None else module.state_dict() for key in keys}


def build_modules(config: PretrainConfig, num_identities: int, device: torch.device | str = "cpu") -> StageOneModules:
    """Return freshly initialised G, E, D_I, D_M, D_D (as configured) on `device`, seeded by `config.seed`."""
    model_config, critics_config = config.model_configs()
    if critics_config.identity_dim != model_config.identity_dim:
        raise TrainingError(
            f"discriminators.identity_dim ({critics_config.identity_dim}) must equal the generator's "
            f"({model_config.identity_dim}): W_i is matched against ê"
        )
    torch.manual_seed(config.seed)
    renderer = GeneratorWithEmbedder(Generator(model_config.generator), IdentityEmbedder(model_config.embedder))
    dynamics_steps = config.dynamics_steps(critics_config) if config.use_dynamics else ()
    critics = Critics(critics_config, num_identities, config.use_mouth, dynamics_steps)
    perceptual = PerceptualLoss(config.vgg_weights)
    for module in (renderer, critics, perceptual):
        module.to(device)
        if config.channels_last:
            _to_channels_last(module)
    return StageOneModules(renderer, critics, perceptual, model_config, critics_config)


def _to_channels_last(module: nn.Module) -> None:
    """Store every 4-d parameter and buffer of `module` in channels-last layout, in place (as `Module.to` does)."""
    with torch.no_grad():
        for tensor in (*module.parameters(), *module.buffers()):
            if tensor.dim() == 4:
                tensor.data = tensor.data.contiguous(memory_format=torch.channels_last)


@dataclass(frozen=True)
class Optimisers:
    """Adam for G and E together, and Adam for the discriminators."""

    generator: torch.optim.Adam
    critics: torch.optim.Adam


def build_optimisers(config: PretrainConfig, renderer: nn.Module, critics: nn.Module) -> Optimisers:
    """Return Adam optimisers over the (possibly DDP-wrapped) renderer's and critics' parameters."""
    return Optimisers(
        torch.optim.Adam(renderer.parameters(), lr=config.lr_generator, betas=config.betas),
        torch.optim.Adam(critics.parameters(), lr=config.lr_discriminator, betas=config.betas),
    )


@dataclass(frozen=True)
class Batch:
    """One step's training data for one worker (B windows of L frames).

    frames: (B, L, 3, H, W) in [−1, 1]; nmfc: (B, L, 3, H, W) in [0, 1]; masks: (B, L, 1, H, W) in
    [0, 1]; mouth_boxes: (B, L, 4) int64; identity: (B,) int64 rows of D_I's W; references:
    (B, K, 3, H, W) in [−1, 1], eq. 4's frames; flows: per temporal scale of D_D, the real frames'
    flows (B, K_D−1, 2, H, W) in pixels; warped: (B, L, 5·K_w, H, W) every frame's warp input
    (inference/warp.py) when G blends warped references, else None.
    """

    frames: Tensor
    nmfc: Tensor
    masks: Tensor
    mouth_boxes: Tensor
    identity: Tensor
    references: Tensor
    flows: list[Tensor]
    warped: Tensor | None = None

    def to(self, device: torch.device | str, channels_last: bool = False) -> Batch:
        """Return the batch on `device` (image tensors in channels-last layout when asked)."""

        def move(t: Tensor) -> Tensor:
            t = t.to(device)
            return t.contiguous(memory_format=torch.channels_last) if channels_last and t.dim() == 4 else t

        return replace(
            self,
            frames=self.frames.to(device),
            nmfc=self.nmfc.to(device),
            masks=self.masks.to(device),
            mouth_boxes=self.mouth_boxes.to(device),
            identity=self.identity.to(device),
            references=self.references.to(device),
            flows=[move(f) for f in self.flows],
            warped=self.warped.to(device) if self.warped is not None else None,
        )


def training_clips(clips: Sequence[Clip], holdout_frames: int, window: int) -> list[Clip]:
    """Return the clips without their last `holdout_frames` frames; TrainingError when one gets too short."""
    if holdout_frames == 0:
        return list(clips)
    kept = []
    for clip in clips:
        if len(clip) - holdout_frames < window:
            raise TrainingError(
                f"clip {clip.identity!r} ({clip.source}) has {len(clip)} frames: holding out {holdout_frames} "
                f"leaves fewer than a window of {window}; lower holdout_frames or window"
            )
        kept.append(clip.slice(slice(0, len(clip) - holdout_frames)))
    return kept


class BatchSampler:
    """Deterministic batches: step s of worker r always gets the same windows and reference frames.

    The windows come from `ClipWindows` (every window, stride 1); step s of worker r draws from
    `numpy.random.default_rng([seed, s, r])`, so the data order survives a resume without state.
    """

    def __init__(
        self,
        clips: Sequence[Clip],
        config: PretrainConfig,
        critics: DiscriminatorsConfig,
        warp_references: Mapping[str, ReferenceFrames] | None = None,
    ) -> None:
        self.config = config
        self.windows = ClipWindows(clips, length=config.window)
        self.identities = self.windows.identities
        pools: dict[str, list[tuple[int, int]]] = {name: [] for name in self.identities}
        for c, clip in enumerate(self.windows.clips):
            pools[clip.identity] += [(c, t) for t in range(len(clip))]
        self._pools = [np.array(pools[name], dtype=np.int64) for name in self.identities]
        self._flow = DISFlow(config.flow_preset)
        self._dynamics_indices = (
            [temporal_indices(config.window, critics.dynamics_frames, s) for s in config.dynamics_steps(critics)]
            if config.use_dynamics
            else []
        )
        self._warp_count = config.model_configs()[0].generator.warp_references
        self._fixed_references = dict(warp_references or {})
        if self._warp_count:
            missing = [clip.source for clip in self.windows.clips if clip.vertices_px is None]
            if missing:
                raise TrainingError(
                    f"G blends {self._warp_count} warped reference frames, but {len(missing)} clip(s) carry no "
                    f"meshes to warp along (e.g. {missing[0]}): preprocess them again"
                )
            self._topology = warp_topology()

    def _reference_frames(self, identity: int, rng: np.random.Generator) -> Tensor:
        """Return K frames (K, 3, S, S) in [−1, 1] of identity `identity` drawn with `rng`."""
        pool = self._pools[identity]
        picks = pool[rng.integers(0, len(pool), size=self.config.reference_frames)]
        frames: npt.NDArray[np.uint8] = np.stack([self.windows.clips[c].frames[t] for c, t in picks])
        return torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 127.5 - 1

    def batch(self, step: int, rank: int = 0) -> Batch:
        """Return the batch of optimiser step `step` (0-based) for worker `rank`."""
        rng = np.random.default_rng([self.config.seed, step, rank])
        indices = rng.integers(0, len(self.windows), size=self.config.batch_size)
        items = [self.windows[int(i)] for i in indices]
        stacked = {key: torch.stack([item[key] for item in items]) for key in items[0]}
        references = torch.stack([self._reference_frames(int(i), rng) for i in stacked["identity"]])
        # Flow of the *real* frames at each temporal scale's indices (DIS on the CPU, no gradient).
        flows = [sequence_flow(stacked["frames"][:, s], self._flow) for s in self._dynamics_indices]
        warped = None
        if self._warp_count:
            warped = torch.stack([self._warped(int(i), rng) for i in indices])
        return Batch(
            frames=stacked["frames"],
            nmfc=stacked["nmfc"],
            masks=stacked["masks"],
            mouth_boxes=stacked["mouth_boxes"],
            identity=stacked["identity"],
            references=references,
            flows=flows,
            warped=warped,
        )

    def warp_references_for(self, identity: str, rng: np.random.Generator, avoid: tuple[int, slice]) -> ReferenceFrames:
        """Return the warp's reference frames of `identity`: its fixed ones (enrolment), else K frames
        drawn with `rng` from its clips, outside the frames `avoid` (clip, frames) being generated."""
        fixed = self._fixed_references.get(identity)
        if fixed is not None:
            return fixed
        pool = self._pools[self.identities.index(identity)]
        c, frames = avoid
        outside = pool[~((pool[:, 0] == c) & (pool[:, 1] >= frames.start) & (pool[:, 1] < frames.stop))]
        choices = outside if len(outside) >= self._warp_count else pool
        picks = choices[rng.choice(len(choices), size=self._warp_count, replace=len(choices) < self._warp_count)]
        clips = self.windows.clips
        vertices = np.stack([_mesh(clips[c], t) for c, t in picks])
        return ReferenceFrames.of(np.stack([clips[c].frames[t] for c, t in picks]),
                                  np.stack([clips[c].masks[t] for c, t in picks]), vertices,
                                  topology=self._topology)  # fmt: skip

    def _warped(self, window: int, rng: np.random.Generator) -> Tensor:
        """Return the warp input (L, 5·K, S, S) of window `window`'s frames."""
        c, frames = self.windows.location(window)
        clip = self.windows.clips[c]
        references = self.warp_references_for(clip.identity, rng, (c, frames))
        return warp_sequence(_mesh(clip, frames), references, clip.size_px, self._topology)


def _mesh(clip: Clip, frames: int | slice) -> npt.NDArray[np.float32]:
    """Return the clip's meshes at `frames` (checked present when the sampler was built)."""
    assert clip.vertices_px is not None
    return clip.vertices_px[frames]


@dataclass(frozen=True)
class StepResult:
    """One step's losses (float per name) and what G generated: frames (B, L, 3, H, W), masks (B, L, 1, H, W)."""

    losses: dict[str, float]
    generated: Tensor
    masks: Tensor


def _unwrap_critics(module: nn.Module) -> Critics:
    """Return the Critics inside a DistributedDataParallel wrapper (or the module itself)."""
    inner = getattr(module, "module", module)
    if not isinstance(inner, Critics):
        raise TypeError(f"expected Critics (possibly in DDP), got {type(inner).__name__}")
    return inner


def _adversarial(outputs: CriticOutputs) -> dict[str, Tensor]:
    """Return the hinge G losses per discriminator for the fake side's outputs."""
    losses = {"g_image": hinge_generator_loss(outputs.image.scores)}
    if outputs.mouth is not None:
        losses["g_mouth"] = hinge_generator_loss(outputs.mouth.scores)
    if outputs.dynamics:
        losses["g_dynamics"] = torch.stack([hinge_generator_loss(o.scores) for o in outputs.dynamics]).mean()
    return losses


def train_step(
    renderer: nn.Module,
    critics: nn.Module,
    optimisers: Optimisers,
    batch: Batch,
    config: PretrainConfig,
    step_seed: int,
    perceptual: PerceptualLoss | None = None,
) -> StepResult:
    """Return the losses of one stage-1 step after updating G and E, then D_I, D_M and D_D, once each.

    renderer and critics may be wrapped in DistributedDataParallel; each is called once per
    backward pass. `step_seed` seeds torch's global generator (E's dropout), so a step is a pure
    function of the modules' and optimisers' states, the batch, the config and the seed.
    """
    torch.manual_seed(step_seed)
    weights = config.losses
    windows, length = batch.frames.shape[:2]
    device_type = batch.frames.device.type
    autocast = torch.autocast(device_type, dtype=torch.bfloat16, enabled=config.bf16)
    doubled_flows = [torch.cat((f, f)) for f in batch.flows]  # D_D is conditioned on the real flow for both
    identity2 = torch.cat((batch.identity, batch.identity))
    nmfc2 = torch.cat((batch.nmfc, batch.nmfc))
    boxes2 = torch.cat((batch.mouth_boxes, batch.mouth_boxes))

    # Generator and embedder: L_adv + λ_FM L_FM + λ_mask L_mask + λ_pixel L1 + λ_VGG L_VGG (+ L_EMB on E).
    with autocast:
        fake, fake_masks, identity = renderer(batch.nmfc, batch.references, batch.warped)
        judged = critics(torch.cat((batch.frames, fake)), nmfc2, identity2, boxes2, doubled_flows)
    real_out, fake_out = split_outputs(judged, windows, length)
    fake, fake_masks = fake.float(), fake_masks.float()
    losses = _adversarial(fake_out)
    losses["feature_matching"] = feature_matching_loss(real_out.image.features, fake_out.image.features)
    if real_out.mouth is not None and fake_out.mouth is not None:
        losses["feature_matching"] = losses["feature_matching"] + feature_matching_loss(
            real_out.mouth.features, fake_out.mouth.features
        )
    losses["mask"] = mask_loss(fake_masks, batch.masks)
    losses["pixel"] = functional.l1_loss(fake, batch.frames)
    rows = _unwrap_critics(critics).image.identity_rows(batch.identity).detach()
    losses["embedding"] = embedding_matching_loss(identity.float(), rows)
    generator_loss = sum((v for k, v in losses.items() if k.startswith("g_")), fake.new_zeros(()))
    generator_loss = (
        generator_loss
        + weights.feature_matching * losses["feature_matching"]
        + weights.mask * losses["mask"]
        + weights.pixel * losses["pixel"]
        + weights.embedding * losses["embedding"]
    )
    if perceptual is not None and perceptual.enabled:
        losses["vgg"] = perceptual(fake.flatten(0, 1), batch.frames.flatten(0, 1))
        generator_loss = generator_loss + weights.vgg * losses["vgg"]
    losses["generator"] = generator_loss
    optimisers.generator.zero_grad(set_to_none=True)
    generator_loss.backward()
    optimisers.generator.step()

    # Discriminators: hinge losses on real ⊕ generated (detached) windows; the G pass's D gradients are dropped.
    with autocast:
        judged = critics(torch.cat((batch.frames, fake.detach())), nmfc2, identity2, boxes2, doubled_flows)
    real_out, fake_out = split_outputs(judged, windows, length)
    critic_losses = {"d_image": hinge_discriminator_loss(real_out.image.scores, fake_out.image.scores)}
    if real_out.mouth is not None and fake_out.mouth is not None:
        critic_losses["d_mouth"] = hinge_discriminator_loss(real_out.mouth.scores, fake_out.mouth.scores)
    if real_out.dynamics:
        critic_losses["d_dynamics"] = torch.stack(
            [
                hinge_discriminator_loss(r.scores, f.scores)
                for r, f in zip(real_out.dynamics, fake_out.dynamics, strict=True)
            ]
        ).mean()
    critic_loss = torch.stack(list(critic_losses.values())).sum()
    critic_losses["discriminator"] = critic_loss
    optimisers.critics.zero_grad(set_to_none=True)
    critic_loss.backward()
    optimisers.critics.step()

    values = {name: float(value.detach()) for name, value in {**losses, **critic_losses}.items()}
    return StepResult(values, fake.detach(), fake_masks.detach())


def to_uint8(images: Tensor, low: float) -> npt.NDArray[np.uint8]:
    """Return images (N, C, H, W) in [low, 1] as uint8 (N, H, W, 3) RGB (one channel repeated for masks)."""
    scaled = ((images.detach().float().clamp(low, 1) - low) / (1 - low) * 255).round().to(torch.uint8)
    if scaled.shape[1] == 1:
        scaled = scaled.expand(-1, 3, -1, -1)
    array: npt.NDArray[np.uint8] = scaled.permute(0, 2, 3, 1).cpu().numpy()
    return array


def sample_grid(batch: Batch, result: StepResult, window_index: int = 0) -> npt.NDArray[np.uint8]:
    """Return a (R·H, L·W, 3) uint8 RGB grid of one window, columns time: rows NMFC | real | warped
    references (their prior blend; only when G warps) | generated | mask."""
    rows = [to_uint8(batch.nmfc[window_index], 0.0), to_uint8(batch.frames[window_index], -1.0)]
    if batch.warped is not None:
        rows.append(to_uint8(prior_blend(batch.warped[window_index]), -1.0))
    rows += [to_uint8(result.generated[window_index], -1.0), to_uint8(result.masks[window_index], 0.0)]
    return np.concatenate([np.concatenate(list(row), axis=1) for row in rows], axis=0)
