"""Shared by the benchmarks: machine description, JSON results and the markdown table row."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

from base.files import write_json_atomic

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
TABLE = BENCH_DIR / "RESULTS.md"


def machine() -> dict[str, Any]:
    """Return what a reader needs to compare numbers: CPU, cores, memory, Python, platform."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_gib = None
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        memory_gib = round(pages / 2**30, 1)
    except (ValueError, OSError):
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": memory_gib,
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
    }


def commit() -> str:
    """Return the short commit hash of the working tree (with '+' when it has changes)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True, cwd=BENCH_DIR
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], capture_output=True, text=True, check=True, cwd=BENCH_DIR
        ).stdout.strip()
        return head + ("+" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def record(name: str, results: dict[str, Any], summary: str, quick: bool) -> Path:
    """Write results/<name>.json (or <name>-quick.json) and append a row to RESULTS.md; return the JSON path."""
    now = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    m = machine()
    payload = {
        "benchmark": name,
        "date": now,
        "command": " ".join(shlex.quote(a) for a in [Path(sys.executable).name, *sys.argv]),
        "commit": commit(),
        "machine": m,
        "quick": quick,
        "results": results,
    }
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}{'-quick' if quick else ''}.json"
    write_json_atomic(path, payload)
    if not quick:
        if not TABLE.exists():
            TABLE.write_text(
                "# Benchmark results\n\nOne row per full run; the JSON next to each benchmark has the details.\n\n"
                "| date | benchmark | result | machine | command | commit |\n|---|---|---|---|---|---|\n",
                encoding="utf-8",
            )
        row = (
            f"| {now} | {name} | {summary} | {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB | "
            f"`{payload['command']}` | {payload['commit']} |\n"
        )
        with TABLE.open("a", encoding="utf-8") as table:
            table.write(row)
    return path
