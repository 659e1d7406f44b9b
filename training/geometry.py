"""Fitted frames as NMFC images: the fit configuration, each fitted frame's mesh and camera, and its
NMFC rendered in the full image or directly in a square face crop.

Shared by enrolment preprocessing (training) and the CLI's `headcast nmfc` (headcast imports it from
here, training never imports headcast).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

import configs
from face3d.camera import project_to_image
from face3d.errors import FitError
from face3d.fit import FitConfig, FitResult
from face3d.nmfc import NmfcImage, NmfcMode, NmfcTopology, render_nmfc_px


def load_fit_config(path: str | Path | None = None) -> FitConfig:
    """Return the FitConfig in configs/face3d.yaml (or `path`), section `fit`."""
    section = configs.load("face3d", path).get("fit", {})
    try:
        return FitConfig(**section)
    except TypeError as error:
        raise FitError(f"configs/face3d.yaml `fit`: {error}") from None


@dataclass(frozen=True)
class FittedFrame:
    """What NMFC rendering needs of one fitted frame: the mesh (468, 3) cm and its camera pose."""

    vertices_cm: npt.NDArray[np.float64]
    rotation: npt.NDArray[np.float64]  # rotation vector
    translation: npt.NDArray[np.float64]  # image widths from the centre, y down
    scale: float


@dataclass(frozen=True)
class CropBox:
    """A square region of an image, in pixels: left x0, top y0, side (it may reach past the borders)."""

    x0: int
    y0: int
    side: int


def fitted_frames(result: FitResult) -> dict[int, FittedFrame]:
    """Return frame index → the fitted mesh and camera of that frame."""
    report = result.report
    shapes = result.model.shape(report.weights)
    return {
        int(index): FittedFrame(shapes[t], camera.rotation_vector(), camera.image_translation(), camera.scale)
        for t, (index, camera) in enumerate(zip(report.frame_indices, report.cameras, strict=True))
    }


def project_fitted(fitted: FittedFrame, image_size: tuple[int, int]) -> npt.NDArray[np.float64]:
    """Return the (468, 3) pixel positions (x right, y down, depth) of a fitted mesh; image_size is (width, height)."""
    return project_to_image(fitted.vertices_cm, fitted.rotation, fitted.translation, fitted.scale, image_size)


def nmfc_frame(fitted: FittedFrame, image_size: tuple[int, int], topology: NmfcTopology) -> npt.NDArray[np.uint8]:
    """Return the (H, W, 3) uint8 NMFC image of a fitted frame; image_size is (width, height)."""
    width, height = image_size
    return render_nmfc_px(project_fitted(fitted, image_size), (height, width), topology).to_uint8()


def nmfc_in_crop(
    fitted: FittedFrame,
    image_size: tuple[int, int],
    crop: CropBox,
    size_px: int,
    topology: NmfcTopology,
    mode: NmfcMode = "centre",
) -> NmfcImage:
    """Return the (size_px, size_px) NmfcImage of a fitted frame as seen in `crop` resized to size_px.

    The camera is moved into the crop (projected pixels shifted by the crop's corner and scaled by
    size_px / side, depth scaled alike) and the mesh is rasterised at the final size: resizing a
    full-frame NMFC would blend the colours of neighbouring triangles into values no triangle has.
    Its `mouth_box` is in crop pixels.
    """
    return render_nmfc_px(mesh_in_crop(fitted, image_size, crop, size_px), (size_px, size_px), topology, mode)


def mesh_in_crop(
    fitted: FittedFrame, image_size: tuple[int, int], crop: CropBox, size_px: int
) -> npt.NDArray[np.float64]:
    """Return the (468, 3) fitted mesh in the pixels of `crop` resized to size_px (x, y down, depth
    scaled alike); image_size is (width, height)."""
    pixels = project_fitted(fitted, image_size)
    scale = size_px / crop.side
    pixels[:, 0] = (pixels[:, 0] - crop.x0) * scale
    pixels[:, 1] = (pixels[:, 1] - crop.y0) * scale
    pixels[:, 2] *= scale
    return pixels
