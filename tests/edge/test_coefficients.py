"""The edge's coefficient stream: one per face frame, and a bad frame skipped rather than ending the stream."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from edge.coefficients import coefficient_stream


def test_a_degenerate_frame_is_skipped_and_the_stream_goes_on(sample_tracks: Any) -> None:
    frames = [f for f in sample_tracks.frames_of(0)][:30]
    broken = dataclasses.replace(frames[10], landmarks=np.full_like(frames[10].landmarks, np.nan))
    stream = list(coefficient_stream([*frames[:10], broken, *frames[11:]]))
    assert [frame.index for frame, _ in stream] == [f.index for f in frames if f is not frames[10]]
    assert [c.seq for _, c in stream] == list(range(29)), "sequence numbers stay contiguous for the wire"
