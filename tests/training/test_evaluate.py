"""§4's evaluation: metric sanity on perfect and noise generators, report files, the ablation table.

The target is one synthetic person (seed 11) at 64²: 50 training frames and 8 held-out frames.
The "perfect" generator hands back the real frame and mask whose NMFC matches its input; the
"noise" generator draws uniform frames and masks. The ablations run for real: a 4-step tiny-ci
base and 2 fine-tuning steps per variant (the numbers are not compared, only the table's shape).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import cast

import av
import cv2
import numpy as np
import pytest
import torch
from torch import Tensor, nn

from inference.networks import Generator, GeneratorConfig
from inference.networks.generator import GeneratorOutput
from training.clips import Clip, synthetic_corpus
from training.enrol import EnrolConfig
from training.evaluate import (
    ABLATIONS,
    CONTACT_SHEET,
    REPORT_JSON,
    REPORT_MARKDOWN,
    VIDEO_FILE,
    EvaluationError,
    EvaluationReport,
    IdentityFeatures,
    ablation_table,
    evaluate,
    run_ablations,
)
from training.finetune import split_holdout
from training.metrics import frechet_distance
from training.pretrain import PretrainConfig, pretrain

SIZE_PX = 64
HELD_FRAMES = 8


class PerfectGenerator(nn.Module):
    """G's call signature; returns the real frame and mask of the clip frame whose NMFC is the input's newest."""

    def __init__(self, clips: list[Clip]) -> None:
        super().__init__()
        self.config = GeneratorConfig(nmfc_frames=3, previous_frames=2)
        nmfc = np.concatenate([clip.nmfc for clip in clips])
        self.register_buffer("nmfc", torch.from_numpy(nmfc).permute(0, 3, 1, 2).float() / 255)
        frames = np.concatenate([clip.frames for clip in clips])
        self.register_buffer("frames", torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 127.5 - 1)
        masks = np.concatenate([clip.masks for clip in clips])
        self.register_buffer("masks", torch.from_numpy(masks).float().unsqueeze(1) / 255)

    def forward(self, nmfc: Tensor, previous: Tensor, identity: Tensor | None = None) -> GeneratorOutput:
        """Return the frames (B, 3, H, W) and masks (B, 1, H, W) of the nearest stored NMFC."""
        newest = nmfc[:, -3:]
        stored = self.get_buffer("nmfc")
        index = (newest[:, None] - stored[None]).pow(2).flatten(2).mean(2).argmin(1)
        return GeneratorOutput(self.get_buffer("frames")[index], self.get_buffer("masks")[index])


class NoiseGenerator(nn.Module):
    """G's call signature; returns uniform noise frames in [−1, 1] and uniform masks, seeded."""

    def __init__(self) -> None:
        super().__init__()
        self.config = GeneratorConfig(nmfc_frames=3, previous_frames=2)
        self.random = torch.Generator().manual_seed(0)

    def forward(self, nmfc: Tensor, previous: Tensor, identity: Tensor | None = None) -> GeneratorOutput:
        """Return noise frames (B, 3, H, W) and masks (B, 1, H, W) of the NMFC's size."""
        batch, _, height, width = nmfc.shape
        frame = torch.rand(batch, 3, height, width, generator=self.random) * 2 - 1
        return GeneratorOutput(frame, torch.rand(batch, 1, height, width, generator=self.random))


@pytest.fixture(scope="module")
def target() -> list[Clip]:
    """One synthetic person unseen by the base, 50 + HELD_FRAMES frames at 64²."""
    return synthetic_corpus(identities=1, frames=50 + HELD_FRAMES, size_px=SIZE_PX, seed=11)


@pytest.fixture(scope="module")
def features() -> IdentityFeatures:
    """dlib's identity network, loaded once."""
    return IdentityFeatures()


@pytest.fixture(scope="module")
def perfect_report(
    target: list[Clip], features: IdentityFeatures, tmp_path_factory: pytest.TempPathFactory
) -> EvaluationReport:
    """The report of the perfect generator on the held-out frames."""
    generator = cast(Generator, PerfectGenerator(target))
    return evaluate(generator, target, tmp_path_factory.mktemp("perfect"), HELD_FRAMES, features=features)


def test_a_perfect_generator_scores_zero_distances_and_full_overlap(perfect_report: EvaluationReport) -> None:
    # Frames go through (x / 127.5 − 1 + 1) · 127.5 in float32: errors of ~1e-5 of 255.
    assert perfect_report.frames == HELD_FRAMES
    assert perfect_report.pixel_distance < 1e-3
    assert perfect_report.masked_pixel_distance < 1e-3
    assert perfect_report.mask_iou == 1.0
    # Identical uint8 frames give identical descriptors, and the ridge is added to both covariances.
    assert perfect_report.identity_frechet_distance == pytest.approx(0.0, abs=1e-9)
    assert perfect_report.temporal_difference_error < 1e-3
    assert perfect_report.generated_motion == pytest.approx(perfect_report.real_motion, abs=1e-3)
    assert perfect_report.real_motion > 0  # the synthetic person moves: the flicker measure is not vacuous
    assert perfect_report.sharpness_ratio == 1.0  # the same frames: the same Laplacian, ratio exactly 1


def test_a_noise_generator_scores_large_distances(
    target: list[Clip], features: IdentityFeatures, perfect_report: EvaluationReport, tmp_path: Path
) -> None:
    report = evaluate(cast(Generator, NoiseGenerator()), target, tmp_path, HELD_FRAMES, features=features)
    # ‖d‖ ≥ |d_c| and E|u − r| ≥ 255/4 for u uniform on [0, 255] whatever r is: ≥ 63.75 per pixel.
    assert report.pixel_distance > 60
    assert report.masked_pixel_distance > 60
    # A mask independent of the real one, on with probability 1/2: IoU = |R|/2 / (|R| + |B|/2) < 1/2.
    assert report.mask_iou < 0.5
    # Consecutive noise frames differ by |u1 − u2| with mean 255/3 = 85 per channel; the real steps are small.
    assert report.temporal_difference_error > 60
    assert report.identity_frechet_distance > 0.05
    assert report.identity_frechet_distance > 100 * perfect_report.identity_frechet_distance
    assert report.identity_distance > perfect_report.identity_distance
    # Uniform noise has far more Laplacian energy than a smooth face: no sharpness is lost, it is exceeded.
    assert report.sharpness_ratio > 1


def test_report_files_parse_and_the_video_is_side_by_side(
    target: list[Clip], features: IdentityFeatures, tmp_path: Path
) -> None:
    report = evaluate(cast(Generator, PerfectGenerator(target)), target, tmp_path, HELD_FRAMES, features=features)
    saved = json.loads((tmp_path / REPORT_JSON).read_text(encoding="utf-8"))
    assert saved["frames"] == HELD_FRAMES
    assert saved["pixel_distance"] == pytest.approx(report.pixel_distance)
    assert "ArcFace" in saved["feature_network"] and "dlib" in saved["feature_network"]
    assert "1e-06·I" in saved["covariance"]
    markdown = (tmp_path / REPORT_MARKDOWN).read_text(encoding="utf-8")
    assert "identity FD" in markdown and "mask IoU" in markdown
    with av.open(str(tmp_path / VIDEO_FILE)) as container:
        decoded = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    assert len(decoded) == HELD_FRAMES
    assert decoded[0].shape == (SIZE_PX, 4 * SIZE_PX, 3)  # real | NMFC | warped reference | generated
    sheet = cv2.imread(str(tmp_path / CONTACT_SHEET))
    assert sheet is not None and sheet.shape[1] == 4 * max(SIZE_PX, 64)
    assert "same person" in markdown and "sharpness ratio" in markdown


def test_frechet_distance_of_shifted_features_is_the_squared_shift() -> None:
    rng = np.random.default_rng(0)
    real = rng.normal(size=(20, 128))
    # Same covariance, mean moved by 0.5 in 4 dimensions: d² = 4 · 0.25 exactly (the trace terms cancel).
    shifted = real.copy()
    shifted[:, :4] += 0.5
    assert frechet_distance(real, shifted) == pytest.approx(1.0, abs=1e-6)


def test_too_few_held_out_frames_are_refused(target: list[Clip], tmp_path: Path) -> None:
    with pytest.raises(EvaluationError, match="at least 2"):
        evaluate(cast(Generator, NoiseGenerator()), target, tmp_path, 1)


def test_ablations_fill_the_warp_rows_and_the_papers_five_rows_in_order(target: list[Clip], tmp_path: Path) -> None:
    corpus = synthetic_corpus(identities=2, frames=12, size_px=SIZE_PX, seed=0)
    bases = {}
    for name, generator in (("warp", {}), ("no-warp", {"warp_references": 0})):
        base_config = PretrainConfig.load("tiny-ci", steps=4, checkpoint_every=4, sample_every=4, generator=generator)
        bases[name] = pretrain(base_config, corpus, tmp_path / name, backend="local").checkpoint
    train, held = split_holdout(target, HELD_FRAMES, 3)
    config = EnrolConfig.load("tiny-ci").finetune
    results = run_ablations(train, held, bases["warp"], config, tmp_path / "ablations", steps=2,
                            no_warp_base=bases["no-warp"])  # fmt: skip
    assert list(results) == list(ABLATIONS)
    table = ablation_table(results)
    rows = [line.split("|")[1].strip() for line in table.splitlines()[2:]]
    assert rows == list(ABLATIONS)
    assert all(report.frames == HELD_FRAMES for report in results.values())
    assert (tmp_path / "ablations" / "ablations.md").read_text(encoding="utf-8").count("\n| ") == len(ABLATIONS) + 1
    assert set(json.loads((tmp_path / "ablations" / "ablations.json").read_text(encoding="utf-8"))) == set(ABLATIONS)
    # The warp alone is the untrained warp G: on a synthetic person (exact meshes) it is far nearer the
    # real frames than the NMFC-only G after the same two steps from a 4-step base.
    alone, painted = results["warp alone"], results["no warp (NMFC only)"]
    assert alone.masked_pixel_distance < 0.5 * painted.masked_pixel_distance
    assert (tmp_path / "ablations" / "warp-alone" / CONTACT_SHEET).is_file()


def test_the_table_marks_missing_variants_and_refuses_unknown_ones(perfect_report: EvaluationReport) -> None:
    table = ablation_table({"full": perfect_report})
    lines = table.splitlines()
    full = 2 + ABLATIONS.index("full")
    assert lines[full].startswith("| full | 0.00 |")
    assert all("—" in line for i, line in enumerate(lines[2:], 2) if i != full)
    with pytest.raises(EvaluationError, match="unknown ablation"):
        ablation_table({"without E": perfect_report})
