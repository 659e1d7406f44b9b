"""What the gateway and the Serve app `avatar` exchange: stateless render requests and their results.

NumPy and face3d only, no torch: the gateway imports this module and reaches the deployment by
name (`serve.get_app_handle`), never importing the networks. A request carries everything one
frame needs — the coefficient window and the session's previous generated faces — so any replica
can render any session's next frame, and a replica dying loses no session state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

from base.errors import HeadcastError
from face3d.coefficients import Coefficients
from face3d.retarget import PoseOffset

TARGET_REVOKED = "target_revoked"  # the RenderError code of a target whose consent was revoked or that was deleted
TargetState = Literal["enrolled", "revoked", "unknown"]


class RenderError(HeadcastError):
    """A render request cannot be served (unknown target, malformed request); the message says why.

    code: "render_failed", or TARGET_REVOKED for a target that may no longer be driven.
    """

    def __init__(self, message: str, code: str = "render_failed") -> None:
        super().__init__(message)
        self.code = code

    def __reduce__(self) -> tuple[type[RenderError], tuple[str, str]]:
        return type(self), (str(self), self.code)  # the code survives Ray's pickling


@dataclass(frozen=True)
class DriveFrame:
    """One source frame as it drives a target.

    coefficients: the decoded wire packet (expression weights, rotation, the source's raw pose).
    pose: the source's pose relative to its own running mean (the gateway's `SourcePoseTracker`);
        None passes the source's translation and scale through unchanged (self-reenactment).
    """

    coefficients: Coefficients
    pose: PoseOffset | None


@dataclass(frozen=True)
class RenderRequest:
    """One frame of one session, self-contained.

    target_id: the enrolled target to render (a registry id; also the multiplexed model id).
    session_id: for logs and metrics only; replicas keep nothing per session.
    frames: the coefficient window, oldest first; the last one is the frame rendered. Fewer than the
        generator's NMFC window at a session's start: the first is repeated, as in training.
    previous: (k, S, S, 3) uint8 RGB, the session's last generated faces (`RenderResult.face`),
        oldest first, k ≤ the generator's previous-frame window; missing ones are mid-grey (zeros
        in [−1, 1]), as at the start of a training sequence. None at a session's start.
    background: None composites on the target's own background plate; an (r, g, b) colour instead.
    want_nmfc: also return the NMFC image of the rendered frame (debug views, the demo's side-by-side).
    """

    target_id: str
    session_id: str
    frames: tuple[DriveFrame, ...]
    previous: npt.NDArray[np.uint8] | None = None
    background: tuple[int, int, int] | None = None
    want_nmfc: bool = False

    def __post_init__(self) -> None:
        if not self.frames:
            raise RenderError("a render request needs at least one coefficient frame")
        if self.previous is not None:
            previous = np.asarray(self.previous)
            if previous.dtype != np.uint8 or previous.ndim != 4 or previous.shape[3] != 3:
                raise RenderError(f"previous faces must be (k, S, S, 3) uint8, got {previous.shape} {previous.dtype}")
        if self.background is not None and (
            len(self.background) != 3 or not all(isinstance(c, int) and 0 <= c <= 255 for c in self.background)
        ):
            raise RenderError(f"a background colour is three integers in 0-255, got {self.background!r}")

    @property
    def seq(self) -> int:
        """Return the sequence number of the frame rendered (the window's last)."""
        return self.frames[-1].coefficients.seq


@dataclass(frozen=True)
class RenderResult:
    """The rendered frame of one request.

    seq: the sequence number of the coefficients it shows.
    frame: (O, O, 3) uint8 RGB, the avatar composited on its background at the configured output size.
    face: (S, S, 3) uint8 RGB, the generator's raw frame at its own size — the next request's `previous`.
    nmfc: (S, S, 3) uint8 RGB NMFC image of the rendered frame when asked for, else None.
    timings_ms: milliseconds per stage on the replica: "nmfc" (retarget + rasterise the window),
        "generator", "composite"; "batch" is the number of requests rendered together.
    replica: which replica rendered it (host:pid), so faults and load can be traced.
    """

    seq: int
    frame: npt.NDArray[np.uint8]
    face: npt.NDArray[np.uint8]
    nmfc: npt.NDArray[np.uint8] | None
    timings_ms: dict[str, float] = field(default_factory=dict)
    replica: str = ""
