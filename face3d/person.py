"""`PersonModel`: one person's face — a neutral shape and their own displacement per blendshape.

`S(w) = N + B·w` with N (468, 3) centimetres in the canonical mesh's frame and B (468, 3, 52) the
displacement of every vertex for each of MediaPipe's named blendshapes at full strength
(`w ∈ [0, 1]^52`). The model also carries the person's pose statistics from enrolment, which
retargeting needs to keep a driven head where this person's head usually is.
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from base.files import write_atomic
from face3d.blendshapes import BLENDSHAPE_NAMES, NUM_BLENDSHAPES
from face3d.errors import FitError
from face3d.topology import NUM_VERTICES

FORMAT_VERSION = 1
FloatArray = npt.NDArray[np.float64]


def _no_pose() -> FloatArray:
    return np.full(3, np.nan)


@dataclass(frozen=True)
class PersonModel:
    """A person's face model.

    neutral: (468, 3) float64, centimetres, canonical axes (y up, +z out of the face).
    basis: (468, 3, 52) float64, centimetres per unit weight, in BLENDSHAPE_NAMES order.
    pose_mean, pose_std: (3,) float64 — translation x, y (image widths from the centre, y down) and
        scale (image widths per cm) over the enrolment frames; NaN when unknown (a synthetic or
        prior-only model).
    frames: how many frames the model was fitted from (0 when not fitted).
    """

    neutral: FloatArray
    basis: FloatArray
    pose_mean: FloatArray = field(default_factory=_no_pose)
    pose_std: FloatArray = field(default_factory=_no_pose)
    frames: int = 0

    def __post_init__(self) -> None:
        neutral = np.asarray(self.neutral, dtype=np.float64)
        basis = np.asarray(self.basis, dtype=np.float64)
        if neutral.shape != (NUM_VERTICES, 3):
            raise FitError(f"PersonModel.neutral must be ({NUM_VERTICES}, 3), got {neutral.shape}")
        if basis.shape != (NUM_VERTICES, 3, NUM_BLENDSHAPES):
            raise FitError(f"PersonModel.basis must be ({NUM_VERTICES}, 3, {NUM_BLENDSHAPES}), got {basis.shape}")
        if not (np.all(np.isfinite(neutral)) and np.all(np.isfinite(basis))):
            raise FitError("PersonModel holds NaN or infinity: refit the person")
        pose_mean = np.asarray(self.pose_mean, dtype=np.float64).reshape(3)
        pose_std = np.asarray(self.pose_std, dtype=np.float64).reshape(3)
        object.__setattr__(self, "neutral", neutral)
        object.__setattr__(self, "basis", basis)
        object.__setattr__(self, "pose_mean", pose_mean)
        object.__setattr__(self, "pose_std", pose_std)

    @property
    def has_pose_statistics(self) -> bool:
        return bool(np.all(np.isfinite(self.pose_mean)) and np.all(np.isfinite(self.pose_std)))

    def shape(self, weights: npt.ArrayLike) -> FloatArray:
        """Return the (468, 3) mesh N + B·w for (52,) weights, or (T, 468, 3) for (T, 52) weights."""
        w = np.asarray(weights, dtype=np.float64)
        if w.shape[-1] != NUM_BLENDSHAPES or w.ndim not in (1, 2):
            raise FitError(f"blendshape weights must be (52,) or (T, 52), got {w.shape}")
        return self.neutral + np.einsum("vcj,...j->...vc", self.basis, w)

    def strongest_blendshapes(self, count: int = 6) -> list[int]:
        """Return the indices of the `count` blendshapes that move the mesh most (largest RMS displacement)."""
        strength = np.sqrt(np.mean(np.sum(self.basis**2, axis=1), axis=0))
        order = np.argsort(-strength, kind="stable")
        return [int(j) for j in order[:count] if strength[j] > 0]

    def to_bytes(self) -> bytes:
        """Return the model as the bytes of a versioned .npz (what `save` writes)."""
        stream = io.BytesIO()
        np.savez_compressed(
            stream,
            format_version=np.array(FORMAT_VERSION),
            neutral=self.neutral,
            basis=self.basis,
            pose_mean=self.pose_mean,
            pose_std=self.pose_std,
            frames=np.array(self.frames),
            blendshape_names=np.array(BLENDSHAPE_NAMES),
        )
        return stream.getvalue()

    def save(self, path: str | Path) -> Path:
        """Write the model as a versioned .npz (atomically); return the path written."""
        return write_atomic(path, self.to_bytes())

    @classmethod
    def load(cls, path: str | Path) -> PersonModel:
        """Return the model saved by `save`; raises FitError for unknown versions, bad or NaN data."""
        source = Path(path)
        try:
            data = source.read_bytes()
        except OSError as error:
            raise FitError(f"{source} is not a readable person model ({error}); fit the person again") from None
        return cls.from_bytes(data, str(source))

    @classmethod
    def from_bytes(cls, data: bytes, name: str = "the person model") -> PersonModel:
        """Return the model in `data` (bytes written by `to_bytes`); raises FitError as `load` does."""
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as npz:
                arrays = {key: npz[key] for key in npz.files}
        except (OSError, ValueError, EOFError, zlib.error, zipfile.BadZipFile) as error:
            raise FitError(f"{name} is not a readable person model ({error}); fit the person again") from None
        version = int(arrays["format_version"]) if "format_version" in arrays else -1
        if version != FORMAT_VERSION:
            raise FitError(
                f"{name}: person model format {version}, this headcast reads {FORMAT_VERSION}; fit the person again"
            )
        missing = {"neutral", "basis", "pose_mean", "pose_std", "frames", "blendshape_names"} - arrays.keys()
        if missing:
            raise FitError(f"{name}: person model lacks {sorted(missing)}; fit the person again")
        if tuple(str(n) for n in arrays["blendshape_names"]) != BLENDSHAPE_NAMES:
            raise FitError(f"{name}: blendshapes in an unknown order; fit the person again")
        return cls(
            neutral=arrays["neutral"],
            basis=arrays["basis"],
            pose_mean=arrays["pose_mean"],
            pose_std=arrays["pose_std"],
            frames=int(arrays["frames"]),
        )


# --- the summary image -------------------------------------------------------------------------

_PANEL_PX = 192
_BACKGROUND = (24, 24, 28)
_WIRE = (150, 150, 160)
_MOVED = (255, 96, 48)


def _edges(triangles: npt.NDArray[np.int32]) -> npt.NDArray[np.int64]:
    pairs = np.concatenate([triangles[:, [0, 1]], triangles[:, [1, 2]], triangles[:, [2, 0]]]).astype(np.int64)
    return np.unique(np.sort(pairs, axis=1), axis=0)


def _draw_panel(
    vertices: FloatArray,
    edges: npt.NDArray[np.int64],
    heat: FloatArray,
    view: str,
    extent: tuple[float, float, float],
) -> npt.NDArray[np.uint8]:
    """Return one (P, P, 3) uint8 panel: the wireframe seen from the front or the subject's left side."""
    image = np.empty((_PANEL_PX, _PANEL_PX, 3), np.uint8)
    image[:] = _BACKGROUND
    # Side view looks along −x (from the subject's left): depth z runs to the right.
    horizontal = vertices[:, 0] if view == "front" else vertices[:, 2]
    centre_h = 0.0 if view == "front" else extent[2]
    px_per_cm = 0.9 * _PANEL_PX / extent[0]
    u = _PANEL_PX / 2 + (horizontal - centre_h) * px_per_cm
    v = _PANEL_PX / 2 - (vertices[:, 1] - extent[1]) * px_per_cm
    steps = np.linspace(0.0, 1.0, 12)
    a, b = edges[:, 0], edges[:, 1]
    xs = u[a][:, None] + (u[b] - u[a])[:, None] * steps
    ys = v[a][:, None] + (v[b] - v[a])[:, None] * steps
    colour = np.asarray(_WIRE, dtype=np.float64) + np.outer(np.maximum(heat[a], heat[b]), np.subtract(_MOVED, _WIRE))
    cols = np.repeat(colour[:, None, :], len(steps), axis=1).reshape(-1, 3)
    xi = np.round(xs.ravel()).astype(np.int64)
    yi = np.round(ys.ravel()).astype(np.int64)
    inside = (xi >= 0) & (xi < _PANEL_PX) & (yi >= 0) & (yi < _PANEL_PX)
    image[yi[inside], xi[inside]] = np.clip(cols[inside], 0, 255).astype(np.uint8)
    return image


def _png_bytes(image: npt.NDArray[np.uint8], text: dict[str, str]) -> bytes:
    """Return an 8-bit RGB PNG of an (H, W, 3) uint8 image, with tEXt chunks."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    height, width, _ = image.shape
    rows = np.concatenate([np.zeros((height, 1), np.uint8), image.reshape(height, -1)], axis=1)
    out = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    for key, value in text.items():
        out += chunk(b"tEXt", key.encode("latin-1") + b"\0" + value.encode("latin-1", "replace"))
    return out + chunk(b"IDAT", zlib.compress(rows.tobytes(), 6)) + chunk(b"IEND", b"")


def summary_image(
    model: PersonModel, triangles: npt.ArrayLike, count: int = 5
) -> tuple[npt.NDArray[np.uint8], list[str]]:
    """Return (image, panel names): rows of front and side wireframes, neutral then the strongest blendshapes.

    Each row after the first shows the mesh at one blendshape's full strength, its moved vertices
    tinted orange in proportion to the displacement. image: (rows·192, 384, 3) uint8.
    """
    tris = np.asarray(triangles, dtype=np.int32)
    edges = _edges(tris)
    chosen = model.strongest_blendshapes(count)
    meshes = [model.neutral] + [model.neutral + model.basis[:, :, j] for j in chosen]
    heats = [np.zeros(NUM_VERTICES)]
    for j in chosen:
        moved = np.linalg.norm(model.basis[:, :, j], axis=1)
        heats.append(moved / max(float(moved.max()), 1e-9))
    allv = np.concatenate(meshes)
    size = float(np.max(allv.max(axis=0) - allv.min(axis=0)))
    centre = 0.5 * (allv.max(axis=0) + allv.min(axis=0))
    extent = (size, float(centre[1]), float(centre[2]))
    rows = [
        np.concatenate([_draw_panel(m, edges, h, "front", extent), _draw_panel(m, edges, h, "side", extent)], axis=1)
        for m, h in zip(meshes, heats, strict=True)
    ]
    names = ["neutral"] + [BLENDSHAPE_NAMES[j] for j in chosen]
    return np.concatenate(rows, axis=0), names


def write_summary_png(model: PersonModel, triangles: npt.ArrayLike, path: str | Path, count: int = 5) -> Path:
    """Write the summary image as a PNG (row names in its tEXt 'rows' chunk); return the path."""
    image, names = summary_image(model, triangles, count)
    text = {"Title": "headcast person model", "rows": ", ".join(names), "columns": "front, side (subject's left)"}
    return write_atomic(path, _png_bytes(image, text))
