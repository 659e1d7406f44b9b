"""The Serve app's configuration (filled from configs/serving.yaml): replicas, resources, batching, runtime.

Pydantic only, so the CLI and the gateway read it without importing torch or Ray.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

import configs

Runtime = Literal["eager", "bf16", "compiled", "cuda-graphs", "onnx", "tensorrt"]
Rasteriser = Literal["auto", "cpu", "torch", "nvdiffrast"]


class ServingConfig(configs.StrictConfig):
    """How the Serve app `avatar` runs."""

    config_name = "serving"
    app_name: str = Field(
        "avatar", min_length=1, description="the Serve application's name; the gateway finds it by it"
    )
    route_prefix: str | None = Field(None, description="an HTTP route for the app; None: reached by handle only")
    num_replicas: int = Field(1, ge=1, description="replicas of the deployment")
    num_cpus: float = Field(1.0, ge=0, description="CPUs reserved per replica")
    num_gpus: float = Field(0.0, ge=0, description="GPUs reserved per replica (fractions share one)")
    max_ongoing_requests: int = Field(32, ge=1, description="requests a replica accepts at once before queueing")
    max_targets_per_replica: int = Field(4, ge=1, description="target bundles a replica keeps loaded (LRU)")
    synthetic_badge: bool = Field(
        False, description="draw a visible SYNTHETIC label into every frame the app composites"
    )
    revocation_check_s: float = Field(
        0.25, gt=0, description="a replica asks the registry whether a target it renders was revoked this often; "
        "a revoked one is dropped from its cache and refused",
    )  # fmt: skip
    max_batch_size: int = Field(8, ge=1, description="requests for one target rendered in one generator call")
    batch_wait_timeout_s: float = Field(0.002, ge=0, description="how long a batch waits to fill")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: cuda when available, else cpu")
    runtime: Runtime = Field("eager", description="how the generator runs (inference/runtimes.py)")
    rasteriser: Rasteriser = Field("auto", description="NMFC rasteriser: auto is cpu on CPU and torch on GPU")
    output_size: int = Field(256, ge=16, le=2048, description="side of the composited frame in pixels")
    torch_threads: int = Field(1, ge=1, description="torch intra-op threads per replica")
    registry: str | None = Field(None, description="registry root (path or fsspec URI); None: the default")
