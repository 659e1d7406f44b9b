"""Correspondence warp fields on synthetic people, whose frames are rendered from known meshes: the
warp of one frame to another frame's mesh must reproduce that frame wherever the field is valid."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from scipy.spatial.transform import Rotation

from face3d.errors import Face3dError
from face3d.nmfc import project_scaled_orthographic
from face3d.topology import load_canonical_mesh
from face3d.warp import (
    WarpTopology,
    fade_weights,
    mesh_coverage,
    reference_affinity,
    vertex_visibility,
    warp_field,
    warp_topology,
)
from training.synthetic import SyntheticClip, synthetic_clip

SIZE = 128


@pytest.fixture(scope="module")
def topology() -> WarpTopology:
    return warp_topology()


@pytest.fixture(scope="module")
def clip() -> SyntheticClip:
    return synthetic_clip(seed=3, frames=40, size_px=SIZE)


def sample(image: npt.NDArray[np.uint8], grid: npt.NDArray[np.floating]) -> npt.NDArray[np.float64]:
    """Return `image` sampled bilinearly at continuous pixel positions grid (H, W, 2) (centres at +0.5)."""
    x = np.clip(grid[..., 0] - 0.5, 0, image.shape[1] - 1)
    y = np.clip(grid[..., 1] - 0.5, 0, image.shape[0] - 1)
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    x1, y1 = np.minimum(x0 + 1, image.shape[1] - 1), np.minimum(y0 + 1, image.shape[0] - 1)
    fx, fy = (x - x0)[..., None], (y - y0)[..., None]
    pixels = image.astype(np.float64)
    top = pixels[y0, x0] * (1 - fx) + pixels[y0, x1] * fx
    bottom = pixels[y1, x0] * (1 - fx) + pixels[y1, x1] * fx
    return np.asarray(top * (1 - fy) + bottom * fy)


def centres(size: int) -> npt.NDArray[np.float64]:
    xs, ys = np.meshgrid(np.arange(size) + 0.5, np.arange(size) + 0.5)
    return np.stack([xs, ys], axis=-1)


def test_a_frame_warped_to_its_own_mesh_is_the_identity_everywhere(clip: SyntheticClip, topology: WarpTopology) -> None:
    mesh = clip.vertices_px[10]
    field = warp_field(mesh, mesh, vertex_visibility(mesh, (SIZE, SIZE), topology), (SIZE, SIZE), topology)
    # Barycentric interpolation of a triangle's own corner positions gives back the sample point, up
    # to the rasteriser's fixed point (corners rounded to 1/256 px); the rigid part is the identity
    # similarity: every pixel samples itself.
    assert np.abs(field.grid - centres(SIZE)).max() <= 1 / 256


def test_warping_reproduces_another_frame_of_the_same_person(clip: SyntheticClip, topology: WarpTopology) -> None:
    reference = 0
    visible = vertex_visibility(clip.vertices_px[reference], (SIZE, SIZE), topology)
    for target in (5, 15, 25, 35):
        field = warp_field(clip.vertices_px[target], clip.vertices_px[reference], visible, (SIZE, SIZE), topology)
        valid = field.validity > 0.5
        assert valid.sum() > 0.2 * SIZE * SIZE  # most of the face
        warped = sample(clip.frames[reference], field.grid)
        error = np.linalg.norm(warped - clip.frames[target], axis=-1)[valid].mean()
        # The texture moves with the surface exactly; what differs is the Lambert shading of the new
        # pose (up to 45 % of the colour, but the pose changes by tens of degrees at most) and resampling.
        assert error < 12.0, (target, error)
        # The rigid motion alone leaves the expression and the out-of-plane turn unexplained.
        rigid = sample(clip.frames[reference], centres(SIZE))
        assert error < 0.7 * np.linalg.norm(rigid - clip.frames[target], axis=-1)[valid].mean()


def test_validity_is_zero_on_the_background_and_the_inner_mouth(clip: SyntheticClip, topology: WarpTopology) -> None:
    mesh = clip.vertices_px[20]
    field = warp_field(mesh, clip.vertices_px[0], np.ones(468), (SIZE, SIZE), topology)
    assert not field.validity[~field.face].any()
    from face3d.raster import rasterise

    raster = rasterise(mesh, topology.triangles, (SIZE, SIZE))
    mouth = np.isin(raster.triangle_id, np.flatnonzero(topology.mouth))
    assert mouth.any() and not field.validity[mouth].any()
    # Far from the face (beyond FADE_OUTER half-extents) the field is the identity: the background stays put.
    far = fade_weights(mesh, (SIZE, SIZE)) == 0
    assert far.any()
    assert np.abs(field.grid[far] - centres(SIZE)[far]).max() < 1e-4


def test_vertices_behind_the_turned_head_are_not_visible(topology: WarpTopology) -> None:
    mean = load_canonical_mesh().vertices
    seen = []
    for yaw in (0.0, 30.0, 60.0):
        rotation = Rotation.from_euler("y", yaw, degrees=True).as_matrix()
        projected = project_scaled_orthographic(mean, rotation, 6.0, (64.0, 64.0))
        seen.append(vertex_visibility(projected, (SIZE, SIZE), topology))
    assert seen[0].all()
    assert seen[0].sum() > seen[1].sum() > seen[2].sum()
    # Turned with its nose toward +x (the image's right: the subject's left), the face's +x half (the
    # subject's left cheek) turns away from the camera and is what gets hidden.
    hidden = seen[2] == 0
    assert np.mean(mean[hidden, 0] > 0) > 0.8


def test_affinity_is_zero_for_a_scaled_and_rolled_copy_and_grows_with_expression(clip: SyntheticClip) -> None:
    mesh = clip.vertices_px[0].astype(np.float64)
    angle = np.deg2rad(20)
    roll = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    moved = mesh.copy()
    moved[:, :2] = 1.3 * mesh[:, :2] @ roll.T + np.array([5.0, -3.0])
    assert reference_affinity(mesh, moved) < 1e-9
    assert reference_affinity(mesh, clip.vertices_px[30]) > 1e-3


def test_coverage_reads_the_pose_of_a_turned_mesh(topology: WarpTopology) -> None:
    mean = load_canonical_mesh().vertices
    meshes = []
    for yaw in (-20.0, 0.0, 25.0):
        rotation = Rotation.from_euler("y", yaw, degrees=True).as_matrix()
        meshes.append(project_scaled_orthographic(mean, rotation, 6.0, (64.0, 64.0)))
    coverage = mesh_coverage(np.stack(meshes))
    np.testing.assert_allclose(coverage.yaw_deg, [-20.0, 0.0, 25.0], atol=1e-6)
    np.testing.assert_allclose(coverage.pitch_deg, 0.0, atol=1e-6)
    assert (coverage.eyes_open > 0).all() and (coverage.mouth_open >= 0).all()


def test_bad_meshes_are_refused_with_what_was_given(topology: WarpTopology) -> None:
    good = np.zeros((468, 3))
    with pytest.raises(Face3dError, match=r"\(468, 3\)"):
        warp_field(np.zeros((10, 3)), good, np.ones(468), (SIZE, SIZE), topology)
    bad = good.copy()
    bad[0, 0] = np.nan
    with pytest.raises(Face3dError, match="NaN"):
        warp_field(good, bad, np.ones(468), (SIZE, SIZE), topology)
