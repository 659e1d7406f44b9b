"""CPU triangle rasteriser: per-pixel triangle id, barycentric coordinates and depth, NumPy only.

Conventions:

- Vertices are in pixel coordinates, x to the right and y down; pixel (row, col) is the square
  [col, col + 1) × [row, row + 1) and is sampled at its centre (col + 0.5, row + 0.5).
- z is depth: **smaller is nearer** the camera (as MediaPipe's landmark z); the z-buffer keeps the
  smallest z, and on exactly equal depth the triangle listed first. Both windings are drawn (no
  back-face culling); the z-buffer alone decides.
- Coverage is decided in fixed point (1/256 px) with exact integer edge functions and one tie rule
  for samples that lie exactly on an edge (the top-left rule, stated for either winding), so two
  triangles that share an edge never both cover, and never both miss, a sample on it: a mesh
  without overlaps covers every sample inside it exactly once.
- Vertices are clamped to ±16384 px and images may be up to 8192 px on a side, which keeps every
  fixed-point product an exact integer in float64.

`rasterise` walks scanline spans of all triangles at once (vectorised) and computes depth only
where triangles overlap; `rasterise_naive` is the straightforward per-triangle loop over bounding
boxes with the same coverage rule, kept as the reference for tests and as the benchmark's baseline.
Both return the same `Raster`, pixel for pixel.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import numpy.typing as npt

from face3d.errors import Face3dError

SUBPIXEL_BITS = 8
MAX_SIZE_PX = 8192
_ONE = float(1 << SUBPIXEL_BITS)  # fixed-point units per pixel
_HALF = _ONE / 2  # a pixel centre's offset from its corner
_GUARD_PX = 16384.0

FloatArray = npt.NDArray[np.float64]
IndexArray = npt.NDArray[np.intp]


@dataclass(frozen=True, eq=False)
class Raster:
    """Which triangle is visible at each covered pixel centre of an (height, width) image.

    pixels: (P,) intp flat indices (row · width + col) of the covered pixels, each once.
    triangles: (P,) intp index, into the triangles given to the rasteriser, of the visible one.
    The (H, W) images (triangle_id, mask, barycentric, depth) are computed on first use, from
    per-triangle planes: barycentric weights and depth as affine functions of (col, row).
    """

    height: int
    width: int
    pixels: IndexArray
    triangles: IndexArray
    _local: IndexArray  # (P,) row of each pixel's triangle in _faces / _bary / _depth
    _faces: npt.NDArray[np.int64]  # (T', 3) vertex ids of the triangles that reached the image
    _bary: FloatArray  # (T', 3, 3): weight i at (col, row) = _bary[t, i] · (col, row, 1)
    _depth: FloatArray  # (T', 3): z at (col, row) = _depth[t] · (col, row, 1)

    @cached_property
    def triangle_id(self) -> npt.NDArray[np.int32]:
        """Return the (H, W) int32 visible triangle id per pixel, -1 on the background."""
        image = np.full(self.height * self.width, -1, dtype=np.int32)
        image[self.pixels] = self.triangles
        return image.reshape(self.height, self.width)

    @cached_property
    def mask(self) -> npt.NDArray[np.bool_]:
        """Return the (H, W) visibility mask: True where a triangle covers the pixel centre."""
        image = np.zeros(self.height * self.width, dtype=bool)
        image[self.pixels] = True
        return image.reshape(self.height, self.width)

    @cached_property
    def barycentric(self) -> npt.NDArray[np.float32]:
        """Return (H, W, 3) float32 weights of the visible triangle's vertices (in the order of
        its row in `triangles`) at each pixel centre; each in [0, 1], summing to 1; 0 on the background."""
        weights = self._evaluate(self._bary)
        # A sample on an edge can come out a rounding error outside [0, 1]; coverage was decided
        # exactly, so clipping only removes that noise.
        np.clip(weights, 0.0, 1.0, out=weights)
        return self._scatter(weights, 0.0)

    @cached_property
    def depth(self) -> npt.NDArray[np.float32]:
        """Return the (H, W) float32 interpolated depth (smaller is nearer); +inf on the background."""
        return self._scatter(self._evaluate(self._depth[:, None, :]), np.inf)[:, :, 0]

    def interpolate(self, vertex_values: npt.ArrayLike) -> npt.NDArray[np.float32]:
        """Return (H, W, C) float32: per-vertex values (N, C) interpolated barycentrically; 0 on the background."""
        values = np.asarray(vertex_values, dtype=np.float64)
        if values.ndim == 1:
            values = values[:, None]
        # A value interpolated over a triangle is itself an affine function of (col, row): fold
        # the vertex values into the barycentric planes once per triangle, not once per pixel.
        return self._scatter(self._evaluate(np.einsum("tik,tic->tck", self._bary, values[self._faces])), 0.0)

    def fill(self, triangle_values: npt.ArrayLike) -> npt.NDArray[np.float32]:
        """Return (H, W, C) float32 holding each visible triangle's value (T, C); 0 on the background."""
        values = np.asarray(triangle_values, dtype=np.float32)
        if values.ndim == 1:
            values = values[:, None]
        return self._scatter(values, 0.0, self.triangles)

    def _evaluate(self, planes: FloatArray) -> FloatArray:
        """Return (P, K) float64: planes (T', K, 3), affine in (col, row), at every covered pixel."""
        row, col = np.divmod(self.pixels, self.width)
        out = np.take(np.ascontiguousarray(planes[:, :, 0]), self._local, axis=0)
        out *= col[:, None]
        out += np.take(np.ascontiguousarray(planes[:, :, 1]), self._local, axis=0) * row[:, None]
        out += np.take(np.ascontiguousarray(planes[:, :, 2]), self._local, axis=0)
        return out

    def _scatter(
        self, values: npt.ArrayLike, background: float, rows: IndexArray | None = None
    ) -> npt.NDArray[np.float32]:
        """Return an (H, W, C) float32 image: `background`, with values (P, C) (or values[rows]) at the pixels."""
        source = np.ascontiguousarray(values, dtype=np.float32)
        channels = source.shape[1]
        image = np.full((self.height * self.width, channels), background, dtype=np.float32)
        # Moving each pixel's C floats as one opaque item is about twice as fast as 2-D fancy indexing.
        item = np.dtype((np.void, 4 * channels))
        items = source.view(item)[:, 0]
        image.view(item)[self.pixels, 0] = items if rows is None else items[rows]
        return image.reshape(self.height, self.width, channels)


@dataclass(frozen=True)
class _Setup:
    """Triangles that reach the image, in fixed point, with their scanline bounds and planes.

    ids: (T',) indices into the caller's triangles (degenerate and off-image ones left out).
    faces: (T', 3) their vertex ids.
    A, B, C: (3, T') edge function i (the edge opposite vertex i) with the tie rule folded into C:
        a sample (px, py) in fixed point is covered iff A·px + B·py + C ≥ 0 for all three edges.
    rows, cols: (T', 2) first and last pixel row (column) whose centre can be covered, clipped to
        the image; rows already leave out a sample row that lies exactly on an excluded horizontal edge.
    bary, depth: barycentric weights and z as affine functions of (col, row), see `Raster`.
    """

    ids: IndexArray
    faces: npt.NDArray[np.int64]
    A: FloatArray
    B: FloatArray
    C: FloatArray
    rows: npt.NDArray[np.int64]
    cols: npt.NDArray[np.int64]
    bary: FloatArray
    depth: FloatArray


def _check_inputs(
    vertices_px: npt.ArrayLike, triangles: npt.ArrayLike, size: tuple[int, int]
) -> tuple[FloatArray, npt.NDArray[np.int64], int, int]:
    vertices = np.asarray(vertices_px, dtype=np.float64)
    faces = np.asarray(triangles)
    height, width = (int(n) for n in size)
    if not (1 <= height <= MAX_SIZE_PX and 1 <= width <= MAX_SIZE_PX):
        raise Face3dError(f"image size must be 1 to {MAX_SIZE_PX} pixels a side, got {height}×{width} (H×W)")
    if vertices.ndim != 2 or vertices.shape[1] != 3:
        raise Face3dError(f"vertices must be an (N, 3) array of x, y, depth in pixels, got shape {vertices.shape}")
    if faces.ndim != 2 or faces.shape[1] != 3 or not (faces.size == 0 or np.issubdtype(faces.dtype, np.integer)):
        raise Face3dError(f"triangles must be a (T, 3) integer array, got {faces.dtype} {faces.shape}")
    if faces.size and (faces.min() < 0 or faces.max() >= len(vertices)):
        raise Face3dError(f"triangles refer to vertices outside 0..{len(vertices) - 1}")
    if not np.isfinite(vertices).all():
        raise Face3dError("vertices contain NaN or infinity; check the pose and shape that produced them")
    return vertices, faces.astype(np.int64), height, width


def _setup(vertices: FloatArray, faces: npt.NDArray[np.int64], height: int, width: int) -> _Setup:
    """Return the triangles that reach the image with exact edge functions and interpolation planes."""
    # Per-triangle arrays are laid out (3, T): reductions over a triangle's three vertices are then
    # elementwise operations between rows, which NumPy runs far faster than axis-1 reductions of 3.
    fixed = np.rint(np.clip(vertices[:, :2], -_GUARD_PX, _GUARD_PX) * _ONE)  # integers, exact in float64
    corners = faces.T
    X, Y = fixed[corners, 0], fixed[corners, 1]  # (3, T)
    y_min = np.minimum(np.minimum(Y[0], Y[1]), Y[2])
    y_max = np.maximum(np.maximum(Y[0], Y[1]), Y[2])
    x_min = np.minimum(np.minimum(X[0], X[1]), X[2])
    x_max = np.maximum(np.maximum(X[0], X[1]), X[2])
    first, last = np.ceil((y_min - _HALF) / _ONE), np.floor((y_max - _HALF) / _ONE)
    first_col, last_col = np.ceil((x_min - _HALF) / _ONE), np.floor((x_max - _HALF) / _ONE)
    area = (X[1] - X[0]) * (Y[2] - Y[0]) - (X[2] - X[0]) * (Y[1] - Y[0])
    keep = (area != 0) & (first < height) & (last >= 0) & (first_col < width) & (last_col >= 0)
    ids = np.flatnonzero(keep)
    if len(ids) < len(keep):
        X, Y, corners, area = X[:, ids], Y[:, ids], corners[:, ids], area[ids]
        y_min, y_max, first, last = y_min[ids], y_max[ids], first[ids], last[ids]
        first_col, last_col = first_col[ids], last_col[ids]
    Z = vertices[corners, 2]
    sign = np.sign(area)
    area = np.abs(area)

    Xj, Yj, Xk, Yk = X[[1, 2, 0]], Y[[1, 2, 0]], X[[2, 0, 1]], Y[[2, 0, 1]]  # edge i: vertex i+1 → i+2
    A = (Yj - Yk) * sign  # oriented so that the inside is where every E_i ≥ 0;
    B = (Xk - Xj) * sign  # E_i(vertex i) = twice the triangle's area for every i
    C = (Xj * Yk - Xk * Yj) * sign

    # The tie rule: a sample exactly on an edge belongs to the triangle for which that edge has
    # A > 0, or A == 0 and B > 0. Two triangles sharing an edge from opposite sides have exactly
    # negated (A, B, C), so exactly one of them takes the sample. E is an integer, so "> 0" on an
    # exclusive edge is "≥ 1": folding that into C leaves a single "≥ 0" test everywhere.
    horizontal = A == 0
    exclusive = ~((A > 0) | (horizontal & (B > 0)))
    C -= exclusive

    # A horizontal edge bounds no span; it only decides whether the sample row it lies on is in,
    # which the row range accounts for.
    if horizontal.any():
        drop = horizontal & exclusive & ((Yj - _HALF) % _ONE == 0)
        first = first + (drop & (Yj == y_min)).any(axis=0)
        last = last - (drop & (Yj == y_max)).any(axis=0)

    # Barycentric weight i = E_i(sample) / area as a plane over pixel indices (col, row), taken
    # relative to vertex 0 so that its constant term stays small.
    inv = 1.0 / area
    bary = np.empty((len(ids), 3, 3))
    bary[:, :, 0] = (A * (_ONE * inv)).T
    bary[:, :, 1] = (B * (_ONE * inv)).T
    bary[:, :, 2] = ((A * (_HALF - X[0]) + B * (_HALF - Y[0])) * inv).T
    bary[:, 0, 2] += 1.0  # E_0(vertex 0) = area, E_1(vertex 0) = E_2(vertex 0) = 0
    depth = np.einsum("tik,it->tk", bary, Z)
    rows = np.stack([np.maximum(first, 0), np.minimum(last, height - 1)], axis=1).astype(np.int64)
    cols = np.stack([np.maximum(first_col, 0), np.minimum(last_col, width - 1)], axis=1).astype(np.int64)
    return _Setup(ids, corners.T, A, B, C, rows, cols, bary, depth)


def _raster(setup: _Setup, pixels: IndexArray, local: IndexArray, height: int, width: int) -> Raster:
    return Raster(height, width, pixels, setup.ids[local], local, setup.faces, setup.bary, setup.depth)


def _span_bounds(setup: _Setup) -> FloatArray:
    """Return (T', 12) integer-valued bounds: two lower-bound then two upper-bound slots, each
    (n0, n1, d), such that on pixel row r a slot bounds col by floor((n0 + n1·r) / d)."""
    # On row r the sample (ONE·col + HALF, ONE·r + HALF) is inside edge i iff
    #   A·ONE·col ≥ m(r),  m(r) = -(B·ONE)·r - (B·HALF + C + A·HALF):
    # col ≥ ceil(m / (A·ONE)) = floor((m + A·ONE - 1) / (A·ONE)) where A > 0 (a lower bound),
    # col ≤ floor(m / (A·ONE)) where A < 0 (an upper bound). A triangle has one or two edges of
    # each kind; with one, both slots hold it (a repeated bound changes neither max nor min).
    A, B, C = setup.A, setup.B, setup.C
    d = A * _ONE
    n1 = -B * _ONE
    n0 = -(B * _HALF + C + A * _HALF)
    lower = A > 0
    n0 += np.where(lower, d - 1, 0.0)
    count = A.shape[1]
    column = np.arange(count)
    slots = np.empty((count, 12))
    for slot, kind in enumerate([lower, A < 0]):
        first_edge = np.argmax(kind, axis=0)
        last_edge = 2 - np.argmax(kind[::-1], axis=0)
        for half, edge in enumerate([first_edge, last_edge]):
            at = 3 * (2 * slot + half)
            slots[:, at] = n0[edge, column]
            slots[:, at + 1] = n1[edge, column]
            slots[:, at + 2] = d[edge, column]
    return slots


def rasterise(vertices_px: npt.ArrayLike, triangles: npt.ArrayLike, size: tuple[int, int]) -> Raster:
    """Return the Raster of `triangles` (T, 3) over `vertices_px` (N, 3: x, y in pixels with y down,
    z depth with smaller nearer) in an image of `size` = (height, width); vectorised over scanline spans."""
    vertices, faces, height, width = _check_inputs(vertices_px, triangles, size)
    setup = _setup(vertices, faces, height, width)
    # Large temporaries are reused in place (out=): on a virtual machine, fresh pages cost more
    # than the arithmetic done on them.

    # One entry per (triangle, pixel row) within the triangle's y extent.
    counts = np.maximum(setup.rows[:, 1] - setup.rows[:, 0] + 1, 0)
    n_rows = int(counts.sum())
    if n_rows == 0:
        return _raster(setup, np.empty(0, np.intp), np.empty(0, np.intp), height, width)
    row_tri = np.repeat(np.arange(len(counts)), counts)
    row = np.arange(n_rows) + np.repeat(setup.rows[:, 0] - (np.cumsum(counts) - counts), counts)
    per_row = np.repeat(_span_bounds(setup), counts, axis=0).reshape(n_rows, 4, 3)
    bound = per_row[:, :, 1]
    np.multiply(bound, row[:, None], out=bound)
    np.add(bound, per_row[:, :, 0], out=bound)
    np.divide(bound, per_row[:, :, 2], out=bound)
    np.floor(bound, out=bound)
    low = np.maximum(np.maximum(bound[:, 0], bound[:, 1]), 0.0)
    high = np.minimum(np.minimum(bound[:, 2], bound[:, 3]), width - 1.0)
    np.subtract(high, low, out=high)
    high += 1.0
    lengths = np.maximum(high, 0.0).astype(np.intp)

    # One entry per (triangle, covered pixel centre).
    span_start = np.cumsum(lengths) - lengths
    n_samples = int(span_start[-1] + lengths[-1])
    base = row * width + low.astype(np.intp) - span_start
    pixel = np.repeat(base, lengths)
    pixel += np.arange(n_samples)
    sample_tri = np.repeat(row_tri, lengths)

    # Each pixel takes some sample; only samples that lost such a scatter (where triangles
    # overlap: a folded-over cheek or nose in a side view) need depths to settle which is in front.
    owner = np.full(height * width, -1, dtype=np.intp)
    sample = np.arange(n_samples)
    owner[pixel] = sample
    lost = np.flatnonzero(owner[pixel] != sample)
    if lost.size:
        contested = np.zeros(height * width, dtype=bool)
        contested[pixel[lost]] = True
        candidates = np.flatnonzero(contested[pixel])  # every sample on a contested pixel
        cand_pixel, cand_tri = pixel[candidates], sample_tri[candidates]
        cand_row, cand_col = np.divmod(cand_pixel, width)
        plane = setup.depth[cand_tri]
        z = plane[:, 0] * cand_col + plane[:, 1] * cand_row + plane[:, 2]
        nearest = np.full(height * width, np.inf)
        np.minimum.at(nearest, cand_pixel, z)
        front = z == nearest[cand_pixel]
        # On exactly equal depth the lowest triangle wins, as in the naive loop.
        lowest = np.full(height * width, len(setup.ids), dtype=np.intp)
        np.minimum.at(lowest, cand_pixel[front], cand_tri[front])
        winners = candidates[front & (cand_tri == lowest[cand_pixel])]
        owner[pixel[winners]] = winners
    won = owner[pixel] == sample
    return _raster(setup, pixel[won], sample_tri[won], height, width)


def rasterise_naive(vertices_px: npt.ArrayLike, triangles: npt.ArrayLike, size: tuple[int, int]) -> Raster:
    """Return the same Raster as `rasterise`, one triangle at a time over its bounding box (the reference)."""
    vertices, faces, height, width = _check_inputs(vertices_px, triangles, size)
    setup = _setup(vertices, faces, height, width)
    zbuf = np.full((height, width), np.inf)
    best = np.full((height, width), -1, dtype=np.intp)
    for t in range(len(setup.ids)):
        (r0, r1), (c0, c1) = setup.rows[t], setup.cols[t]
        if r1 < r0 or c1 < c0:
            continue
        col = np.arange(c0, c1 + 1)[None, :]
        row = np.arange(r0, r1 + 1)[:, None]
        inside = np.ones((r1 - r0 + 1, c1 - c0 + 1), dtype=bool)
        for i in range(3):
            inside &= setup.A[i, t] * (col * _ONE + _HALF) + setup.B[i, t] * (row * _ONE + _HALF) + setup.C[i, t] >= 0
        plane = setup.depth[t]
        z = plane[0] * col + plane[1] * row + plane[2]
        # Strictly nearer: on exactly equal depth the earlier (lower id) triangle keeps the pixel.
        box = (slice(r0, r1 + 1), slice(c0, c1 + 1))
        take = inside & (z < zbuf[box])
        zbuf[box][take] = z[take]
        best[box][take] = t
    pixels = np.flatnonzero(best >= 0)
    return _raster(setup, pixels, best.ravel()[pixels], height, width)
