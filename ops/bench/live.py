"""Live sessions end to end: latency per stage and sustained fps for 1, 4 and 8 concurrent sessions.

Everything real and on this machine: local Ray with the Serve app `avatar` (one CPU replica, eager,
the demo's enrolled woman at 128² — her reference frames warped along the mesh and refined by the
`cpu` generator — composited frames at 256²), the gateway on loopback, and N Python edge clients
(`SenderClient`) each driving its own room at 25 fps with a talking face (jawOpen oscillating, the
head turning).

Per session count: the coefficient → "rendered" round trip (p50/p95 over every session's frames),
the rendered fps per session (frames the gateway rendered ÷ seconds streamed), the self-view fps, the
gateway's per-stage p50/p95 from its /metrics histograms (queue, render = the Serve call, and on
the replica nmfc, warp, generator, composite), and frames dropped as superseded (rendering fell behind;
newest wins). Uplink: the compact wire's bytes per frame next to libx264 (CRF 23, preset medium,
zerolatency) of the same session's received 256² avatar frames. The coefficients are synthetic
(most blendshapes zero), so they compress below the sample clip's 29 B/frame (ops/bench/bandwidth.py).

On one 2-core machine the replica shares the CPU with the gateway's VP8 encoders and every client's
VP8 decoder (each session's self-view): the numbers are the whole system's on that machine, not
the replica's capacity.

    python ops/bench/live.py            # 1, 4, 8 sessions × 20 s
    python ops/bench/live.py --quick    # 1 and 2 sessions × 5 s
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import numpy.typing as npt
from _record import record
from bandwidth import x264_sizes

from face3d.coefficients import Coefficients

FPS = 25
TARGET = "woman"


async def talking(fps: int, seconds: float, phase: float) -> AsyncIterator[Coefficients]:
    """Yield `seconds` of a talking, gently turning face at `fps`."""
    for seq in range(round(fps * seconds)):
        blendshapes = np.zeros(52, np.float32)
        blendshapes[25] = 0.5 + 0.5 * np.sin(seq / 4 + phase)
        rotation = np.array([0.0, 0.25 * np.sin(seq / 20 + phase), 0.0], np.float32)
        yield Coefficients(seq, round(seq * 1000 / fps), blendshapes, rotation, np.zeros(2, np.float32), 0.0135)
        await asyncio.sleep(0)


def bench_registry() -> str:
    """Return the registry of the demo's enrolled woman (target "woman"), enrolling her first when the
    demo has not (headcast.demo.ensure_demo_target: minutes, once): the served avatar as users get it,
    her reference frames warped and refined."""
    from base import assets
    from headcast.demo import demo_cache, ensure_demo_target

    registry, _ = ensure_demo_target(assets.resolve("sample_clip"), demo_cache(), print)
    return registry


async def run_sessions(count: int, seconds: float) -> dict[str, Any]:
    """Return the measurements of `count` concurrent sessions streaming for `seconds`."""
    from edge.client import SenderClient
    from headcast.demo import stage_quantiles_ms
    from signaling.auth import mint_token
    from signaling.config import GatewayConfig
    from signaling.gateway import start_gateway
    from signaling.renderer import ServeRenderer

    secret = os.urandom(32)
    gateway = await start_gateway(GatewayConfig.load(port=0), ServeRenderer("avatar"), secret)
    frames: list[npt.NDArray[np.uint8]] = []
    try:
        clients = [
            SenderClient(
                gateway.url,
                mint_token(secret, f"s{i}", f"room{i}", "send", (TARGET,)),
                TARGET,
                fps=FPS,
                on_frame=frames.append if i == 0 else None,
            )
            for i in range(count)
        ]
        began = time.monotonic()
        stats = await asyncio.gather(*(c.run(talking(FPS, seconds, i), realtime=True) for i, c in enumerate(clients)))
        elapsed = time.monotonic() - began
        stages = await stage_quantiles_ms(gateway.url, (0.5, 0.95))
    finally:
        await gateway.stop()
    rendered = [s.gateway_rendered for s in stats]
    avatar = [f for f in frames if float(np.std(f)) >= 1.0][-100:]
    x264 = (
        x264_sizes([np.ascontiguousarray(f) for f in avatar], FPS)
        if avatar and avatar[0].shape[:2] == (256, 256)
        else []
    )
    return {
        "sessions": count,
        "seconds": round(elapsed, 1),
        "round_trip_ms_p50": _median([s.round_trip_ms_p50 for s in stats]),
        "round_trip_ms_p95": _median([s.round_trip_ms_p95 for s in stats]),
        "rendered_fps_per_session": round(float(np.median(rendered)) / seconds, 1),
        "self_view_fps": round(float(np.median([s.frames_received for s in stats])) / elapsed, 1),
        "superseded_per_session": float(np.median([s.gateway_dropped.get("superseded", 0) for s in stats])),
        "uplink_bytes_per_frame": round(float(np.mean([s.bytes_per_frame for s in stats])), 1),
        "x264_bytes_per_frame": round(float(np.mean(x264)), 1) if x264 else None,
        "stage_ms": stages,
    }


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(float(np.median(present)), 1) if present else None


def main() -> None:
    """Run the benchmark and record it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 and 2 sessions × 5 s (CI smoke)")
    parser.add_argument("--runtime", default="eager", help="the generator's runtime (configs/serving.yaml: runtime)")
    parser.add_argument("--sessions", type=int, nargs="*", help="session counts to run (default 1 4 8; quick 1 2)")
    args = parser.parse_args()
    counts, seconds = ((1, 2), 5.0) if args.quick else ((1, 4, 8), 20.0)
    counts = tuple(args.sessions) if args.sessions else counts
    import ray
    from ray import serve

    from inference.serve_app import run_app
    from inference.serve_config import ServingConfig

    registry = bench_registry()
    ray.init(include_dashboard=False, log_to_driver=False)
    try:
        run_app(ServingConfig.load(registry=registry, num_cpus=0.0, runtime=args.runtime))
        asyncio.run(run_sessions(1, 2.0))  # warm-up: the replica loads the target
        runs = [asyncio.run(run_sessions(n, seconds)) for n in counts]
    finally:
        serve.shutdown()
        ray.shutdown()
    for run in runs:
        print(run)
    one = runs[0]
    ratio = (one["x264_bytes_per_frame"] or 0) / max(one["uplink_bytes_per_frame"], 1e-9)
    summary = (
        "; ".join(
            f"{r['sessions']} session(s): {r['rendered_fps_per_session']} fps each, "
            f"round trip p50 {r['round_trip_ms_p50']} ms"
            for r in runs
        )
        + f"; uplink {one['uplink_bytes_per_frame']} B/frame vs x264 {one['x264_bytes_per_frame']} ({ratio:.0f}×)"
    )
    summary = f"runtime {args.runtime}: " + summary
    name = "live" if args.runtime == "eager" else f"live-{args.runtime}"
    record(name, {"fps_target": FPS, "seconds": seconds, "runtime": args.runtime, "runs": runs}, summary,
           quick=args.quick)  # fmt: skip


if __name__ == "__main__":
    main()
