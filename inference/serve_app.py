"""The Ray Serve application `avatar`: enrolled targets rendered for live sessions.

One deployment, `AvatarDeployment`. Target bundles are loaded per replica with
`@serve.multiplexed` (an LRU of `max_targets_per_replica`; the gateway routes a session's requests
with `multiplexed_model_id=<target id>`, so a target's sessions land where it is loaded), and
concurrent requests are gathered with `@serve.batch` and rendered per target in one generator
call. Requests are stateless (`inference.protocol`): any replica renders any session's next frame.
Every `revocation_check_s` a replica re-reads the state of each target it renders: a revoked or deleted
target is dropped from its cache and its frames are refused (`target_revoked`).

`build_app(config)` builds it; `serve.run(build_app(config), name=config.app_name)` starts it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import torch
from ray import serve
from ray.serve import Application

from face3d.nmfc import NmfcMode
from inference.avatar import AvatarTarget, replica_name, served_framing
from inference.protocol import TARGET_REVOKED, RenderError, RenderRequest, RenderResult, TargetState
from inference.registry import (
    RegistryError,
    TargetRegistry,
    TargetRevokedError,
    default_registry_root,
    target_generator,
)
from inference.serve_config import ServingConfig

logger = logging.getLogger(__name__)


def resolve_device(config: ServingConfig) -> torch.device:
    """Return the device a replica renders on: cuda when asked for (or auto and present), else cpu."""
    if config.device == "cuda" or (config.device == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise RenderError("serving was configured for cuda but this replica sees no CUDA device")
        return torch.device("cuda")
    return torch.device("cpu")


def load_target(registry: TargetRegistry, target_id: str, config: ServingConfig) -> AvatarTarget:
    """Return a target's bundle ready to render on this process's device with the configured runtime."""
    from inference.runtimes import build_runtime

    try:
        bundle = registry.load(target_id)
    except TargetRevokedError as error:
        raise RenderError(str(error), TARGET_REVOKED) from None
    except RegistryError as error:
        raise RenderError(str(error)) from None
    device = resolve_device(config)
    generator = target_generator(bundle).to(device)
    size_px = int(bundle.metadata.training.get("model_config", {}).get("size_px") or bundle.background.shape[0])
    runtime = build_runtime(generator, config.runtime, device, size_px=size_px, max_batch=config.max_batch_size)
    rasterise = _rasteriser(config, device, served_framing(bundle).nmfc_mode)
    return AvatarTarget(
        bundle,
        runtime,
        size_px=size_px,
        nmfc_frames=generator.config.nmfc_frames,
        previous_frames=generator.config.previous_frames,
        output_size=config.output_size,
        device=device,
        rasterise=rasterise,
        warp_references=generator.config.warp_references,
        # The warp's fields are rasterised where the NMFC is: on the device with the torch rasteriser.
        warp_on_device=rasterise is not None,
        badge=config.synthetic_badge,
    )


def _rasteriser(config: ServingConfig, device: torch.device, mode: NmfcMode) -> Any:
    """Return the NMFC rasteriser for `AvatarTarget` (None: face3d's CPU rasteriser)."""
    choice = config.rasteriser
    if choice == "auto":
        choice = "torch" if device.type == "cuda" else "cpu"
    if choice == "cpu":
        return None
    from inference.raster_torch import numpy_rasteriser

    return numpy_rasteriser(choice, device, mode=mode)


def _deployment(config: ServingConfig) -> type:
    """Return the deployment class, its multiplexing and batching sized from `config`."""

    class AvatarDeployment:
        """Renders avatar frames of any enrolled target; one instance per replica."""

        def __init__(self, values: dict[str, Any]) -> None:
            self.config = ServingConfig.model_validate(values)
            torch.set_num_threads(self.config.torch_threads)
            self.registry = TargetRegistry(self.config.registry or default_registry_root())
            self.device = resolve_device(self.config)
            self._checked: dict[str, tuple[float, TargetState]] = {}  # target → when its state was read, and it
            self._watcher: asyncio.Task[None] | None = None
            logger.info("avatar replica %s on %s, registry %s", replica_name(), self.device, self.registry.root)

        @serve.multiplexed(max_num_models_per_replica=config.max_targets_per_replica)
        async def get_target(self, target_id: str) -> AvatarTarget:
            """Return a loaded target (LRU per replica: the least recently used one is dropped past the limit)."""
            return await asyncio.to_thread(load_target, self.registry, target_id, self.config)

        async def target_state(self, target_id: str) -> TargetState:
            """Return whether `target_id` may be driven ("enrolled"), was revoked, or is not in this app's registry."""
            try:
                return await asyncio.to_thread(self.registry.state, target_id)
            except RegistryError:  # an id the registry refuses ("../x") names no target
                return "unknown"

        async def replica(self) -> dict[str, Any]:
            """Return who this replica is: name (host:pid), pid, device and the targets it holds loaded."""
            return {"name": replica_name(), "pid": os.getpid(), "device": str(self.device),
                    "targets": sorted(self._cache())}  # fmt: skip

        def _cache(self) -> dict[str, AvatarTarget]:
            """Return `@serve.multiplexed`'s per-replica cache (an OrderedDict kept by Ray Serve's wrapper, which
            ray/serve/api.py stores on the instance as `__serve_multiplex_wrapper`; empty before the first load)."""
            wrapper = getattr(self, "__serve_multiplex_wrapper", None)
            return wrapper.models if wrapper is not None else {}

        def _watch_cache(self) -> None:
            """Start (once, on the replica's running loop) the task that drops revoked targets from the cache."""
            if self._watcher is None or self._watcher.done():
                self._watcher = asyncio.get_running_loop().create_task(self._drop_revoked_forever())

        async def _drop_revoked_forever(self) -> None:
            """Every `revocation_check_s`, re-read the state of each loaded target; drop those no longer enrolled."""
            while True:
                await asyncio.sleep(self.config.revocation_check_s)
                for target_id in list(self._cache()):
                    try:
                        await self._check_allowed(target_id)
                    except RenderError:
                        pass  # dropped; its next request is refused
                    except Exception:  # the registry unreachable: keep serving what was allowed, try again
                        logger.exception("replica %s: could not re-read the state of %s", replica_name(), target_id)

        async def _check_allowed(self, target_id: str) -> None:
            """Raise RenderError when `target_id` was revoked (code target_revoked) or is not enrolled (deleted),
            dropping it from the cache; the registry is read at most every `revocation_check_s` per target."""
            now = time.monotonic()
            checked = self._checked.get(target_id)
            if checked is None or now - checked[0] >= self.config.revocation_check_s:
                checked = (now, await self.target_state(target_id))
                self._checked[target_id] = checked
            if checked[1] == "enrolled":
                return
            if self._cache().pop(target_id, None) is not None:
                getattr(self, "__serve_multiplex_wrapper")._push_model_ids_info()  # routing stops preferring us
                logger.info("replica %s dropped target %s: %s", replica_name(), target_id, checked[1])
            if checked[1] == "revoked":
                raise RenderError(f"target {target_id!r} was revoked: it can no longer be driven", TARGET_REVOKED)
            raise RenderError(f"no target {target_id!r} is enrolled in {self.registry.root}")

        async def __call__(self, request: RenderRequest) -> RenderResult:
            """Return the rendered frame of one request (batched with concurrent ones)."""
            if not isinstance(request, RenderRequest):
                raise RenderError(f"expected a RenderRequest, got {type(request).__name__}")
            result: RenderResult | RenderError = await self._render_batch(request)
            if isinstance(result, RenderError):
                raise result
            return result

        @serve.batch(max_batch_size=config.max_batch_size, batch_wait_timeout_s=config.batch_wait_timeout_s)
        async def _render_batch(self, requests: list[RenderRequest]) -> list[RenderResult | RenderError]:
            """Return one result per request: requests are grouped by target, each group one generator call."""
            groups: dict[str, list[int]] = defaultdict(list)
            for index, request in enumerate(requests):
                groups[request.target_id].append(index)
            results: list[RenderResult | RenderError] = [RenderError("not rendered")] * len(requests)
            for target_id, indices in groups.items():
                self._watch_cache()
                try:
                    await self._check_allowed(target_id)
                    target = await self.get_target(target_id)
                    rendered: Sequence[RenderResult | RenderError] = await asyncio.to_thread(
                        target.render, [requests[i] for i in indices]
                    )
                except RenderError as error:
                    rendered = [error] * len(indices)
                for index, result in zip(indices, rendered, strict=True):
                    results[index] = result
            return results

    return AvatarDeployment


def build_app(config: ServingConfig) -> Application:
    """Return the Serve application `avatar` with replicas and resources from `config`."""
    deployment = serve.deployment(
        name="AvatarDeployment",
        num_replicas=config.num_replicas,
        max_ongoing_requests=config.max_ongoing_requests,
        ray_actor_options={"num_cpus": config.num_cpus, "num_gpus": config.num_gpus},
    )(_deployment(config))
    return deployment.bind(config.model_dump(mode="json"))


def run_app(config: ServingConfig, blocking: bool = False) -> Any:
    """Start the app on the connected Ray cluster (local when none) and return its handle.

    Without a `route_prefix` the gateway reaches the app by handle only, so Serve's HTTP proxy is not
    started (no port 8000, one actor less to start on a busy machine).
    """
    if config.route_prefix is None:
        serve.start(proxy_location="Disabled")
    return serve.run(build_app(config), name=config.app_name, route_prefix=config.route_prefix, blocking=blocking)
