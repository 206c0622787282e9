"""The HTTP API and web page of a trained run: ``POST /predict``, ``GET /metadata``, ``GET /health``, ``/``.

``POST /predict`` takes one sample, as multipart form data (files for images and audio, fields for text: what a
browser or ``curl -F`` sends) or as JSON with base64 files; or many samples at once as JSON
``{"instances": [{...}, {...}]}`` (each object as for one sample), answered as ``{"predictions": [...]}`` in the same
order. Each request is decoded on its own, so a bad input is answered with a 4xx JSON error naming its field,
``{"detail": ..., "field": "image"}`` (``"instances[3].image"`` in a batch); requests that wait for the model at the
same time go through it as one batch (:class:`MicroBatcher`); if a batch fails, each request in it is run on its own,
so only the request the model cannot take fails (422), never the others.

Each task of an answer says whether it could be answered: a joint model's task whose modalities were all absent from
the sample (``cifar10`` asked about a review alone) comes back as ``{"answerable": false, "class": null, "reason":
...}`` instead of a class picked from nothing. ``POST /predict?explain=true`` adds each sample's ``"explanation"``
(:meth:`Predictor.explain_feed`; what the web page's "Explain" switch draws). ``/docs`` (Swagger UI) is served from
files installed with the package: it works offline.

Nothing a client sends gets a 5xx: malformed, oversized, too deeply nested or badly encoded bodies, corrupt files,
images over ``max_image_pixels``, bodies that stop arriving (408 after ``body_timeout_s``) are 4xx, each counted in
``/health`` (``bad_requests``, and ``model_rejected`` for requests the model failed on alone). Memory stays bounded:
at most ``max_decoders`` requests decode at once, each holding its body (at most ``max_upload_bytes``) and one image
of at most ``max_image_pixels`` (about 16 bytes a pixel while it is converted), so decoding peaks near
``max_decoders x (max_upload_bytes + 16 x max_image_pixels)``: 4 x (10 MiB + 256 MiB) with the defaults.

>>> app = create_app("runs/cifar10-imdb")   # serve with uvicorn, or `omnifuse serve runs/cifar10-imdb`
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Query, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from starlette.concurrency import run_in_threadpool

from omnifuse.limits import InputLimits
from omnifuse.modalities import KINDS
from omnifuse.predictor import Predictor
from omnifuse.serving.batching import MicroBatcher
from omnifuse.serving.inputs import Fields, RequestError, carried, content_types, encode_all, read_request
from omnifuse.serving.timeouts import BodyDeadline

log = logging.getLogger("omnifuse.serving")
MAX_EXPLAINED = 16  # samples of one request explained at most (explain=true)


class ModelRejected(Exception):
    """The model failed on one request's samples run on their own: answered 422 (the input is the cause)."""


def _predict_batch(predictor: Predictor, feeds: list[dict[str, np.ndarray]]) -> list[Any]:
    """One model call for the feeds of several requests (each one or more samples): each request's answers.

    If the call fails, each feed is run on its own, so one request the model cannot take fails alone: its entry is
    then a :class:`ModelRejected` instead of answers.
    """
    try:
        merged = {k: np.concatenate([f[k] for f in feeds]) for k in feeds[0]}
        answers = predictor.predict_feed(merged)
    except Exception:
        if len(feeds) > 1:
            log.warning("a batch of %d requests failed; running them one by one", len(feeds), exc_info=True)
        out: list[Any] = []
        for feed in feeds:
            try:
                out.append(predictor.predict_feed(feed))
            except Exception as exc:
                log.warning("the model failed on one request's input", exc_info=True)
                out.append(ModelRejected(f"The model could not process this input: {type(exc).__name__}"))
        return out
    sizes = np.cumsum([0] + [len(next(iter(f.values()))) for f in feeds])
    return [answers[a:b] for a, b in zip(sizes[:-1], sizes[1:])]


def _error(exc: RequestError) -> JSONResponse:
    # a body that stopped arriving leaves the connection in an unknown state: close it
    headers = {"connection": "close"} if exc.status == 408 else None
    return JSONResponse({"detail": exc.message, "field": exc.field}, status_code=exc.status, headers=headers)


def _openapi_body(fields: dict[str, str]) -> dict[str, Any]:
    """The request body schema of POST /predict, from the model's own fields (shown at /docs)."""
    form, as_json = {}, {}
    for name, kind in fields.items():
        if carried(kind) == "file":
            form[name] = {"type": "string", "format": "binary", "description": f"{kind} file"}
            as_json[name] = {"type": "string", "format": "byte", "description": f"{kind} file, base64"}
        elif carried(kind) == "json":
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
        (400, "Malformed body (or nested too deeply)"),
        (408, "The body did not arrive within the body timeout"),
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
    limits: InputLimits | None = None,
    max_decoders: int | None = None,
    body_timeout_s: float = 30.0,
    label_queue: str | Path | None = None,
    labels_out: str | Path | None = None,
    calibrated: bool = True,
) -> FastAPI:
    """The FastAPI app serving a run (a run directory or a loaded :class:`Predictor`).

    ``max_upload_bytes``: the largest request body accepted (413 above it). ``max_batch``: the most requests run
    through the model at once (a batched request counts as one). ``max_instances``: the most samples in one ``{"instances": [...]}`` request.
    ``batch_wait_ms``: how long a batch waits for more requests before it runs (0: it
    takes only what is already waiting). ``precision``: of a run directory's model, ``"float32"``, ``"bfloat16"``
    or ``None`` (as trained; see :mod:`omnifuse.precision`). ``limits``: the largest image, recording and text
    (:class:`~omnifuse.limits.InputLimits`; a loaded Predictor keeps its own). ``max_decoders``: the most requests
    decoded at once (default: the CPU count, at most 4), which bounds memory (see the module docstring).
    ``body_timeout_s``: how long a request body may take to arrive (408 after it). ``label_queue`` and
    ``labels_out``: a queue CSV (``omnifuse label next``) to label at ``/label``, answers appended to the CSV
    ``labels_out`` (:mod:`omnifuse.serving.labeling`). ``calibrated``: answer with the run's temperature-scaled probabilities (``False``: the model's raw ones; a loaded Predictor keeps its own).
    """
    predictor = (
        run_dir_or_predictor
        if isinstance(run_dir_or_predictor, Predictor)
        else Predictor(run_dir_or_predictor, precision, limits, calibrated)
    )
    max_decoders = max_decoders or min(4, os.cpu_count() or 1)
    if max_decoders < 1:
        raise ValueError(f"Expected max_decoders >= 1. Received: {max_decoders}")
    decoding = asyncio.Semaphore(max_decoders)
    explaining = asyncio.Semaphore(1)
    fields = Fields(predictor)
    batcher = MicroBatcher(lambda feeds: _predict_batch(predictor, feeds), max_batch, batch_wait_ms)
    counts = {"bad_requests": 0, "model_rejected": 0, "server_errors": 0}
    started = time.time()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await run_in_threadpool(_warm_up, predictor)
        await batcher.start()
        yield
        await batcher.stop()

    # /docs from Swagger UI's files installed with the fastapi-offline package: it works without a network
    app = FastAPIOffline(
        title=f"omnifuse: {predictor.run_dir.name}",
        description="Predictions of a multimodal classifier trained with omnifuse. The web page is at `/`.",
        lifespan=lifespan,
        favicon_url="/favicon.ico",
    )
    app.add_middleware(BodyDeadline, seconds=body_timeout_s)
    app.state.predictor, app.state.batcher = predictor, batcher
    static = resources.files("omnifuse.serving") / "static"
    app.mount("/static", StaticFiles(directory=str(static)), name="static")

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(str(static / "index.html"))

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> FileResponse:
        return FileResponse(str(static / "favicon.svg"), media_type="image/svg+xml")

    if label_queue is not None:
        from omnifuse.label.queue import LabelQueue
        from omnifuse.serving.labeling import add_label_routes

        add_label_routes(
            app, LabelQueue(predictor, label_queue, labels_out or "labels.csv"), Path(str(static))
        )

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
            if content_types(info["kind"]):
                info["content_types"] = list(content_types(info["kind"]))
        meta["fields"] = dict(fields.kinds)
        meta["limits"] = {
            "max_upload_bytes": max_upload_bytes,
            "max_batch": max_batch,
            "max_instances": max_instances,
            "max_decoders": max_decoders,
            "body_timeout_s": body_timeout_s,
            "max_image_pixels": predictor.limits.max_image_pixels,
            "max_audio_seconds": predictor.limits.max_audio_seconds,
            "max_text_chars": predictor.limits.max_text_chars,
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
    async def predict(
        request: Request,
        explain: bool = Query(
            False,
            description="Add each sample's explanation: per task, an image's heat map, a score per word, per "
            f"audio segment, per column (at most {MAX_EXPLAINED} samples a request; costs about 16 forward and "
            "backward passes a sample, and one forward pass per word of text)",
        ),
    ) -> dict[str, Any]:
        try:
            inputs = await read_request(request, fields, max_upload_bytes, max_instances)
            if explain and isinstance(inputs, list) and len(inputs) > MAX_EXPLAINED:
                raise RequestError(
                    413,
                    "explain",
                    f"Expected at most {MAX_EXPLAINED} instances with explain=true. Received: {len(inputs)}",
                )
            async with decoding:
                feed = await run_in_threadpool(encode_all, predictor, inputs)
        except RequestError as exc:
            counts["bad_requests"] += 1
            return _error(exc)
        except (
            Exception,
            RecursionError,
        ) as exc:  # anything else raised by a client's data is still its data
            counts["bad_requests"] += 1
            log.warning("unexpected error reading a request", exc_info=True)
            return _error(
                RequestError(
                    422, None, f"Expected inputs this model can read. Received: {type(exc).__name__}"
                )
            )
        try:
            answers = await batcher.submit(feed)
        except ModelRejected as exc:
            counts["model_rejected"] += 1
            return _error(RequestError(422, None, str(exc)))
        except Exception:
            counts["server_errors"] += 1
            log.exception("prediction failed")
            return JSONResponse({"detail": "The model failed on this input.", "field": None}, status_code=500)
        if explain:
            async with explaining:  # one at a time: an explanation costs tens of forward and backward passes
                found = await run_in_threadpool(predictor.explain_feed, feed)
            for answer, explanation in zip(answers, found):
                answer["explanation"] = explanation
        return {"predictions": answers} if isinstance(inputs, list) else answers[0]

    return app


def _warm_up(predictor: Predictor) -> None:
    """Trace the model now, once for every batch size, and run batches of 1 and 2 through it, so the first
    requests don't pay for it."""
    sample = {
        name: KINDS[kind].warm_up(**predictor.facts(name))
        for name, kind in predictor.modalities.items()
        if kind in KINDS
    }
    predictor.inference.trace_now()  # a server answers many requests: through the graph from the first
    try:
        # traced once for every batch size (else once for the first batch size and again for the second)
        predictor.inference.trace_now(every_batch_size=True)
        for n in (1, 2):
            predictor.predict(batch=True, **{k: [v] * n for k, v in sample.items()})
    except Exception:  # a model that cannot be warmed up still serves; its first request is just slower
        log.warning("warm-up prediction failed", exc_info=True)
