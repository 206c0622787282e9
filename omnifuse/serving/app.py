"""The HTTP API and web page of a trained run: ``POST /predict``, ``GET /metadata``, ``GET /health``, ``/``.

``POST /predict`` takes one sample, as multipart form data (files for images and audio, fields for text: what a
browser or ``curl -F`` sends) or as JSON with base64 files; or many samples at once as JSON
``{"instances": [{...}, {...}]}`` (each object as for one sample), answered as ``{"predictions": [...]}`` in the same
order. Each request is decoded on its own, so a bad input is answered with a 4xx JSON error naming its field,
``{"detail": ..., "field": "image"}`` (``"instances[3].image"`` in a batch); requests that wait for the model at the
same time go through it as one batch (:class:`MicroBatcher`).

>>> app = create_app("runs/cifar10-imdb")   # serve with uvicorn, or `omnifuse serve runs/cifar10-imdb`
"""

from __future__ import annotations

import logging
import time
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from omnifuse.predictor import Predictor
from omnifuse.serving.batching import MicroBatcher
from omnifuse.serving.inputs import CONTENT_TYPES, FILE_KINDS, Fields, RequestError, encode_all, read_request

log = logging.getLogger("omnifuse.serving")


def _predict_batch(predictor: Predictor, feeds: list[dict[str, np.ndarray]]) -> list[list[dict[str, Any]]]:
    """One model call for the feeds of several requests (each one or more samples): each request's answers."""
    merged = {k: np.concatenate([f[k] for f in feeds]) for k in feeds[0]}
    answers = predictor.predict_feed(merged)
    sizes = np.cumsum([0] + [len(next(iter(f.values()))) for f in feeds])
    return [answers[a:b] for a, b in zip(sizes[:-1], sizes[1:])]


def _error(exc: RequestError) -> JSONResponse:
    return JSONResponse({"detail": exc.message, "field": exc.field}, status_code=exc.status)


def _openapi_body(fields: dict[str, str]) -> dict[str, Any]:
    """The request body schema of POST /predict, from the model's own fields (shown at /docs)."""
    form, as_json = {}, {}
    for name, kind in fields.items():
        if kind in FILE_KINDS:
            form[name] = {"type": "string", "format": "binary", "description": f"{kind} file"}
            as_json[name] = {"type": "string", "format": "byte", "description": f"{kind} file, base64"}
        elif kind == "numbers":
            form[name] = {"type": "string", "description": "JSON list of numbers, or object column -> value"}
            as_json[name] = {"description": "list of numbers, or object column -> value"}
        else:
            form[name] = as_json[name] = {"type": "string", "description": kind}
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {"schema": {"type": "object", "properties": form}},
                "application/json": {"schema": {"type": "object", "properties": as_json}},
            },
        }
    }


ERROR_RESPONSES = {
    status: {
        "description": what,
        "content": {"application/json": {"example": {"detail": "Expected ...", "field": "image"}}},
    }
    for status, what in (
        (400, "Malformed body"),
        (411, "No Content-Length"),
        (413, "Body over the upload limit"),
        (415, "Content type not accepted"),
        (422, "A field that cannot be used (unknown, corrupt, wrong type) or no field at all"),
    )
}


def create_app(
    run_dir_or_predictor: str | Path | Predictor,
    max_upload_bytes: int = 10 * 2**20,
    max_batch: int = 64,
    batch_wait_ms: float = 0.0,
    max_instances: int = 1024,
    precision: str | None = None,
) -> FastAPI:
    """The FastAPI app serving a run (a run directory or a loaded :class:`Predictor`).

    ``max_upload_bytes``: the largest request body accepted (413 above it). ``max_batch``: the most requests run
    through the model at once (a batched request counts as one). ``max_instances``: the most samples in one ``{"instances": [...]}`` request.
    ``batch_wait_ms``: how long a batch waits for more requests before it runs (0: it
    takes only what is already waiting). ``precision``: of a run directory's model, ``"float32"``, ``"bfloat16"``
    or ``None`` (as trained; see :mod:`omnifuse.precision`).
    """
    predictor = (
        run_dir_or_predictor
        if isinstance(run_dir_or_predictor, Predictor)
        else Predictor(run_dir_or_predictor, precision)
    )
    fields = Fields(predictor)
    batcher = MicroBatcher(lambda feeds: _predict_batch(predictor, feeds), max_batch, batch_wait_ms)
    counts = {"bad_requests": 0, "server_errors": 0}
    started = time.time()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await run_in_threadpool(_warm_up, predictor)
        await batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(
        title=f"omnifuse: {predictor.run_dir.name}",
        description="Predictions of a multimodal classifier trained with omnifuse. The web page is at `/`.",
        lifespan=lifespan,
    )
    app.state.predictor, app.state.batcher = predictor, batcher
    static = resources.files("omnifuse.serving") / "static"
    app.mount("/static", StaticFiles(directory=str(static)), name="static")

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(str(static / "index.html"))

    @app.get("/health", summary="Liveness, and what the server has done so far")
    async def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "run": predictor.run_dir.name,
            "uptime_s": round(time.time() - started, 3),
            **batcher.stats,
            **counts,
        }

    @app.get("/metadata", summary="Modalities and their expected inputs, tasks and their class names, limits")
    async def metadata() -> dict[str, Any]:
        meta = predictor.metadata()
        for info in meta["modalities"].values():
            if info["kind"] in CONTENT_TYPES:
                info["content_types"] = list(CONTENT_TYPES[info["kind"]])
        meta["fields"] = dict(fields.kinds)
        meta["limits"] = {
            "max_upload_bytes": max_upload_bytes,
            "max_batch": max_batch,
            "max_instances": max_instances,
        }
        return meta

    @app.post(
        "/predict",
        summary="Predict one sample from any non-empty subset of the model's modalities",
        description="Multipart form data (files for images and audio, fields for text) or a JSON object "
        "(base64 strings for files). Answers each task's class and probabilities, and the modality weights.",
        openapi_extra=_openapi_body(fields.kinds),
        responses=ERROR_RESPONSES,
    )
    async def predict(request: Request) -> dict[str, Any]:
        try:
            inputs = await read_request(request, fields, max_upload_bytes, max_instances)
            feed = await run_in_threadpool(encode_all, predictor, inputs)
        except RequestError as exc:
            counts["bad_requests"] += 1
            return _error(exc)
        try:
            answers = await batcher.submit(feed)
            return {"predictions": answers} if isinstance(inputs, list) else answers[0]
        except Exception:
            counts["server_errors"] += 1
            log.exception("prediction failed")
            return JSONResponse({"detail": "The model failed on this input.", "field": None}, status_code=500)

    return app


def _warm_up(predictor: Predictor) -> None:
    """Trace the model for batches of 1 and 2 now, so the first requests don't pay for it."""
    sample: dict[str, Any] = {}
    for name, kind in predictor.modalities.items():
        if kind == "image":
            sample[name] = np.zeros(predictor.image_shape, np.uint8)
        elif kind == "text":
            sample[name] = "warm up"
        elif kind == "audio":
            sample[name] = np.zeros(predictor.num_samples, np.float32)
        elif kind == "numbers":
            width = len(((getattr(predictor, "numbers", None) or {}).get(name) or {}).get("features", []))
            sample[name] = np.zeros(width, np.float32)
    try:
        for n in (1, 2):
            predictor.predict(batch=True, **{k: [v] * n for k, v in sample.items()})
    except Exception:  # a model that cannot be warmed up still serves; its first request is just slower
        log.warning("warm-up prediction failed", exc_info=True)
