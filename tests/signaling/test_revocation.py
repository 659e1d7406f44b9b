"""Revocation on the real stack (local Ray, the Serve app, the gateway, the Python edge on loopback): a target
revoked in the registry mid-session stops rendering, its sender and viewer are told why and do not
reconnect, Prometheus counts the ended sessions, new sessions are refused, and the replica drops the target
from its cache.

Each test enrols a copy of the shared test target under a fresh name, so revoking it touches no other test.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from ray import serve

from edge.client import SenderClient, ViewerClient
from edge.errors import EdgeError
from face3d.coefficients import Coefficients
from inference.registry import TargetBundle, TargetRegistry
from inference.serve_config import ServingConfig
from signaling.auth import mint_token
from signaling.config import GatewayConfig
from signaling.gateway import start_gateway
from signaling.renderer import ServeRenderer

pytestmark = pytest.mark.slow

SECRET = b"k" * 32
FPS = 25
PLACEHOLDER_PX = 32  # unlike the app's 128² output: a frame of the output size is a rendered one
EVENT_TIMEOUT_S = 60.0  # only ends a test that would hang; every wait returns when its event happens


def enrol_copy(registry: TargetRegistry, bundle: TargetBundle) -> str:
    """Save `bundle` under a fresh target id; return the id."""
    target = f"revocable-{uuid.uuid4().hex[:8]}"
    registry.save(dataclasses.replace(bundle, metadata=dataclasses.replace(bundle.metadata, target_id=target)))
    return target


async def faces() -> AsyncIterator[Coefficients]:
    """A frontal face at 25 fps, for as long as it is read."""
    seq = 0
    while True:
        yield Coefficients(seq, 40 * seq, np.zeros(52, np.float32), np.zeros(3, np.float32), np.zeros(2, np.float32),
                           0.012)  # fmt: skip
        seq += 1
        await asyncio.sleep(0)


async def until(condition: Any, what: str) -> None:
    deadline = time.monotonic() + EVENT_TIMEOUT_S
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {EVENT_TIMEOUT_S} s waiting for {what}")
        await asyncio.sleep(0.01)


def revoked_sessions(text: str) -> dict[str, float]:
    return {sample.labels["role"]: sample.value for family in text_string_to_metric_families(text)
            for sample in family.samples if sample.name == "headcast_gateway_revoked_sessions_total"}  # fmt: skip


async def loaded_targets(config: ServingConfig) -> list[str]:
    """Return the targets the (one) replica holds in its cache."""
    return list((await serve.get_app_handle(config.app_name).replica.remote())["targets"])


def test_revoking_a_target_ends_its_live_sessions_and_refuses_new_ones(
    avatar_app: ServingConfig, avatar_bundle: TargetBundle
) -> None:
    registry = TargetRegistry(str(avatar_app.registry))
    target = enrol_copy(registry, avatar_bundle)
    send = mint_token(SECRET, "bob", "room-r", "send", (target,), max_sessions=2)
    view = mint_token(SECRET, "carol", "room-r", "view", ())
    seen = {"sender": 0, "viewer": 0}

    def counter(who: str) -> Any:
        def on_frame(rgb: np.ndarray) -> None:
            if rgb.shape[0] != PLACEHOLDER_PX:
                seen[who] += 1

        return on_frame

    async def main() -> float:
        config = GatewayConfig(port=0, placeholder_size_px=PLACEHOLDER_PX)
        running = await start_gateway(config, ServeRenderer(avatar_app.app_name), SECRET)
        try:
            sender = SenderClient(running.url, send, target, fps=FPS, on_frame=counter("sender"))
            sending = asyncio.create_task(sender.run(faces()))
            await until(lambda: seen["sender"] >= 3 or sending.done(), "the sender's avatar")
            viewer = ViewerClient(running.url, view, on_frame=counter("viewer"))
            viewing = asyncio.create_task(viewer.run())
            await until(lambda: seen["viewer"] >= 3 or viewing.done(), "the viewer's avatar")
            assert target in await loaded_targets(avatar_app)

            revoked_at = time.monotonic()
            await asyncio.to_thread(registry.revoke, target, "alice", "consent withdrawn")
            with pytest.raises(EdgeError) as ended:
                await asyncio.wait_for(sending, EVENT_TIMEOUT_S)
            stopped_s = time.monotonic() - revoked_at
            assert ended.value.code == "target_revoked" and "was revoked" in str(ended.value)
            await asyncio.wait_for(viewing, EVENT_TIMEOUT_S)
            assert (
                viewer.ended_because.startswith("target_revoked: ")
                and "can no longer be driven" in viewer.ended_because
            )

            async with aiohttp.ClientSession() as http, http.get(f"{running.url}/metrics") as response:
                assert revoked_sessions(await response.text()) == {"send": 1.0, "view": 1.0}
            # The clients closed on the notice; the gateway closes what is left after its grace at the latest.
            await until(lambda: not running.gateway.rooms and not running.gateway.peers, "the room to close")
            # A new session for the target is refused for good (410), not retried.
            with pytest.raises(EdgeError) as refused:
                await SenderClient(running.url, send, target, fps=FPS).run(faces())
            assert (refused.value.status, refused.value.code) == (410, "target_revoked")
            # The replica drops it from its cache by itself, on its own next check: nothing asked it to render
            # the target since, so wait for that check rather than race it.
            deadline = time.monotonic() + EVENT_TIMEOUT_S
            while target in await loaded_targets(avatar_app):
                if time.monotonic() > deadline:
                    pytest.fail(f"the replica still holds {target} {EVENT_TIMEOUT_S} s after it was revoked")
                await asyncio.sleep(avatar_app.revocation_check_s)
            return stopped_s
        finally:
            await running.stop()

    stopped_s = asyncio.run(main())
    print(f"revoked → the sender's session ended in {stopped_s * 1000:.0f} ms")


def test_the_replica_refuses_frames_of_a_revoked_target(avatar_app: ServingConfig, avatar_bundle: TargetBundle) -> None:
    from inference.protocol import TARGET_REVOKED, DriveFrame, RenderError, RenderRequest

    registry = TargetRegistry(str(avatar_app.registry))
    target = enrol_copy(registry, avatar_bundle)
    handle = serve.get_app_handle(avatar_app.app_name).options(multiplexed_model_id=target)
    face = Coefficients(0, 0, np.zeros(52, np.float32), np.zeros(3, np.float32), np.zeros(2, np.float32), 0.012)
    frame = DriveFrame(face, None)
    handle.remote(RenderRequest(target, "s", (frame,))).result()
    registry.revoke(target, "alice")
    assert serve.get_app_handle(avatar_app.app_name).target_state.remote(target).result() == "revoked"

    def refused() -> bool:
        try:
            handle.remote(RenderRequest(target, "s", (frame,))).result()
        except RenderError as error:
            assert error.code == TARGET_REVOKED and "was revoked" in str(error)
            return True
        return False

    deadline = time.monotonic() + EVENT_TIMEOUT_S
    while not refused():  # the replica re-reads the registry every revocation_check_s
        assert time.monotonic() < deadline, "the replica kept rendering a revoked target"
    assert target not in asyncio.run(loaded_targets(avatar_app))
