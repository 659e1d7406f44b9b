"""Synthetic faces: the ground truth must mean what it says, since tests across the project lean on it."""

from __future__ import annotations

import numpy as np
import pytest

from base import assets
from face3d import BLENDSHAPE_INDEX, CanonicalMesh, load_canonical_mesh
from training.synthetic import EXPRESSIVE, expressive_basis, paint_texture, synthetic_clip


@pytest.fixture(scope="module")
def mesh() -> CanonicalMesh:
    assets.ensure("face_landmarker")
    return load_canonical_mesh()


def test_named_blendshapes_move_the_named_parts(mesh: CanonicalMesh) -> None:
    basis = expressive_basis(mesh)
    v = mesh.vertices.astype(np.float64)

    def moved(name: str) -> np.ndarray:
        return v + basis[:, :, BLENDSHAPE_INDEX[name]]

    jaw = moved("jawOpen")
    assert jaw[14, 1] - v[14, 1] < -0.9, "the lower lip drops by about a centimetre"
    assert abs(jaw[13, 1] - v[13, 1]) < 0.1, "the upper lip stays"
    blink = moved("eyeBlinkLeft")
    assert abs(blink[386, 1] - blink[374, 1]) < 0.1 < abs(v[386, 1] - v[374, 1]), "the left lids meet"
    assert np.allclose(blink[159], v[159]), "the right eye does not blink with the left"
    smile = moved("mouthSmileLeft")
    assert smile[291, 1] > v[291, 1] + 0.3 and smile[291, 0] > v[291, 0], "the left corner goes up and out"
    assert np.linalg.norm(smile[61] - v[61]) < 0.05
    still = [i for name, i in BLENDSHAPE_INDEX.items() if name not in EXPRESSIVE]
    assert not basis[:, :, still].any()


def test_clip_shapes_and_ranges() -> None:
    clip = synthetic_clip(seed=3, frames=12, size_px=96)
    assert clip.frames.shape == (12, 96, 96, 3) and clip.frames.dtype == np.uint8
    assert clip.masks.shape == (12, 96, 96) and set(np.unique(clip.masks)) <= {0, 255}
    assert clip.nmfc.shape == (12, 96, 96, 3) and clip.weights.shape == (12, 52)
    assert clip.weights.min() >= 0 and clip.weights.max() <= 1
    np.testing.assert_allclose(clip.rotations @ clip.rotations.transpose(0, 2, 1), np.tile(np.eye(3), (12, 1, 1)),
                               atol=1e-9)  # fmt: skip
    # NMFC is drawn only where the head is (the open mesh lies inside the closed one).
    assert not (clip.nmfc.any(axis=3) & (clip.masks == 0)).any()
    face_share = (clip.masks > 0).mean()
    assert 0.1 < face_share < 0.6, "the face fills a good part of the frame without leaving it"
    for box in clip.mouth_boxes:
        x0, y0, x1, y1 = box
        assert 0 <= x0 < x1 <= 96 and 0 <= y0 < y1 <= 96


def test_a_seed_gives_the_same_clip_and_another_seed_another_person() -> None:
    a, b, c = synthetic_clip(seed=5, frames=4, size_px=64), synthetic_clip(seed=5, frames=4, size_px=64), \
        synthetic_clip(seed=6, frames=4, size_px=64)  # fmt: skip
    np.testing.assert_array_equal(a.frames, b.frames)
    np.testing.assert_array_equal(a.model.neutral, b.model.neutral)
    assert not np.array_equal(a.model.neutral, c.model.neutral)
    assert np.abs(a.frames.astype(int) - c.frames.astype(int)).mean() > 5


def test_the_mouth_opens_in_the_nmfc_when_the_jaw_drops() -> None:
    clip = synthetic_clip(seed=2, frames=60, size_px=128)
    holes = []
    for nmfc, mask, (x0, y0, x1, y1) in zip(clip.nmfc, clip.masks, clip.mouth_boxes, strict=True):
        inside = (slice(y0, y1), slice(x0, x1))
        holes.append(((nmfc[inside].max(axis=2) == 0) & (mask[inside] > 0)).sum())
    jaw = clip.weights[:, BLENDSHAPE_INDEX["jawOpen"]]
    assert np.ptp(jaw) > 0.3, "the clip talks"
    assert np.corrcoef(jaw, holes)[0, 1] > 0.8


def test_texture_has_eyes_and_lips(mesh: CanonicalMesh) -> None:
    texture = paint_texture(np.random.default_rng(0), mesh, 256).astype(int)
    eye = np.round(mesh.uv[[386, 374]].mean(axis=0) * 256).astype(int)
    cheek = np.round(mesh.uv[205] * 256).astype(int)
    lip = np.round(mesh.uv[17] * 256).astype(int)
    pixel = lambda uv: texture[uv[1], uv[0]]  # noqa: E731
    assert not np.array_equal(pixel(eye), pixel(cheek))
    red_excess = lambda c: c[0] - 0.5 * (c[1] + c[2])  # noqa: E731
    assert red_excess(pixel(lip)) > red_excess(pixel(cheek)), "lips are redder than skin"
