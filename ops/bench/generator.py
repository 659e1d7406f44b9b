"""Generator speed: frames/s of G alone (batch 1, inference) and the time of one training step.

    python ops/bench/generator.py           # full: tiny@128 and base@256, writes results + a RESULTS.md row
    python ops/bench/generator.py --quick   # smoke: few runs, JSON only

G is measured as it is served: converted to one target's instance norms (§3.4), so it takes no
identity input. Variants: eager float32, channels-last float32, bf16 autocast, both. Each
number is the median over N timed runs after warm-up runs. The training step is G forward, D_I on
real and fake, hinge + feature-matching + mask losses, backward and Adam steps for D_I and G, for
`tiny` at batch 1. On a CUDA machine the same variants run on the GPU (synchronised timings).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch
from _record import record
from torch import Tensor

from inference.networks import Generator, load_model_config
from training.discriminators import ImageDiscriminator, load_discriminator_config
from training.losses import feature_matching_loss, hinge_discriminator_loss, hinge_generator_loss, mask_loss

VARIANTS = ("eager", "channels_last", "bf16", "bf16_channels_last")


def timings_ms(step: Callable[[], object], warmup: int, runs: int, device: torch.device) -> tuple[float, float]:
    """Return the (median, minimum) wall time of `step` in milliseconds over `runs` calls after `warmup` calls.

    The minimum is kept beside the median because the benchmark machine's cores may be shared.
    """
    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), min(times)


@contextlib.contextmanager
def precision(variant: str, device: torch.device) -> Iterator[None]:
    """Enter bf16 autocast for the bf16 variants; nothing otherwise."""
    if variant.startswith("bf16"):
        with torch.autocast(device.type, dtype=torch.bfloat16):
            yield
    else:
        yield


def served_generator(size: str, device: torch.device, variant: str) -> tuple[Generator, Tensor, Tensor]:
    """Return G converted to a random target, with NMFC and previous-frame inputs (batch 1) in the variant's layout."""
    config = load_model_config(size)
    torch.manual_seed(0)
    generator = Generator(config.generator).eval()
    identity = torch.nn.functional.normalize(torch.randn(config.identity_dim), dim=0)
    generator.convert_adain_to_instance_norm(identity)
    px = config.size_px
    nmfc = torch.rand(1, config.generator.condition_channels, px, px)
    previous = torch.rand(1, config.generator.previous_channels, px, px) * 2 - 1
    memory_format = torch.channels_last if variant.endswith("channels_last") else torch.contiguous_format
    generator = generator.to(device)
    if memory_format == torch.channels_last:
        generator = generator.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    return generator, nmfc.to(device, memory_format=memory_format), previous.to(device, memory_format=memory_format)


def inference_fps(size: str, variant: str, device: torch.device, warmup: int, runs: int) -> dict[str, float]:
    """Return the median milliseconds, frames/s (from the median) and fastest milliseconds of one served G call."""
    generator, nmfc, previous = served_generator(size, device, variant)

    def step() -> None:
        with torch.inference_mode(), precision(variant, device):
            generator(nmfc, previous)

    ms, fastest = timings_ms(step, warmup, runs, device)
    return {"ms": round(ms, 2), "fps": round(1000 / ms, 2), "min_ms": round(fastest, 2)}


def training_step_ms(size: str, device: torch.device, warmup: int, runs: int, num_identities: int = 8) -> float:
    """Return the median milliseconds of one G + D_I training step (batch 1, float32) for `size`."""
    config = load_model_config(size)
    torch.manual_seed(0)
    generator = Generator(config.generator).to(device).train()
    discriminator = ImageDiscriminator(load_discriminator_config(size), num_identities).to(device).train()
    g_optimiser = torch.optim.Adam(generator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    d_optimiser = torch.optim.Adam(discriminator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    px = config.size_px
    nmfc = torch.rand(1, config.generator.condition_channels, px, px, device=device)
    previous = torch.rand(1, config.generator.previous_channels, px, px, device=device) * 2 - 1
    identity = torch.nn.functional.normalize(torch.randn(1, config.identity_dim, device=device), dim=1)
    real = torch.rand(1, 3, px, px, device=device) * 2 - 1
    real_mask = (torch.rand(1, 1, px, px, device=device) > 0.5).float()
    index = torch.zeros(1, dtype=torch.long, device=device)
    current_nmfc = nmfc[:, -3:]

    def step() -> None:
        out = generator(nmfc, previous, identity)
        d_real = discriminator(real, current_nmfc, index)
        d_fake = discriminator(out.frame.detach(), current_nmfc, index)
        d_loss = hinge_discriminator_loss(d_real.scores, d_fake.scores)
        d_optimiser.zero_grad(set_to_none=True)
        d_loss.backward()
        d_optimiser.step()
        g_fake = discriminator(out.frame, current_nmfc, index)
        g_loss = (
            hinge_generator_loss(g_fake.scores)
            + 10 * feature_matching_loss(d_real.features, g_fake.features)
            + mask_loss(out.mask, real_mask)
        )
        g_optimiser.zero_grad(set_to_none=True)
        g_loss.backward()
        g_optimiser.step()

    return round(timings_ms(step, warmup, runs, device)[0], 1)


def parameters(size: str) -> dict[str, int]:
    """Return the parameter counts of G (before conversion) and D_I (8 identities) for `size`."""
    generator = Generator(load_model_config(size).generator)
    discriminator = ImageDiscriminator(load_discriminator_config(size), 8)
    return {
        "generator": sum(p.numel() for p in generator.parameters()),
        "image_discriminator": sum(p.numel() for p in discriminator.parameters()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="few runs, no markdown row")
    args = parser.parse_args()
    devices = [torch.device("cpu")]
    if torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    # (warm-up, timed runs): base@256 takes seconds a frame on a small CPU.
    runs = {"tiny": (1, 3), "base": (1, 2)} if args.quick else {"tiny": (5, 30), "base": (2, 10)}
    train_runs = (1, 2) if args.quick else (3, 15)
    results: dict[str, Any] = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "batch": 1,
        "parameters": {size: parameters(size) for size in ("tiny", "base")},
    }
    for device in devices:
        on_device: dict[str, Any] = {}
        for size in ("tiny", "base"):
            warmup, timed = runs[size]
            if device.type == "cuda":
                warmup, timed = warmup + 10, timed * 5
            px = load_model_config(size).size_px
            on_device[f"{size}@{px}"] = {
                variant: inference_fps(size, variant, device, warmup, timed) for variant in VARIANTS
            }
        sizes = ("tiny", "base") if device.type == "cuda" else ("tiny",)
        on_device["train_step_ms"] = {size: training_step_ms(size, device, *train_runs) for size in sizes}
        if device.type == "cuda":
            on_device["gpu"] = torch.cuda.get_device_name(device)
        results[device.type] = on_device
        print(device.type, on_device)
    cpu = results["cpu"]
    summary = (
        "G fps (CPU, batch 1) eager/channels-last/bf16/bf16+channels-last: tiny@128 "
        + "/".join(f"{cpu['tiny@128'][v]['fps']:.1f}" for v in VARIANTS)
        + ", base@256 "
        + "/".join(f"{cpu['base@256'][v]['fps']:.2f}" for v in VARIANTS)
        + f"; tiny train step {cpu['train_step_ms']['tiny']:.0f} ms"
    )
    if "cuda" in results:
        gpu = results["cuda"]
        summary += (
            f"; {gpu['gpu']}: base@256 "
            + "/".join(f"{gpu['base@256'][v]['fps']:.0f}" for v in VARIANTS)
            + f" fps, base train step {gpu['train_step_ms']['base']:.0f} ms"
        )
    path = record("generator", results, summary, args.quick)
    print(summary)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
