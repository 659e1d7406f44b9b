"""Synthetic talking faces with exact ground truth: frames, masks, NMFC, mouth boxes and parameters.

A random person (a smooth identity offset of the canonical mean, and a displacement basis whose
named blendshapes do what their names say: jawOpen drops the jaw, eyeBlink* closes the lids,
mouthSmile* lifts the corners, …), a texture painted in the canonical UV space (skin, eyes with
irises, brows, lips, mouth interior with teeth, hairline), smooth random expression and head-pose
trajectories with blinks, and a random background. Frames are rendered with the same rasteriser
as NMFC, through the closed mesh, so the eye and mouth interiors show their painted texture; the
NMFC images use the open mesh, as at serving time. Used by tests across the project and by
training smoke runs (the built-in `synthetic` corpus).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.ndimage import gaussian_filter
from scipy.spatial.transform import Rotation

from face3d.blendshapes import BLENDSHAPE_INDEX, NUM_BLENDSHAPES
from face3d.nmfc import (
    INNER_LIP_LOOP,
    LEFT_EYE_LOOP,
    LIP_VERTICES,
    OUTER_LIP_LOOP,
    RIGHT_EYE_LOOP,
    NmfcTopology,
    mouth_box,
    nmfc_topology,
    project_scaled_orthographic,
    render_nmfc_px,
)
from face3d.person import PersonModel
from face3d.raster import rasterise
from face3d.synthetic_tracks import random_person
from face3d.topology import NUM_VERTICES, CanonicalMesh, load_canonical_mesh

FloatArray = npt.NDArray[np.float64]
UInt8Array = npt.NDArray[np.uint8]

# MediaPipe's FACEMESH_*_EYEBROW edges as closed outlines (upper row, then the lower row back).
RIGHT_BROW = (70, 63, 105, 66, 107, 55, 65, 52, 53, 46)
LEFT_BROW = (300, 293, 334, 296, 336, 285, 295, 282, 283, 276)
DEEP_SKIN = np.array([85.0, 55.0, 40.0])
LIGHT_SKIN = np.array([245.0, 212.0, 188.0])
# Blendshapes the synthetic basis moves; the rest stay 0, as several do on real footage.
EXPRESSIVE = (
    "jawOpen", "eyeBlinkLeft", "eyeBlinkRight", "mouthSmileLeft", "mouthSmileRight", "browInnerUp",
    "browDownLeft", "browDownRight", "mouthPucker", "mouthLowerDownLeft", "mouthLowerDownRight",
    "mouthUpperUpLeft", "mouthUpperUpRight", "eyeWideLeft", "eyeWideRight",
)  # fmt: skip


@dataclass(frozen=True)
class SyntheticClip:
    """A rendered synthetic clip and everything that made it.

    frames: (T, H, W, 3) uint8 RGB; masks: (T, H, W) uint8, 255 on the head (the closed mesh);
    nmfc: (T, H, W, 3) uint8 NMFC images of the open mesh; mouth_boxes: (T, 4) int (x0, y0, x1, y1),
    x1/y1 exclusive; weights: (T, 52) float64 in [0, 1]; rotations: (T, 3, 3) canonical → camera
    (y up); scales: (T,) pixels per cm; translations: (T, 2) pixels, where the canonical origin lands;
    texture: (S, S, 3) uint8 in canonical UV space; model: the person's PersonModel;
    vertices_px: (T, 468, 3) float32 each frame's mesh in pixels (x, y down, depth smaller nearer).
    """

    frames: UInt8Array
    masks: UInt8Array
    nmfc: UInt8Array
    mouth_boxes: npt.NDArray[np.int64]
    weights: FloatArray
    rotations: FloatArray
    scales: FloatArray
    translations: FloatArray
    texture: UInt8Array
    model: PersonModel
    fps: float
    vertices_px: npt.NDArray[np.float32]

    def __len__(self) -> int:
        return len(self.frames)


def _falloff(vertices: FloatArray, centre: FloatArray, radius_cm: float) -> FloatArray:
    return np.exp(-np.sum((vertices - centre) ** 2, axis=1) / (2 * radius_cm**2))


def _eyelid_field(vertices: FloatArray, loop: tuple[int, ...], lift_cm: float | None) -> FloatArray:
    """Return (468, 3): the upper lid closing onto the lower one (lift None) or raised by `lift_cm`."""
    ring = np.array(loop)
    centre = vertices[ring].mean(axis=0)
    upper = ring[vertices[ring, 1] > centre[1]]
    lower = ring[vertices[ring, 1] <= centre[1]]
    field = np.zeros_like(vertices)
    for vertex in np.flatnonzero(np.linalg.norm(vertices[:, :2] - centre[:2], axis=1) < 1.6):
        if vertices[vertex, 1] <= centre[1] or vertex in lower:
            continue
        nearest_lower = lower[np.argmin(np.abs(vertices[lower, 0] - vertices[vertex, 0]))]
        nearest_upper = upper[np.argmin(np.abs(vertices[upper, 0] - vertices[vertex, 0]))]
        opening = vertices[nearest_upper, 1] - vertices[nearest_lower, 1]
        distance = float(np.linalg.norm(vertices[vertex] - vertices[nearest_upper]))
        weight = 1.0 if vertex in upper else float(np.exp(-(distance**2) / (2 * 0.35**2)))
        field[vertex, 1] = weight * (0.97 * -opening if lift_cm is None else lift_cm)
    return field


def expressive_basis(mesh: CanonicalMesh, rng: np.random.Generator | None = None) -> FloatArray:
    """Return a (468, 3, 52) displacement basis in cm whose named blendshapes move the right places.

    With `rng`, each blendshape's strength varies by ±20 % (people differ); without, it is nominal.
    """
    v = mesh.vertices.astype(np.float64)
    basis = np.zeros((NUM_VERTICES, 3, NUM_BLENDSHAPES))
    gain = (lambda: 1.0) if rng is None else (lambda: float(rng.uniform(0.8, 1.2)))

    def put(name: str, field: FloatArray) -> None:
        basis[:, :, BLENDSHAPE_INDEX[name]] = gain() * field

    gap_y = 0.5 * (v[13, 1] + v[14, 1])  # between the inner lips
    lateral = np.exp(-(np.maximum(np.abs(v[:, 0]) - 3.0, 0.0) ** 2) / (2 * 1.5**2))
    # 0 on the upper inner lip's line, 1 on the lower one's and everything under it (jaw, chin).
    below = np.clip((v[13, 1] - v[:, 1]) / (v[13, 1] - v[14, 1]), 0.0, 1.0)
    put("jawOpen", np.stack([0 * v[:, 0], -1.1 * below * lateral, -0.3 * below * lateral], axis=1))
    lower_lip = np.array([i for i in LIP_VERTICES if v[i, 1] < gap_y])
    upper_lip = np.array([i for i in LIP_VERTICES if v[i, 1] >= gap_y])
    for side, sign in (("Left", 1.0), ("Right", -1.0)):
        half = sign * v[:, 0] > -0.2
        field = np.zeros_like(v)
        field[lower_lip[half[lower_lip]], 1] = -0.3
        put(f"mouthLowerDown{side}", field)
        field = np.zeros_like(v)
        field[upper_lip[half[upper_lip]], 1] = 0.25
        put(f"mouthUpperUp{side}", field)
        corner = v[291 if side == "Left" else 61]
        put(f"mouthSmile{side}", _falloff(v, corner, 1.0)[:, None] * np.array([0.35 * sign, 0.45, -0.15]))
        brow = v[334 if side == "Left" else 105]
        put(f"browDown{side}", _falloff(v, brow, 1.2)[:, None] * np.array([0.0, -0.35, 0.0]))
        loop = LEFT_EYE_LOOP if side == "Left" else RIGHT_EYE_LOOP
        put(f"eyeBlink{side}", _eyelid_field(v, loop, None))
        put(f"eyeWide{side}", _eyelid_field(v, loop, 0.15))
    inner_brows = 0.5 * (v[107] + v[336])
    put("browInnerUp", _falloff(v, inner_brows, 1.4)[:, None] * np.array([0.0, 0.5, 0.0]))
    lips = np.zeros(NUM_VERTICES)
    lips[list(LIP_VERTICES)] = 1.0
    put("mouthPucker", np.stack([-0.3 * v[:, 0] * lips, 0 * lips, 0.4 * lips], axis=1))
    return basis


def random_synthetic_person(rng: np.random.Generator, mesh: CanonicalMesh | None = None) -> PersonModel:
    """Return a random PersonModel: a smooth identity offset of the mean and an expressive basis."""
    canonical = mesh or load_canonical_mesh()
    identity, _ = random_person(rng, active=0, mesh=canonical)
    return PersonModel(neutral=identity.neutral, basis=expressive_basis(canonical, rng))


def _fill(texture: UInt8Array, uv: npt.NDArray[np.float32], loop: tuple[int, ...], colour: npt.ArrayLike) -> None:
    import cv2

    size = texture.shape[0]
    polygon = np.round(uv[list(loop)] * size).astype(np.int32)
    cv2.fillPoly(texture, [polygon], tuple(int(c) for c in np.asarray(colour)))


def paint_texture(rng: np.random.Generator, mesh: CanonicalMesh, size_px: int = 256) -> UInt8Array:
    """Return a (size, size, 3) uint8 face texture in the canonical UV space (v down, forehead at top)."""
    import cv2

    # Skin tones along the line from deep to light human skin, with a little jitter.
    skin = np.clip(DEEP_SKIN + rng.uniform() * (LIGHT_SKIN - DEEP_SKIN) + rng.normal(scale=6, size=3), 0, 255)
    shading = gaussian_filter(rng.normal(size=(size_px, size_px)), size_px / 16)
    shading = 1 + 0.08 * shading / (np.abs(shading).max() + 1e-9)
    texture = np.clip(skin[None, None, :] * shading[:, :, None], 0, 255).astype(np.uint8)
    uv = mesh.uv
    hair = rng.uniform([10, 5, 0], [120, 80, 60])
    hairline = rng.uniform(0.14, 0.22)
    rows = np.arange(size_px)[:, None] / size_px
    cols = np.arange(size_px)[None, :] / size_px
    temples = (rows < hairline + 0.25 * np.abs(cols - 0.5) ** 1.5 * 4) & (rows < 0.45)
    texture[temples] = hair.astype(np.uint8)
    lips = skin * rng.uniform([0.75, 0.4, 0.45], [0.95, 0.6, 0.65])
    _fill(texture, uv, OUTER_LIP_LOOP, lips)
    _fill(texture, uv, INNER_LIP_LOOP, [60, 15, 20])  # the mouth's interior, seen when the lips part
    inner = np.round(uv[list(INNER_LIP_LOOP)] * size_px).astype(np.int32)
    (x0, y0), (x1, y1) = inner.min(axis=0), inner.max(axis=0)
    teeth_bottom = y0 + max(1, (y1 - y0) // 3)
    cv2.rectangle(texture, (int(x0 + 2), int(y0)), (int(x1 - 2), int(teeth_bottom)), (235, 230, 215), -1)
    iris = rng.uniform([40, 30, 10], [120, 160, 170])
    for loop in (LEFT_EYE_LOOP, RIGHT_EYE_LOOP):
        _fill(texture, uv, loop, [240, 240, 235])
        corners = uv[list(loop)] * size_px
        centre = corners.mean(axis=0)
        radius = max(2, round(0.22 * float(np.ptp(corners[:, 0]))))
        cv2.circle(texture, (round(centre[0]), round(centre[1])), radius, tuple(int(c) for c in iris), -1)
        cv2.circle(texture, (round(centre[0]), round(centre[1])), max(1, radius // 2), (10, 10, 10), -1)
    brows = hair * 0.8
    for outline in (LEFT_BROW, RIGHT_BROW):
        _fill(texture, uv, outline, brows)
    return texture


def _background(rng: np.random.Generator, height: int, width: int) -> FloatArray:
    top, bottom = rng.uniform(20, 235, size=(2, 3))
    ramp = np.linspace(0, 1, height)[:, None, None]
    image = (1 - ramp) * top + ramp * bottom + np.zeros((height, width, 3))
    blobs = gaussian_filter(rng.normal(size=(height, width)), max(height, width) / 10)
    return np.clip(image * (1 + 0.15 * blobs / (np.abs(blobs).max() + 1e-9))[:, :, None], 0, 255)


def _smooth_curve(rng: np.random.Generator, time_s: FloatArray, amplitude: float, max_hz: float) -> FloatArray:
    """Return a smooth random curve: a sum of three sinusoids, peak ≈ `amplitude`."""
    curve = np.zeros_like(time_s)
    for _ in range(3):
        curve += np.sin(2 * np.pi * rng.uniform(0.05, max_hz) * time_s + rng.uniform(0, 2 * np.pi))
    return amplitude * curve / 3


def random_expressions(rng: np.random.Generator, frames: int, fps: float) -> FloatArray:
    """Return (T, 52) weights: talking jaw and lips, blinks every few seconds, slow smiles and brows."""
    time_s = np.arange(frames) / fps
    weights = np.zeros((frames, NUM_BLENDSHAPES))

    def set_(name: str, values: FloatArray) -> None:
        weights[:, BLENDSHAPE_INDEX[name]] = np.clip(values, 0, 1)

    talk = np.clip(_smooth_curve(rng, time_s, 1.4, 3.0) + 0.1, 0, 1)
    set_("jawOpen", talk)
    for side in ("Left", "Right"):
        set_(f"mouthLowerDown{side}", 0.6 * talk)
        set_(f"mouthUpperUp{side}", np.clip(_smooth_curve(rng, time_s, 0.5, 1.0), 0, 1))
    smile = _smooth_curve(rng, time_s, 0.9, 0.3)
    set_("mouthSmileLeft", smile + rng.uniform(-0.1, 0.1))
    set_("mouthSmileRight", smile + rng.uniform(-0.1, 0.1))
    set_("browInnerUp", _smooth_curve(rng, time_s, 0.8, 0.4))
    brow_down = _smooth_curve(rng, time_s, 0.6, 0.3)
    set_("browDownLeft", brow_down)
    set_("browDownRight", brow_down)
    set_("mouthPucker", _smooth_curve(rng, time_s, 0.6, 0.3) - 0.2)
    blink = np.zeros(frames)
    start = rng.uniform(0.2, 1.5)
    while start < time_s[-1] + 1:
        blink = np.maximum(blink, np.exp(-(((time_s - start) / 0.06) ** 2)))  # ~150 ms blinks
        start += rng.uniform(1.5, 4.0)
    set_("eyeBlinkLeft", blink)
    set_("eyeBlinkRight", blink)
    set_("eyeWideLeft", _smooth_curve(rng, time_s, 0.5, 0.2) * (1 - blink))
    set_("eyeWideRight", _smooth_curve(rng, time_s, 0.5, 0.2) * (1 - blink))
    return weights


def synthetic_clip(
    seed: int = 0,
    frames: int = 50,
    size_px: int = 128,
    fps: float = 25.0,
    texture_px: int = 256,
    mesh: CanonicalMesh | None = None,
    topology: NmfcTopology | None = None,
) -> SyntheticClip:
    """Return a rendered synthetic talking-head clip (a new random person for each seed)."""
    if frames < 1 or size_px < 8:
        raise ValueError(f"a synthetic clip needs ≥ 1 frame of ≥ 8 px, got {frames} frames of {size_px} px")
    rng = np.random.default_rng(seed)
    canonical = mesh or load_canonical_mesh()
    nmfc_topo = topology or nmfc_topology(canonical)
    model = random_synthetic_person(rng, canonical)
    texture = paint_texture(rng, canonical, texture_px)
    background = _background(rng, size_px, size_px)
    weights = random_expressions(rng, frames, fps)
    time_s = np.arange(frames) / fps
    yaw, pitch, roll = (np.deg2rad(_smooth_curve(rng, time_s, a, 0.3)) for a in (35.0, 15.0, 10.0))
    rotations = Rotation.from_euler("yxz", np.stack([yaw, pitch, roll], axis=1)).as_matrix()
    face_height_cm = float(np.ptp(canonical.vertices[:, 1]))
    scales = size_px * rng.uniform(0.55, 0.7) / face_height_cm * (1 + _smooth_curve(rng, time_s, 0.08, 0.2))
    translations = size_px * (0.5 + np.stack([_smooth_curve(rng, time_s, 0.05, 0.2)] * 2, axis=1))
    translations[:, 1] += size_px * 0.04  # the canonical origin sits above the face's centre
    shapes = model.shape(weights)
    light = np.array([rng.uniform(-0.5, 0.5), rng.uniform(0.0, 0.6), 1.0])
    light /= np.linalg.norm(light)
    out_frames = np.empty((frames, size_px, size_px, 3), np.uint8)
    masks = np.empty((frames, size_px, size_px), np.uint8)
    nmfc = np.empty((frames, size_px, size_px, 3), np.uint8)
    boxes = np.empty((frames, 4), np.int64)
    vertices = np.empty((frames, shapes.shape[1], 3), np.float32)
    size = (size_px, size_px)
    for t in range(frames):
        pixels = project_scaled_orthographic(shapes[t], rotations[t], scales[t], translations[t])
        vertices[t] = pixels
        raster = rasterise(pixels, canonical.triangles, size)
        uv = raster.interpolate(canonical.uv)
        rows = np.clip((uv[:, :, 1] * texture_px).astype(np.int64), 0, texture_px - 1)
        cols = np.clip((uv[:, :, 0] * texture_px).astype(np.int64), 0, texture_px - 1)
        normals = _vertex_normals(shapes[t] @ rotations[t].T, canonical.triangles)
        lambert = np.clip(raster.interpolate(normals) @ light, 0, 1)
        face = texture[rows, cols] * (0.55 + 0.45 * lambert[:, :, None])
        head = raster.mask
        out_frames[t] = np.where(head[:, :, None], face, background).astype(np.uint8)
        masks[t] = head.astype(np.uint8) * 255
        nmfc[t] = render_nmfc_px(pixels, size, nmfc_topo).to_uint8()
        boxes[t] = mouth_box(pixels[list(LIP_VERTICES), :2], size)
    return SyntheticClip(out_frames, masks, nmfc, boxes, weights, rotations, scales, translations, texture, model, fps,
                         vertices)  # fmt: skip


def _vertex_normals(vertices: FloatArray, triangles: npt.NDArray[np.int32]) -> FloatArray:
    """Return (N, 3) unit vertex normals (area-weighted face normals; the mesh winds counter-clockwise)."""
    a, b, c = (vertices[triangles[:, i]] for i in range(3))
    face = np.cross(b - a, c - a)
    normals = np.zeros_like(vertices)
    for i in range(3):
        np.add.at(normals, triangles[:, i], face)
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    return normals / np.maximum(length, 1e-12)
