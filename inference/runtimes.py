"""How the served generator runs: eager, bf16, torch.compile, CUDA graphs, ONNX Runtime, TensorRT.

`build_runtime(generator, kind, device, size_px)` returns a `FrameRuntime`: a callable from the
NMFC stack and the previous frames to the frame and the mask, with the same tensors in and out
whatever runs inside. The generator given is one target's (converted to instance norms, §3.4)
and in eval mode.

| kind | where | what |
|---|---|---|
| eager | CPU, CUDA | `torch.inference_mode`, float32: the reference |
| bf16 | CPU, CUDA | bfloat16 autocast, outputs cast back to float32 |
| compiled | CPU, CUDA | `torch.compile` (inductor); the first call compiles (tens of seconds) |
| cuda-graphs | CUDA | one captured CUDA graph per batch size (powers of two; batches are padded) |
| onnx | CPU, CUDA | `torch.onnx.export` (dynamic batch) run by ONNX Runtime, checked against eager |
| tensorrt | CUDA with `tensorrt` | an engine built from the ONNX export, checked against eager |

A runtime that cannot run here raises `RuntimeUnavailable` saying what to install or which device
it needs; callers fall back to "eager".
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor, nn

from inference.networks.generator import Generator

RUNTIME_KINDS = ("eager", "bf16", "compiled", "cuda-graphs", "onnx", "tensorrt")

# Largest |exported − eager| accepted on the frame (tanh, [−1, 1]) and the mask (sigmoid, [0, 1]),
# both float32. Reordered float32 sums differ by ~1e-6 through this network (measured: 5e-6 on
# tiny@128); a broken export (a wrong padding, a norm over the wrong axes) differs by 0.1 or more.
# 1e-3 sits between the two and is an eighth of one 8-bit level of the delivered video (2/255),
# so a runtime that passes is indistinguishable from eager on screen.
EXPORT_TOLERANCE = 1e-3


class RuntimeUnavailable(Exception):  # noqa: N818 (the name reads as the condition callers catch)
    """The runtime cannot run here; the message says what to install or which device it needs."""


class RuntimeMismatch(RuntimeUnavailable):
    """The runtime runs but computes something else than eager (beyond `EXPORT_TOLERANCE`)."""


class FrameRuntime(Protocol):
    """The served generator behind one runtime.

    Called with nmfc (B, 3·nmfc_frames, S, S) in [0, 1] and previous (B, 3·previous_frames, S, S)
    in [−1, 1], float32 on `device`; returns the frame (B, 3, S, S) in [−1, 1] and the mask
    (B, 1, S, S) in [0, 1], float32 on `device`.
    """

    name: str
    device: torch.device

    def __call__(self, nmfc: Tensor, previous: Tensor) -> tuple[Tensor, Tensor]:
        """Return (frame (B, 3, S, S) float32 in [−1, 1], mask (B, 1, S, S) float32 in [0, 1])."""
        ...


def build_runtime(
    generator: Generator,
    kind: str,
    device: str | torch.device = "cpu",
    size_px: int | None = None,
    work_dir: Path | None = None,
    max_batch: int = 8,
) -> FrameRuntime:
    """Return `generator` (converted, eval mode) behind the runtime `kind`, moved to `device`.

    size_px: the square frame size; needed by kinds that fix shapes when they are built ("onnx",
        "tensorrt", "cuda-graphs") and used by "compiled" to compile at once rather than on the
        first frame. work_dir: where "onnx" and "tensorrt" write their files (a temporary folder,
        removed with the runtime, when None). max_batch: the largest batch one call runs at once;
        larger batches run in chunks of it.
    Raises ValueError for an unknown kind or bad arguments, RuntimeUnavailable when the kind
    cannot run here.
    """
    if kind not in RUNTIME_KINDS:
        raise ValueError(f"unknown runtime {kind!r}: choose one of {', '.join(RUNTIME_KINDS)}")
    if not generator.converted:
        raise ValueError("serve a converted generator: call convert_adain_to_instance_norm(ê) first (§3.4)")
    if max_batch < 1:
        raise ValueError(f"max_batch must be at least 1, got {max_batch}")
    if size_px is not None and (size_px < 1 or size_px % 2**generator.config.n_downsampling):
        raise ValueError(f"size_px {size_px} must be positive and divisible by {2**generator.config.n_downsampling}")
    target = _check_device(torch.device(device))
    generator = generator.to(target).eval()
    if kind == "eager":
        return EagerRuntime(generator, target, size_px, max_batch)
    if kind == "bf16":
        return Bf16Runtime(generator, target, size_px, max_batch)
    if kind == "compiled":
        return CompiledRuntime(generator, target, size_px, max_batch)
    fixed = _require_size(kind, size_px)
    if kind == "cuda-graphs":
        return CudaGraphRuntime(generator, target, fixed, max_batch)
    if kind == "onnx":
        return OnnxRuntime(generator, target, fixed, max_batch, work_dir)
    return TensorRTRuntime(generator, target, fixed, max_batch, work_dir)


def _check_device(device: torch.device) -> torch.device:
    """Return `device` with its index filled in; RuntimeUnavailable when it is a CUDA device that is not here."""
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeUnavailable(
                f"device {device} requested but torch.cuda.is_available() is False: run on a machine with an "
                "NVIDIA GPU and a CUDA build of torch"
            )
        return torch.device("cuda", device.index if device.index is not None else torch.cuda.current_device())
    if device.type != "cpu":
        raise ValueError(f"runtimes serve on 'cpu' or 'cuda' devices, got {device}")
    return device


def _require_size(kind: str, size_px: int | None) -> int:
    """Return size_px; ValueError when a kind that fixes shapes at build time was given none."""
    if size_px is None:
        raise ValueError(f"runtime {kind!r} fixes the frame size when it is built: pass size_px")
    return size_px


class _GeneratorRuntime:
    """What every runtime shares: input checks, chunking by max_batch, the outputs' contract."""

    name = "base"

    def __init__(self, generator: Generator, device: torch.device, size_px: int | None, max_batch: int) -> None:
        self.generator = generator
        self.device = device
        self.size_px = size_px
        self.max_batch = max_batch
        self.nmfc_channels = generator.config.condition_channels
        self.previous_channels = generator.config.previous_channels

    def __call__(self, nmfc: Tensor, previous: Tensor) -> tuple[Tensor, Tensor]:
        """Return (frame (B, 3, S, S) float32 in [−1, 1], mask (B, 1, S, S) float32 in [0, 1])."""
        self._check(nmfc, previous)
        if nmfc.shape[0] <= self.max_batch:
            return self._run(nmfc, previous)
        parts = [
            self._run(n, p) for n, p in zip(nmfc.split(self.max_batch), previous.split(self.max_batch), strict=True)
        ]
        return torch.cat([f for f, _ in parts]), torch.cat([m for _, m in parts])

    def _run(self, nmfc: Tensor, previous: Tensor) -> tuple[Tensor, Tensor]:
        """Return (frame, mask) for at most max_batch inputs that passed `_check`."""
        raise NotImplementedError

    def _check(self, nmfc: Tensor, previous: Tensor) -> None:
        """Raise ValueError, saying what is wrong, when the inputs do not fit this runtime."""
        if nmfc.ndim != 4 or previous.ndim != 4:
            raise ValueError(f"expected (B, C, S, S) inputs, got {tuple(nmfc.shape)} and {tuple(previous.shape)}")
        if nmfc.shape[1] != self.nmfc_channels or previous.shape[1] != self.previous_channels:
            raise ValueError(
                f"expected {self.nmfc_channels} NMFC and {self.previous_channels} previous-frame channels, "
                f"got {nmfc.shape[1]} and {previous.shape[1]}"
            )
        if nmfc.shape[0] != previous.shape[0] or nmfc.shape[0] == 0:
            raise ValueError(
                f"NMFC and previous frames need the same non-zero batch, got {nmfc.shape[0]} and {previous.shape[0]}"
            )
        if nmfc.shape[-2:] != previous.shape[-2:]:
            raise ValueError(f"NMFC {tuple(nmfc.shape[-2:])} and previous frames {tuple(previous.shape[-2:])} differ")
        if self.size_px is not None and tuple(nmfc.shape[-2:]) != (self.size_px, self.size_px):
            raise ValueError(
                f"runtime {self.name!r} was built for {self.size_px}² frames, got {tuple(nmfc.shape[-2:])}"
            )
        if nmfc.dtype != torch.float32 or previous.dtype != torch.float32:
            raise ValueError(f"inputs must be float32, got {nmfc.dtype} and {previous.dtype}")
        if nmfc.device != self.device or previous.device != self.device:
            raise ValueError(f"inputs must be on {self.device}, got {nmfc.device} and {previous.device}")


class EagerRuntime(_GeneratorRuntime):
    """The generator as it is, float32 under `torch.inference_mode`: the reference for every other runtime."""

    name = "eager"

    def _run(self, nmfc: Tensor, previous: Tensor) -> tuple[Tensor, Tensor]:
        with torch.inference_mode():
            out = self.generator(nmfc, previous)
        return out.frame, out.mask


class Bf16Runtime(_GeneratorRuntime):
    """The generator under bfloat16 autocast (convolutions in bf16, norms in float32), outputs in float32."""

    name = "bf16"

    def __init__(self, generator: Generator, device: torch.device, size_px: int | None, max_batch: int) -> None:
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise RuntimeUnavailable(f"{torch.cuda.get_device_name(device)} has no bfloat16: use 'eager' there")
        super().__init__(generator, device, size_px, max_batch)

    def _run(self, nmfc: Tensor, previous: Tensor) -> tuple[Tensor, Tensor]:
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=torch.bfloat16):
            out = self.generator(nmfc, previous)
        return out.frame.float(), out.mask.float()


class CompiledRuntime(_GeneratorRuntime):
    """The generator through `torch.compile` (inductor), float32.

    Compiling takes tens of seconds on a CPU (generated C++ built with the system compiler); with
    size_px it happens here, at build time, so that a failure (no compiler) surfaces as
    RuntimeUnavailable and the first served frame is not slow. A new batch size recompiles once.
    """

    name = "compiled"

    def __init__(self, generator: Generator, device: torch.device, size_px: int | None, max_batch: int) -> None:
        super().__init__(generator, device, size_px, max_batch)
        self._compiled: Any = torch.compile(generator)
        if size_px is not None:
            warm = _random_inputs(generator, device, 1, size_px, seed=0)
            try:
                self._run(*warm)
            except Exception as error:  # inductor raises many types (BackendCompilerFailed, CalledProcessError, …)
                raise RuntimeUnavailable(
                    f"torch.compile failed on {device}: {type(error).__name__}: {error}. It needs a C++ compiler "
                    "(gcc) on a CPU and Triton on a GPU; use 'eager' instead"
                ) from error

    def _run(self, nmfc: Tensor, previous: Tensor) -> tuple[Tensor, Tensor]:
        with torch.inference_mode():
            out = self._compiled(nmfc, previous)
        return out.frame, out.mask


class CudaGraphRuntime(_GeneratorRuntime):
    """The generator replayed from CUDA graphs, one captured per batch size in 1, 2, 4, … and max_batch.

    A graph replays fixed kernels on fixed buffers, removing the per-kernel launch cost that
    dominates small batches on a GPU. Batches are padded up to the next captured size (the
    generator treats every sample independently: instance norms), and graphs are captured on
    first use of their size. Outputs are copied out of the static buffers before returning, as the
    next replay overwrites them.
    """

    name = "cuda-graphs"

    def __init__(self, generator: Generator, device: torch.device, size_px: int, max_batch: int) -> None:
        if device.type != "cuda":
            raise RuntimeUnavailable(
                "runtime 'cuda-graphs' needs a CUDA device (device='cuda' on a GPU machine); "
                f"got {device}: use 'eager' or 'compiled' there"
            )
        super().__init__(generator, device, size_px, max_batch)
        self.batch_sizes = sorted({*(1 << i for i in range(max_batch.bit_length()) if 1 << i <= max_batch), max_batch})
        self._graphs: dict[int, tuple[torch.cuda.CUDAGraph, Tensor, Tensor, Tensor, Tensor]] = {}
        self._capture(1)  # fail at build time, not on the first frame

    def _capture(self, batch: int) -> tuple[torch.cuda.CUDAGraph, Tensor, Tensor, Tensor, Tensor]:
        """Return the graph for `batch` with its static inputs and outputs, capturing it first if needed."""
        if batch in self._graphs:
            return self._graphs[batch]
        assert self.size_px is not None
        nmfc, previous = (t.clone() for t in _random_inputs(self.generator, self.device, batch, self.size_px, seed=0))
        # Warm-up on a side stream before capture, as torch.cuda.graphs asks: cuDNN picks its
        # algorithms and the caching allocator fills up outside the graph.
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side), torch.no_grad():
            for _ in range(3):
                self.generator(nmfc, previous)
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.no_grad(), torch.cuda.graph(graph):
            out = self.generator(nmfc, previous)
        self._graphs[batch] = (graph, nmfc, previous, out.frame, out.mask)
        return self._graphs[batch]

    def _run(self, nmfc: Tensor, previous: Tensor) -> tuple[Tensor, Tensor]:
        count = nmfc.shape[0]
        size = next(b for b in self.batch_sizes if b >= count)
        graph, static_nmfc, static_previous, frame, mask = self._capture(size)
        static_nmfc[:count].copy_(nmfc)
        static_previous[:count].copy_(previous)
        if count < size:
            # Padding rows are computed and thrown away; zeros keep them finite.
            static_nmfc[count:].zero_()
            static_previous[count:].zero_()
        graph.replay()
        return frame[:count].clone(), mask[:count].clone()


class _FrameAndMask(nn.Module):
    """The generator with plain tensor outputs, as exporters want them."""

    def __init__(self, generator: Generator) -> None:
        super().__init__()
        self.generator = generator

    def forward(self, nmfc: Tensor, previous: Tensor) -> tuple[Tensor, Tensor]:
        """Return (frame (B, 3, S, S), mask (B, 1, S, S))."""
        out = self.generator(nmfc, previous)
        return out.frame, out.mask


def export_onnx(generator: Generator, path: Path, size_px: int, max_batch: int) -> Path:
    """Return `path` after writing the generator there as ONNX, batch dynamic (1..max_batch), frames size_px².

    Uses torch's dynamo exporter (torch.export, then onnxscript's translation), which needs the
    `onnx` and `onnxscript` packages; RuntimeUnavailable says so when they are missing.
    """
    missing = [name for name in ("onnx", "onnxscript") if importlib.util.find_spec(name) is None]
    if missing:
        raise RuntimeUnavailable(
            f"exporting to ONNX needs {' and '.join(missing)}: pip install 'headcast[server]' (or {' '.join(missing)})"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    device = next(generator.parameters()).device
    # An example batch of 2: torch.export specialises a dimension whose example size is 1.
    example = _random_inputs(generator, device, 2, size_px, seed=0)
    batch = torch.export.Dim("batch", min=1, max=max(max_batch, 2))
    with _quiet_exporter():
        torch.onnx.export(
            _FrameAndMask(generator).eval(),
            example,
            str(path),
            input_names=["nmfc", "previous"],
            output_names=["frame", "mask"],
            dynamic_shapes={"nmfc": {0: batch}, "previous": {0: batch}},
            dynamo=True,
            verbose=False,
        )
    return path


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence, while exporting, the exporter's notes that say nothing about headcast's graph: torchvision
    operators it skips (headcast uses none), one deprecation inside torch, and that both inputs share
    the one "batch" dimension (as intended)."""
    registration = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration.level
    registration.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
            warnings.filterwarnings("ignore", message=r"# The axis name: batch will not be used")
            yield
    finally:
        registration.setLevel(level)


class OnnxRuntime(_GeneratorRuntime):
    """The generator exported to ONNX and run by ONNX Runtime; checked against eager when built.

    On a CUDA device ONNX Runtime's CUDA execution provider runs it on the tensors in place (I/O
    binding) when the installed onnxruntime has it (the `onnxruntime-gpu` wheel); otherwise the CPU
    provider runs it and the tensors are copied through host memory. TF32 is kept off so that the
    check against eager compares float32 with float32.
    """

    name = "onnx"

    def __init__(
        self, generator: Generator, device: torch.device, size_px: int, max_batch: int, work_dir: Path | None
    ) -> None:
        super().__init__(generator, device, size_px, max_batch)
        try:
            import onnxruntime
        except ImportError as error:
            raise RuntimeUnavailable(
                "runtime 'onnx' needs onnxruntime: pip install 'headcast[server]' (or onnxruntime; "
                "onnxruntime-gpu for CUDA)"
            ) from error
        self._temporary = tempfile.TemporaryDirectory(prefix="headcast-onnx-") if work_dir is None else None
        folder = Path(self._temporary.name) if self._temporary is not None else work_dir
        assert folder is not None
        self.path = export_onnx(generator, folder / "generator.onnx", size_px, max_batch)

        available = onnxruntime.get_available_providers()
        self.on_device = device.type == "cuda" and "CUDAExecutionProvider" in available
        providers: list[Any] = ["CPUExecutionProvider"]
        if self.on_device:
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": device.index or 0, "use_tf32": 0}))
        options = onnxruntime.SessionOptions()
        # The same number of threads as torch, so that ONNX and eager are compared on equal cores.
        options.intra_op_num_threads = torch.get_num_threads()
        self.session: Any = onnxruntime.InferenceSession(str(self.path), options, providers=providers)
        self.provider = self.session.get_providers()[0]
        _check_against_eager(self, generator, device, size_px, max_batch)

    def _run(self, nmfc: Tensor, previous: Tensor) -> tuple[Tensor, Tensor]:
        if not self.on_device:
            frame, mask = self.session.run(
                ["frame", "mask"], {"nmfc": _to_numpy(nmfc), "previous": _to_numpy(previous)}
            )
            return torch.from_numpy(frame).to(self.device), torch.from_numpy(mask).to(self.device)
        count, size = nmfc.shape[0], nmfc.shape[-1]
        frame_out = torch.empty(count, 3, size, size, device=self.device)
        mask_out = torch.empty(count, 1, size, size, device=self.device)
        binding = self.session.io_binding()
        for name, tensor in (("nmfc", nmfc.contiguous()), ("previous", previous.contiguous())):
            binding.bind_input(name, "cuda", self.device.index or 0, np.float32, tuple(tensor.shape), tensor.data_ptr())
        for name, tensor in (("frame", frame_out), ("mask", mask_out)):
            binding.bind_output(
                name, "cuda", self.device.index or 0, np.float32, tuple(tensor.shape), tensor.data_ptr()
            )
        # ONNX Runtime runs on its own stream: the inputs must be ready before it starts.
        torch.cuda.current_stream(self.device).synchronize()
        self.session.run_with_iobinding(binding)
        binding.synchronize_outputs()
        return frame_out, mask_out


class TensorRTRuntime(_GeneratorRuntime):
    """The generator as a TensorRT engine built from its ONNX export (float32, TF32 off); checked against eager.

    Needs a CUDA device and the `tensorrt` package (NVIDIA's wheels: they download their libraries
    from NVIDIA's index, so they are not part of headcast's extras). The optimisation profile
    covers batches 1..max_batch and is tuned for max_batch.
    """

    name = "tensorrt"

    def __init__(
        self, generator: Generator, device: torch.device, size_px: int, max_batch: int, work_dir: Path | None
    ) -> None:
        if importlib.util.find_spec("tensorrt") is None:
            raise RuntimeUnavailable(
                "runtime 'tensorrt' needs NVIDIA TensorRT, which is not installed: pip install tensorrt "
                "(NVIDIA's wheels, CUDA machines only); use 'onnx' or 'compiled' instead"
            )
        if device.type != "cuda":
            raise RuntimeUnavailable(f"runtime 'tensorrt' needs a CUDA device, got {device}")
        import tensorrt as trt

        super().__init__(generator, device, size_px, max_batch)
        self._temporary = tempfile.TemporaryDirectory(prefix="headcast-trt-") if work_dir is None else None
        folder = Path(self._temporary.name) if self._temporary is not None else work_dir
        assert folder is not None
        onnx_path = export_onnx(generator, folder / "generator.onnx", size_px, max_batch)

        logger = trt.Logger(trt.Logger.WARNING)
        builder = trt.Builder(logger)
        network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
        parser = trt.OnnxParser(network, logger)
        if not parser.parse_from_file(str(onnx_path)):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise RuntimeUnavailable(f"TensorRT could not parse the ONNX export: {errors}")
        config = builder.create_builder_config()
        config.clear_flag(trt.BuilderFlag.TF32)  # float32 like eager, so the check below is meaningful
        profile = builder.create_optimization_profile()
        shapes = {"nmfc": self.nmfc_channels, "previous": self.previous_channels}
        for name, channels in shapes.items():
            profile.set_shape(
                name,
                (1, channels, size_px, size_px),
                (max_batch, channels, size_px, size_px),
                (max_batch, channels, size_px, size_px),
            )
        config.add_optimization_profile(profile)
        with torch.cuda.device(device):
            serialized = builder.build_serialized_network(network, config)
            if serialized is None:
                raise RuntimeUnavailable("TensorRT failed to build an engine for the generator (see its log)")
            self.path = folder / "generator.plan"
            self.path.write_bytes(bytes(serialized))
            self._engine: Any = trt.Runtime(logger).deserialize_cuda_engine(serialized)
            self._context: Any = self._engine.create_execution_context()
        _check_against_eager(self, generator, device, size_px, max_batch)

    def _run(self, nmfc: Tensor, previous: Tensor) -> tuple[Tensor, Tensor]:
        count, size = nmfc.shape[0], nmfc.shape[-1]
        frame = torch.empty(count, 3, size, size, device=self.device)
        mask = torch.empty(count, 1, size, size, device=self.device)
        inputs = {"nmfc": nmfc.contiguous(), "previous": previous.contiguous()}
        for name, tensor in inputs.items():
            self._context.set_input_shape(name, tuple(tensor.shape))
        for name, tensor in (*inputs.items(), ("frame", frame), ("mask", mask)):
            self._context.set_tensor_address(name, tensor.data_ptr())
        # Enqueued on torch's current stream, so it orders with the ops around it without a sync.
        stream = torch.cuda.current_stream(self.device)
        if not self._context.execute_async_v3(stream.cuda_stream):
            raise RuntimeUnavailable("TensorRT failed to run the engine")
        return frame, mask


def _check_against_eager(
    runtime: _GeneratorRuntime, generator: Generator, device: torch.device, size_px: int, max_batch: int
) -> None:
    """Raise RuntimeMismatch when `runtime` differs from eager float32 by more than EXPORT_TOLERANCE
    on random inputs (batch 2, or 1 when max_batch is 1: the dynamic batch is exercised)."""
    nmfc, previous = _random_inputs(generator, device, min(2, max_batch), size_px, seed=1)
    with torch.inference_mode(), _no_tf32():
        expected = generator(nmfc, previous)
    frame, mask = runtime(nmfc, previous)
    difference = max(float((frame - expected.frame).abs().max()), float((mask - expected.mask).abs().max()))
    if not difference <= EXPORT_TOLERANCE:  # also catches NaN
        raise RuntimeMismatch(
            f"runtime {runtime.name!r} differs from eager by {difference:.3g} (tolerance {EXPORT_TOLERANCE:g}) "
            "on a random input: its export does not compute the generator; serve with 'eager' and report this"
        )


@contextlib.contextmanager
def _no_tf32() -> Iterator[None]:
    """Keep cuDNN convolutions in true float32 (torch allows TF32 for them by default) inside the block."""
    with torch.backends.cudnn.flags(enabled=torch.backends.cudnn.enabled, allow_tf32=False):
        yield


def _random_inputs(
    generator: Generator, device: torch.device, batch: int, size_px: int, seed: int
) -> tuple[Tensor, Tensor]:
    """Return (nmfc (B, C, S, S) in [0, 1], previous (B, C', S, S) in [−1, 1]) float32 random inputs on `device`."""
    source = torch.Generator().manual_seed(seed)
    config = generator.config
    nmfc = torch.rand(batch, config.condition_channels, size_px, size_px, generator=source)
    previous = torch.rand(batch, config.previous_channels, size_px, size_px, generator=source) * 2 - 1
    return nmfc.to(device), previous.to(device)


def _to_numpy(tensor: Tensor) -> np.ndarray[Any, np.dtype[np.float32]]:
    """Return a contiguous float32 host copy (or view, on the CPU) of `tensor`."""
    return np.ascontiguousarray(tensor.detach().cpu().numpy(), dtype=np.float32)
