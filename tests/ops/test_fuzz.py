"""The fuzz targets (ops/fuzz/targets.py) under atheris, bounded, and every input a fuzzer ever crashed them with.

Each target runs coverage-guided for HEADCAST_FUZZ_SECONDS (10 s by default) from its committed corpus
and must finish clean: no parser raises anything but its documented error. The crash inputs kept in
the corpora (`crash-*`, `regression-*`) replay in-process first, each a test of its own, so a fix that
is undone fails by name.
"""

from __future__ import annotations

import importlib.util
import os
import re
import resource
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
FUZZ = ROOT / "ops" / "fuzz"
SECONDS = int(os.environ.get("HEADCAST_FUZZ_SECONDS", "10"))
MAX_RUNS = 2_000_000  # a bound besides the time, for the fastest targets


def load_targets() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fuzz_targets", FUZZ / "targets.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TARGETS = load_targets().TARGETS
FOUND = sorted(p for p in (FUZZ / "corpus").glob("*/*") if p.name.startswith(("crash-", "regression-")))


def test_every_target_has_a_committed_corpus() -> None:
    assert sorted(TARGETS) == sorted(p.name for p in (FUZZ / "corpus").iterdir() if any(p.iterdir()))


@pytest.mark.parametrize("found", FOUND, ids=[f"{p.parent.name}/{p.name[:20]}" for p in FOUND])
def test_what_a_fuzzer_found_is_refused_cleanly(found: Path) -> None:
    TARGETS[found.parent.name](found.read_bytes())


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(TARGETS))
def test_the_target_fuzzes_clean_for_its_bounded_time(name: str, tmp_path: Path) -> None:
    # libFuzzer's memory guard reads the peak RSS, which a child inherits from this (large) test process:
    # the limit is 2 GiB above what the child starts with.
    rss_limit_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024 + 2048
    command = [sys.executable, str(FUZZ / "run.py"), name, f"-max_total_time={SECONDS}", f"-runs={MAX_RUNS}",
               f"-rss_limit_mb={rss_limit_mb}",
               f"-artifact_prefix={tmp_path}/", str(tmp_path / "new"), str(FUZZ / "corpus" / name)]  # fmt: skip
    (tmp_path / "new").mkdir()
    run = subprocess.run(command, check=False, capture_output=True, text=True, errors="replace", timeout=SECONDS + 300)
    crashes = list(tmp_path.glob("crash-*"))
    assert run.returncode == 0 and not crashes, f"{name} crashed ({crashes}):\n{run.stderr[-4000:]}"
    done = re.search(r"Done (\d+) runs", run.stderr)
    assert done is not None and int(done.group(1)) > 0, run.stderr[-2000:]
    print(f"{name}: {done.group(1)} inputs in {SECONDS} s, clean")
