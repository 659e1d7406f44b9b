"""How a target's face crops are framed: one typed record for preprocessing, enrolment and serving.

Enrolment measures it on the recording (training/enrol.py `crop_record`), the bundle keeps it
(`training.crop` of its metadata, as JSON), and serving frames every driven frame the same way
(inference/avatar.py), so the generator sees faces at the scale it was trained on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, get_args

import numpy as np
import numpy.typing as npt

from face3d.errors import FitError
from face3d.nmfc import NmfcMode

NMFC_MODES: tuple[str, ...] = get_args(NmfcMode)


@dataclass(frozen=True)
class CropFraming:
    """A target's face-crop framing.

    side_widths: the crop's side in image widths (margin × the median landmark extent over the
    recording); margin: that multiple; nmfc_mode: how the NMFC the generator was trained on is coloured.
    """

    side_widths: float
    margin: float
    nmfc_mode: NmfcMode = "centre"

    def __post_init__(self) -> None:
        if not (
            np.isfinite(self.side_widths) and self.side_widths > 0 and np.isfinite(self.margin) and self.margin > 0
        ):
            raise FitError(f"a crop framing needs a positive side and margin, got {self.side_widths}, {self.margin}")
        if self.nmfc_mode not in NMFC_MODES:
            raise FitError(f"NMFC mode must be one of {', '.join(NMFC_MODES)}, got {self.nmfc_mode!r}")

    def to_json(self) -> dict[str, Any]:
        """Return the framing as the JSON object bundles and enrolment work folders keep."""
        return {"side_widths": self.side_widths, "margin": self.margin, "nmfc_mode": self.nmfc_mode}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CropFraming:
        """Return the framing `to_json` wrote; FitError naming what is wrong when it is not one."""
        try:
            return cls(float(data["side_widths"]), float(data["margin"]), data.get("nmfc_mode", "centre"))
        except (KeyError, TypeError, ValueError) as error:
            raise FitError(f"not a crop framing ({type(error).__name__}: {error}): {dict(data)!r}") from None

    @classmethod
    def measured(
        cls, extents_px: npt.ArrayLike, image_width: int, margin: float, nmfc_mode: NmfcMode = "centre"
    ) -> CropFraming:
        """Return the framing of faces whose landmark extents (px, one per frame) were measured in `image_width`."""
        extents = np.asarray(extents_px, dtype=np.float64)
        if extents.size == 0:
            raise FitError("a crop framing needs at least one frame's landmark extent")
        return cls(margin * float(np.median(extents)) / image_width, margin, nmfc_mode)
