"""NMFC rasterisation in torch, a batch of projected meshes at once, on the CPU or a CUDA device.

The same images as `face3d.nmfc.render_nmfc_px` (the CPU reference), computed where the generator
runs so that a served frame never leaves the GPU between the mesh and G. The conventions are
face3d's (`face3d/raster.py`):

- vertices in pixels, x right, y down, depth with **smaller nearer**; pixel (row, col) is sampled
  at its centre (col + 0.5, row + 0.5);
- coverage is decided in fixed point (1/256 px) with exact integer edge functions (int64 here) and
  the same tie rule for samples exactly on an edge, so the covered pixels are bit-for-bit those of
  the CPU rasteriser;
- the z-buffer keeps the smallest depth and, on equal depth, the triangle listed first; both
  windings are drawn.

Depth is compared in float32 rather than float64, so where two triangles overlap (a folded cheek
behind the nose in a side view) with depths within float32 rounding of each other, the visible
triangle may differ from the CPU's; nowhere else can the images differ by more than float rounding.

`rasterise_batch` walks every triangle's pixel bounding box for the whole batch in one vectorised
pass and settles visibility with one `scatter_reduce(amin)` on packed (depth, triangle) keys.
Where `nvdiffrast` is installed (non-commercial licence, an optional extra) and the device is CUDA,
`NmfcRenderer(..., rasteriser="nvdiffrast")` uses its hardware-style rasteriser instead; its edge
and tie rules are its own, so its images match the CPU's only away from triangle edges.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor

from base.errors import HeadcastError
from face3d.nmfc import NmfcMode, NmfcTopology, nmfc_topology
from face3d.topology import NUM_VERTICES

# face3d/raster.py's fixed point: coordinates in 1/256 px, clamped to ±16384 px, so every edge
# function product below is an exact integer (well inside int64).
SUBPIXEL_BITS = 8
_ONE = 1 << SUBPIXEL_BITS
_HALF = _ONE // 2
_GUARD_PX = 16384.0
MAX_SIZE_PX = 8192

_NO_KEY = torch.iinfo(torch.int64).max
_LOW_32 = (1 << 32) - 1

RASTERISERS = ("torch", "nvdiffrast")


class RasterError(HeadcastError, ValueError):
    """The meshes or the image size cannot be rasterised; the message says what to pass instead."""


@dataclass(frozen=True, eq=False)
class RasterBatch:
    """Which triangle is visible at each pixel centre of B images, and where on it the centre lies.

    triangle_id: (B, H, W) int64 index into the triangles given, -1 on the background.
    barycentric: (B, H, W, 3) float32 weights of the visible triangle's three vertices (in the
        order of its row of triangles), summing to 1; 0 on the background.
    """

    triangle_id: Tensor
    barycentric: Tensor

    @property
    def mask(self) -> Tensor:
        """Return the (B, H, W) bool coverage mask: True where a triangle covers the pixel centre."""
        return self.triangle_id >= 0


@dataclass(frozen=True, eq=False)
class NmfcBatch:
    """B rendered NMFC frames.

    image: (B, 3, H, W) float32 normalised mean-face x, y, z in [0, 1]; 0 on the background — the
        layout the generator takes (stack three of them on channels for x_{t-2..t}).
    mask: (B, 1, H, W) bool, True on face pixels.
    triangle_id: (B, H, W) int64 visible triangle of the open topology, -1 on the background.
    """

    image: Tensor
    mask: Tensor
    triangle_id: Tensor


def available_rasterisers(device: str | torch.device) -> list[str]:
    """Return the rasterisers `NmfcRenderer` can use on `device`: always "torch"; "nvdiffrast" on a
    CUDA device when `nvdiffrast.torch` is importable (it JIT-compiles CUDA code, GPU machines only)."""
    names = ["torch"]
    if torch.device(device).type == "cuda" and torch.cuda.is_available() and _nvdiffrast_installed():
        names.append("nvdiffrast")
    return names


def _nvdiffrast_installed() -> bool:
    """Return whether `nvdiffrast.torch` can be found, without importing it (importing builds its plugin)."""
    try:
        return importlib.util.find_spec("nvdiffrast.torch") is not None
    except ModuleNotFoundError:
        return False


def rasterise_batch(vertices_px: Tensor, triangles: Tensor, size: tuple[int, int]) -> RasterBatch:
    """Return the RasterBatch of `triangles` (T, 3) over B meshes `vertices_px` (B, N, 3: x, y in
    pixels with y down, depth with smaller nearer) in images of `size` = (height, width).

    Runs on the device of `vertices_px`; `triangles` is moved there. Covered pixels equal those of
    `face3d.raster.rasterise` exactly (same fixed point and tie rule); see the module docstring.
    """
    height, width = _check_inputs(vertices_px, triangles, size)
    device = vertices_px.device
    faces = triangles.to(device=device, dtype=torch.int64)
    batch, n_triangles = vertices_px.shape[0], faces.shape[0]
    setup = _setup(vertices_px, faces, height, width)

    # One candidate per (mesh, triangle, pixel of the triangle's clipped bounding box).
    box_w = (setup.cols[..., 1] - setup.cols[..., 0] + 1).clamp(min=0)
    box_h = (setup.rows[..., 1] - setup.rows[..., 0] + 1).clamp(min=0)
    counts = torch.where(setup.keep, box_w * box_h, 0).reshape(-1)
    total = int(counts.sum())
    if total == 0:
        return _empty(batch, height, width, device)
    owner = torch.repeat_interleave(torch.arange(counts.numel(), device=device), counts, output_size=total)
    offset = torch.arange(total, device=device) - (torch.cumsum(counts, 0) - counts)[owner]
    owner_w = box_w.reshape(-1)[owner]
    row = setup.rows[..., 0].reshape(-1)[owner] + torch.div(offset, owner_w, rounding_mode="floor")
    col = setup.cols[..., 0].reshape(-1)[owner] + torch.remainder(offset, owner_w)

    edges = _edge_values(setup, owner, row, col)
    inside = (edges >= setup.least.reshape(3, -1)[:, owner]).all(dim=0)
    owner, row, col, edges = owner[inside], row[inside], col[inside], edges[:, inside]
    if owner.numel() == 0:
        return _empty(batch, height, width, device)

    # The exact edge functions divided by twice the area are the barycentric weights at the sample.
    weights = edges.to(torch.float32).T
    weights = weights / setup.area.reshape(-1)[owner].to(torch.float32)[:, None]
    # Depth relative to vertex 0 keeps float32's rounding relative to the face's depth range,
    # not to its distance from the depth origin.
    z_corners = setup.z.reshape(-1, 3)[owner]
    depth = z_corners[:, 0] + weights[:, 1] * (z_corners[:, 1] - z_corners[:, 0])
    depth = depth + weights[:, 2] * (z_corners[:, 2] - z_corners[:, 0])

    # The z-buffer: each candidate's key orders by depth, then by triangle index (the earlier wins
    # on equal depth, as on the CPU), so one amin per pixel settles visibility.
    mesh = torch.div(owner, n_triangles, rounding_mode="floor")
    triangle = owner - mesh * n_triangles
    pixel = (mesh * height + row) * width + col
    key = _sortable(depth) * (1 << 32) + triangle
    nearest = torch.full((batch * height * width,), _NO_KEY, dtype=torch.int64, device=device)
    nearest.scatter_reduce_(0, pixel, key, reduce="amin", include_self=True)
    won = nearest[pixel] == key  # exactly one candidate per covered pixel: keys hold the triangle

    triangle_id = torch.full((batch * height * width,), -1, dtype=torch.int64, device=device)
    triangle_id[pixel[won]] = triangle[won]
    barycentric = torch.zeros(batch * height * width, 3, dtype=torch.float32, device=device)
    # A sample on an edge can come out a rounding error outside [0, 1]; coverage was decided
    # exactly, so clamping removes only that noise (as face3d does).
    barycentric[pixel[won]] = weights[won].clamp(0.0, 1.0)
    return RasterBatch(
        triangle_id=triangle_id.view(batch, height, width), barycentric=barycentric.view(batch, height, width, 3)
    )


class NmfcRenderer:
    """Renders NMFC images of batches of projected meshes on one device; holds the topology there.

    rasteriser: "torch" (any device, matches face3d's CPU rasteriser) or "nvdiffrast" (CUDA with
    nvdiffrast installed; see `available_rasterisers`).
    """

    def __init__(
        self,
        topology: NmfcTopology | None = None,
        device: str | torch.device = "cpu",
        rasteriser: str = "torch",
    ) -> None:
        self.device = torch.device(device)
        offered = available_rasterisers(self.device)
        if rasteriser not in RASTERISERS:
            raise RasterError(f"unknown rasteriser {rasteriser!r}: choose one of {', '.join(RASTERISERS)}")
        if rasteriser not in offered:
            raise RasterError(
                f"rasteriser {rasteriser!r} is not available on {self.device} (available: {', '.join(offered)}); "
                "nvdiffrast needs a CUDA device and the nvdiffrast package (non-commercial licence)"
            )
        self.rasteriser = rasteriser
        topology = topology if topology is not None else nmfc_topology()
        self.triangles = torch.as_tensor(topology.triangles, dtype=torch.int64, device=self.device)
        self.vertex_colours = torch.as_tensor(topology.vertex_colours, dtype=torch.float32, device=self.device)
        self.triangle_colours = torch.as_tensor(topology.triangle_colours, dtype=torch.float32, device=self.device)
        self._nvdiffrast: _Nvdiffrast | None = _Nvdiffrast(self.device) if rasteriser == "nvdiffrast" else None

    def __call__(self, vertices_px: Tensor, size: tuple[int, int], mode: NmfcMode = "centre") -> NmfcBatch:
        """Return the NmfcBatch of B projected meshes (B, 468, 3) (x right, y down, depth smaller
        nearer, as `face3d.nmfc.render_nmfc_px` takes them) in images of `size` = (height, width).

        mode "centre" colours each pixel with its triangle's centre (the paper); "barycentric"
        interpolates the mean face across the triangle.
        """
        if vertices_px.ndim != 3 or vertices_px.shape[1:] != (NUM_VERTICES, 3):
            raise RasterError(
                f"expected projected meshes (B, {NUM_VERTICES}, 3) in pixels, got {tuple(vertices_px.shape)}"
            )
        if mode not in ("centre", "barycentric"):
            raise RasterError(f'NMFC mode must be "centre" or "barycentric", got {mode!r}')
        vertices = vertices_px.to(self.device)
        if self._nvdiffrast is not None:
            raster = self._nvdiffrast.rasterise(vertices, self.triangles, size)
        else:
            raster = rasterise_batch(vertices, self.triangles, size)
        covered = raster.mask
        visible = raster.triangle_id.clamp(min=0)
        if mode == "centre":
            colours = self.triangle_colours[visible]
        else:
            corner_colours = self.vertex_colours[self.triangles[visible]]  # (B, H, W, 3 corners, 3 channels)
            colours = torch.einsum("bhwk,bhwkc->bhwc", raster.barycentric, corner_colours).clamp(0.0, 1.0)
        image = torch.where(covered[..., None], colours, 0.0).permute(0, 3, 1, 2).contiguous()
        return NmfcBatch(image=image, mask=covered[:, None], triangle_id=raster.triangle_id)


def numpy_rasteriser(
    rasteriser: str,
    device: str | torch.device,
    topology: NmfcTopology | None = None,
    mode: NmfcMode = "centre",
) -> Callable[[npt.NDArray[np.float64], int], npt.NDArray[np.uint8]]:
    """Return a function (projected mesh (468, 3) float64 in pixels, size_px) -> (S, S, 3) uint8 NMFC
    that renders with `rasteriser` ("torch" or "nvdiffrast") on `device`: the per-frame interface of
    `render_nmfc_px(...).to_uint8()`, for callers that hold NumPy meshes (the avatar's framing)."""
    renderer = NmfcRenderer(topology, device, rasteriser)

    def render(vertices_px: npt.NDArray[np.float64], size_px: int) -> npt.NDArray[np.uint8]:
        vertices = torch.as_tensor(np.asarray(vertices_px, dtype=np.float64), device=renderer.device)[None]
        image = renderer(vertices, (size_px, size_px), mode).image[0].permute(1, 2, 0)
        # face3d's nmfc_to_uint8 in the same float32 arithmetic: rounds to nearest identically.
        return (image.clamp(0.0, 1.0) * 255.0 + 0.5).to(torch.uint8).cpu().numpy()

    return render


@dataclass(frozen=True)
class _Setup:
    """Per (mesh, triangle) arrays, each (B, T) or (3, B, T) for the three edges/corners.

    keep: the triangle is not degenerate and its box reaches the image.
    A, B, C: edge function i (opposite corner i), E = A·px + B·py + C with px and py in fixed point.
    least: (3, B, T) int64 the tie rule: a sample is covered iff E ≥ least on all three edges, least
        being 0 on an edge that keeps the samples lying exactly on it and 1 on one that does not.
    area: twice the triangle's area in fixed-point units (the edge functions' value at the corners).
    rows, cols: (B, T, 2) first and last pixel row (column) of the clipped bounding box.
    z: (B, T, 3) float32 corner depths.
    """

    keep: Tensor
    A: Tensor
    B: Tensor
    C: Tensor
    least: Tensor
    area: Tensor
    rows: Tensor
    cols: Tensor
    z: Tensor


def _setup(vertices_px: Tensor, faces: Tensor, height: int, width: int) -> _Setup:
    """Return the exact fixed-point edge functions and bounding boxes of every (mesh, triangle)."""
    # float64 then round-half-to-even, as np.rint in face3d, so vertices land on the same grid.
    xy = vertices_px[..., :2].to(torch.float64).clamp(-_GUARD_PX, _GUARD_PX)
    fixed = torch.round(xy * _ONE).to(torch.int64)  # (B, N, 2)
    corners = fixed[:, faces]  # (B, T, 3, 2)
    X = corners[..., 0].permute(2, 0, 1)  # (3, B, T)
    Y = corners[..., 1].permute(2, 0, 1)
    x_min, x_max = X.amin(0), X.amax(0)
    y_min, y_max = Y.amin(0), Y.amax(0)
    # First and last pixel centre (index·ONE + HALF) inside [min, max]: ceil and floor divisions.
    first_row = -torch.div(-(y_min - _HALF), _ONE, rounding_mode="floor")
    last_row = torch.div(y_max - _HALF, _ONE, rounding_mode="floor")
    first_col = -torch.div(-(x_min - _HALF), _ONE, rounding_mode="floor")
    last_col = torch.div(x_max - _HALF, _ONE, rounding_mode="floor")
    signed_area = (X[1] - X[0]) * (Y[2] - Y[0]) - (X[2] - X[0]) * (Y[1] - Y[0])
    keep = (signed_area != 0) & (first_row < height) & (last_row >= 0) & (first_col < width) & (last_col >= 0)
    sign = torch.sign(signed_area)

    Xj, Yj = X[[1, 2, 0]], Y[[1, 2, 0]]  # edge i runs from corner i+1 to corner i+2
    Xk, Yk = X[[2, 0, 1]], Y[[2, 0, 1]]
    A = (Yj - Yk) * sign  # oriented so that the inside is where every edge function is ≥ 0
    B = (Xk - Xj) * sign
    C = (Xj * Yk - Xk * Yj) * sign
    # face3d's tie rule: a sample exactly on an edge belongs to the triangle for which that edge
    # has A > 0, or A == 0 and B > 0; on the other edges the test is E ≥ 1 (E is an integer). Two
    # triangles sharing an edge have negated (A, B, C) there, so exactly one of them takes the sample.
    least = (~((A > 0) | ((A == 0) & (B > 0)))).to(torch.int64)

    rows = torch.stack([first_row.clamp(min=0), last_row.clamp(max=height - 1)], dim=-1)
    cols = torch.stack([first_col.clamp(min=0), last_col.clamp(max=width - 1)], dim=-1)
    z = vertices_px[..., 2].to(torch.float32)[:, faces]  # (B, T, 3)
    return _Setup(keep, A, B, C, least, signed_area.abs(), rows, cols, z)


def _edge_values(setup: _Setup, owner: Tensor, row: Tensor, col: Tensor) -> Tensor:
    """Return (3, P) int64 exact edge functions of the candidates' triangles (flat (mesh, triangle)
    indices `owner`) at their pixel centres."""
    px = col * _ONE + _HALF
    py = row * _ONE + _HALF
    A = setup.A.reshape(3, -1)[:, owner]
    B = setup.B.reshape(3, -1)[:, owner]
    C = setup.C.reshape(3, -1)[:, owner]
    return A * px + B * py + C


def _sortable(depth: Tensor) -> Tensor:
    """Return int64 keys ordered as the float32 depths are: the IEEE bits, with the magnitude bits
    of negative numbers flipped (their bit patterns grow as the values fall)."""
    bits = depth.to(torch.float32).contiguous().view(torch.int32)
    return torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits).to(torch.int64)


def _empty(batch: int, height: int, width: int, device: torch.device) -> RasterBatch:
    """Return a RasterBatch with nothing covered."""
    return RasterBatch(
        triangle_id=torch.full((batch, height, width), -1, dtype=torch.int64, device=device),
        barycentric=torch.zeros(batch, height, width, 3, dtype=torch.float32, device=device),
    )


def _check_inputs(vertices_px: Tensor, triangles: Tensor, size: tuple[int, int]) -> tuple[int, int]:
    """Return (height, width) after checking the meshes, triangles and size; RasterError says what is wrong."""
    height, width = (int(n) for n in size)
    if not (1 <= height <= MAX_SIZE_PX and 1 <= width <= MAX_SIZE_PX):
        raise RasterError(f"image size must be 1 to {MAX_SIZE_PX} pixels a side, got {height}×{width} (H×W)")
    if vertices_px.ndim != 3 or vertices_px.shape[2] != 3 or not vertices_px.is_floating_point():
        raise RasterError(
            f"vertices must be a float (B, N, 3) tensor of x, y, depth in pixels, got "
            f"{vertices_px.dtype} {tuple(vertices_px.shape)}"
        )
    if triangles.ndim != 2 or triangles.shape[1] != 3 or triangles.is_floating_point():
        raise RasterError(f"triangles must be a (T, 3) integer tensor, got {triangles.dtype} {tuple(triangles.shape)}")
    if triangles.numel() and (int(triangles.min()) < 0 or int(triangles.max()) >= vertices_px.shape[1]):
        raise RasterError(f"triangles refer to vertices outside 0..{vertices_px.shape[1] - 1}")
    if triangles.shape[0] >= 1 << 31:
        raise RasterError("at most 2**31 - 1 triangles fit the z-buffer's keys")
    if not bool(torch.isfinite(vertices_px).all()):
        raise RasterError("vertices contain NaN or infinity; check the pose and shape that produced them")
    return height, width


class _Nvdiffrast:
    """nvdiffrast's CUDA rasteriser behind the RasterBatch interface (imported only when chosen)."""

    def __init__(self, device: torch.device) -> None:
        import nvdiffrast.torch as dr

        self._dr: Any = dr
        self._context: Any = dr.RasterizeCudaContext(device=device)

    def rasterise(self, vertices_px: Tensor, triangles: Tensor, size: tuple[int, int]) -> RasterBatch:
        """Return the RasterBatch of B meshes (B, N, 3) in pixels, rasterised by nvdiffrast."""
        height, width = _check_inputs(vertices_px, triangles, size)
        vertices = vertices_px.to(torch.float32)
        # Clip space: nvdiffrast's row 0 is y_clip = -1, so y_px maps without a flip; x likewise.
        x = 2.0 * vertices[..., 0] / width - 1.0
        y = 2.0 * vertices[..., 1] / height - 1.0
        # Depth into (-1, 1) per mesh, keeping "smaller is nearer" (nvdiffrast's depth test is less).
        z = vertices[..., 2]
        low = z.amin(dim=1, keepdim=True)
        span = (z.amax(dim=1, keepdim=True) - low).clamp(min=1e-6)
        z_clip = 1.8 * (z - low) / span - 0.9
        clip = torch.stack([x, y, z_clip, torch.ones_like(x)], dim=-1).contiguous()
        faces = triangles.to(device=vertices.device, dtype=torch.int32).contiguous()
        rast, _ = self._dr.rasterize(self._context, clip, faces, resolution=[height, width])
        # rast: (B, H, W, 4) = (u, v, z/w, triangle id + 1); u and v weigh corners 0 and 1.
        triangle_id = rast[..., 3].to(torch.int64) - 1
        u, v = rast[..., 0], rast[..., 1]
        barycentric = torch.stack([u, v, 1.0 - u - v], dim=-1).clamp(0.0, 1.0)
        barycentric = torch.where((triangle_id >= 0)[..., None], barycentric, 0.0)
        return RasterBatch(triangle_id=triangle_id, barycentric=barycentric)
