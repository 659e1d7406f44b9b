"""The CPU rasteriser: agreement with the naive loop, occlusion, watertight coverage, any image size."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from face3d import Face3dError
from face3d.nmfc import open_triangles, project_scaled_orthographic
from face3d.raster import Raster, rasterise, rasterise_naive
from face3d.topology import CanonicalMesh, load_canonical_mesh

FloatArray = npt.NDArray[np.float64]


@pytest.fixture(scope="module")
def mesh() -> CanonicalMesh:
    return load_canonical_mesh()


def yaw_pitch(yaw_deg: float, pitch_deg: float = 0.0) -> FloatArray:
    """Rotation turning the face by yaw about y, then pitch about x."""
    y, p = np.radians(yaw_deg), np.radians(pitch_deg)
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    return ry @ rx


def face_px(mesh: CanonicalMesh, size: tuple[int, int], yaw: float = 0.0, pitch: float = 0.0) -> FloatArray:
    height, width = size
    scale = 0.8 * min(height, width) / 17.7  # the canonical face is ~17.7 cm tall
    return project_scaled_orthographic(mesh.vertices, yaw_pitch(yaw, pitch), scale, (width / 2, height / 2))


def assert_same(fast: Raster, naive: Raster) -> None:
    np.testing.assert_array_equal(fast.triangle_id, naive.triangle_id)
    np.testing.assert_array_equal(fast.barycentric, naive.barycentric)
    np.testing.assert_array_equal(fast.depth, naive.depth)


@pytest.mark.parametrize(("size", "yaw", "pitch"), [((64, 64), 0, 0), ((97, 131), 50, -15), ((120, 90), -75, 20)])
def test_face_matches_the_naive_loop(mesh: CanonicalMesh, size: tuple[int, int], yaw: float, pitch: float) -> None:
    vertices = face_px(mesh, size, yaw, pitch)
    triangles = open_triangles(mesh.triangles)
    fast = rasterise(vertices, triangles, size)
    assert fast.mask.sum() > 0.2 * size[0] * size[1]
    assert_same(fast, rasterise_naive(vertices, triangles, size))


def test_random_overlapping_triangles_match_the_naive_loop() -> None:
    rng = np.random.default_rng(3)
    size = (30, 41)
    # Many overlaps, interpenetrations and both windings; vertices partly off the image.
    vertices = np.column_stack([rng.uniform(-5, 46, 90), rng.uniform(-5, 35, 90), rng.uniform(-10, 10, 90)])
    triangles = rng.integers(0, 90, (60, 3))
    fast = rasterise(vertices, triangles, size)
    assert_same(fast, rasterise_naive(vertices, triangles, size))
    assert fast.mask.mean() > 0.5


def test_nearer_triangle_occludes_whatever_the_order() -> None:
    square = [[2.0, 2.0], [18.0, 2.0], [18.0, 18.0], [2.0, 18.0]]
    near = np.array([[x, y, 1.0] for x, y in square])
    far = near + np.array([0.0, 0.0, 4.0])
    for first, second, expected in [(near, far, 0), (far, near, 2)]:
        vertices = np.concatenate([first, second])
        triangles = np.array([[0, 1, 2], [0, 2, 3], [4, 5, 6], [4, 6, 7]])
        raster = rasterise(vertices, triangles, (20, 20))
        inside = raster.triangle_id[2:18, 2:18]
        assert set(np.unique(inside)) == {expected, expected + 1}
        np.testing.assert_allclose(raster.depth[2:18, 2:18], 1.0)  # the near square, drawn first or last


def test_interpenetrating_triangles_split_where_depths_cross() -> None:
    # Two triangles over the same square, one tilted: the one with smaller z shows on each side.
    vertices = np.array(
        [[0, 0, 0], [20, 0, 0], [0, 20, 0], [20, 20, 0], [0, 0, -5], [20, 0, 5], [0, 20, -5], [20, 20, 5]], float
    )
    triangles = np.array([[0, 1, 2], [1, 3, 2], [4, 5, 6], [5, 7, 6]])
    raster = rasterise(vertices, triangles, (20, 20))
    ids = raster.triangle_id
    assert (ids[:, :9] >= 2).all()  # tilted pair nearer (z < 0) on the left
    assert (ids[:, 11:] <= 1).all()  # flat pair nearer on the right
    assert_same(raster, rasterise_naive(vertices, triangles, (20, 20)))


def square_mesh(rng: np.random.Generator, n: int, low: float, high: float) -> tuple[FloatArray, npt.NDArray[np.int64]]:
    """A jittered (n+1)² grid over [low, high]² split into 2n² triangles, both diagonals used."""
    axis = np.linspace(low, high, n + 1)
    x, y = np.meshgrid(axis, axis)
    inner = (x > low) & (x < high) & (y > low) & (y < high)
    step = (high - low) / n
    x = np.where(inner, x + rng.uniform(-0.3, 0.3, x.shape) * step, x)
    y = np.where(inner, y + rng.uniform(-0.3, 0.3, y.shape) * step, y)
    vertices = np.column_stack([x.ravel(), y.ravel(), rng.uniform(0, 1, x.size)])
    triangles = []
    for r in range(n):
        for c in range(n):
            a, b, d, e = r * (n + 1) + c, r * (n + 1) + c + 1, (r + 1) * (n + 1) + c, (r + 1) * (n + 1) + c + 1
            if (r + c) % 2:
                triangles += [[a, b, e], [a, e, d]]
            else:
                triangles += [[a, b, d], [b, e, d]]
    return vertices, np.array(triangles)


@pytest.mark.parametrize(("low", "high", "n"), [(2.5, 21.5, 19), (3.0, 20.0, 7), (1.7, 22.3, 11)])
def test_a_mesh_covering_a_square_covers_each_pixel_centre_exactly_once(low: float, high: float, n: int) -> None:
    # (2.5, 21.5, 19) puts every grid vertex exactly on a pixel centre and every grid line through
    # a row or column of centres: the tie rule alone decides those samples.
    vertices, triangles = square_mesh(np.random.default_rng(n), n, low, high)
    size = (24, 24)
    count = np.zeros(size, dtype=int)
    for triangle in triangles:
        count += rasterise(vertices, triangle[None, :], size).mask
    centres = np.arange(24) + 0.5
    strictly_inside = ((centres > low) & (centres < high))[:, None] & ((centres > low) & (centres < high))[None, :]
    outside = ((centres < low) | (centres > high))[:, None] | ((centres < low) | (centres > high))[None, :]
    assert (count[strictly_inside] == 1).all()
    assert (count[outside] == 0).all()
    assert (count <= 1).all()
    whole = rasterise(vertices, triangles, size)
    np.testing.assert_array_equal(whole.mask, count == 1)


def test_barycentric_weights_rebuild_the_pixel_centre(mesh: CanonicalMesh) -> None:
    size = (80, 70)
    vertices = face_px(mesh, size, yaw=20)
    raster = rasterise(vertices, mesh.triangles, size)
    rows, cols = np.nonzero(raster.mask)
    weights = raster.barycentric[rows, cols].astype(np.float64)
    assert weights.min() >= 0.0 and weights.max() <= 1.0
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-5)
    corners = vertices[mesh.triangles[raster.triangle_id[rows, cols]]]  # (P, 3, 3)
    rebuilt = np.einsum("pi,pik->pk", weights, corners)
    # Vertices are snapped to 1/256 px, float32 weights carry ~1e-7 relative error per vertex.
    np.testing.assert_allclose(rebuilt[:, 0], cols + 0.5, atol=1 / 256 + 1e-4)
    np.testing.assert_allclose(rebuilt[:, 1], rows + 0.5, atol=1 / 256 + 1e-4)
    np.testing.assert_allclose(raster.depth[rows, cols], rebuilt[:, 2], rtol=1e-5, atol=1e-3)
    assert (raster.barycentric[~raster.mask] == 0).all()
    assert np.isinf(raster.depth[~raster.mask]).all()


@pytest.mark.parametrize("size", [(1, 1), (3, 5), (5, 3), (1, 7)])
def test_tiny_images(size: tuple[int, int]) -> None:
    height, width = size
    big = np.array([[-1.0, -1.0, 0.0], [3 * width + 3, -1.0, 0.0], [-1.0, 3 * height + 3, 0.0]])
    off = big + np.array([100.0, 0.0, 0.0])
    vertices = np.concatenate([big, off])
    raster = rasterise(vertices, np.array([[0, 1, 2], [3, 4, 5]]), size)
    assert raster.triangle_id.shape == size
    assert (raster.triangle_id == 0).all()
    assert raster.barycentric.shape == (*size, 3) and raster.depth.shape == size
    assert_same(raster, rasterise_naive(vertices, np.array([[0, 1, 2], [3, 4, 5]]), size))
    small = np.array([[0.2, 0.2, 0.0], [0.8, 0.2, 0.0], [0.2, 0.8, 0.0]])  # misses the only centre
    assert not rasterise(small, np.array([[0, 1, 2]]), (1, 1)).mask.any()


def test_degenerate_and_empty_inputs_draw_nothing() -> None:
    line = np.array([[0.0, 0.0, 0.0], [5.0, 5.0, 0.0], [10.0, 10.0, 0.0]])
    assert not rasterise(line, np.array([[0, 1, 2]]), (12, 12)).mask.any()
    assert not rasterise(line, np.zeros((0, 3), dtype=int), (12, 12)).mask.any()
    assert rasterise(line, np.zeros((0, 3), dtype=int), (12, 12)).fill(np.zeros((0, 3))).shape == (12, 12, 3)


def test_bad_inputs_raise_face3d_errors() -> None:
    triangle = np.array([[0, 1, 2]])
    vertices = np.array([[0.0, 0.0, 0.0], [5.0, 0.0, 0.0], [0.0, 5.0, 0.0]])
    with pytest.raises(Face3dError, match="NaN"):
        rasterise(np.where(vertices == 5.0, np.nan, vertices), triangle, (8, 8))
    with pytest.raises(Face3dError, match="outside"):
        rasterise(vertices, np.array([[0, 1, 3]]), (8, 8))
    with pytest.raises(Face3dError, match="size"):
        rasterise(vertices, triangle, (0, 8))
    with pytest.raises(Face3dError, match=r"\(N, 3\)"):
        rasterise(vertices[:, :2], triangle, (8, 8))


def test_far_away_vertices_are_clamped_not_overflowed() -> None:
    vertices = np.array([[-1e12, -1e12, 0.0], [1e12, -1e12, 0.0], [0.0, 1e12, 0.0]])
    raster = rasterise(vertices, np.array([[0, 1, 2]]), (16, 16))
    assert raster.mask.all()
