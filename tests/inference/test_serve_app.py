"""The Serve app `avatar` on a real local Ray: requests by handle, batching, multiplexing, refusals."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from ray import serve

from face3d.coefficients import Coefficients
from inference.protocol import DriveFrame, RenderError, RenderRequest, RenderResult
from inference.serve_config import ServingConfig


def coefficients(seq: int, jaw_open: float = 0.0) -> Coefficients:
    blendshapes = np.zeros(52, np.float32)
    blendshapes[25] = jaw_open
    return Coefficients(seq, seq * 40, blendshapes, np.zeros(3, np.float32), np.zeros(2, np.float32), 0.0135)


def request(target: str = "woman", seq: int = 0, session: str = "s") -> RenderRequest:
    return RenderRequest(target, session, (DriveFrame(coefficients(seq), None),))


async def render(config: ServingConfig, *requests: RenderRequest) -> list[RenderResult]:
    handle = serve.get_app_handle(config.app_name)
    calls = [handle.options(multiplexed_model_id=r.target_id).remote(r) for r in requests]
    return list(await asyncio.gather(*calls))


def test_a_request_by_handle_returns_the_composited_frame(avatar_app: ServingConfig) -> None:
    (result,) = asyncio.run(render(avatar_app, request(seq=7)))
    assert result.seq == 7
    assert result.frame.shape == (avatar_app.output_size, avatar_app.output_size, 3) and result.frame.dtype == np.uint8
    assert result.face.shape == (128, 128, 3)
    assert set(result.timings_ms) == {"nmfc", "warp", "generator", "composite", "batch"} and result.replica


def test_concurrent_sessions_of_a_target_are_batched(avatar_app: ServingConfig) -> None:
    asyncio.run(render(avatar_app, request()))  # loaded, so the batch is not waiting on the bundle
    results = asyncio.run(render(avatar_app, *(request(seq=i, session=f"s{i}") for i in range(6))))
    assert [r.seq for r in results] == list(range(6))
    # Six requests sent at once cannot all arrive in separate 2 ms windows behind one busy replica.
    assert max(r.timings_ms["batch"] for r in results) >= 2


def test_unknown_targets_are_refused_and_do_not_break_a_batch(avatar_app: ServingConfig) -> None:
    handle = serve.get_app_handle(avatar_app.app_name)
    assert handle.target_state.remote("woman").result() == "enrolled"
    assert handle.target_state.remote("nobody").result() == "unknown"
    assert handle.target_state.remote("../etc").result() == "unknown"

    async def mixed() -> list[object]:
        calls = [handle.options(multiplexed_model_id=r.target_id).remote(r)
                 for r in (request("nobody"), request("woman", 3))]  # fmt: skip
        return list(await asyncio.gather(*calls, return_exceptions=True))

    refused, served = asyncio.run(mixed())
    assert isinstance(refused, Exception) and "no target 'nobody'" in str(refused)
    assert isinstance(served, RenderResult) and served.seq == 3


def test_a_malformed_request_is_refused() -> None:
    with pytest.raises(RenderError, match="at least one"):
        RenderRequest("woman", "s", ())
