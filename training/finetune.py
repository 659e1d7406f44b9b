"""Stage-2 few-shot fine-tuning on one new target (docs/method.md §3.4), evaluated on held-out frames (§4).

`finetune(clips, base, config, out_dir)` starts from a stage-1 checkpoint (or, for the paper's
ablation "without stage-1 initialisation", from random weights), and:

1. computes the target's identity ê = (1/T) Σ_t E(y_t) over its training frames (eq. 9); E is then
   dropped;
2. converts every AdaIN of G into an instance norm initialised to P_γ ê, P_β ê
   (`Generator.convert_adain_to_instance_norm`), the rest of G kept from stage 1;
3. replaces D_I's identity table W by one vector initialised to ê (w_0 and b kept), D_M and D_D
   kept from stage 1;
4. trains G, D_I, D_M and D_D adversarially on the target's frames with stage 1's `train_step`.

The step is stage 1's: G is wrapped in `ConvertedGenerator`, which has the `GeneratorWithEmbedder` call signature
but renders with the converted G and hands back the constant ê, so `train_step`, `BatchSampler`
and the losses are reused unchanged (L_EMB has weight 0: there is no E to train).

The run folder has pretraining's layout and resume rules (config.json, metrics.jsonl,
checkpoints/step-*.pt written atomically, samples/step-*.png); a resumed run restores G, the
discriminators, ê, the optimisers and the RNG states, and reproduces the uninterrupted run.
The last `holdout_frames` frames of the recording are never trained on; after the last step
G renders them from their NMFC alone (as when serving) and `heldout.json` gets §4's numbers.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import torch
from pydantic import Field, field_validator
from torch import Tensor, nn

import configs
from base.errors import HeadcastError
from base.files import write_json_atomic
from face3d.warp import warp_topology
from inference.networks import Generator, ModelConfig, mean_identity
from inference.warp import ReferenceFrames, prior_blend, warp_sequence
from training.checkpoint import (
    CHECKPOINT_FORMAT_VERSION,
    TrainingError,
    latest_good_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from training.clips import Clip
from training.metrics import PixelDistances, write_png
from training.pretrain import (
    PretrainProgress,
    prepare_run_dir,
    restore_rng_state,
    rng_state,
    step_seed,
)
from training.references import ReferenceError, choose_references_from_meshes
from training.trainer_steps import (
    BatchSampler,
    LossWeights,
    Optimisers,
    PretrainConfig,
    StageOneModules,
    build_modules,
    build_optimisers,
    generate_sequence,
    sample_grid,
    train_step,
)

logger = logging.getLogger(__name__)
# Stage 2 keeps no identity embedder: ê is computed once (eq. 9) and E is dropped.
STAGE_TWO_PARTS = ("generator", "image_discriminator", "mouth_discriminator", "dynamics_discriminator")

FinetuneProgress = PretrainProgress
"""One report per step: step, total, seconds_per_step, eta_s, losses (the same shape as pretraining's)."""

HELDOUT_FILE = "heldout.json"


class EnrolError(HeadcastError):
    """A target cannot be enrolled (bad recording, name, base or training run); the message says what to do."""


class FinetuneConfig(configs.StrictConfig):
    """Stage-2 fine-tuning (configs/enrol.yaml `finetune`). Steps count optimiser steps of G and of the Ds.

    The networks' sizes, the window and `reference_frames` come from the stage-1 run (the base
    checkpoint's config, or `pretrain_profile` without a base): D_D's temporal scales depend on the
    window, so a base's discriminators only fit its own.
    """

    pretrain_profile: str = Field(
        "default", description="configs/pretrain.yaml profile whose networks are built when no base is given"
    )
    steps: int = Field(3000, ge=1, description="optimiser steps of the whole fine-tuning run")
    batch_size: int = Field(4, ge=1, description="windows per step")
    lr_generator: float = Field(1e-4, gt=0, description="Adam learning rate of G")
    lr_discriminator: float = Field(1e-4, gt=0, description="Adam learning rate of D_I, D_M, D_D")
    betas: tuple[float, float] = Field((0.5, 0.999), description="Adam betas")
    losses: LossWeights = Field(
        LossWeights(embedding=0.0), description="λ of G's objective; `embedding` is ignored (E is dropped)"
    )
    use_mouth: bool = Field(True, description="fine-tune with D_M (ablation: off); needs a base trained with it")
    use_dynamics: bool = Field(True, description="fine-tune with D_D (ablation: off); needs a base trained with it")
    flow_preset: Literal["ultrafast", "fast", "medium"] = Field("medium", description="DIS preset for D_D's flows")
    min_frames: int = Field(50, ge=1, description="fewest training frames (paper: 50); fewer are refused")
    max_frames: int = Field(500, ge=1, description="most training frames (paper: 500); later ones are left out")
    holdout_frames: int = Field(
        100, ge=0, description="last frames held out for §4's evaluation (fewer when the recording is short)"
    )
    sample_every: int = Field(250, ge=1, description="write a sample grid PNG every this many steps")
    checkpoint_every: int = Field(250, ge=1, description="write a checkpoint every this many steps (and at the end)")
    keep_checkpoints: int = Field(2, ge=1, description="checkpoints kept; older ones are deleted")
    seed: int = Field(0, ge=0, description="seeds fresh weights, data order and every step's randomness")
    bf16: bool = Field(False, description="bf16 autocast for the forward passes")

    @field_validator("pretrain_profile")
    @classmethod
    def _profile_exists(cls, profile: str) -> str:
        # A cross-file constraint: checked when enrol.yaml is read, not when fine-tuning starts.
        profiles = configs.load("pretrain")
        if profile not in profiles:
            raise ValueError(f"no profile {profile!r} in configs/pretrain.yaml: choose one of {', '.join(profiles)}")
        return profile


@dataclass(frozen=True)
class FinetuneResult:
    """What a fine-tuning call leaves behind.

    generator: the fine-tuned, converted G (eval mode, CPU); identity: (D,) float32 ê of eq. 9;
    model_config: the networks' configuration (to rebuild G); config: the stage-1 config the step
    ran with (stage 2's values filled in); metrics: §4's numbers on the held-out frames (empty
    until the run is complete or when nothing was held out); step: steps done of `total_steps`.
    """

    run_dir: Path
    checkpoint: Path
    step: int
    total_steps: int
    generator: Generator
    identity: npt.NDArray[np.float32]
    model_config: ModelConfig
    config: PretrainConfig
    training_frames: int
    holdout_frames: int
    metrics: dict[str, float]
    seconds: float
    notes: tuple[str, ...] = ()
    refused: list[tuple[Path, Path]] = field(default_factory=list)
    references: ReferenceFrames | None = None

    @property
    def complete(self) -> bool:
        """Return whether every configured step has been trained."""
        return self.step >= self.total_steps


class ConvertedGenerator(nn.Module):
    """A converted G behind stage 1's `GeneratorWithEmbedder` signature: `forward(nmfc, references)` → frames, masks, ê.

    The references are ignored (E is gone after eq. 9); ê is a buffer, so it is saved with the
    module but never trained, and `train_step`'s L_EMB sees a constant (its weight is 0 anyway).
    """

    def __init__(self, generator: Generator, identity: Tensor) -> None:
        super().__init__()
        if not generator.converted:
            raise ValueError("ConvertedGenerator needs a generator converted to one target's instance norms")
        self.generator = generator
        self.register_buffer("identity", identity.detach().clone())

    def forward(self, nmfc: Tensor, references: Tensor, warped: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Return generated frames (B, L, 3, H, W), masks (B, L, 1, H, W) and ê repeated (B, D)."""
        frames, masks = generate_sequence(self.generator, nmfc, None, warped=warped)
        identity = self.get_buffer("identity")
        return frames, masks, identity.unsqueeze(0).repeat(nmfc.shape[0], 1)


def split_holdout(clips: Sequence[Clip], holdout: int, window: int) -> tuple[list[Clip], list[Clip]]:
    """Return (training clips, held-out clips): the last `holdout` frames of the clips in order are held out.

    A training piece shorter than `window` frames is dropped (no window fits in it).
    """
    remaining = holdout
    train: list[Clip] = []
    held: list[Clip] = []
    for clip in reversed(clips):
        take = min(remaining, len(clip))
        remaining -= take
        if take:
            held.insert(0, clip.slice(slice(len(clip) - take, len(clip))))
        if len(clip) - take >= window:
            train.insert(0, clip.slice(slice(0, len(clip) - take)))
    return train, held


def limit_frames(clips: Sequence[Clip], max_frames: int) -> list[Clip]:
    """Return the clips cut to their first `max_frames` frames in all."""
    kept: list[Clip] = []
    left = max_frames
    for clip in clips:
        if left <= 0:
            break
        kept.append(clip if len(clip) <= left else clip.slice(slice(0, left)))
        left -= len(kept[-1])
    return kept


def frames_tensor(clips: Sequence[Clip]) -> Tensor:
    """Return every frame of the clips as (T, 3, S, S) float32 in [−1, 1]."""
    frames = np.concatenate([clip.frames for clip in clips])
    return torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 127.5 - 1


def clip_warp_input(generator: Generator, clip: Clip, references: ReferenceFrames | None) -> Tensor | None:
    """Return a clip's warp input (1, T, 5·K, S, S) for a G with warp references; None for one without."""
    if not generator.config.warp_references:
        return None
    if references is None or clip.vertices_px is None:
        raise EnrolError(
            f"clip {clip.source}: this generator warps reference frames, and the clip or the target has no meshes "
            "to warp along; preprocess the recording again"
        )
    return warp_sequence(clip.vertices_px, references, clip.size_px, warp_topology()).unsqueeze(0)


def choose_warp_references(clips: Sequence[Clip], count: int) -> ReferenceFrames:
    """Return `count` of the clips' frames chosen for coverage (training/references.py), as warp references.

    The choice reads each frame's fitted mesh (`face3d.warp.mesh_coverage`): its pose, the inner
    lips' gap and the eyelids' gap. EnrolError says what the recording lacks.
    """
    frames = [(c, t) for c, clip in enumerate(clips) for t in range(len(clip))]
    if any(clip.vertices_px is None for clip in clips):
        raise EnrolError("the clips carry no fitted meshes, so no reference frames can be chosen: preprocess again")
    meshes = np.concatenate([clip.vertices_px for clip in clips if clip.vertices_px is not None])
    try:
        choice = choose_references_from_meshes(meshes, k=count)
    except ReferenceError as error:
        raise EnrolError(
            f"the recording does not cover the face well enough for its reference frames: {error}"
        ) from None
    for note in choice.notes:
        logger.warning("reference frames: %s", note)
    picks = [frames[i] for i in choice.indices]
    images = np.stack([clips[c].frames[t] for c, t in picks])
    masks = np.stack([clips[c].masks[t] for c, t in picks])
    return ReferenceFrames.of(images, masks, meshes[list(choice.indices)], choice.kinds, choice.indices)


@torch.no_grad()
def render_clip(
    generator: Generator, clip: Clip, references: ReferenceFrames | None
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_], npt.NDArray[np.uint8] | None]:
    """Return the clip rendered sequentially: frames (T, S, S, 3) float32 RGB in 0–255, masks (T, S, S) > 0.5
    and, for a warp G, the warped references' prior blend (T, S, S, 3) uint8."""
    parameter = next(iter(generator.parameters()), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    nmfc = torch.from_numpy(clip.nmfc).permute(0, 3, 1, 2).float().div(255).unsqueeze(0).to(device)
    warped = clip_warp_input(generator, clip, references)
    frames, masks = generate_sequence(generator, nmfc, None, warped=warped.to(device) if warped is not None else None)
    rgb = ((frames[0].clamp(-1, 1) + 1) * 127.5).permute(0, 2, 3, 1)
    blend = None
    if warped is not None:
        blended = ((prior_blend(warped[0]).clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        blend = blended.permute(0, 2, 3, 1).cpu().numpy()
    return rgb.float().cpu().numpy(), (masks[0, :, 0] > 0.5).cpu().numpy(), blend


def held_out_metrics(
    generator: Generator, clips: Sequence[Clip], references: ReferenceFrames | None = None
) -> dict[str, float]:
    """Return §4's pixel measures (training.metrics.PixelDistances) for a converted G on held-out clips.

    Each clip is rendered sequentially from its NMFC alone, starting from zeros and feeding back
    G's own frames (as when serving); an empty list gives {}.
    """
    if not clips:
        return {}
    training = generator.training
    generator.eval()
    try:
        pixels = PixelDistances()
        for clip in clips:
            fake, predicted, _ = render_clip(generator, clip, references)
            pixels.add(fake, clip.frames, clip.masks, predicted)
        return pixels.as_dict()
    finally:
        generator.train(training)


def stage_two_config(stage_one: PretrainConfig, config: FinetuneConfig) -> PretrainConfig:
    """Return the step configuration of fine-tuning: stage 1's networks and window with stage 2's training values."""
    values = stage_one.model_dump(mode="json")
    values.update(
        steps=config.steps,
        batch_size=config.batch_size,
        # BatchSampler draws eq. 4's references for E; stage 2 has no E, so one frame is the cheapest draw.
        reference_frames=1,
        holdout_frames=0,  # finetune holds frames out itself, across clips
        lr_generator=config.lr_generator,
        lr_discriminator=config.lr_discriminator,
        betas=list(config.betas),
        losses={**config.losses.model_dump(mode="json"), "embedding": 0.0},
        use_mouth=stage_one.use_mouth and config.use_mouth,
        use_dynamics=stage_one.use_dynamics and config.use_dynamics,
        flow_preset=config.flow_preset,
        sample_every=config.sample_every,
        checkpoint_every=config.checkpoint_every,
        keep_checkpoints=config.keep_checkpoints,
        seed=config.seed,
        bf16=config.bf16,
    )
    return PretrainConfig.model_validate(values)


@dataclass
class _StageTwo:
    """The fine-tuning networks: the converted G behind a ConvertedGenerator, and the critics."""

    modules: StageOneModules
    renderer: ConvertedGenerator
    identity: Tensor


def _load_parts(modules: StageOneModules, state: dict[str, Any], parts: Sequence[str], source: str) -> None:
    """Load the named networks' weights from a checkpoint state; EnrolError names what does not fit."""
    targets = modules.parts()
    for key in parts:
        module, saved = targets[key], state.get(key)
        if module is None:
            continue
        if saved is None:
            raise EnrolError(f"{source} has no {key.replace('_', ' ')}: fine-tune without it or use another base")
        try:
            module.load_state_dict(saved)
        except RuntimeError as error:
            raise EnrolError(f"{source}: {key} does not fit this configuration ({error})") from error


def _fresh_networks(
    step_config: PretrainConfig, base_state: dict[str, Any] | None, base: Path | None, clips: Sequence[Clip]
) -> _StageTwo:
    """Return stage-1 networks (loaded from the base, or random) turned into stage 2's (§3.4 steps 1–3)."""
    identities = len(base_state["identities"]) if base_state is not None else 1
    modules = build_modules(step_config, identities)
    if base_state is not None:
        _load_parts(modules, base_state, list(modules.parts()), f"base checkpoint {base}")
    embedder = modules.embedder.eval()
    with torch.no_grad():
        identity = mean_identity(embedder, frames_tensor(clips))  # eq. 9
    modules.generator.convert_adain_to_instance_norm(identity)
    modules.critics.image.use_single_identity(identity)
    return _StageTwo(modules, ConvertedGenerator(modules.generator, identity), identity)


def _resumed_networks(step_config: PretrainConfig, state: dict[str, Any], path: Path) -> _StageTwo:
    """Return the stage-2 networks of a fine-tuning checkpoint (converted G and single-row D_I restored)."""
    modules = build_modules(step_config, 1)
    identity = state["identity"].float()
    modules.generator.convert_adain_to_instance_norm(identity)
    modules.critics.image.use_single_identity(identity)
    _load_parts(modules, state, STAGE_TWO_PARTS, f"checkpoint {path}")
    return _StageTwo(modules, ConvertedGenerator(modules.generator, identity), identity)


def _checkpoint_state(
    step: int, step_config: PretrainConfig, base: Path | None, networks: _StageTwo, optimisers: Optimisers
) -> dict[str, Any]:
    """Return everything a resume or the bundle needs, as a mapping of tensors and plain values."""
    modules = networks.modules
    return {
        "format_version": CHECKPOINT_FORMAT_VERSION,
        "stage": 2,
        "step": step,
        "config": step_config.model_dump(mode="json"),
        "model_config": modules.model_config.model_dump(mode="json"),
        "base": str(base) if base is not None else None,
        "identity": networks.identity.detach().cpu(),
        **modules.weights(STAGE_TWO_PARTS),
        "optimisers": {"generator": optimisers.generator.state_dict(), "critics": optimisers.critics.state_dict()},
        "rng": rng_state(),
    }


def stage_one_start(base: Path | None, config: FinetuneConfig) -> tuple[PretrainConfig, dict[str, Any] | None]:
    """Return the stage-1 configuration and checkpoint state to start from (the profile's, and None, without a base)."""
    if base is None:
        return PretrainConfig.load(config.pretrain_profile), None
    try:
        state = load_checkpoint(Path(base))
    except TrainingError as error:
        raise EnrolError(f"the base model cannot be used: {error}") from error
    if state.get("stage", 1) != 1 or "identities" not in state:
        raise EnrolError(
            f"{base} is not a stage-1 (pretraining) checkpoint: give the checkpoint `headcast pretrain` wrote"
        )
    return PretrainConfig.model_validate(state["config"]), state


def finetune(
    clips: Sequence[Clip],
    base: Path | None,
    config: FinetuneConfig,
    out_dir: str | Path,
    progress: Callable[[FinetuneProgress], None] | None = None,
    resume: bool = True,
    max_steps: int | None = None,
    device: str = "cpu",
) -> FinetuneResult:
    """Return the result of fine-tuning on one target's `clips` (in recording order) in (or resumed from) `out_dir`.

    base: a stage-1 checkpoint, or None to start from random weights (the paper's ablation).
    `progress` is called after every step; `max_steps` stops at that step, as a kill would (the
    schedule still counts `config.steps`; a later call resumes). Raises EnrolError with what to do
    when there are too few frames, the base does not fit, or the run folder belongs to another run.
    """
    began = time.perf_counter()
    run_dir = Path(out_dir).resolve()
    stage_one, base_state = stage_one_start(base, config)
    step_config = stage_two_config(stage_one, config)
    notes: list[str] = []
    if config.use_mouth and not step_config.use_mouth:
        notes.append("the base was trained without D_M: fine-tuning without it")
    if config.use_dynamics and not step_config.use_dynamics:
        notes.append("the base was trained without D_D: fine-tuning without it")
    model_config = step_config.model_configs()[0]
    target = _as_one_target(clips, model_config.size_px)
    total = sum(len(clip) for clip in target)
    # §4 holds out the last frames; a short recording keeps its `min_frames` for training first.
    holdout = min(config.holdout_frames, max(total - config.min_frames, 0))
    if holdout < config.holdout_frames:
        notes.append(f"held out {holdout} frames instead of {config.holdout_frames}: the recording has {total}")
    train, held = split_holdout(target, holdout, step_config.window)
    train = limit_frames(train, config.max_frames)
    training_frames = sum(len(clip) for clip in train)
    if training_frames < config.min_frames:
        raise EnrolError(
            f"only {training_frames} training frames in runs of at least {step_config.window} consecutive frames; "
            f"fine-tuning needs {config.min_frames}: record a longer video (10–20 s, face in view throughout)"
        )
    try:
        point = prepare_run_dir(step_config, run_dir, resume)
    except TrainingError as error:
        raise EnrolError(str(error)) from error
    if point.state is not None and point.state.get("base") != (str(base) if base is not None else None):
        raise EnrolError(
            f"{run_dir} fine-tunes from {point.state.get('base')}, not {base}: "
            "resume with that base or use a new folder"
        )
    references = None
    warp_count = model_config.generator.warp_references
    if warp_count:
        references = choose_warp_references(train, warp_count)
        notes += [
            "reference frames: "
            + ", ".join(f"{k} (frame {i})" for k, i in zip(references.kinds, references.frame_indices, strict=True))
        ]
    torch.manual_seed(config.seed)
    if point.state is not None and point.path is not None:
        logger.info("resuming fine-tuning in %s from %s (step %d)", run_dir, point.path, point.step)
        networks = _resumed_networks(step_config, point.state, point.path)
    else:
        networks = _fresh_networks(step_config, base_state, base, train)
    step = _train(networks, step_config, train, run_dir, point.state, base, device, progress, max_steps, references)
    final = latest_good_checkpoint(run_dir / "checkpoints")
    if final.path is None:
        raise EnrolError(f"fine-tuning in {run_dir} ended without a checkpoint; see the log")
    generator = networks.modules.generator.cpu().eval()
    metrics: dict[str, float] = {}
    if step >= step_config.steps:
        metrics = held_out_metrics(generator, held, references)
        write_json_atomic(run_dir / HELDOUT_FILE, {"step": step, "holdout_frames": holdout, **metrics})
    return FinetuneResult(
        run_dir=run_dir,
        checkpoint=final.path,
        step=step,
        total_steps=step_config.steps,
        generator=generator,
        identity=networks.identity.detach().cpu().numpy().astype(np.float32),
        model_config=model_config,
        config=step_config,
        training_frames=training_frames,
        holdout_frames=sum(len(clip) for clip in held),
        metrics=metrics,
        seconds=time.perf_counter() - began,
        notes=tuple(notes),
        refused=point.refused,
        references=references,
    )


def _as_one_target(clips: Sequence[Clip], size_px: int) -> list[Clip]:
    """Return the clips under one identity name (D_I has one row now); EnrolError when they do not fit G."""
    if not clips:
        raise EnrolError("no clips to fine-tune on: the recording gave no usable frames")
    sizes = {clip.size_px for clip in clips}
    if sizes != {size_px}:
        raise EnrolError(
            f"the clips are {sorted(sizes)} px but the base model renders {size_px} px: preprocess at size_px {size_px}"
        )
    name = clips[0].identity
    return [dataclasses.replace(c, identity=name) for c in clips]


def _train(
    networks: _StageTwo,
    step_config: PretrainConfig,
    clips: list[Clip],
    run_dir: Path,
    resume_state: dict[str, Any] | None,
    base: Path | None,
    device: str,
    progress: Callable[[FinetuneProgress], None] | None,
    max_steps: int | None,
    references: ReferenceFrames | None = None,
) -> int:
    """Return the step reached after training from the resume state (or step 0) to the end or `max_steps`."""
    fixed = {clips[0].identity: references} if references is not None else None
    sampler = BatchSampler(clips, step_config, networks.modules.critics_config, fixed)
    renderer = networks.renderer.to(device)
    critics = networks.modules.critics.to(device)
    perceptual = networks.modules.perceptual.to(device)
    optimisers = build_optimisers(step_config, renderer, critics)
    start = 0
    if resume_state is not None:
        optimisers.generator.load_state_dict(resume_state["optimisers"]["generator"])
        optimisers.critics.load_state_dict(resume_state["optimisers"]["critics"])
        restore_rng_state(resume_state["rng"])
        start = int(resume_state["step"])
    end = min(step_config.steps, max_steps) if max_steps is not None else step_config.steps
    recent: list[float] = []
    for step in range(start, end):
        began = time.perf_counter()
        batch = sampler.batch(step).to(device)
        try:
            result = train_step(
                renderer, critics, optimisers, batch, step_config, step_seed(step_config.seed, step, 0), perceptual
            )
        except TrainingError as error:
            raise EnrolError(f"fine-tuning failed at step {step + 1}: {error}") from error
        done = step + 1
        seconds = time.perf_counter() - began
        with (run_dir / "metrics.jsonl").open("a", encoding="utf-8") as stream:
            stream.write(json.dumps({"step": done, **result.losses, "seconds_per_step": seconds}) + "\n")
        if done % step_config.sample_every == 0:
            write_png(run_dir / "samples" / f"step-{done:08d}.png", sample_grid(batch, result))
        if done % step_config.checkpoint_every == 0 or done == end:
            state = _checkpoint_state(done, step_config, base, networks, optimisers)
            save_checkpoint(state, run_dir / "checkpoints", step_config.keep_checkpoints)
        if progress is not None:
            recent = [*recent[-19:], seconds]
            pace = sum(recent) / len(recent)
            progress(FinetuneProgress(done, step_config.steps, pace, pace * (step_config.steps - done), result.losses))
    return max(start, end)
