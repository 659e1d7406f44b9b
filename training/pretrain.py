"""Stage-1 multi-person pretraining (docs/method.md §3.3) on Ray Train, with resumable run folders.

`pretrain(config, clips, out_dir)` trains G, E, D_I, D_M and D_D with `ray.train.torch.TorchTrainer`
(CPU workers locally, DDP over workers or GPUs in a cluster; `backend="local"` runs the same loop in
this process without Ray). A run folder holds:

    out_dir/
      config.json            the PretrainConfig of the run (a resume checks it is unchanged)
      metrics.jsonl          one JSON object per step: step, losses, seconds_per_step
      checkpoints/step-<8 digits>.pt   the last `keep_checkpoints`, written atomically
      samples/step-<8 digits>.png      rows NMFC | real | generated | mask, columns the window's frames
      ray/                   Ray Train's own run state

Resuming (the default) continues from the newest checkpoint that loads: model, optimiser and RNG
states (torch, numpy, python) and the step are restored, and each step's batch is derived from
(seed, step, worker rank), so a resumed run reproduces the uninterrupted one exactly. A checkpoint
that does not load is refused with an error naming it, renamed to `*.corrupt`, and the previous
good one is used. Worker rank 0 writes the run folder; in a cluster `out_dir` must be storage that
the driver and rank 0 share.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import torch
from torch import nn

from base.files import write_atomic, write_json_atomic
from inference.networks import Generator, IdentityEmbedder, ModelConfig
from training.checkpoint import (
    CHECKPOINT_FORMAT_VERSION,
    ResumePoint,
    TrainingError,
    latest_good_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from training.clips import Clip
from training.metrics import write_png
from training.trainer_steps import (
    BatchSampler,
    Optimisers,
    PretrainConfig,
    StageOneModules,
    build_modules,
    build_optimisers,
    sample_grid,
    train_step,
    training_clips,
)

__all__ = [
    "PretrainConfig",
    "PretrainProgress",
    "PretrainResult",
    "TrainingError",
    "load_generator_checkpoint",
    "pretrain",
    "run_stage_one",
]

logger = logging.getLogger(__name__)

ClipSource = Sequence[Clip] | Callable[[], Sequence[Clip]]


@dataclass(frozen=True)
class PretrainProgress:
    """One progress report, made after every optimisation step.

    step: steps done; total: the run's steps; seconds_per_step: mean of the last steps (wall clock,
    rank 0); eta_s: seconds left at that pace; losses: the step's losses by name.
    """

    step: int
    total: int
    seconds_per_step: float
    eta_s: float
    losses: dict[str, float]


@dataclass(frozen=True)
class PretrainResult:
    """What a pretraining call leaves behind.

    run_dir: the run folder; checkpoint: the newest checkpoint; step: steps done; refused: checkpoints
    that did not load when resuming, as (original path, where they were moved).
    """

    run_dir: Path
    checkpoint: Path
    step: int
    refused: list[tuple[Path, Path]] = field(default_factory=list)

    @property
    def metrics_path(self) -> Path:
        """Return the run's metrics file (JSON lines)."""
        return self.run_dir / "metrics.jsonl"


class WorkerSession(Protocol):
    """What the training loop needs from its runtime (Ray Train, or this process)."""

    rank: int
    world_size: int
    device: torch.device

    def prepare(self, module: nn.Module) -> nn.Module:
        """Return the module on this worker's device, wrapped for data parallelism when there are several."""

    def report(self, metrics: dict[str, Any]) -> None:
        """Hand one step's metrics to the runtime."""


class LocalSession:
    """One worker in this process: no wrapping, reports go nowhere (the metrics file has them)."""

    rank = 0
    world_size = 1

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)

    def prepare(self, module: nn.Module) -> nn.Module:
        """Return the module moved to the session's device."""
        return module.to(self.device)

    def report(self, metrics: dict[str, Any]) -> None:
        """Drop the metrics: the loop has already written them to metrics.jsonl."""


class RaySession:
    """A Ray Train worker: rank and device from the train context, DDP through `prepare_model`."""

    def __init__(self) -> None:
        import ray.train
        import ray.train.torch

        context = ray.train.get_context()
        self.rank = context.get_world_rank()
        self.world_size = context.get_world_size()
        self.device = ray.train.torch.get_device()

    def prepare(self, module: nn.Module) -> nn.Module:
        """Return the module on this worker's device, in DDP when the run has several workers."""
        import ray.train.torch

        prepared: nn.Module = ray.train.torch.prepare_model(module)
        return prepared

    def report(self, metrics: dict[str, Any]) -> None:
        """Report the step's metrics to Ray Train (a barrier across workers)."""
        import ray.train

        ray.train.report(metrics)


def step_seed(seed: int, step: int, rank: int) -> int:
    """Return the torch seed of one step on one worker, a 63-bit integer derived from (seed, step, rank)."""
    return int(np.random.SeedSequence([seed, step, rank]).generate_state(2, np.uint64)[0] >> np.uint64(1))


def rng_state() -> dict[str, Any]:
    """Return the global RNG states (torch, numpy, python) in a form `torch.load(weights_only=True)` reads."""
    name, keys, position, has_gauss, cached = np.random.get_state(legacy=True)
    return {
        "torch": torch.get_rng_state(),
        "numpy": [name, torch.from_numpy(np.asarray(keys, dtype=np.int64)), position, has_gauss, cached],
        "python": random.getstate(),
    }


def restore_rng_state(state: dict[str, Any]) -> None:
    """Set the global RNG states saved by `rng_state`."""
    torch.set_rng_state(state["torch"])
    name, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), position, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def _checkpoint_state(
    step: int,
    config: PretrainConfig,
    identities: list[str],
    modules: StageOneModules,
    optimisers: Optimisers,
) -> dict[str, Any]:
    """Return everything a resume or a later stage needs, as a mapping of tensors and plain values."""
    return {
        "format_version": CHECKPOINT_FORMAT_VERSION,
        "step": step,
        "config": config.model_dump(mode="json"),
        "model_config": modules.model_config.model_dump(mode="json"),
        "critics_config": modules.critics_config.model_dump(mode="json"),
        "identities": list(identities),
        **modules.weights(list(modules.parts())),
        "optimisers": {"generator": optimisers.generator.state_dict(), "critics": optimisers.critics.state_dict()},
        "rng": rng_state(),
    }


def _load_modules(state: dict[str, Any], modules: StageOneModules, path: Path) -> None:
    """Load a checkpoint's network weights into freshly built modules; TrainingError names what does not fit."""
    for key, module in modules.parts().items():
        saved = state.get(key)
        if (module is None) != (saved is None):
            raise TrainingError(
                f"checkpoint {path} was trained {'with' if saved is not None else 'without'} {key.replace('_', ' ')}; "
                "resume with the same use_mouth / use_dynamics / window, or start a new run folder"
            )
        if module is not None and saved is not None:
            try:
                module.load_state_dict(saved)
            except RuntimeError as error:
                raise TrainingError(f"checkpoint {path}: {key} does not fit this configuration ({error})") from error


def _resolve_clips(clips: ClipSource) -> list[Clip]:
    """Return the clips, calling `clips` when it is a factory (e.g. a preprocessed corpus loader)."""
    resolved = list(clips() if callable(clips) else clips)
    if not resolved:
        raise TrainingError("the corpus has no clips: preprocess a corpus or use the synthetic one")
    return resolved


def run_stage_one(
    config: PretrainConfig,
    clips: Sequence[Clip],
    run_dir: Path,
    session: WorkerSession,
    resume_from: Path | None = None,
    max_steps: int | None = None,
) -> int:
    """Return the step reached after training one worker's share of stage 1 from `resume_from` (or from scratch).

    This is the loop every worker runs (on Ray Train or, with `LocalSession`, in this process).
    Rank 0 appends metrics, writes sample grids every `sample_every` steps and checkpoints every
    `checkpoint_every` steps and at the last step. `max_steps` stops early (the schedule still
    counts `config.steps`), as an interruption would.
    """
    train_clips = training_clips(clips, config.holdout_frames, config.window)
    sampler = BatchSampler(train_clips, config, config.model_configs()[1])
    identities = sampler.identities
    modules = build_modules(config, len(identities), "cpu")
    state = load_checkpoint(resume_from) if resume_from is not None else None
    start = 0
    if state is not None and resume_from is not None:
        if list(state.get("identities", [])) != identities:
            raise TrainingError(
                f"checkpoint {resume_from} was trained on identities {state.get('identities')}, "
                f"this corpus has {identities}: resume with the same corpus or start a new run folder"
            )
        _load_modules(state, modules, resume_from)
        start = int(state["step"])
    renderer = session.prepare(modules.renderer)
    critics = session.prepare(modules.critics)
    modules.perceptual.to(session.device)
    optimisers = build_optimisers(config, renderer, critics)
    if state is not None:
        optimisers.generator.load_state_dict(state["optimisers"]["generator"])
        optimisers.critics.load_state_dict(state["optimisers"]["critics"])
        restore_rng_state(state["rng"])
    end = min(config.steps, max_steps) if max_steps is not None else config.steps
    is_writer = session.rank == 0
    metrics_path = run_dir / "metrics.jsonl"
    for step in range(start, end):
        began = time.perf_counter()
        batch = sampler.batch(step, session.rank).to(session.device, config.channels_last)
        result = train_step(
            renderer, critics, optimisers, batch, config, step_seed(config.seed, step, session.rank), modules.perceptual
        )
        done = step + 1
        metrics: dict[str, Any] = {"step": done, **result.losses, "seconds_per_step": time.perf_counter() - began}
        if is_writer:
            with metrics_path.open("a", encoding="utf-8") as stream:
                stream.write(json.dumps(metrics) + "\n")
            if done % config.sample_every == 0:
                write_png(run_dir / "samples" / f"step-{done:08d}.png", sample_grid(batch, result))
            if done % config.checkpoint_every == 0 or done == end:
                state_now = _checkpoint_state(done, config, identities, modules, optimisers)
                save_checkpoint(state_now, run_dir / "checkpoints", config.keep_checkpoints)
        # A Ray Train report is a barrier with the controller that costs about two seconds, far more
        # than a small step: report at checkpoints and at the end; progress reads metrics.jsonl.
        if done % config.checkpoint_every == 0 or done == end:
            session.report(metrics)
    return max(start, end)


def _ray_worker(loop_config: dict[str, Any]) -> None:
    """Run `run_stage_one` on a Ray Train worker (the TorchTrainer's train_loop_per_worker)."""
    import ray

    clips_source = loop_config["clips"]
    clips = ray.get(clips_source) if isinstance(clips_source, ray.ObjectRef) else clips_source
    resume = loop_config["resume_from"]
    run_stage_one(
        PretrainConfig.model_validate(loop_config["config"]),
        clips,
        Path(loop_config["run_dir"]),
        RaySession(),
        Path(resume) if resume is not None else None,
        loop_config["max_steps"],
    )


def prepare_run_dir(config: PretrainConfig, run_dir: Path, resume: bool) -> ResumePoint:
    """Return where the run starts, after checking the folder, its config and truncating metrics beyond that step."""
    run_dir.mkdir(parents=True, exist_ok=True)
    config_path = run_dir / "config.json"
    checkpoints = run_dir / "checkpoints"
    for stale in checkpoints.glob(".step-*.partial-*"):
        # A kill during a checkpoint write leaves its temporary file; the rename never happened.
        stale.unlink()
    point = latest_good_checkpoint(checkpoints) if resume else ResumePoint(None, None)
    if not resume and any(checkpoints.glob("step-*.pt")):
        raise TrainingError(
            f"{run_dir} already holds checkpoints: resume it, or give a new (or emptied) run folder to start over"
        )
    if point.state is not None and point.state["config"] != config.model_dump(mode="json"):
        changed = sorted(
            key for key, value in config.model_dump(mode="json").items() if point.state["config"].get(key) != value
        )
        # `steps` may grow to train longer; anything else would make the continuation a different run.
        if set(changed) - {"steps"}:
            raise TrainingError(
                f"{run_dir} was trained with a different configuration ({', '.join(changed)} changed): "
                "resume with the run's config.json, or start a new run folder"
            )
    write_json_atomic(config_path, config.model_dump(mode="json"))
    metrics = run_dir / "metrics.jsonl"
    if metrics.exists():
        # Steps after the checkpoint are redone by the resumed run: drop their old lines.
        lines = metrics.read_text(encoding="utf-8").splitlines()
        kept = [line for line in lines if line.strip() and _line_step(line) <= point.step]
        write_atomic(metrics, "".join(line + "\n" for line in kept))
    return point


def _line_step(line: str) -> int:
    """Return the step of one metrics line; a torn last line (a kill mid-write) counts as beyond any step."""
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return 2**62


class _ProgressWatcher:
    """Reads new lines of metrics.jsonl and turns them into `PretrainProgress` reports for a callback."""

    def __init__(self, metrics: Path, total: int, callback: Callable[[PretrainProgress], None]) -> None:
        self.metrics = metrics
        self.total = total
        self.callback = callback
        self._offset = metrics.stat().st_size if metrics.exists() else 0
        self._recent: list[float] = []

    def poll(self) -> None:
        """Report every complete line written since the last poll."""
        if not self.metrics.exists():
            return
        with self.metrics.open("rb") as stream:
            stream.seek(self._offset)
            chunk = stream.read()
        complete = chunk[: chunk.rfind(b"\n") + 1]
        self._offset += len(complete)
        for line in complete.decode("utf-8").splitlines():
            if not line.strip():
                continue
            record = json.loads(line)
            self._recent = [*self._recent[-19:], float(record["seconds_per_step"])]
            pace = sum(self._recent) / len(self._recent)
            step = int(record["step"])
            losses = {k: float(v) for k, v in record.items() if k not in ("step", "seconds_per_step")}
            self.callback(PretrainProgress(step, self.total, pace, pace * (self.total - step), losses))


def pretrain(
    config: PretrainConfig,
    clips: ClipSource,
    out_dir: str | Path,
    resume: bool = True,
    address: str | None = None,
    num_workers: int = 1,
    use_gpu: bool = False,
    progress: Callable[[PretrainProgress], None] | None = None,
    max_steps: int | None = None,
    backend: Literal["ray", "local"] = "ray",
) -> PretrainResult:
    """Return the result of stage-1 pretraining of `config` on `clips`, run in (or resumed from) `out_dir`.

    clips: the corpus (e.g. `synthetic_corpus(...)`), or a callable returning it (e.g. a loader of
    preprocessed shards). backend "ray": Ray Train's TorchTrainer with `num_workers` workers (a GPU
    each when `use_gpu`), on the cluster at `address` or on a local Ray started here (and stopped
    after); backend "local": the same loop in this process, one worker. `progress` is called in
    this thread after every step with a `PretrainProgress`. `max_steps` stops at that step (the
    schedule still counts `config.steps`). Raises TrainingError with what to do when the run cannot
    start or a worker fails.
    """
    run_dir = Path(out_dir).resolve()
    corpus = _resolve_clips(clips)
    point = prepare_run_dir(config, run_dir, resume)
    resume_from = point.path
    if point.path is not None:
        logger.info("resuming %s from %s (step %d)", run_dir, point.path, point.step)
    watcher = _ProgressWatcher(run_dir / "metrics.jsonl", config.steps, progress) if progress is not None else None
    if backend == "local":
        if num_workers != 1 or use_gpu or address is not None:
            raise TrainingError("backend 'local' runs one CPU worker in this process: use backend 'ray' to scale out")
        _run_watched(partial(run_stage_one, config, corpus, run_dir, LocalSession(), resume_from, max_steps), watcher)
    elif backend == "ray":
        _run_on_ray(config, corpus, run_dir, resume_from, address, num_workers, use_gpu, max_steps, watcher)
    else:
        raise TrainingError(f"unknown backend {backend!r}: use 'ray' or 'local'")
    final = latest_good_checkpoint(run_dir / "checkpoints")
    if final.path is None:
        raise TrainingError(f"the run in {run_dir} ended without writing a checkpoint; see the worker logs")
    return PretrainResult(run_dir, final.path, final.step, point.refused)


def _run_watched(runner: Callable[[], object], watcher: _ProgressWatcher | None) -> None:
    """Run `runner` in a worker thread while this thread feeds the progress watcher; re-raise its error."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="pretrain") as pool:
        future = pool.submit(runner)
        stop = threading.Event()
        while not future.done():
            if watcher is not None:
                watcher.poll()
            stop.wait(0.2)
        if watcher is not None:
            watcher.poll()
        future.result()


def _run_on_ray(
    config: PretrainConfig,
    corpus: list[Clip],
    run_dir: Path,
    resume_from: Path | None,
    address: str | None,
    num_workers: int,
    use_gpu: bool,
    max_steps: int | None,
    watcher: _ProgressWatcher | None,
) -> None:
    """Run the workers with Ray Train's TorchTrainer; TrainingError when Ray Train is missing or a worker fails."""
    import ray

    try:
        import ray.train
        from ray.train.torch import TorchTrainer
    except ImportError as error:
        raise TrainingError(
            f"Ray Train is not importable ({error}): install it with `pip install 'ray[train]'`, "
            "or pass backend='local' to train in this process"
        ) from error
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, include_dashboard=False, log_to_driver=True)
    try:
        loop_config = {
            "config": config.model_dump(mode="json"),
            "clips": ray.put(corpus),
            "run_dir": str(run_dir),
            "resume_from": str(resume_from) if resume_from is not None else None,
            "max_steps": max_steps,
        }
        trainer = TorchTrainer(
            _ray_worker,
            train_loop_config=loop_config,
            scaling_config=ray.train.ScalingConfig(num_workers=num_workers, use_gpu=use_gpu),
            run_config=ray.train.RunConfig(
                name=f"attempt-{time.strftime('%Y%m%d-%H%M%S')}",
                storage_path=str(run_dir / "ray"),
                failure_config=ray.train.FailureConfig(max_failures=0),
            ),
        )
        try:
            _run_watched(trainer.fit, watcher)
        except ray.train.TrainingFailedError as error:
            raise TrainingError(f"pretraining in {run_dir} failed on a worker: {error}") from error
    finally:
        if started_here:
            ray.shutdown()


def load_generator_checkpoint(path: str | Path) -> tuple[Generator, IdentityEmbedder, list[str], PretrainConfig]:
    """Return (G, E, identity names — D_I's W rows in order —, the run's config) from a stage-1 checkpoint.

    The networks are in eval mode on the CPU. Raises TrainingError naming the file when it is not a
    readable stage-1 checkpoint.
    """
    checkpoint = Path(path)
    state = load_checkpoint(checkpoint)
    try:
        model_config = ModelConfig.model_validate(state["model_config"])
        config = PretrainConfig.model_validate(state["config"])
        generator = Generator(model_config.generator)
        embedder = IdentityEmbedder(model_config.embedder)
        generator.load_state_dict(state["generator"])
        embedder.load_state_dict(state["embedder"])
    except (KeyError, ValueError, RuntimeError) as error:
        raise TrainingError(f"{checkpoint} is not a usable stage-1 checkpoint ({error})") from error
    generator.eval()
    embedder.eval()
    return generator, embedder, list(state["identities"]), config
