"""A deadline for reading a request body, so a client that sends half a body and goes silent is answered 408 and
its connection closed instead of held for good (uvicorn times out idle keep-alive connections, not a body that
stops arriving)."""

from __future__ import annotations

import asyncio

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from omnifuse.serving.inputs import RequestError


class BodyTimeout(RequestError):
    """The body did not arrive in time: answered 408."""

    def __init__(self, seconds: float):
        super().__init__(
            408, "body", f"Expected the whole request body within {seconds:g} s. Received: part of it"
        )


class BodyDeadline:
    """ASGI middleware: the whole body of an HTTP request must arrive within ``seconds`` of its first read.

    A read past the deadline raises :class:`BodyTimeout` (a :class:`RequestError`, so ``/predict`` answers and counts
    it like any bad request); one raised outside a handler is answered 408 here. Once the body is complete, later
    reads (a handler waiting for a disconnect) are not timed.
    """

    def __init__(self, app: ASGIApp, seconds: float = 30.0):
        if seconds <= 0:
            raise ValueError(f"Expected a positive body timeout. Received: {seconds!r}")
        self.app, self.seconds = app, float(seconds)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        state = {"deadline": None, "complete": False, "started": False}

        async def timed_receive() -> Message:
            if state["complete"]:
                return await receive()
            if state["deadline"] is None:
                state["deadline"] = loop.time() + self.seconds
            try:
                message = await asyncio.wait_for(receive(), max(0.0, state["deadline"] - loop.time()))
            except asyncio.TimeoutError:
                raise BodyTimeout(self.seconds) from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                state["complete"] = True
            return message

        async def tracked_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        try:
            await self.app(scope, timed_receive, tracked_send)
        except BodyTimeout as exc:
            if state["started"]:
                raise
            response = JSONResponse(
                {"detail": exc.message, "field": exc.field}, status_code=408, headers={"connection": "close"}
            )
            await response(scope, receive, send)
