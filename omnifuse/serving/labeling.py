"""The labelling page's routes (``omnifuse serve RUN --label-queue queue.csv --labels-out labels.csv``): ``/label``
(the page), ``GET /label/next``, ``POST /label/answer``, ``POST /label/skip``, ``POST /label/undo``,
``GET /label/status`` and ``GET /label/file/{row}/{column}`` (a queued sample's image or audio).

Each browser tab sends its own ``client`` id, so two tabs never get the same sample (:mod:`omnifuse.label.queue`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse
from starlette.concurrency import run_in_threadpool

from omnifuse.label.queue import LabelQueue, QueueError


def _error(exc: QueueError) -> JSONResponse:
    return JSONResponse({"detail": exc.message}, status_code=exc.status)


async def _body(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError as exc:
        raise QueueError(400, f"Expected a JSON body. Received: {exc}") from exc
    if not isinstance(body, dict) or not isinstance(body.get("client", ""), str):
        raise QueueError(400, "Expected a JSON object with a string 'client'")
    return body


def add_label_routes(app: FastAPI, queue: LabelQueue, static: Path) -> None:
    """Serve ``queue``'s labelling page and API on ``app``."""

    @app.get("/label", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(str(static / "label.html"))

    @app.get("/label/status", summary="The labelling queue: samples, answers, classes")
    async def status() -> dict[str, Any]:
        return queue.status()

    @app.get("/label/next", summary="The next sample for this tab to label")
    async def next_sample(client: str = "") -> dict[str, Any]:
        sample = queue.next(client)
        return {"done": sample is None, "sample": sample, **queue.status()}

    @app.post(
        "/label/answer", summary="Record a label: appended and synced to the labels CSV before the reply"
    )
    async def answer(request: Request):
        try:
            body = await _body(request)
            # the fsync may wait on the disk: off the event loop
            return await run_in_threadpool(
                queue.answer, body.get("client", ""), body.get("row"), body.get("label")
            )
        except QueueError as exc:
            return _error(exc)

    @app.post("/label/skip", summary="Skip a sample (it comes back after the others)")
    async def skip(request: Request):
        try:
            body = await _body(request)
            queue.skip(body.get("client", ""), body.get("row"))
        except QueueError as exc:
            return _error(exc)
        return queue.status()

    @app.post("/label/undo", summary="Remove this tab's last answer; answers that sample again")
    async def undo(request: Request):
        try:
            body = await _body(request)
            sample = await run_in_threadpool(queue.undo, body.get("client", ""))
        except QueueError as exc:
            return _error(exc)
        return {"sample": sample, **queue.status()}

    @app.get("/label/file/{row}/{column}", include_in_schema=False)
    async def file(row: int, column: str):
        try:
            return FileResponse(str(queue.file(row, column)))
        except QueueError as exc:
            return _error(exc)
