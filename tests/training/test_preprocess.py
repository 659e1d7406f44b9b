"""Preprocessing: crops, runs, NMFC in crop coordinates, and a real run on Ray over a tiny corpus.

The corpus is built from the sample clip: its frames 1-60 (the woman, one shot) as `woman/a.mp4`,
a corrupt, a truncated and a not-a-video file under `broken/`, and a noise video under `faceless/`.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from configs import ConfigError
from edge.tracking import TrackedFrame
from face3d import load_canonical_mesh, nmfc_topology
from training.clips import Clip
from training.corpus import CorpusError
from training.geometry import CropBox, FittedFrame, nmfc_frame, nmfc_in_crop
from training.preprocess import (
    MANIFEST_FILE,
    PreprocessConfig,
    PreprocessReport,
    consecutive_runs,
    crop_boxes,
    crop_square,
    load_corpus_clips,
    preprocess_corpus,
)

SIZE_PX = 64
WOMAN_FRAMES = range(1, 61)  # the sample clip's first shot: the woman alone


# --- pieces --------------------------------------------------------------------------------------------------------


def frame(index: int, shot: int = 0) -> TrackedFrame:
    return TrackedFrame(index, index * 40, (64, 64), None, None, None, shot=shot)


def test_runs_split_at_gaps_and_cuts() -> None:
    frames = [frame(i) for i in (0, 1, 2, 4, 5)] + [frame(i, shot=1) for i in (6, 7)]
    runs = consecutive_runs(frames[::-1])
    assert [[f.index for f in run] for run in runs] == [[0, 1, 2], [4, 5], [6, 7]]


def test_crop_boxes_keep_one_size_and_smooth_the_centre() -> None:
    rng = np.random.default_rng(0)
    base = rng.uniform(0, 100, size=(1, 468, 2))
    jitter = np.array([[3.0, -3.0] if t % 2 else [-3.0, 3.0] for t in range(20)])
    landmarks = base + np.array([200.0, 100.0]) + jitter[:, None, :]
    boxes = crop_boxes(landmarks, margin=1.5, smooth_frames=5)
    extent = float((base.max(axis=1) - base.min(axis=1)).max())
    assert {b.side for b in boxes} == {round(extent * 1.5)}
    centres = np.array([[b.x0 + b.side / 2, b.y0 + b.side / 2] for b in boxes])
    # A ±3 px alternation averaged over 5 frames leaves ±0.6 px, plus 0.5 px of rounding.
    inner = centres[2:-2] - centres[2:-2].mean(axis=0)
    assert np.abs(inner).max() <= 0.6 + 0.5 + 1e-9
    assert crop_boxes(landmarks[:1], margin=1.5, smooth_frames=5)[0].side == boxes[0].side


def test_crops_pad_with_black_outside_the_image() -> None:
    image = (np.arange(20 * 30 * 3).reshape(20, 30, 3) % 255 + 1).astype(np.uint8)  # no black pixel
    crop = crop_square(image, CropBox(-5, 10, 16), 16)
    assert crop.shape == (16, 16, 3)
    assert not crop[:, :5].any() and not crop[10:].any()
    np.testing.assert_array_equal(crop[:10, 5:], image[10:20, 0:11])
    assert crop_square(image[:, :, 0], CropBox(25, -40, 8), 4).shape == (4, 4)


def fitted_face() -> FittedFrame:
    """The canonical face turned a little, about half the image wide."""
    vertices = load_canonical_mesh().vertices.astype(np.float64)
    return FittedFrame(vertices, np.array([0.1, 0.3, 0.05]), np.array([0.02, -0.03]), 0.5 / 15)


def test_nmfc_in_a_crop_is_the_full_frame_nmfc_cropped() -> None:
    topology = nmfc_topology()
    fitted = fitted_face()
    full = nmfc_frame(fitted, (200, 200), topology)
    # A crop at its own resolution is a pure integer shift: the raster must match pixel for pixel.
    same = nmfc_in_crop(fitted, (200, 200), CropBox(40, 30, 120), 120, topology).to_uint8()
    np.testing.assert_array_equal(same, full[30:150, 40:160])
    # At half the resolution the face covers the same part of the crop, up to the edge pixels.
    half = nmfc_in_crop(fitted, (200, 200), CropBox(40, 30, 120), 60, topology)
    coarse = full[30:150, 40:160].any(axis=2).reshape(60, 2, 60, 2).mean(axis=(1, 3)) >= 0.5
    overlap = (half.mask & coarse).sum() / (half.mask | coarse).sum()
    assert overlap > 0.9
    x0, y0, x1, y1 = half.mouth_box
    assert 0 <= x0 < x1 <= 60 and 0 <= y0 < y1 <= 60


def test_the_packaged_configuration_loads_and_bad_values_are_refused(tmp_path: Path) -> None:
    config = PreprocessConfig.load()
    assert config.size_px == 128 and config.min_run >= 3
    bad = tmp_path / "preprocess.yaml"
    bad.write_text("size_px: 4\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="size_px"):
        PreprocessConfig.load(path=bad)


# --- a real run ------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def local_ray(local_ray_starter: Callable[[], None]) -> Iterator[None]:
    import ray

    local_ray_starter()
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def corpus_dir(sample_clip: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from base import assets
    from edge.annotate import VideoWriter
    from edge.capture import VideoFile

    for name in ("face_landmarker", "face_descriptor", "face_aligner", "selfie_segmentation"):
        assets.ensure(name)
    root = tmp_path_factory.mktemp("corpus")
    with VideoFile(sample_clip) as source:
        info = source.info
        with VideoWriter(root / "woman" / "a.mp4", info.width, info.height, info.fps) as writer:
            for decoded in source:
                if decoded.index in WOMAN_FRAMES:
                    writer.write(decoded.rgb)
                if decoded.index >= WOMAN_FRAMES[-1]:
                    break
    rng = np.random.default_rng(1)
    with VideoWriter(root / "faceless" / "noise.mp4", 160, 128, 24) as writer:
        for _ in range(24):
            writer.write(rng.integers(0, 256, size=(128, 160, 3), dtype=np.uint8))
    (root / "broken").mkdir()
    (root / "broken" / "corrupt.avi").write_bytes(rng.integers(0, 256, size=4096, dtype=np.uint8).tobytes())
    video = (root / "woman" / "a.mp4").read_bytes()
    (root / "broken" / "truncated.mp4").write_bytes(video[: len(video) * 2 // 5])
    (root / "broken" / "notes.mkv").write_text("not a video\n", encoding="utf-8")
    return root


CONFIG = PreprocessConfig(size_px=SIZE_PX, min_frames=30, min_run=8)


@pytest.fixture(scope="module")
def first_run(
    local_ray: None, corpus_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[PreprocessReport, float]:
    out = tmp_path_factory.mktemp("preprocessed")
    seen: list[tuple[str, int, int]] = []
    start = time.perf_counter()
    report = preprocess_corpus(
        corpus_dir, out, CONFIG, progress=lambda r, done, total: seen.append((r.name, done, total))
    )
    seconds = time.perf_counter() - start
    assert [done for _, done, _ in seen] == [1, 2, 3, 4, 5] and {total for _, _, total in seen} == {5}
    return report, seconds


def woman_clips(report: PreprocessReport) -> list[Clip]:
    from training.clips import load_clip

    (woman,) = [v for v in report.videos if v.identity == "woman"]
    return [load_clip(report.out_dir / shard) for shard in woman.shards]


@pytest.mark.slow
def test_the_woman_becomes_aligned_clips(first_run: tuple[PreprocessReport, float]) -> None:
    report, seconds = first_run
    (woman,) = [v for v in report.videos if v.identity == "woman"]
    assert woman.status == "done", woman.reason
    assert woman.frames_total == len(WOMAN_FRAMES)
    assert woman.frames >= 0.9 * len(WOMAN_FRAMES) and woman.frames <= woman.frames_fitted
    assert (report.out_dir / "shards" / "woman" / "a.npz").is_file()
    assert report.identities["woman"].status == "usable"
    for clip in woman_clips(report):
        count = len(clip)
        assert clip.frames.shape == (count, SIZE_PX, SIZE_PX, 3) and clip.nmfc.shape == (count, SIZE_PX, SIZE_PX, 3)
        assert clip.masks.shape == (count, SIZE_PX, SIZE_PX) and clip.mouth_boxes.shape == (count, 4)
        face = np.asarray(clip.nmfc.any(axis=3))
        # The face fills a good part of the crop (landmark extent / crop side = 1 / 1.8), in every frame.
        coverage = face.mean(axis=(1, 2))
        assert coverage.min() > 0.1 and coverage.max() < 0.5
        centre = face[:, SIZE_PX // 4 : 3 * SIZE_PX // 4, SIZE_PX // 4 : 3 * SIZE_PX // 4].mean()
        assert centre > 0.6
        # NMFC and segmentation agree: the rendered face lies on the person.
        on_person = np.mean(clip.masks[face] > 127)
        assert on_person > 0.95
        boxes = clip.mouth_boxes
        assert (boxes[:, :2] >= 0).all() and (boxes[:, 2:] <= SIZE_PX).all() and (boxes[:, 2:] > boxes[:, :2]).all()
        # The mouth box sits in the lower half of the face, on rendered face pixels.
        assert ((boxes[:, 1] + boxes[:, 3]) / 2 > SIZE_PX / 2).all()
    logging.getLogger(__name__).info("first run: %.1f s; woman %.1f s", seconds, woman.seconds)


@pytest.mark.slow
def test_broken_and_faceless_videos_are_skipped_with_reasons(first_run: tuple[PreprocessReport, float]) -> None:
    report, _ = first_run
    reasons = {v.name: v.reason or "" for v in report.skipped}
    assert set(reasons) == {"broken/corrupt", "broken/truncated", "broken/notes", "faceless/noise"}
    assert "not a video FFmpeg can read" in reasons["broken/corrupt"]
    assert "not a video FFmpeg can read" in reasons["broken/truncated"]
    assert "no face in any of its 24 frames" in reasons["faceless/noise"]
    assert set(report.dropped_identities) == {"broken", "faceless"}
    assert "0 usable frames" in report.dropped_identities["faceless"]
    assert report.usable_identities == ("woman",)
    manifest = json.loads((report.out_dir / MANIFEST_FILE).read_text(encoding="utf-8"))
    entry = manifest["videos"]["faceless/noise"]
    assert entry["status"] == "skipped" and entry["sha256"] and entry["config"]["preprocess"]["size_px"] == SIZE_PX
    assert manifest["identities"]["faceless"]["status"] == "dropped"


@pytest.mark.slow
def test_a_rerun_recomputes_nothing_and_after_a_kill_only_what_is_missing(
    first_run: tuple[PreprocessReport, float], corpus_dir: Path
) -> None:
    report, _ = first_run
    out = report.out_dir
    shard = out / "shards" / "woman" / "a.npz"
    written = shard.stat().st_mtime_ns
    again = preprocess_corpus(corpus_dir, out, CONFIG)
    assert again.computed == () and all(v.resumed for v in again.videos)
    assert [(v.name, v.status, v.reason) for v in again.videos] == [(v.name, v.status, v.reason) for v in report.videos]
    assert shard.stat().st_mtime_ns == written

    # What a kill leaves: a half-written shard, and a manifest without the video that was in flight.
    partial = out / "shards" / "woman" / ".a.npz.partial-999"
    partial.write_bytes(b"half a shard")
    manifest = json.loads((out / MANIFEST_FILE).read_text(encoding="utf-8"))
    del manifest["videos"]["faceless/noise"]
    (out / MANIFEST_FILE).write_text(json.dumps(manifest), encoding="utf-8")
    resumed = preprocess_corpus(corpus_dir, out, CONFIG)
    assert [v.name for v in resumed.computed] == ["faceless/noise"]
    assert not partial.exists() and shard.stat().st_mtime_ns == written
    assert resumed.identities == report.identities


@pytest.mark.slow
def test_usable_clips_load_back_and_damaged_shards_are_left_out(
    first_run: tuple[PreprocessReport, float], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    report, _ = first_run
    clips = load_corpus_clips(report.out_dir)
    assert {c.identity for c in clips} == {"woman"}
    assert sum(len(c) for c in clips) == sum(v.frames for v in report.videos)
    copy = tmp_path / "copy"
    shutil.copytree(report.out_dir, copy)
    damaged = copy / "shards" / "woman" / "a.npz"
    damaged.write_bytes(damaged.read_bytes()[:5000])
    with caplog.at_level(logging.WARNING):
        assert load_corpus_clips(copy) == []
    assert "a.npz" in caplog.text and "damaged shard" in caplog.text
    with pytest.raises(CorpusError, match=r"holds no manifest\.json"):
        load_corpus_clips(tmp_path)


@pytest.mark.slow
def test_contact_sheet_of_a_clip(
    first_run: tuple[PreprocessReport, float], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Frame | NMFC | mask | NMFC over the frame, for every 10th frame: an artefact to look at."""
    import cv2

    clip = woman_clips(first_run[0])[0]
    rows = []
    for t in range(0, len(clip), 10):
        frame_t, nmfc, mask = clip.frames[t], clip.nmfc[t], clip.masks[t]
        overlay = np.where(nmfc.any(axis=2, keepdims=True), (0.5 * frame_t + 0.5 * nmfc).astype(np.uint8), frame_t)
        x0, y0, x1, y1 = (int(v) for v in clip.mouth_boxes[t])
        overlay = cv2.rectangle(overlay.copy(), (x0, y0), (x1 - 1, y1 - 1), (255, 255, 0), 1)
        rows.append(np.concatenate([frame_t, nmfc, np.repeat(mask[:, :, None], 3, axis=2), overlay], axis=1))
    sheet = np.concatenate(rows, axis=0)
    path = tmp_path_factory.mktemp("artefacts") / "contact-sheet.png"
    assert cv2.imwrite(str(path), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    assert path.stat().st_size > 0
