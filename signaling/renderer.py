"""The renderer the gateway calls: the Ray Serve app `avatar`, reached by name through its handle.

The gateway depends on the small `Renderer` protocol only; `ServeRenderer` is its one implementation
and turns Ray's failures into the gateway's errors: a replica that died or a Serve app that cannot be
reached is `RendererUnavailableError` (the session retries it), a request the app refuses is a
`GatewayError` with code `render_failed` (retrying would not help).
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

import ray
import ray.exceptions
from ray import serve
from ray.serve.exceptions import RayServeException

from inference.protocol import TARGET_REVOKED, RenderError, RenderRequest, RenderResult, TargetState
from signaling.errors import GatewayError, RendererUnavailableError

# Failures of the transport, not of the request: another replica (or the same one restarted) can serve
# the same request. RayTaskError (the replica's code raised) is deliberately not among them.
_TRANSIENT: tuple[type[BaseException], ...] = (
    ray.exceptions.RayActorError,  # ActorDiedError, ActorUnavailableError: the replica died or is unreachable
    ray.exceptions.GetTimeoutError,
    RayServeException,  # no controller, app not deployed yet, back-pressure, replica unavailable
    TimeoutError,
)


class Renderer(Protocol):
    """What the gateway needs from whatever renders the avatars."""

    async def render(self, request: RenderRequest) -> RenderResult:
        """Return the rendered frame of `request`; raises GatewayError (RendererUnavailableError: retry)."""
        ...

    async def target_state(self, target_id: str) -> TargetState:
        """Return whether `target_id` may be driven ("enrolled"), was revoked, or is unknown; raises
        RendererUnavailableError when nobody can say."""
        ...

    async def healthy(self) -> bool:
        """Return True when the renderer is deployed and running."""
        ...


class ServeRenderer:
    """The Serve app `app_name` in the Ray cluster this process is connected to (`ray.init` done by the caller).

    The handle is fetched on first use, not at construction, so the gateway can start before the app.
    """

    def __init__(self, app_name: str = "avatar") -> None:
        self.app_name = app_name
        self._handle: Any = None  # ray.serve.handle.DeploymentHandle, untyped where it matters (methods by name)

    async def _get_handle(self) -> Any:
        """Return the app's handle, looking it up once (a blocking call to the controller, so off the loop)."""
        if self._handle is None:
            if not ray.is_initialized():
                # serve.get_app_handle would start a fresh, empty local cluster instead of finding the app.
                raise RendererUnavailableError(
                    "Ray is not initialised in the gateway's process: start it with `headcast serve`"
                )
            try:
                self._handle = await asyncio.to_thread(serve.get_app_handle, self.app_name)
            except _TRANSIENT as error:
                raise RendererUnavailableError(
                    f"the Serve app {self.app_name!r} cannot be reached ({error})"
                ) from error
        return self._handle

    async def render(self, request: RenderRequest) -> RenderResult:
        """Return the frame the app renders for `request`, routed to a replica holding its target."""
        handle = await self._get_handle()
        response = handle.options(multiplexed_model_id=request.target_id).remote(request)
        return await self._await(response, f"rendering frame {request.seq} of {request.target_id!r}")

    async def target_state(self, target_id: str) -> TargetState:
        """Return the state of `target_id` in the app's registry (read afresh, never from a replica's cache)."""
        handle = await self._get_handle()
        state: TargetState = await self._await(handle.target_state.remote(target_id), f"looking up {target_id!r}")
        return state

    async def healthy(self) -> bool:
        """Return True when the app is deployed and RUNNING."""
        if not ray.is_initialized():
            return False
        try:
            status = await asyncio.to_thread(serve.status)
        except _TRANSIENT:
            return False
        application = status.applications.get(self.app_name)
        return application is not None and application.status == "RUNNING"  # a str enum

    async def _await(self, response: Any, what: str) -> Any:
        """Return the result of a Serve call, translating its failures into the gateway's errors."""
        try:
            return await response
        except asyncio.CancelledError:
            response.cancel()  # the caller gave up (timeout, session closed): free the replica's slot
            raise
        except RenderError as error:  # raised by the app's code; Ray re-raises it as (RayTaskError, RenderError)
            if error.code == TARGET_REVOKED:
                raise GatewayError(410, TARGET_REVOKED, str(error)) from error
            raise GatewayError(422, "render_failed", f"{what}: {error}") from error
        except _TRANSIENT as error:
            self._handle = None  # the app may have been redeployed: look it up again next time
            raise RendererUnavailableError(
                f"{what}: the Serve app {self.app_name!r} is unavailable ({error})"
            ) from error
        except ray.exceptions.RayTaskError as error:
            raise GatewayError(500, "render_failed", f"{what}: the Serve app failed ({error})") from error
