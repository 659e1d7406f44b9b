"""Correspondence warp fields: where, in a reference frame of the target, each pixel of a driven frame
finds the same point of the face.

The 3D fit gives both frames the same mesh topology: vertex i of the driven (retargeted) mesh is
the same point of the face as vertex i of the reference frame's fitted mesh. Rasterising the
driven mesh with each vertex's *reference* image position as the interpolated attribute therefore
gives, for every face pixel, the reference pixel that shows the same surface point; sampling the
reference there (`grid_sample`) moves the target's real face into the driven pose and expression.

- Topology: all 898 triangles of the canonical mesh, so the eyes are carried across too; the 18
  triangles that close the mouth are rasterised (the field stays continuous) but get no validity:
  the inner mouth and teeth of the driven frame are not in the reference at that place.
- Visibility: a vertex hidden in the reference (behind the nose in a turned head) is no
  correspondence; its validity is 0 and interpolates so.
- Outside the mesh (hair, ears, neck) the field follows the head's rigid motion — the 2-D
  similarity that best maps the driven vertices onto the reference's — fading to the identity in
  the background, so hair moves with the head and the background stays put.
- The seam: across the mesh border the mesh field gives way to the rigid one over `seam_px`
  (a Gaussian of the coverage mask), so no line is drawn where they meet.

Everything here is NumPy (face3d's CPU rasteriser); `inference/warp.py` computes the same fields
batched in torch. Coordinates follow face3d/raster.py: pixel (row, col) is sampled at its centre
(col + 0.5, row + 0.5), so a field value (x, y) is a continuous position in the reference image
where pixel centres sit at +0.5 — what `grid_sample(align_corners=False)` expects after
normalising by the image size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from face3d.camera import similarity_align
from face3d.errors import Face3dError, FitError
from face3d.nmfc import hole_triangles
from face3d.raster import rasterise
from face3d.topology import NUM_VERTICES, CanonicalMesh, load_canonical_mesh

FloatArray = npt.NDArray[np.float64]
Float32Array = npt.NDArray[np.float32]

# The rigid outside field is the similarity's up to FADE_INNER half-extents of the face from its
# centre and the identity beyond FADE_OUTER (smoothstep between): hair and ears sit within about
# 1.5 half-extents of the landmarks' box centre in the sample clip's shots, the background beyond 2.
FADE_INNER = 1.3
FADE_OUTER = 2.2
# A vertex counts as visible in its frame when nothing lies nearer the camera than it by more
# than this fraction of the face's extent (a cheek's own slope across one pixel stays well below).
VISIBILITY_TOLERANCE = 0.04
# Gaussian σ (pixels at 128²) over which the mesh field hands over to the rigid one at the border.
SEAM_PX = 2.0
# scipy.ndimage.gaussian_filter's default support: the kernel reaches int(4σ + 0.5) pixels.
GAUSSIAN_TRUNCATE = 4.0


@dataclass(frozen=True, eq=False)
class WarpTopology:
    """The closed canonical mesh as the warp rasterises it.

    triangles: (898, 3) int32 every triangle (eyes and mouth closed).
    mouth: (898,) bool the 18 triangles that close the mouth (rasterised, never valid).
    """

    triangles: npt.NDArray[np.int32]
    mouth: npt.NDArray[np.bool_]


def warp_topology(mesh: CanonicalMesh | None = None) -> WarpTopology:
    """Return the WarpTopology of `mesh` (MediaPipe's canonical mesh, loaded when not given)."""
    canonical = mesh if mesh is not None else load_canonical_mesh()
    triangles = np.asarray(canonical.triangles, dtype=np.int32)
    mouth = np.zeros(len(triangles), dtype=bool)
    mouth[hole_triangles(triangles)["mouth"]] = True
    return WarpTopology(triangles=triangles, mouth=mouth)


@dataclass(frozen=True, eq=False)
class WarpField:
    """Where each pixel of a driven (H, W) frame samples one reference frame.

    grid: (H, W, 2) float32 x, y in the reference's pixels (centres at +0.5).
    validity: (H, W) float32 in [0, 1]: 1 where the mesh gives a correspondence the reference saw,
        0 on the background, the mouth's interior and surface hidden in the reference.
    face: (H, W) bool the driven mesh's coverage.
    """

    grid: Float32Array
    validity: Float32Array
    face: npt.NDArray[np.bool_]


def _check_mesh(name: str, vertices_px: npt.ArrayLike) -> FloatArray:
    points = np.asarray(vertices_px, dtype=np.float64)
    if points.shape != (NUM_VERTICES, 3):
        raise Face3dError(f"the {name} mesh has shape ({NUM_VERTICES}, 3) in pixels, got {points.shape}")
    if not np.isfinite(points).all():
        raise Face3dError(f"the {name} mesh contains NaN or infinity; check the pose and shape that produced it")
    return points


def face_extent_px(vertices_px: npt.ArrayLike) -> float:
    """Return the larger side of a projected mesh's (N, 2+) image box, in pixels."""
    points = np.asarray(vertices_px, dtype=np.float64)[:, :2]
    return float(np.ptp(points, axis=0).max())


def vertex_visibility(vertices_px: npt.ArrayLike, size: tuple[int, int], topology: WarpTopology) -> Float32Array:
    """Return (468,) float32, 1 for each vertex of a projected mesh that its own frame shows, else 0.

    A vertex is shown when it lies inside the image and the mesh's depth buffer at its pixel is
    not nearer than the vertex by more than VISIBILITY_TOLERANCE of the face's extent.
    """
    points = _check_mesh("reference", vertices_px)
    height, width = size
    raster = rasterise(points, topology.triangles, size)
    depth = raster.depth
    col = np.floor(points[:, 0]).astype(np.int64)
    row = np.floor(points[:, 1]).astype(np.int64)
    inside = (col >= 0) & (col < width) & (row >= 0) & (row < height)
    nearest = np.full(len(points), -np.inf)
    nearest[inside] = depth[row[inside], col[inside]]
    tolerance = VISIBILITY_TOLERANCE * face_extent_px(points)
    return (inside & (nearest >= points[:, 2] - tolerance)).astype(np.float32)


def rigid_transform(
    driven_px: npt.ArrayLike, reference_px: npt.ArrayLike, weights: npt.ArrayLike | None = None
) -> FloatArray:
    """Return the (2, 3) similarity A mapping driven image positions onto reference ones,
    reference ≈ A · (x, y, 1), fitted to the meshes' (468, 2+) vertices weighted by `weights`."""
    driven = np.asarray(driven_px, dtype=np.float64)[:, :2]
    reference = np.asarray(reference_px, dtype=np.float64)[:, :2]
    w = np.ones(len(driven)) if weights is None else np.asarray(weights, dtype=np.float64)
    if not w.sum() > 0:
        w = np.ones(len(driven))  # nothing visible: every vertex still tells where the head is
    try:
        scale, rotation, offset = similarity_align(driven, reference, w)
    except FitError:
        return np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    return np.concatenate([scale * rotation, offset[:, None]], axis=1)


def reference_affinity(driven_px: npt.ArrayLike, reference_px: npt.ArrayLike) -> float:
    """Return how alike the driven and reference meshes are, beyond their rigid motion: the RMS
    distance between the driven vertices and the reference's mapped back by the best similarity,
    in units of the driven face's extent (0: the same pose and expression up to scale and roll)."""
    driven = np.asarray(driven_px, dtype=np.float64)[:, :2]
    reference = np.asarray(reference_px, dtype=np.float64)[:, :2]
    try:
        scale, rotation, offset = similarity_align(reference, driven)
    except FitError:
        return float("inf")
    mapped = scale * reference @ rotation.T + offset
    residual = float(np.sqrt(np.mean(np.sum((mapped - driven) ** 2, axis=1))))
    return residual / max(face_extent_px(driven), 1e-6)


def fade_weights(driven_px: npt.ArrayLike, size: tuple[int, int]) -> Float32Array:
    """Return (H, W) float32: 1 near the driven face, 0 in the background, a smoothstep between
    FADE_INNER and FADE_OUTER half-extents (per axis) from the face's box centre."""
    points = np.asarray(driven_px, dtype=np.float64)[:, :2]
    low, high = points.min(axis=0), points.max(axis=0)
    centre, half = (low + high) / 2, np.maximum((high - low) / 2, 1e-6)
    height, width = size
    x = (np.arange(width) + 0.5 - centre[0]) / half[0]
    y = (np.arange(height) + 0.5 - centre[1]) / half[1]
    radius = np.sqrt(x[None, :] ** 2 + y[:, None] ** 2)
    s = np.clip((radius - FADE_INNER) / (FADE_OUTER - FADE_INNER), 0.0, 1.0)
    return (1.0 - s * s * (3.0 - 2.0 * s)).astype(np.float32)


def seam_weights(face: npt.NDArray[np.bool_], seam_px: float = SEAM_PX) -> Float32Array:
    """Return (H, W) float32 how much of the mesh field to keep: 1 deep inside the coverage mask,
    0 on and outside its border (2·G_σ * mask − 1, clipped, inside the mask)."""
    if seam_px <= 0:
        return face.astype(np.float32)
    blurred = ndimage.gaussian_filter(face.astype(np.float64), seam_px, mode="constant", truncate=GAUSSIAN_TRUNCATE)
    return (np.clip(2.0 * blurred - 1.0, 0.0, 1.0) * face).astype(np.float32)


def warp_fields(
    driven_px: npt.ArrayLike,
    references: Sequence[tuple[npt.ArrayLike, npt.ArrayLike]],
    size: tuple[int, int],
    topology: WarpTopology,
    seam_px: float = SEAM_PX,
) -> list[WarpField]:
    """Return one WarpField per reference taking a driven frame of `size` = (height, width) to it.

    driven_px: (468, 3) the driven mesh in the driven frame's pixels (x, y down, depth smaller nearer);
    references: per reference frame, its fitted mesh (468, 3) in its own pixels and its
        `vertex_visibility` (468,). The driven mesh is rasterised once for all of them.
    """
    driven = _check_mesh("driven", driven_px)
    meshes = [_check_mesh("reference", mesh) for mesh, _ in references]
    visibles = [np.asarray(visible, dtype=np.float64).reshape(-1) for _, visible in references]
    if any(visible.shape != (NUM_VERTICES,) for visible in visibles):
        raise Face3dError(f"reference visibility has shape ({NUM_VERTICES},) per reference")
    height, width = size
    raster = rasterise(driven, topology.triangles, size)
    face = raster.mask
    attributes = [
        np.concatenate([mesh[:, :2], visible[:, None]], axis=1) for mesh, visible in zip(meshes, visibles, strict=True)
    ]
    inside = raster.interpolate(np.concatenate(attributes, axis=1)) if attributes else None
    mouth = np.zeros(height * width, dtype=bool)
    mouth[raster.pixels] = topology.mouth[raster.triangles]
    open_face = ~mouth.reshape(height, width)
    xs = np.arange(width, dtype=np.float32)[None, :] + 0.5
    ys = np.arange(height, dtype=np.float32)[:, None] + 0.5
    fade = fade_weights(driven, size)
    keep = seam_weights(face, seam_px)
    mesh_share = keep
    rigid_share = (1.0 - keep) * fade  # the rest, 1 − keep − rigid_share, stays where it is (identity)
    validity_share = keep * open_face
    fields = []
    for k, (mesh, visible) in enumerate(zip(meshes, visibles, strict=True)):
        assert inside is not None
        (a, b, c), (d, e, f) = rigid_transform(driven, mesh, visible)
        # grid = keep·mesh + (1 − keep)·(identity + fade·(rigid − identity)), one axis at a time.
        grid = np.empty((height, width, 2), dtype=np.float32)
        grid[:, :, 0] = xs + mesh_share * (inside[:, :, 3 * k] - xs) + rigid_share * ((a - 1) * xs + b * ys + c)
        grid[:, :, 1] = ys + mesh_share * (inside[:, :, 3 * k + 1] - ys) + rigid_share * (d * xs + (e - 1) * ys + f)
        validity = (validity_share * inside[:, :, 3 * k + 2]).astype(np.float32)
        fields.append(WarpField(grid=grid, validity=validity, face=face))
    return fields


def warp_field(
    driven_px: npt.ArrayLike,
    reference_px: npt.ArrayLike,
    reference_visible: npt.ArrayLike,
    size: tuple[int, int],
    topology: WarpTopology,
    seam_px: float = SEAM_PX,
) -> WarpField:
    """Return the WarpField taking a driven frame of `size` to one reference frame (see `warp_fields`)."""
    return warp_fields(driven_px, [(reference_px, reference_visible)], size, topology, seam_px)[0]


# Landmarks of the openings the reference frames must cover (MediaPipe's mesh indices): the inner
# lips' midpoints, each eye's lids and corners, and the face's top and chin for its height.
_UPPER_INNER_LIP, _LOWER_INNER_LIP = 13, 14
_FOREHEAD, _CHIN = 10, 152
_EYES = ((159, 145, 33, 133), (386, 374, 362, 263))  # (upper lid, lower lid, corner, corner) right, left


@dataclass(frozen=True)
class MeshCoverage:
    """What a projected mesh shows, for choosing reference frames; every field (T,) float64.

    yaw_deg, pitch_deg: the head's pose (face3d.pose.yaw_pitch_roll_deg: yaw > 0 turned toward the
    image's right, the subject's left); mouth_open: the inner lips' gap ÷ the face's height;
    eyes_open: the smaller of the two eyes' lid gap ÷ eye width.
    """

    yaw_deg: FloatArray
    pitch_deg: FloatArray
    mouth_open: FloatArray
    eyes_open: FloatArray


def mesh_coverage(vertices_px: npt.ArrayLike, canonical: CanonicalMesh | None = None) -> MeshCoverage:
    """Return the MeshCoverage of T projected meshes (T, 468, 3) in pixels (x, y down, depth smaller nearer)."""
    from face3d.pose import yaw_pitch_roll_deg

    meshes = np.asarray(vertices_px, dtype=np.float64)
    if meshes.ndim != 3 or meshes.shape[1:] != (NUM_VERTICES, 3):
        raise Face3dError(f"meshes have shape (T, {NUM_VERTICES}, 3) in pixels, got {meshes.shape}")
    mean = (canonical or load_canonical_mesh()).vertices.astype(np.float64)
    out: dict[str, list[float]] = {"yaw": [], "pitch": [], "mouth": [], "eyes": []}
    for mesh in meshes:
        camera = mesh * np.array([1.0, -1.0, -1.0])  # pixels → y up, +z toward the camera
        try:
            scale, rotation, offset = similarity_align(mean, camera)
        except FitError:
            for values in out.values():
                values.append(float("nan"))
            continue
        yaw, pitch, _ = yaw_pitch_roll_deg(rotation)
        shape = (camera - offset) @ rotation / scale  # back in the canonical frame, centimetres
        height = np.linalg.norm(shape[_FOREHEAD] - shape[_CHIN])
        out["yaw"].append(yaw)
        out["pitch"].append(pitch)
        out["mouth"].append(float(np.linalg.norm(shape[_UPPER_INNER_LIP] - shape[_LOWER_INNER_LIP]) / height))
        eyes = [np.linalg.norm(shape[a] - shape[b]) / np.linalg.norm(shape[c] - shape[d]) for a, b, c, d in _EYES]
        out["eyes"].append(float(min(eyes)))
    return MeshCoverage(*(np.array(out[key]) for key in ("yaw", "pitch", "mouth", "eyes")))
