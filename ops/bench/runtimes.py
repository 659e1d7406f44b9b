"""Generator runtimes: frames/s of the served tiny generator at 128² under each runtime available here.

    python ops/bench/runtimes.py           # full: eager, bf16, onnx, compiled (+ cuda-graphs, tensorrt on a GPU)
    python ops/bench/runtimes.py --quick   # smoke: eager, bf16, onnx, few runs, JSON only

G is built as it is served (`inference.runtimes.build_runtime`: converted to one target's instance
norms) for batch 1 and batch 8 (one call renders 8 sessions' frames). Each number is the median
of 40 timed calls (200 on a GPU), taken in 5 rounds; a round times every runtime in turn, a few
calls in a row each, so that a change in the machine's load (its cores may be shared) falls on all
of them alike and each runtime's ratio to eager comes from the same rounds. Build time is reported
too: ONNX export and its check, or torch.compile's first (compiling) call, which happens at build.
Kinds that cannot run here are listed with the reason.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import torch
from _record import record
from torch import Tensor

from inference.networks import Generator, load_model_config
from inference.runtimes import FrameRuntime, RuntimeUnavailable, build_runtime

SIZE = "tiny"
BATCHES = (1, 8)
CPU_KINDS = ("eager", "bf16", "onnx", "compiled")
CUDA_KINDS = ("eager", "bf16", "compiled", "cuda-graphs", "onnx", "tensorrt")


def served_generator(size: str) -> tuple[Generator, int]:
    """Return G of `size` converted to a random target (seed 0), in eval mode, and its frame size."""
    config = load_model_config(size)
    torch.manual_seed(0)
    generator = Generator(config.generator).eval()
    generator.convert_adain_to_instance_norm(torch.nn.functional.normalize(torch.randn(config.identity_dim), dim=0))
    return generator, config.size_px


def build_all(
    kinds: tuple[str, ...], device: torch.device, size: str, max_batch: int
) -> tuple[dict[str, FrameRuntime], dict[str, float], dict[str, str]]:
    """Return the runtimes that built on `device`, their build times in seconds, and why the others did not."""
    runtimes: dict[str, FrameRuntime] = {}
    build_s: dict[str, float] = {}
    unavailable: dict[str, str] = {}
    for kind in kinds:
        generator, size_px = served_generator(size)  # a fresh copy each: build_runtime moves it
        start = time.perf_counter()
        try:
            runtimes[kind] = build_runtime(generator, kind, device, size_px=size_px, max_batch=max_batch)
        except RuntimeUnavailable as error:
            unavailable[kind] = str(error)
            print(f"{kind}: unavailable: {error}")
            continue
        build_s[kind] = round(time.perf_counter() - start, 1)
        print(f"{kind}: built in {build_s[kind]} s")
    return runtimes, build_s, unavailable


def timed_in_rounds(
    runtimes: dict[str, FrameRuntime], inputs: tuple[Tensor, Tensor], rounds: int, per_round: int, device: torch.device
) -> dict[str, list[float]]:
    """Return, per runtime, the wall times in ms of rounds × per_round calls on `inputs`.

    Each round runs every runtime in turn: one untimed call, then `per_round` timed calls in a row.
    Runs in a row, because ONNX Runtime's and OpenMP's worker threads keep spinning for a while
    after a call and would slow a different runtime called right after (measured: eager 16 ms
    alone, 46 ms alternating call by call with onnx); the untimed call absorbs that hand-over.
    """
    times: dict[str, list[float]] = {kind: [] for kind in runtimes}
    for _ in range(rounds):
        for kind, runtime in runtimes.items():
            runtime(*inputs)
            for _ in range(per_round):
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                start = time.perf_counter()
                runtime(*inputs)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                times[kind].append((time.perf_counter() - start) * 1000)
    return times


def measure(device: torch.device, kinds: tuple[str, ...], rounds: int, per_round: int) -> dict[str, Any]:
    """Return build times, unavailable kinds and, per batch size, median ms, frames/s and the ratio to eager."""
    runtimes, build_s, unavailable = build_all(kinds, device, SIZE, max(BATCHES))
    generator, size_px = served_generator(SIZE)
    config = generator.config
    out: dict[str, Any] = {"build_s": build_s, "unavailable": unavailable}
    for batch in BATCHES:
        source = torch.Generator().manual_seed(batch)
        nmfc = torch.rand(batch, config.condition_channels, size_px, size_px, generator=source).to(device)
        previous = (torch.rand(batch, config.previous_channels, size_px, size_px, generator=source) * 2 - 1).to(device)
        # A new batch size recompiles the compiled runtime: one untimed call first, apart from warm-up.
        for runtime in runtimes.values():
            runtime(nmfc, previous)
        times = timed_in_rounds(runtimes, (nmfc, previous), rounds, per_round, device)
        eager_ms = statistics.median(times["eager"])
        out[f"batch{batch}"] = {
            kind: {
                "ms": round(statistics.median(ms), 2),
                "min_ms": round(min(ms), 2),
                "fps": round(batch * 1000 / statistics.median(ms), 1),
                "vs_eager": round(eager_ms / statistics.median(ms), 2),
            }
            for kind, ms in times.items()
        }
        print(device.type, f"batch {batch}", out[f"batch{batch}"])
    if device.type == "cuda":
        out["gpu"] = torch.cuda.get_device_name(device)
    return out


def package_version(name: str) -> str | None:
    """Return the installed version of a distribution, None when it is not installed."""
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def summary_of(device: str, measured: dict[str, Any]) -> str:
    """Return the table row's text for one device: fps at batch 1 / batch 8 and the ratio to eager."""
    parts = []
    for kind in measured["batch1"]:
        one, eight = measured["batch1"][kind], measured["batch8"][kind]
        parts.append(
            f"{kind} {one['fps']:.1f}/{eight['fps']:.1f}"
            + ("" if kind == "eager" else f" (×{one['vs_eager']:.2f}/×{eight['vs_eager']:.2f})")
        )
    text = f"{SIZE}@{load_model_config(SIZE).size_px} {device} fps batch 1/batch 8 (vs eager): " + ", ".join(parts)
    if measured["unavailable"]:
        text += "; unavailable: " + ", ".join(measured["unavailable"])
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="eager, bf16 and onnx, few runs, no markdown row")
    args = parser.parse_args()
    # torch.compile takes about a minute here (batch 1, then a recompile for batch 8): not a smoke test.
    cpu_kinds = tuple(k for k in CPU_KINDS if k != "compiled") if args.quick else CPU_KINDS
    rounds, per_round = (1, 3) if args.quick else (5, 8)
    # The cores may be shared with other work: the load average says how much the numbers suffered.
    load_before = os.getloadavg()[0]
    results: dict[str, Any] = {
        "torch": torch.__version__,
        "onnxruntime": package_version("onnxruntime") or package_version("onnxruntime-gpu"),
        "tensorrt": package_version("tensorrt"),
        "threads": torch.get_num_threads(),
        "model": f"{SIZE}@{load_model_config(SIZE).size_px}",
        "batches": list(BATCHES),
        "timed_calls": {"rounds": rounds, "per_round": per_round},
        "cpu": measure(torch.device("cpu"), cpu_kinds, rounds, per_round),
    }
    results["load_1m"] = {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)}
    summary = summary_of("CPU", results["cpu"])
    summary += f" (1-min load {results['load_1m']['before']:.1f}→{results['load_1m']['after']:.1f})"
    if torch.cuda.is_available():
        results["cuda"] = measure(torch.device("cuda"), CUDA_KINDS, rounds, per_round * 5)
        summary += f"; {results['cuda']['gpu']}: " + summary_of("GPU", results["cuda"])
    path = record("runtimes", results, summary, args.quick)
    print(summary)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
