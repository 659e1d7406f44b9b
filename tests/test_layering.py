"""The package map's rules (docs/design.md, "Packages"), all in one place, checked on what each package imports.

Each check imports modules in a fresh interpreter and looks at `sys.modules`, so an import hidden
three modules deep breaks a rule as surely as one at the top of the file.
"""

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


def test_the_live_client_imports_nothing_of_the_server_side() -> None:
    modules = imported_after("import edge.client, edge.live, edge.display, edge.stats")
    assert not modules & {"torch", "ray", "signaling", "inference", "training", "aiohttp", "jwt"}


def test_the_gateway_reaches_the_serve_app_by_name_without_torch() -> None:
    # The torch-free request types of inference.protocol, and nothing else of inference.
    modules = imported_after("import signaling.gateway, signaling.enrolment, signaling.pages")
    assert not modules & {"torch", "training"}
    code = "import sys, signaling.gateway; print(sorted(m for m in sys.modules if m.startswith('inference')))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert result.stdout.strip() in ("[]", "['inference', 'inference.protocol']")


def test_inference_never_imports_training() -> None:
    modules = imported_after("import inference.serve_app, inference.registry, inference.runtimes, inference.avatar")
    assert not modules & {"training", "headcast"}


def test_training_never_imports_the_cli() -> None:
    modules = imported_after("import training.enrol, training.enrol_job, training.pretrain, training.evaluate")
    assert "headcast" not in modules
