"""NMFC rendering speed on one core: the vectorised rasteriser against the naive per-triangle loop.

For each image size, the canonical face (frontal, lips parted, filling 80% of the image height) is
rendered by `rasterise` (triangle ids), by `render_nmfc` (the whole frame: projection, raster, NMFC
colours per triangle centre, mouth box) and by `rasterise_naive` in the same run; the table holds
medians in ms/frame and the naive/vectorised ratio.

Each configuration runs in a child process pinned to core 0 with single-threaded BLAS, twice: with
glibc's default allocator settings and with its trim/mmap thresholds raised
(MALLOC_TRIM_THRESHOLD_, MALLOC_MMAP_THRESHOLD_). On virtual machines a freshly faulted page costs
microseconds, and the default settings hand large temporaries back to the kernel after every
frame; a serving process can set the two variables, so both numbers are reported.

    python ops/bench/nmfc.py           # full: 128², 256², 512²
    python ops/bench/nmfc.py --quick   # smoke: 128², 256², few repetitions
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
import numpy.typing as npt
from _record import record

from face3d.nmfc import INNER_LIP_LOOP, nmfc_topology, project_scaled_orthographic, render_nmfc
from face3d.raster import Raster, rasterise, rasterise_naive
from face3d.topology import load_canonical_mesh

SINGLE_THREAD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
TUNED_ENV = {"MALLOC_TRIM_THRESHOLD_": str(1 << 30), "MALLOC_MMAP_THRESHOLD_": str(1 << 30)}


def _median_ms(run: Callable[[], object], repeats: int) -> float:
    """Return the median wall time of `run` in milliseconds over `repeats` calls (after one warm-up)."""
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e3)


def _ids(
    rasteriser: Callable[[npt.ArrayLike, npt.ArrayLike, tuple[int, int]], Raster],
    vertices: npt.ArrayLike,
    triangles: npt.ArrayLike,
    size: tuple[int, int],
) -> npt.NDArray[np.int32]:
    """Return the triangle-id image of one rasterisation (what a frame needs at the least)."""
    return rasteriser(vertices, triangles, size).triangle_id


def _measure(sizes: list[int], repeats: int, naive_repeats: int) -> dict[str, Any]:
    """Return {size: {vectorised_ms, render_nmfc_ms, naive_ms, ratio, covered_fraction}} in this process."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {0})
    mesh = load_canonical_mesh()
    topology = nmfc_topology(mesh)
    vertices = mesh.vertices.astype(np.float64)
    # Part the lips by lowering the chin region 1 cm, so the mouth is an open hole as in speech.
    lip_line = vertices[list(INNER_LIP_LOOP), 1].mean()
    vertices[:, 1] -= np.clip((lip_line - vertices[:, 1]) / 0.3, 0, 1) * np.exp(-((vertices[:, 0] / 4) ** 2))
    rotation = np.eye(3)
    face_height_cm = float(vertices[:, 1].max() - vertices[:, 1].min())
    out: dict[str, Any] = {}
    for size in sizes:
        scale = 0.8 * size / face_height_cm
        translation = (size / 2, size / 2 + 0.05 * size)
        projected = project_scaled_orthographic(vertices, rotation, scale, translation)
        shape = (size, size)
        fast = rasterise(projected, topology.triangles, shape)
        naive = rasterise_naive(projected, topology.triangles, shape)
        if not np.array_equal(fast.triangle_id, naive.triangle_id):
            raise SystemExit(f"rasterise and rasterise_naive disagree at {size}²")
        vectorised_ms = _median_ms(partial(_ids, rasterise, projected, topology.triangles, shape), repeats)
        render_ms = _median_ms(partial(render_nmfc, vertices, rotation, scale, translation, shape, topology), repeats)
        naive_ms = _median_ms(partial(_ids, rasterise_naive, projected, topology.triangles, shape), naive_repeats)
        out[str(size)] = {
            "vectorised_ms": round(vectorised_ms, 3),
            "render_nmfc_ms": round(render_ms, 3),
            "naive_ms": round(naive_ms, 3),
            "ratio": round(naive_ms / vectorised_ms, 1),
            "covered_fraction": round(float(fast.mask.mean()), 3),
        }
    return out


def _child(tuned: bool, sizes: list[int], repeats: int, naive_repeats: int) -> dict[str, Any]:
    """Return the measurements of a fresh child process (allocator settings apply from its start)."""
    # Thread counts and allocator settings are read when a process starts, hence a child each.
    env = {**os.environ, **SINGLE_THREAD_ENV, **(TUNED_ENV if tuned else {})}
    if not tuned:
        for name in TUNED_ENV:
            env.pop(name, None)
    command = [sys.executable, __file__, "--child", "--sizes", *map(str, sizes)]
    command += ["--repeats", str(repeats), "--naive-repeats", str(naive_repeats)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def main() -> None:
    """Run the benchmark; write its JSON and (full mode) its row in RESULTS.md."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run: 128² and 256², few repetitions")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--sizes", type=int, nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--naive-repeats", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_measure(args.sizes, args.repeats, args.naive_repeats)))
        return
    sizes = [128, 256] if args.quick else [128, 256, 512]
    repeats, naive_repeats = (20, 3) if args.quick else (300, 15)
    results: dict[str, Any] = {
        "pose": "frontal, lips parted 1 cm, face 80% of the image height",
        "default_allocator": _child(False, sizes, repeats, naive_repeats),
        "tuned_allocator": _child(True, sizes, repeats, naive_repeats),
        "tuned_env": TUNED_ENV,
    }
    for label in ("default_allocator", "tuned_allocator"):
        for size, row in results[label].items():
            print(
                f"{label:18} {size:>4}²  vectorised {row['vectorised_ms']:7.3f} ms  "
                f"render_nmfc {row['render_nmfc_ms']:7.3f} ms  naive {row['naive_ms']:8.3f} ms  ×{row['ratio']}"
            )
    summary = "; ".join(
        f"{size}²: {row['vectorised_ms']:.2f} ms (NMFC {row['render_nmfc_ms']:.2f}; tuned "
        f"{results['tuned_allocator'][size]['vectorised_ms']:.2f}) vs naive {row['naive_ms']:.1f} ms, ×{row['ratio']}"
        for size, row in results["default_allocator"].items()
    )
    path = record("nmfc", results, "one core, median ms/frame: " + summary, args.quick)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
