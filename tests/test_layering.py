"""The package map's rules, checked on what each package really imports."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def imported_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(' '.join(sorted({{m.split('.')[0] for m in sys.modules}})))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    return set(result.stdout.split())


def test_the_base_needs_nothing_beyond_the_standard_library_and_platformdirs() -> None:
    modules = imported_after("import base, base.assets, base.cache, base.errors, base.files, base.targets")
    heavy = {"numpy", "scipy", "torch", "cv2", "mediapipe", "av", "ray", "aiortc", "pydantic"}
    assert not modules & {*heavy, "face3d", "edge", "inference", "signaling", "training", "headcast", "configs"}


def test_face3d_needs_nothing_heavier_than_scipy() -> None:
    modules = imported_after("import face3d, face3d.topology, face3d.coefficients, face3d.pose, wire")
    assert not modules & {"torch", "cv2", "mediapipe", "av", "ray", "aiortc", "dlib", "pydantic", "edge"}


@pytest.mark.parametrize("module", ["edge", "edge.pipeline", "edge.annotate", "headcast.cli"])
def test_the_edge_and_the_cli_never_import_torch(module: str) -> None:
    assert "torch" not in imported_after(f"import {module}")


def test_an_edge_only_install_pulls_no_torch() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    edge_only = project["dependencies"] + project["optional-dependencies"]["edge"]
    assert not [d for d in edge_only if d.split("[")[0].split("=")[0].split(">")[0].strip() in {"torch", "ray"}]
