"""NMFC images: the open topology, the camera, colours, holes at the eyes and mouth, the mouth box."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from face3d import Face3dError
from face3d.nmfc import (
    INNER_LIP_LOOP,
    LEFT_EYE_LOOP,
    LIP_VERTICES,
    RIGHT_EYE_LOOP,
    NmfcTopology,
    hole_triangles,
    mouth_box,
    nmfc_to_uint8,
    nmfc_topology,
    open_triangles,
    project_scaled_orthographic,
    render_nmfc,
    render_nmfc_px,
)
from face3d.raster import rasterise
from face3d.topology import CanonicalMesh, load_canonical_mesh

FloatArray = npt.NDArray[np.float64]


@pytest.fixture(scope="module")
def mesh() -> CanonicalMesh:
    return load_canonical_mesh()


@pytest.fixture(scope="module")
def topology(mesh: CanonicalMesh) -> NmfcTopology:
    return nmfc_topology(mesh)


@pytest.fixture(scope="module")
def parted(mesh: CanonicalMesh) -> FloatArray:
    """The mean face with the jaw region lowered 1 cm: the lips part, the corners stay."""
    vertices = mesh.vertices.astype(np.float64)
    lip_line = vertices[list(INNER_LIP_LOOP), 1].mean()
    weight = np.clip((lip_line - vertices[:, 1]) / 0.3, 0, 1) * np.exp(-((vertices[:, 0] / 4) ** 2))
    vertices[:, 1] -= weight
    return vertices


def yaw(deg: float) -> FloatArray:
    """Rotation about y; positive turns the face toward image right."""
    a = np.radians(deg)
    return np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])


def test_the_canonical_mesh_closes_eyes_and_mouth_with_46_triangles(mesh: CanonicalMesh) -> None:
    holes = hole_triangles(mesh.triangles)
    assert {name: len(ids) for name, ids in holes.items()} == {"mouth": 18, "left_eye": 14, "right_eye": 14}
    # A loop of n vertices is closed by n - 2 triangles.
    assert len(INNER_LIP_LOOP) - 2 == 18 and len(LEFT_EYE_LOOP) - 2 == 14 and len(RIGHT_EYE_LOOP) - 2 == 14
    opened = open_triangles(mesh.triangles)
    assert opened.shape == (852, 3) and opened.dtype == np.int32
    assert len(np.unique(np.concatenate(list(holes.values())))) == 46
    # The subject's left eye is at +x in the canonical mesh.
    assert mesh.vertices[list(LEFT_EYE_LOOP), 0].mean() > 0 > mesh.vertices[list(RIGHT_EYE_LOOP), 0].mean()


def test_open_triangles_rejects_another_topology(mesh: CanonicalMesh) -> None:
    with pytest.raises(Face3dError, match="close its eyes and mouth"):
        open_triangles(open_triangles(mesh.triangles))


def test_projection_flips_y_and_makes_the_nose_nearest(mesh: CanonicalMesh) -> None:
    vertices = mesh.vertices.astype(np.float64)
    projected = project_scaled_orthographic(vertices, np.eye(3), 10.0, (50.0, 60.0))
    np.testing.assert_allclose(projected[:, 0], 10.0 * vertices[:, 0] + 50.0, atol=1e-9)
    np.testing.assert_allclose(projected[:, 1], 60.0 - 10.0 * vertices[:, 1], atol=1e-9)
    np.testing.assert_allclose(projected[:, 2], -10.0 * vertices[:, 2], atol=1e-9)
    assert np.argmin(projected[:, 2]) in (1, 4)  # the nose tip region is nearest the camera
    top_of_head, chin = np.argmax(mesh.vertices[:, 1]), np.argmin(mesh.vertices[:, 1])
    assert projected[top_of_head, 1] < projected[chin, 1]  # image y is down
    turned = project_scaled_orthographic(mesh.vertices, yaw(90), 10.0, (0.0, 0.0))
    # Yaw +90° turns the face toward image right (pose.py's convention): the subject's right
    # cheek (-x) then faces the camera and is nearer than the left.
    assert turned[np.argmin(mesh.vertices[:, 0]), 2] < turned[np.argmax(mesh.vertices[:, 0]), 2]


@pytest.mark.parametrize("mode", ["centre", "barycentric"])
def test_colours_are_the_normalised_mean_face_and_the_background_is_zero(
    parted: FloatArray, topology: NmfcTopology, mode: str
) -> None:
    out = render_nmfc(parted, yaw(25), 6.0, (64, 70), (128, 128), topology, mode=mode)  # type: ignore[arg-type]
    assert out.image.dtype == np.float32 and out.image.shape == (128, 128, 3)
    assert (out.image[~out.mask] == 0).all()
    face = out.image[out.mask]
    assert face.min() >= 0.0 and face.max() <= 1.0
    assert 0.15 < out.mask.mean() < 0.8
    ids = out.raster.triangle_id[out.mask]
    if mode == "centre":
        np.testing.assert_array_equal(face, topology.triangle_colours[ids])
    else:
        weights = out.raster.barycentric[out.mask]
        expected = np.einsum("pi,pic->pc", weights, topology.vertex_colours[topology.triangles[ids]])
        np.testing.assert_allclose(face, expected, atol=1e-5)
    # Per axis the colours span the mean face: left-right grows with image x in a frontal view.
    frontal = render_nmfc(parted, np.eye(3), 6.0, (64, 70), (128, 128), topology, mode=mode)  # type: ignore[arg-type]
    rows, cols = np.nonzero(frontal.mask)
    assert np.corrcoef(cols, frontal.image[rows, cols, 0])[0, 1] > 0.95
    assert np.corrcoef(rows, frontal.image[rows, cols, 1])[0, 1] < -0.95


def test_uint8_variant(parted: FloatArray, topology: NmfcTopology) -> None:
    out = render_nmfc(parted, np.eye(3), 6.0, (64, 70), (128, 128), topology)
    image8 = out.to_uint8()
    assert image8.dtype == np.uint8 and image8.shape == (128, 128, 3)
    np.testing.assert_array_equal(image8, np.round(out.image * 255).astype(np.uint8))
    assert (nmfc_to_uint8(np.array([[[-0.5, 0.5, 2.0]]])) == [[[0, 128, 255]]]).all()


def test_eyes_and_parted_lips_are_holes(mesh: CanonicalMesh, parted: FloatArray, topology: NmfcTopology) -> None:
    size = (256, 256)
    projected = project_scaled_orthographic(parted, np.eye(3), 12.0, (128, 128))
    out = render_nmfc_px(projected, size, topology)
    gap = (projected[13, :2] + projected[14, :2]) / 2  # between upper and lower inner lip, mid-mouth
    assert projected[14, 1] - projected[13, 1] > 8  # the lips really are apart in the image
    holes = {"mouth": gap}
    for name, loop in [("left_eye", LEFT_EYE_LOOP), ("right_eye", RIGHT_EYE_LOOP)]:
        holes[name] = projected[list(loop), :2].mean(axis=0)
    closed = rasterise(projected, mesh.triangles, size)  # all 898 triangles, for contrast
    for name, (x, y) in holes.items():
        row, col = int(y), int(x)
        assert not out.mask[row - 1 : row + 2, col - 1 : col + 2].any(), name
        assert closed.mask[row, col], name
    assert out.mask[int(projected[1, 1]), int(projected[1, 0])]  # the nose tip is face


def test_mouth_box_is_a_square_inside_the_image_around_the_lips(parted: FloatArray, topology: NmfcTopology) -> None:
    for size, translation, rotation in [
        ((256, 256), (128, 128), np.eye(3)),
        ((120, 200), (100, 60), yaw(40)),
        ((256, 256), (128, 20), np.eye(3)),  # the mouth near the top edge: the box moves down
        ((256, 256), (240, 128), yaw(-30)),  # near the right edge
    ]:
        out = render_nmfc(parted, rotation, 5.0, translation, size, topology)
        x0, y0, x1, y1 = out.mouth_box
        assert 0 <= x0 < x1 <= size[1] and 0 <= y0 < y1 <= size[0]
        assert x1 - x0 == y1 - y0
        lips = project_scaled_orthographic(parted, rotation, 5.0, translation)[list(LIP_VERTICES)]
        inside_image = (lips[:, 0] >= 0) & (lips[:, 0] <= size[1]) & (lips[:, 1] >= 0) & (lips[:, 1] <= size[0])
        if inside_image.all():
            assert (lips[:, 0] >= x0).all() and (lips[:, 0] <= x1).all()
            assert (lips[:, 1] >= y0).all() and (lips[:, 1] <= y1).all()


def test_mouth_box_never_leaves_a_small_image() -> None:
    lips = np.array([[0.0, 0.0], [30.0, 4.0]])
    assert mouth_box(lips, (5, 3)) == (0, 0, 3, 3)
    assert mouth_box(lips, (1, 1)) == (0, 0, 1, 1)
    with pytest.raises(Face3dError):
        mouth_box(np.array([[np.nan, 0.0]]), (10, 10))


@pytest.mark.parametrize("size", [(1, 1), (3, 5), (97, 131), (131, 97)])
def test_any_image_size(parted: FloatArray, topology: NmfcTopology, size: tuple[int, int]) -> None:
    height, width = size
    scale = 0.8 * min(height, width) / 17.7
    out = render_nmfc(parted, yaw(15), scale, (width / 2, height / 2), size, topology, mode="barycentric")
    assert out.image.shape == (*size, 3) and out.mask.shape == size
    x0, y0, x1, y1 = out.mouth_box
    assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
    if min(size) > 10:
        assert out.mask.mean() > 0.2


def test_bad_meshes_and_modes_raise(parted: FloatArray, topology: NmfcTopology) -> None:
    with pytest.raises(Face3dError, match="468"):
        render_nmfc(parted[:100], np.eye(3), 5.0, (0, 0), (64, 64), topology)
    with pytest.raises(Face3dError, match="NaN"):
        render_nmfc(np.full_like(parted, np.nan), np.eye(3), 5.0, (0, 0), (64, 64), topology)
    with pytest.raises(Face3dError, match="mode"):
        render_nmfc(parted, np.eye(3), 5.0, (32, 32), (64, 64), topology, mode="flat")  # type: ignore[arg-type]
