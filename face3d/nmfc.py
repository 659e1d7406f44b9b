"""NMFC images (paper eq. 3): a face mesh rasterised, each pixel coloured by where it lies on the mean face.

`NMFC_t = 𝓔(𝓡(S(p_t), π_t), x̄_norm)`: 𝓡 rasterises the mesh under the camera and keeps, per pixel,
the visible triangle; 𝓔 writes the x-y-z of the canonical mean face normalised to [0, 1]³ at that
surface point — at the triangle's centre as in the paper, or interpolated barycentrically. The
background is 0.

The canonical MediaPipe mesh closes the eyes (14 triangles each) and the mouth (18 triangles);
those are left out here, or blinks and open mouths would never reach the generator.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from face3d.errors import Face3dError
from face3d.raster import Raster, rasterise
from face3d.topology import NUM_VERTICES, CanonicalMesh, load_canonical_mesh

# Contour loops of MediaPipe's face mesh, in order around each loop, from the edge lists
# FACEMESH_LIPS, FACEMESH_LEFT_EYE and FACEMESH_RIGHT_EYE of MediaPipe's
# mediapipe/python/solutions/face_mesh_connections.py (Apache-2.0). "Left" is the subject's left
# (canonical +x, image right in a non-mirrored frame).
INNER_LIP_LOOP = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 415, 310, 311, 312, 13, 82, 81, 80, 191)
OUTER_LIP_LOOP = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185)
LEFT_EYE_LOOP = (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466)
RIGHT_EYE_LOOP = (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246)
LIP_VERTICES = OUTER_LIP_LOOP + INNER_LIP_LOOP

# A loop of n vertices is closed by n - 2 triangles; the canonical mesh closes exactly these three.
EXPECTED_HOLE_TRIANGLES = {"mouth": 18, "left_eye": 14, "right_eye": 14}

IntArray = npt.NDArray[np.int32]
FloatImage = npt.NDArray[np.float32]

NmfcMode = Literal["centre", "barycentric"]
"""NMFC colour per triangle centre (the paper) or interpolated barycentrically."""


def hole_triangles(triangles: npt.ArrayLike) -> dict[str, npt.NDArray[np.intp]]:
    """Return, for the mouth and each eye, the indices of the triangles that close that opening:
    those whose three vertices all lie on its contour loop."""
    faces = np.asarray(triangles)
    loops = {"mouth": INNER_LIP_LOOP, "left_eye": LEFT_EYE_LOOP, "right_eye": RIGHT_EYE_LOOP}
    return {name: np.flatnonzero(np.isin(faces, loop).all(axis=1)) for name, loop in loops.items()}


def open_triangles(triangles: npt.ArrayLike) -> IntArray:
    """Return the (T - 46, 3) int32 triangles of the canonical topology without those that close
    the eyes and the mouth (852 of MediaPipe's 898)."""
    faces = np.asarray(triangles, dtype=np.int32)
    holes = hole_triangles(faces)
    found = {name: len(ids) for name, ids in holes.items()}
    if found != EXPECTED_HOLE_TRIANGLES:
        raise Face3dError(
            f"the mesh does not close its eyes and mouth as MediaPipe's canonical mesh does "
            f"(found {found}, expected {EXPECTED_HOLE_TRIANGLES}); pass MediaPipe's 468-vertex topology"
        )
    keep = np.ones(len(faces), dtype=bool)
    keep[np.concatenate(list(holes.values()))] = False
    return faces[keep]


@dataclass(frozen=True, eq=False)
class NmfcTopology:
    """What NMFC rendering needs from the canonical mesh, prepared once.

    triangles: (852, 3) int32 the open topology (eyes and mouth not closed).
    vertex_colours: (468, 3) float32 the canonical mean face normalised per axis to [0, 1]³.
    triangle_colours: (852, 3) float32 the normalised mean face at each triangle's centre.
    """

    triangles: IntArray
    vertex_colours: FloatImage
    triangle_colours: FloatImage


def nmfc_topology(mesh: CanonicalMesh | None = None) -> NmfcTopology:
    """Return the NmfcTopology of `mesh` (MediaPipe's canonical mesh, loaded when not given)."""
    canonical = mesh if mesh is not None else load_canonical_mesh()
    triangles = open_triangles(canonical.triangles)
    colours = canonical.normalised_vertices()
    # The centroid of the normalised vertices is the normalised centroid (normalisation is affine).
    centres = colours[triangles].mean(axis=1).astype(np.float32)
    return NmfcTopology(triangles=triangles, vertex_colours=colours, triangle_colours=centres)


def project_scaled_orthographic(
    vertices_cm: npt.ArrayLike,
    rotation: npt.ArrayLike,
    scale_px_per_cm: float,
    translation_px: npt.ArrayLike,
) -> npt.NDArray[np.float64]:
    """Return (N, 3) x, y, depth in pixels of canonical-space points under a scaled-orthographic camera.

    Camera space is canonical space rotated by `rotation` (3×3, y up, +z toward the camera, as
    MediaPipe's pose); then x_px = s·x + t_x, y_px = -s·y + t_y (image y is down), so the canonical
    origin lands at `translation_px`; depth = -s·z, smaller nearer, as the rasteriser expects.
    """
    points = np.asarray(vertices_cm, dtype=np.float64)
    R = np.asarray(rotation, dtype=np.float64)
    t = np.asarray(translation_px, dtype=np.float64).reshape(-1)
    if points.ndim != 2 or points.shape[1] != 3 or R.shape != (3, 3) or t.shape != (2,):
        raise Face3dError(
            f"expected vertices (N, 3), rotation (3, 3) and translation (2,), got "
            f"{points.shape}, {R.shape} and {t.shape}"
        )
    camera = points @ R.T
    scale = float(scale_px_per_cm)
    return np.stack([scale * camera[:, 0] + t[0], t[1] - scale * camera[:, 1], -scale * camera[:, 2]], axis=1)


def mouth_box(lips_px: npt.ArrayLike, size: tuple[int, int], margin: float = 0.15) -> tuple[int, int, int, int]:
    """Return (x0, y0, x1, y1), x1 and y1 exclusive: the square crop around the lip points (K, 2+)
    in pixels, `margin` of the lips' larger extent added on each side, moved (not shrunk) to lie
    inside the image of `size` = (height, width); shrunk only where the image is smaller than it."""
    points = np.asarray(lips_px, dtype=np.float64)[:, :2]
    height, width = size
    if not np.isfinite(points).all():
        raise Face3dError("lip points contain NaN or infinity; check the pose and shape that produced them")
    low, high = points.min(axis=0), points.max(axis=0)
    centre = (low + high) / 2
    # Two pixels of slack so that flooring the corner never leaves a lip point outside.
    side = int(np.ceil((high - low).max() * (1 + 2 * margin))) + 2
    side = max(1, min(side, height, width))
    x0 = int(np.clip(np.floor(centre[0] - side / 2), 0, width - side))
    y0 = int(np.clip(np.floor(centre[1] - side / 2), 0, height - side))
    return x0, y0, x0 + side, y0 + side


@dataclass(frozen=True, eq=False)
class NmfcImage:
    """One rendered NMFC frame.

    image: (H, W, 3) float32 normalised mean-face x, y, z in [0, 1]; 0 on the background.
    raster: which triangle of the open topology is visible at each pixel (`raster.mask` is the
        visibility mask, `raster.triangle_id` the ids).
    mouth_box: (x0, y0, x1, y1) the mouth discriminator's square crop, x1 and y1 exclusive.
    """

    image: FloatImage
    raster: Raster
    mouth_box: tuple[int, int, int, int]

    @property
    def mask(self) -> npt.NDArray[np.bool_]:
        """Return the (H, W) visibility mask: True on face pixels."""
        return self.raster.mask

    def to_uint8(self) -> npt.NDArray[np.uint8]:
        """Return the image as (H, W, 3) uint8, 0–255."""
        return nmfc_to_uint8(self.image)


def nmfc_to_uint8(image: npt.ArrayLike) -> npt.NDArray[np.uint8]:
    """Return an NMFC image in [0, 1] as uint8 0–255 (rounded to nearest)."""
    return (np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def render_nmfc(
    vertices_cm: npt.ArrayLike,
    rotation: npt.ArrayLike,
    scale_px_per_cm: float,
    translation_px: npt.ArrayLike,
    size: tuple[int, int],
    topology: NmfcTopology,
    mode: NmfcMode = "centre",
) -> NmfcImage:
    """Return the NmfcImage of a face mesh (468, 3) in canonical centimetres (e.g. N + B·w) seen
    through a scaled-orthographic camera, in an image of `size` = (height, width).

    mode "centre" colours each pixel with its triangle's centre (the paper); "barycentric"
    interpolates the mean face across the triangle.
    """
    vertices = np.asarray(vertices_cm, dtype=np.float64)
    if vertices.shape != (NUM_VERTICES, 3):
        raise Face3dError(f"a face mesh has shape ({NUM_VERTICES}, 3) in canonical centimetres, got {vertices.shape}")
    projected = project_scaled_orthographic(vertices, rotation, scale_px_per_cm, translation_px)
    return render_nmfc_px(projected, size, topology, mode)


def render_nmfc_px(
    vertices_px: npt.ArrayLike,
    size: tuple[int, int],
    topology: NmfcTopology,
    mode: NmfcMode = "centre",
) -> NmfcImage:
    """Return the NmfcImage of a face mesh already projected to pixels ((468, 3): x right, y down,
    depth with smaller nearer), for any camera model; `render_nmfc` is this after its projection."""
    projected = np.asarray(vertices_px, dtype=np.float64)
    if projected.shape != (NUM_VERTICES, 3):
        raise Face3dError(f"a projected face mesh has shape ({NUM_VERTICES}, 3) in pixels, got {projected.shape}")
    raster = rasterise(projected, topology.triangles, size)
    if mode == "centre":
        image = raster.fill(topology.triangle_colours)
    elif mode == "barycentric":
        image = raster.interpolate(topology.vertex_colours)
    else:
        raise Face3dError(f'NMFC mode must be "centre" or "barycentric", got {mode!r}')
    box = mouth_box(projected[list(LIP_VERTICES)], (raster.height, raster.width))
    return NmfcImage(image=image, raster=raster, mouth_box=box)
