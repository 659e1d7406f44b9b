"""The crop framing record: measured once at enrolment, kept as JSON in the bundle, read back by serving."""

from __future__ import annotations

import json

import pytest

from face3d.errors import FitError
from face3d.framing import CropFraming


def test_a_measured_framing_is_the_margin_times_the_median_extent_in_image_widths() -> None:
    framing = CropFraming.measured([100.0, 120.0, 400.0], image_width=720, margin=1.8)
    assert framing.side_widths == pytest.approx(1.8 * 120.0 / 720) and framing.margin == 1.8
    assert framing.nmfc_mode == "centre"


def test_the_bundles_json_reads_back_to_the_same_framing() -> None:
    framing = CropFraming(0.31, 1.8, "barycentric")
    assert CropFraming.from_json(json.loads(json.dumps(framing.to_json()))) == framing


@pytest.mark.parametrize(
    "record",
    [{}, {"side_widths": 0.3}, {"side_widths": "wide", "margin": 1.8}, {"side_widths": -1, "margin": 1.8},
     {"side_widths": 0.3, "margin": 1.8, "nmfc_mode": "smooth"}, {"side_widths": float("nan"), "margin": 1.8}],
)  # fmt: skip
def test_a_damaged_record_is_refused_with_what_is_wrong(record: dict[str, object]) -> None:
    with pytest.raises(FitError, match=r"crop framing|NMFC mode"):
        CropFraming.from_json(record)


def test_no_frames_give_no_framing() -> None:
    with pytest.raises(FitError, match="at least one frame"):
        CropFraming.measured([], image_width=720, margin=1.8)
