"""A render replica dies mid-session: the session survives and frames resume from the other replica."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator, Callable, Iterator

import numpy as np
import pytest

from edge.client import SenderClient
from face3d.coefficients import Coefficients
from inference.serve_config import ServingConfig
from signaling.auth import mint_token
from signaling.config import GatewayConfig
from signaling.gateway import start_gateway
from signaling.renderer import ServeRenderer

pytestmark = pytest.mark.slow

# Serve notices a dead replica when a call to it fails and routes to the live one, which then loads the
# target (~1 s on this CPU) before rendering; the gateway retries meanwhile. 15 s bounds all of it with
# room for a loaded 2-core machine.
RESUME_BOUND_S = 15.0


@pytest.fixture(scope="module")
def two_replicas(avatar_registry: str, local_ray_starter: Callable[[], None]) -> Iterator[ServingConfig]:
    """Local Ray with the Serve app on two replicas (no CPUs reserved, so both fit on two cores)."""
    import ray
    from ray import serve

    from inference.serve_app import run_app

    config = ServingConfig.load(registry=avatar_registry, output_size=128, num_cpus=0.0, num_replicas=2)
    local_ray_starter()
    try:
        run_app(config)
        yield config
    finally:
        serve.shutdown()
        ray.shutdown()


async def endless(fps: float) -> AsyncIterator[Coefficients]:
    """Yield a talking face (jawOpen oscillating) at `fps` until cancelled."""
    seq = 0
    while True:
        blendshapes = np.zeros(52, np.float32)
        blendshapes[25] = 0.5 + 0.5 * np.sin(seq / 5)
        yield Coefficients(seq, round(seq * 1000 / fps), blendshapes, np.zeros(3, np.float32),
                           np.zeros(2, np.float32), 0.0135)  # fmt: skip
        seq += 1
        await asyncio.sleep(0)


def test_killing_the_replica_that_renders_a_session_loses_nothing_but_time(two_replicas: ServingConfig) -> None:
    from ray import serve

    async def scenario() -> dict[str, float]:
        secret = os.urandom(32)
        gateway = await start_gateway(GatewayConfig.load(port=0), ServeRenderer(two_replicas.app_name), secret)
        token = mint_token(secret, "bob", "room", "send", ("woman",))
        sender = SenderClient(gateway.url, token, "woman", fps=20)
        running = asyncio.create_task(sender.run(endless(20), realtime=True))
        try:
            deadline = time.monotonic() + 60
            while sender.stats.round_trips < 20:
                assert time.monotonic() < deadline and not running.done(), "the session never started rendering"
                await asyncio.sleep(0.1)
            handle = serve.get_app_handle(two_replicas.app_name)
            # The session's requests go where its target is loaded (multiplexing): ask that replica who it is.
            victim = await handle.options(multiplexed_model_id="woman").replica.remote()
            os.kill(int(victim["pid"]), signal.SIGKILL)
            killed_at, before = time.monotonic(), sender.stats.round_trips
            while sender.stats.round_trips < before + 10:
                assert time.monotonic() - killed_at < RESUME_BOUND_S, "frames did not resume"
                assert not running.done(), "the session ended"
                await asyncio.sleep(0.05)
            resumed_s = time.monotonic() - killed_at
            survivor = await handle.options(multiplexed_model_id="woman").replica.remote()
            stats = sender.stats
            return {"resumed_s": resumed_s, "connections": stats.connections, "victim": victim["pid"],
                    "survivor": survivor["pid"]}  # fmt: skip
        finally:
            sender.stop()
            await asyncio.gather(running, return_exceptions=True)
            await gateway.stop()

    result = asyncio.run(scenario())
    print(f"frames resumed {result['resumed_s']:.2f} s after the replica was killed")
    assert result["connections"] == 1, "the sender's session survived: no reconnection was needed"
    assert result["survivor"] != result["victim"]
