"""Runtimes of the served generator: each computes what eager float32 computes, within its precision."""

from __future__ import annotations

import copy
import importlib.util
import math
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import Tensor

from inference.networks import Generator, load_model_config
from inference.runtimes import (
    EXPORT_TOLERANCE,
    RUNTIME_KINDS,
    FrameRuntime,
    OnnxRuntime,
    RuntimeMismatch,
    RuntimeUnavailable,
    build_runtime,
)

# The tiny model's generator on 64² frames (it serves 128²; the network is fully convolutional and
# half the size keeps the tests quick on two cores).
SIZE = 64

# bf16 keeps 8 significant bits: every rounding is within u = 2**-9 relative. The tiny generator's
# longest path has 14 convolutions (4 encoder, 6 in residual blocks, 3 up, 1 head); each rounds its
# input and weights (two roundings) and is followed by an instance norm that brings features back to
# unit scale, so each adds an independent error of about 2u, and they add in quadrature:
# σ ≈ √14 · 2u ≈ 0.015 before the tanh (whose slope is at most 1). The mean |error| of a normal
# error is 0.8σ; the largest of ~50k values stays within about 6σ.
BF16_ROUNDING = 2.0**-9
BF16_SIGMA = math.sqrt(14) * 2 * BF16_ROUNDING
BF16_MEAN_TOLERANCE = BF16_SIGMA
BF16_MAX_TOLERANCE = 6 * BF16_SIGMA
# The mask's sigmoid has slope at most 1/4.
BF16_MASK_MAX_TOLERANCE = 6 * BF16_SIGMA / 4


CONDITION_CHANNELS = load_model_config("tiny").generator.condition_channels  # NMFC stack, then the warp input


@pytest.fixture(scope="module")
def generator() -> Generator:
    """The tiny generator converted to a random target's instance norms, as it is served, with its
    output heads (zero when fresh: the warp alone) given small random weights, so every runtime runs
    the whole network."""
    config = load_model_config("tiny")
    torch.manual_seed(0)
    model = Generator(config.generator).eval()
    model.convert_adain_to_instance_norm(torch.nn.functional.normalize(torch.randn(config.identity_dim), dim=0))
    with torch.no_grad():
        for name, parameter in model.decoder.named_parameters():
            if name.split(".")[0] in ("residual_head", "blend_head", "mask_head"):
                parameter.normal_(0.0, 0.02)
    return model


def inputs(batch: int, seed: int = 0, device: str = "cpu") -> tuple[Tensor, Tensor]:
    """Return (condition (B, C, 64, 64) in [0, 1], previous (B, 6, 64, 64) in [−1, 1]) float32."""
    source = torch.Generator().manual_seed(seed)
    nmfc = torch.rand(batch, CONDITION_CHANNELS, SIZE, SIZE, generator=source)
    previous = torch.rand(batch, 6, SIZE, SIZE, generator=source) * 2 - 1
    return nmfc.to(device), previous.to(device)


def reference(generator: Generator, nmfc: Tensor, previous: Tensor) -> tuple[Tensor, Tensor]:
    """Return the eager float32 (frame, mask) of the (CPU) generator fixture."""
    with torch.inference_mode():
        out = generator(nmfc.cpu(), previous.cpu())
    return out.frame, out.mask


def max_difference(got: tuple[Tensor, Tensor], expected: tuple[Tensor, Tensor]) -> float:
    """Return the largest |got − expected| over the frame and the mask (on the CPU)."""
    return max(float((g.cpu() - e.cpu()).abs().max()) for g, e in zip(got, expected, strict=True))


def check_outputs(runtime: FrameRuntime, frame: Tensor, mask: Tensor, batch: int) -> None:
    """Assert the runtime contract: float32 on the runtime's device, shapes, ranges."""
    assert frame.shape == (batch, 3, SIZE, SIZE) and mask.shape == (batch, 1, SIZE, SIZE)
    assert frame.dtype == mask.dtype == torch.float32
    assert frame.device == mask.device == runtime.device
    assert float(frame.min()) >= -1 and float(frame.max()) <= 1
    assert float(mask.min()) >= 0 and float(mask.max()) <= 1


def test_eager_is_the_generator_itself(generator: Generator) -> None:
    runtime = build_runtime(generator, "eager")
    nmfc, previous = inputs(2)
    frame, mask = runtime(nmfc, previous)
    check_outputs(runtime, frame, mask, 2)
    assert runtime.name == "eager"
    expected = reference(generator, nmfc, previous)
    assert torch.equal(frame, expected[0]) and torch.equal(mask, expected[1])


def test_batches_larger_than_max_batch_run_in_chunks(generator: Generator) -> None:
    runtime = build_runtime(generator, "eager", max_batch=2)
    nmfc, previous = inputs(5)
    frame, mask = runtime(nmfc, previous)
    check_outputs(runtime, frame, mask, 5)
    # Instance norms treat every sample alone: chunking changes nothing but float summation order.
    assert max_difference((frame, mask), reference(generator, nmfc, previous)) <= 1e-5


def test_bf16_is_eager_within_bfloat16_rounding(generator: Generator) -> None:
    runtime = build_runtime(generator, "bf16")
    nmfc, previous = inputs(2)
    frame, mask = runtime(nmfc, previous)
    check_outputs(runtime, frame, mask, 2)
    expected_frame, expected_mask = reference(generator, nmfc, previous)
    error = (frame - expected_frame).abs()
    assert float(error.mean()) <= BF16_MEAN_TOLERANCE
    assert float(error.max()) <= BF16_MAX_TOLERANCE
    assert float((mask - expected_mask).abs().max()) <= BF16_MASK_MAX_TOLERANCE
    assert float(error.max()) > 0  # it did run in bf16


@pytest.fixture(scope="module")
def onnx_runtime(generator: Generator, tmp_path_factory: pytest.TempPathFactory) -> FrameRuntime:
    """The tiny generator exported to ONNX (batches 1..4, 64²) and run by onnxruntime on the CPU."""
    return build_runtime(generator, "onnx", size_px=SIZE, work_dir=tmp_path_factory.mktemp("onnx"), max_batch=4)


@pytest.mark.parametrize("batch", [1, 3, 6])
def test_onnx_is_eager_within_float32_reordering(generator: Generator, onnx_runtime: FrameRuntime, batch: int) -> None:
    nmfc, previous = inputs(batch, seed=batch)
    frame, mask = onnx_runtime(nmfc, previous)
    check_outputs(onnx_runtime, frame, mask, batch)  # 6 > max_batch: two chunks through the dynamic batch
    assert max_difference((frame, mask), reference(generator, nmfc, previous)) <= EXPORT_TOLERANCE


def test_onnx_writes_its_model_to_the_work_dir(onnx_runtime: FrameRuntime) -> None:
    assert isinstance(onnx_runtime, OnnxRuntime)
    assert onnx_runtime.path.name == "generator.onnx" and onnx_runtime.path.is_file()
    assert onnx_runtime.provider == "CPUExecutionProvider"


def test_an_export_that_computes_something_else_is_refused(
    onnx_runtime: FrameRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert isinstance(onnx_runtime, OnnxRuntime)
    # Another target's generator whose "export" is the first one's file: the check against eager
    # must catch it (the two differ by far more than the tolerance).
    config = load_model_config("tiny")
    torch.manual_seed(1)
    other = Generator(config.generator).eval()
    other.convert_adain_to_instance_norm(torch.nn.functional.normalize(torch.randn(config.identity_dim), dim=0))
    monkeypatch.setattr("inference.runtimes.export_onnx", lambda *args: onnx_runtime.path)
    with pytest.raises(RuntimeMismatch, match=r"'onnx' differs from eager by .* \(tolerance 0.001\)"):
        build_runtime(other, "onnx", size_px=SIZE, max_batch=4)


def test_onnx_without_onnxruntime_says_what_to_install(generator: Generator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` fail
    with pytest.raises(RuntimeUnavailable, match=r"pip install 'headcast\[server\]'"):
        build_runtime(generator, "onnx", size_px=SIZE)


def test_cuda_graphs_need_a_cuda_device(generator: Generator) -> None:
    with pytest.raises(RuntimeUnavailable, match="'cuda-graphs' needs a CUDA device"):
        build_runtime(generator, "cuda-graphs", size_px=SIZE)


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="tensorrt is installed here")
def test_tensorrt_says_it_is_not_installed(generator: Generator) -> None:
    with pytest.raises(RuntimeUnavailable, match="TensorRT, which is not installed"):
        build_runtime(generator, "tensorrt", size_px=SIZE)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_a_cuda_device_without_one_is_unavailable(generator: Generator) -> None:
    with pytest.raises(RuntimeUnavailable, match=r"torch.cuda.is_available\(\) is False"):
        build_runtime(generator, "eager", device="cuda")


def test_bad_requests_say_what_to_pass(generator: Generator) -> None:
    with pytest.raises(ValueError, match=r"unknown runtime 'jax'.*eager, bf16, compiled, cuda-graphs, onnx, tensorrt"):
        build_runtime(generator, "jax")
    with pytest.raises(ValueError, match="pass size_px"):
        build_runtime(generator, "onnx")
    with pytest.raises(ValueError, match="divisible by 8"):
        build_runtime(generator, "eager", size_px=60)
    unconverted = Generator(load_model_config("tiny").generator)
    with pytest.raises(ValueError, match="convert_adain_to_instance_norm"):
        build_runtime(unconverted, "eager")
    runtime = build_runtime(generator, "eager", size_px=SIZE)
    nmfc, previous = inputs(1)
    with pytest.raises(ValueError, match="9 NMFC and 6 previous-frame channels"):
        runtime(nmfc[:, :3], previous)
    with pytest.raises(ValueError, match="built for 64² frames"):
        runtime(nmfc[..., :32, :32], previous[..., :32, :32])
    with pytest.raises(ValueError, match="float32"):
        runtime(nmfc.double(), previous)


def test_every_kind_is_named() -> None:
    assert set(RUNTIME_KINDS) == {"eager", "bf16", "compiled", "cuda-graphs", "onnx", "tensorrt"}


# Inductor itself touches a deprecated torch.jit API while compiling; nothing of ours.
@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
def test_compiled_is_eager_within_float32_reordering(generator: Generator) -> None:
    # torch.compile builds C++ kernels with gcc here: 15-30 s on two cores for this network, once
    # (batch 1, at build time). A second batch size recompiles (~45 s more): left to the GPU test.
    runtime = build_runtime(generator, "compiled", size_px=SIZE)
    nmfc, previous = inputs(1, seed=4)
    frame, mask = runtime(nmfc, previous)
    check_outputs(runtime, frame, mask, 1)
    assert max_difference((frame, mask), reference(generator, nmfc, previous)) <= EXPORT_TOLERANCE


needs_cuda = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA device: torch.cuda.is_available() is False"
)


@pytest.fixture
def no_tf32() -> Iterator[None]:
    """Keep cuDNN convolutions in float32 (torch allows TF32 for them by default) so that float32 tolerances hold."""
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
        yield


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("kind", ["eager", "compiled", "cuda-graphs", "onnx"])
def test_cuda_runtimes_are_cpu_eager_within_float32(
    generator: Generator, kind: str, no_tf32: None, tmp_path: Path
) -> None:
    # A copy: build_runtime moves the generator it is given, and the fixture stays on the CPU.
    runtime = build_runtime(copy.deepcopy(generator), kind, "cuda", size_px=SIZE, work_dir=tmp_path, max_batch=4)
    for batch in (1, 3, 6):  # 3 is padded to a captured 4 by cuda-graphs; 6 runs in two chunks
        nmfc, previous = inputs(batch, seed=batch, device="cuda")
        frame, mask = runtime(nmfc, previous)
        check_outputs(runtime, frame, mask, batch)
        assert max_difference((frame, mask), reference(generator, nmfc, previous)) <= EXPORT_TOLERANCE


@pytest.mark.gpu
@needs_cuda
def test_cuda_bf16_is_eager_within_bfloat16_rounding(generator: Generator) -> None:
    runtime = build_runtime(copy.deepcopy(generator), "bf16", device="cuda")
    nmfc, previous = inputs(2, device="cuda")
    frame, mask = runtime(nmfc, previous)
    check_outputs(runtime, frame, mask, 2)
    expected_frame, expected_mask = reference(generator, nmfc, previous)
    error = (frame.cpu() - expected_frame).abs()
    assert float(error.mean()) <= BF16_MEAN_TOLERANCE and float(error.max()) <= BF16_MAX_TOLERANCE
    assert float((mask.cpu() - expected_mask).abs().max()) <= BF16_MASK_MAX_TOLERANCE


@pytest.mark.gpu
@needs_cuda
@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is None, reason="needs tensorrt installed")
def test_tensorrt_is_eager_within_float32(generator: Generator, no_tf32: None, tmp_path: Path) -> None:
    runtime = build_runtime(copy.deepcopy(generator), "tensorrt", "cuda", size_px=SIZE, work_dir=tmp_path, max_batch=4)
    nmfc, previous = inputs(3, device="cuda")
    frame, mask = runtime(nmfc, previous)
    check_outputs(runtime, frame, mask, 3)
    assert max_difference((frame, mask), reference(generator, nmfc, previous)) <= EXPORT_TOLERANCE
