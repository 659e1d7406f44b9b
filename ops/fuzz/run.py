"""Run one fuzz target under atheris (coverage-guided, libFuzzer).

    python ops/fuzz/run.py NAME [libFuzzer flags] [CORPUS…]

NAME is one of ops/fuzz/targets.py's TARGETS. The flags and folders are libFuzzer's: new interesting
inputs go to the first folder, the others are read; with no folder the target's committed corpus
(ops/fuzz/corpus/NAME) is read and new inputs go to a temporary folder. For example, a ten-minute run
that grows a scratch corpus from the committed one:

    python ops/fuzz/run.py wire -max_total_time=600 /tmp/wire-corpus ops/fuzz/corpus/wire

A crash stops the run, prints the traceback and writes the input to `crash-<sha1>` (-artifact_prefix=
chooses where); `python ops/fuzz/run.py NAME crash-<sha1>` replays it. The code under test is
instrumented for coverage; the rest of the interpreter (numpy, torch, aiohttp …) is not.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import atheris

ROOT = Path(__file__).resolve().parents[2]
CORPUS = Path(__file__).resolve().parent / "corpus"
OURS = ("wire", "signaling", "inference", "edge", "training", "base", "face3d")  # instrumented packages


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1].startswith("-"):
        raise SystemExit(__doc__)
    sys.path.insert(0, str(ROOT))
    from ops.fuzz.targets import TARGETS

    name, rest = sys.argv[1], sys.argv[2:]
    if name not in TARGETS:
        raise SystemExit(f"no fuzz target {name!r}; targets: {', '.join(TARGETS)}")
    target = TARGETS[name]
    with atheris.instrument_imports(include=list(OURS)):
        target(b"")  # imports what it reads, instrumented for coverage
    if not any(not arg.startswith("-") for arg in rest):
        rest += [tempfile.mkdtemp(prefix=f"fuzz-{name}-"), str(CORPUS / name)]  # new inputs go to the first
    atheris.Setup([sys.argv[0], *rest], target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
