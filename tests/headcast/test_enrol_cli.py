"""`headcast enrol` as a user runs it: a real Ray job on a local head, a bundle in the registry."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from base import assets
from edge.annotate import VideoWriter
from edge.capture import VideoFile
from inference.registry import TargetRegistry, target_generator
from training.clips import synthetic_corpus
from training.pretrain import pretrain
from training.trainer_steps import PretrainConfig


@pytest.fixture(scope="module")
def environment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A private cache (so the Ray head is this test's), a private registry, the cached models."""
    root = tmp_path_factory.mktemp("enrol")
    env = dict(os.environ, HEADCAST_CACHE_DIR=str(root / "cache"), HEADCAST_REGISTRY=str(root / "registry"),
               COLUMNS="200")  # fmt: skip
    for name in ("face_landmarker", "face_descriptor", "face_aligner", "selfie_segmentation"):
        env[assets.ASSETS[name].env_var] = str(assets.ensure(name))
    yield env
    subprocess.run([sys.executable, "-m", "headcast", "jobs", "stop-cluster"], env=env, check=False,
                   capture_output=True, timeout=120)  # fmt: skip


def headcast(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "headcast", *args], env=env, capture_output=True, text=True,
                          timeout=600, check=False)  # fmt: skip


def write_video(path: Path, frames: list[np.ndarray]) -> Path:
    height, width = frames[0].shape[:2]
    with VideoWriter(path, width, height, 23.976, crf=18) as writer:
        for frame in frames:
            writer.write(frame)
    return path


def test_enrolment_runs_as_a_ray_job_and_commits_a_servable_bundle(
    environment: dict[str, str], sample_clip: Path, tmp_path: Path
) -> None:
    with VideoFile(sample_clip) as clip:
        woman = [f.rgb for f in clip if 1 <= f.index <= 72]  # her first shot
    video = write_video(tmp_path / "woman.mp4", woman)
    result = headcast(environment, "enrol", str(video), "--name", "woman", "--owner", "ops", "--subject",
                      "The woman of the sample clip", "--profile", "tiny-ci", "--steps", "6")  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "enrolled woman version" in result.stdout.replace("\n", " ")
    listed = headcast(environment, "jobs")
    assert listed.returncode == 0 and "SUCCEEDED" in listed.stdout
    bundle = TargetRegistry(environment["HEADCAST_REGISTRY"]).load("woman")
    assert bundle.metadata.consent.recording_sha256 == assets.sha256_of(video)
    assert bundle.metadata.metrics["frames"] > 0 and 0 <= bundle.metadata.metrics["mask_iou"] <= 1
    generator = target_generator(bundle)
    assert sum(p.numel() for p in generator.parameters()) > 0
    targets = headcast(environment, "targets", "list")
    assert "woman" in targets.stdout and "The woman of the sample clip" in targets.stdout
    evaluated = headcast(environment, "eval", "woman", "--out", str(tmp_path / "eval"))
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    report = json.loads((tmp_path / "eval" / "evaluation.json").read_text())
    assert report["frames"] == bundle.metadata.training["holdout_frames"]
    assert 0 <= report["mask_iou"] <= 1 and report["pixel_distance"] > 0
    assert (tmp_path / "eval" / "side_by_side.mp4").stat().st_size > 0
    base = pretrain(PretrainConfig.load("tiny-ci", steps=2), synthetic_corpus(2, 16, 64, 0),
                    tmp_path / "base", backend="local").checkpoint  # fmt: skip
    ablated = headcast(environment, "eval", "woman", "--out", str(tmp_path / "ablations"), "--ablations", str(base),
                       "--steps", "2", "--profile", "tiny-ci")  # fmt: skip
    assert ablated.returncode == 0, ablated.stderr[-3000:]
    rows = [line.split("|")[1].strip() for line in (tmp_path / "ablations" / "ablations" / "ablations.md")
            .read_text().splitlines() if line.startswith("| ") and not line.startswith("| variant")]  # fmt: skip
    # Every row of the table, the NMFC-only one a dash (no --no-warp-base given).
    assert rows == ["warp alone", "no warp (NMFC only)", "full", "without D_D", "without D_M", "without both",
                    "without stage-1 initialisation"]  # fmt: skip
    unknown = headcast(environment, "eval", "nobody", "--out", str(tmp_path / "eval2"))
    assert unknown.returncode == 1 and "no target 'nobody'" in unknown.stderr


def test_a_faceless_recording_is_refused_before_training(environment: dict[str, str], tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    video = write_video(tmp_path / "noise.mp4", [rng.integers(0, 255, (96, 128, 3), np.uint8) for _ in range(60)])
    result = headcast(environment, "enrol", str(video), "--name", "nobody", "--owner", "ops", "--subject", "x",
                      "--profile", "tiny-ci")  # fmt: skip
    assert result.returncode == 1
    assert "enrolment refused" in result.stdout and "face" in result.stdout
    assert "nobody" not in TargetRegistry(environment["HEADCAST_REGISTRY"]).ids()
    bad_name = headcast(environment, "enrol", str(video), "--name", "../x", "--owner", "o", "--subject", "s")
    assert bad_name.returncode == 1 and "not a valid target id" in bad_name.stderr


def test_the_american_spelling_is_the_same_command_and_not_listed(environment: dict[str, str]) -> None:
    american = headcast(environment, "enroll", "--help")
    assert american.returncode == 0 and "Enrol a new target from a short recording" in american.stdout
    listed = headcast(environment, "--help").stdout
    assert " enrol " in listed and " enroll " not in listed
