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

import asyncio
import base64
import binascii
import json
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException

from omnifuse.errors import OmnifuseError
from omnifuse.predictor import Predictor

log = logging.getLogger("omnifuse.serving")

# Declared types accepted per file kind. A part that declares no type (or a generic one) is accepted too: the
# decoder then decides, and answers a corrupt or foreign file with a 422 naming the field.
CONTENT_TYPES = {
    "image": (
        "image/png",
        "image/jpeg",
        "image/gif",
        "image/bmp",
        "image/x-ms-bmp",
        "image/webp",
        "image/tiff",
    ),
    "audio": ("audio/wav", "audio/x-wav", "audio/wave", "audio/vnd.wave"),
    "text": ("text/plain",),
}
GENERIC_TYPES = ("", "application/octet-stream")
FILE_KINDS = ("image", "audio")


class RequestError(Exception):
    """A bad request: answered with ``status`` and ``{"detail": message, "field": field}``."""

    def __init__(self, status: int, field: str | None, message: str):
        super().__init__(message)
        self.status, self.field, self.message = status, field, message


class MicroBatcher:
    """Runs the samples of requests that wait at the same time as one model call.

    A request is queued; the worker takes everything queued (up to ``max_batch``), optionally waits
    ``wait_ms`` for more, and runs ``run_batch`` on one thread (the model is never called concurrently). While a
    batch runs, new requests queue up and form the next one, so a lone request waits for nothing and a crowd is
    served in batches.
    """

    def __init__(
        self, run_batch: Callable[[list[Any]], list[Any]], max_batch: int = 64, wait_ms: float = 0.0
    ):
        if max_batch < 1:
            raise ValueError(f"Expected max_batch >= 1. Received: {max_batch}")
        self.run_batch, self.max_batch, self.wait_ms = run_batch, int(max_batch), float(wait_ms)
        self.stats = {"requests": 0, "batches": 0, "largest_batch": 0}
        self._queue: asyncio.Queue | None = None
        self._task: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="omnifuse-model")
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        self._task = self._executor = None

    async def submit(self, item: Any) -> Any:
        """The answer for ``item``, computed in a batch with whatever else is waiting."""
        if self._queue is None:
            raise RuntimeError("MicroBatcher.submit called before start()")
        future = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((item, future))
        return await future

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            deadline = loop.time() + self.wait_ms / 1000
            while len(batch) < self.max_batch:
                if not self._queue.empty():
                    batch.append(self._queue.get_nowait())
                    continue
                left = deadline - loop.time()
                if left <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), left))
                except asyncio.TimeoutError:
                    break
            live = [(item, fut) for item, fut in batch if not fut.done()]  # a client may have gone away
            if not live:
                continue
            self.stats["requests"] += len(live)
            self.stats["batches"] += 1
            self.stats["largest_batch"] = max(self.stats["largest_batch"], len(live))
            try:
                answers = await loop.run_in_executor(self._executor, self.run_batch, [i for i, _ in live])
            except Exception as exc:  # handed to each waiting request; the worker keeps serving
                for _, fut in live:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            for (_, fut), answer in zip(live, answers):
                if not fut.done():
                    fut.set_result(answer)


def _predict_batch(predictor: Predictor, feeds: list[dict[str, np.ndarray]]) -> list[list[dict[str, Any]]]:
    """One model call for the feeds of several requests (each one or more samples): each request's answers."""
    merged = {k: np.concatenate([f[k] for f in feeds]) for k in feeds[0]}
    answers = predictor.predict_feed(merged)
    sizes = np.cumsum([0] + [len(next(iter(f.values()))) for f in feeds])
    return [answers[a:b] for a, b in zip(sizes[:-1], sizes[1:])]


def _error(exc: RequestError) -> JSONResponse:
    return JSONResponse({"detail": exc.message, "field": exc.field}, status_code=exc.status)


def _b64(field: str, value: Any) -> bytes:
    if not isinstance(value, str):
        raise RequestError(
            422, field, f"Expected {field!r} as a base64 string. Received: {type(value).__name__}"
        )
    if value.startswith("data:") and "," in value:  # a data URL, as a browser's FileReader makes
        value = value.split(",", 1)[1]
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise RequestError(
            422, field, f"Expected {field!r} as base64. Received: invalid base64 ({exc})"
        ) from exc
    if not data:
        raise RequestError(422, field, f"Expected {field!r} as a non-empty file. Received: 0 bytes")
    return data


class _Fields:
    """The request fields a model takes: its modalities, and the columns of its numbers modalities."""

    def __init__(self, predictor: Predictor):
        self.kinds: dict[str, str] = dict(predictor.modalities)
        for spec in (getattr(predictor, "numbers", None) or {}).values():
            for column in spec.get("columns", []):
                self.kinds.setdefault(column["name"], "column")

    def kind(self, field: str) -> str:
        if field not in self.kinds:
            raise RequestError(
                422, field, f"Unknown field {field!r}. This model takes: {', '.join(self.kinds)}"
            )
        return self.kinds[field]

    async def from_form(self, form) -> dict[str, Any]:
        inputs: dict[str, Any] = {}
        for field, value in form.multi_items():
            kind = self.kind(field)
            if field in inputs:
                raise RequestError(422, field, f"Expected one value for {field!r}. Received several")
            if isinstance(value, UploadFile):
                data = await value.read()
                if not data and not value.filename:
                    continue  # an empty file input, as a browser sends for a file not chosen
                inputs[field] = self._upload(field, kind, value.content_type or "", data)
            elif kind in FILE_KINDS:
                if value == "":
                    continue
                raise RequestError(
                    422, field, f"Expected {field!r} as a file upload ({kind}). Received: a text field"
                )
            elif kind == "numbers":
                inputs[field] = self._json_value(field, value)
            elif value != "":
                inputs[field] = value
        return inputs

    def _upload(self, field: str, kind: str, content_type: str, data: bytes) -> Any:
        ctype = content_type.split(";")[0].strip().lower()
        accepted = CONTENT_TYPES.get(kind, ())
        if ctype not in GENERIC_TYPES and ctype not in accepted:
            raise RequestError(
                415,
                field,
                f"Expected {field!r} as one of {', '.join(accepted) or 'a form field'}. "
                f"Received: a file of type {ctype!r}",
            )
        if kind in FILE_KINDS:
            if not data:
                raise RequestError(422, field, f"Expected {field!r} as a non-empty file. Received: 0 bytes")
            return data
        if kind == "text":
            from omnifuse.data.decode import decode_text

            try:
                return decode_text(data, f"the uploaded {field!r}")
            except OmnifuseError as exc:
                raise RequestError(422, field, str(exc)) from exc
        raise RequestError(415, field, f"Expected {field!r} as a form field. Received: a file upload")

    @staticmethod
    def _json_value(field: str, value: str) -> Any:
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            raise RequestError(
                422,
                field,
                f"Expected {field!r} as JSON (a list of numbers or an object). Received: {value!r}",
            ) from exc

    def from_json(self, body: Any, where: str = "") -> dict[str, Any]:
        """One sample's inputs from a JSON object; errors name ``where + field`` (e.g. ``instances[2].image``)."""
        if not isinstance(body, dict):
            raise RequestError(
                422,
                where.rstrip(".") or "body",
                f"Expected a JSON object keyed by field. Received: {type(body).__name__}",
            )
        inputs: dict[str, Any] = {}
        for field, value in body.items():
            try:
                self._json_field(inputs, field, value)
            except RequestError as exc:
                raise RequestError(exc.status, f"{where}{exc.field}", exc.message) from exc
        return inputs

    def _json_field(self, inputs: dict[str, Any], field: str, value: Any) -> None:
        kind = self.kind(field)
        if value is None or value == "":
            return
        if kind in FILE_KINDS:
            inputs[field] = _b64(field, value)
        elif kind == "text" and not isinstance(value, str):
            raise RequestError(
                422, field, f"Expected {field!r} as a string. Received: {type(value).__name__}"
            )
        else:
            inputs[field] = value


def _encode(predictor: Predictor, inputs: dict[str, Any], where: str = "") -> dict[str, np.ndarray]:
    """The model arrays for one sample; an error names the field that caused it (prefixed by ``where``)."""
    if not inputs:
        raise RequestError(
            422,
            where.rstrip(".") or None,
            f"Expected at least one of the fields {', '.join(predictor.modalities)}. Received: none",
        )
    try:
        return predictor.encode(**inputs)
    except OmnifuseError as exc:
        for field, value in inputs.items():  # find the culprit: decode each field on its own
            try:
                predictor.encode(**{field: value})
            except OmnifuseError as alone:
                raise RequestError(422, f"{where}{field}", str(alone)) from alone
        raise RequestError(422, where.rstrip(".") or None, str(exc)) from exc


def _encode_all(predictor: Predictor, inputs: dict[str, Any] | list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """One request's model arrays: a single sample, or the samples of ``{"instances": [...]}`` concatenated."""
    if isinstance(inputs, dict):
        return _encode(predictor, inputs)
    feeds = [_encode(predictor, x, f"instances[{i}].") for i, x in enumerate(inputs)]
    return {k: np.concatenate([f[k] for f in feeds]) for k in feeds[0]}


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
) -> FastAPI:
    """The FastAPI app serving a run (a run directory or a loaded :class:`Predictor`).

    ``max_upload_bytes``: the largest request body accepted (413 above it). ``max_batch``: the most requests run
    through the model at once (a batched request counts as one). ``max_instances``: the most samples in one ``{"instances": [...]}`` request.
    ``batch_wait_ms``: how long a batch waits for more requests before it runs (0: it
    takes only what is already waiting).
    """
    predictor = (
        run_dir_or_predictor
        if isinstance(run_dir_or_predictor, Predictor)
        else Predictor(run_dir_or_predictor)
    )
    fields = _Fields(predictor)
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
            inputs = await _read(request, fields, max_upload_bytes, max_instances)
            feed = await run_in_threadpool(_encode_all, predictor, inputs)
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


async def _read(
    request: Request, fields: _Fields, max_bytes: int, max_instances: int
) -> dict[str, Any] | list[dict[str, Any]]:
    """The request's inputs by field, from multipart/urlencoded form data or a JSON object; a list of them for a
    JSON ``{"instances": [...]}``."""
    length = request.headers.get("content-length")
    if length is None:
        raise RequestError(411, "content-length", "Expected a Content-Length header. Received: none")
    if not length.isdigit():
        raise RequestError(400, "content-length", f"Expected a byte count. Received: {length!r}")
    if int(length) > max_bytes:
        raise RequestError(
            413, "body", f"Expected a request body of at most {max_bytes} bytes. Received: {length} bytes"
        )
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype in ("multipart/form-data", "application/x-www-form-urlencoded"):
        try:
            form = await request.form(max_files=16, max_fields=64, max_part_size=max_bytes)
        except MultiPartException as exc:
            raise RequestError(
                400, "body", f"Expected well-formed form data. Received: {exc.message}"
            ) from exc
        try:
            return await fields.from_form(form)
        finally:
            await form.close()
    if ctype == "application/json" or ctype.endswith("+json"):
        try:
            body = json.loads(await request.body())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise RequestError(
                400, "body", f"Expected a JSON object. Received: invalid JSON ({exc})"
            ) from exc
        if isinstance(body, dict) and "instances" in body and "instances" not in fields.kinds:
            return _instances(body, fields, max_instances)
        return fields.from_json(body)
    raise RequestError(
        415,
        "content-type",
        f"Expected multipart/form-data or application/json. Received: {ctype or 'no content type'}",
    )


def _instances(body: dict[str, Any], fields: _Fields, max_instances: int) -> list[dict[str, Any]]:
    instances = body["instances"]
    if len(body) > 1:
        extra = next(k for k in body if k != "instances")
        raise RequestError(
            422, extra, f"Expected only 'instances' beside a batch of samples. Received: {extra!r}"
        )
    if not isinstance(instances, list) or not instances:
        raise RequestError(
            422,
            "instances",
            "Expected 'instances' as a non-empty list of objects keyed by field. "
            f"Received: {type(instances).__name__ if instances != [] else 'an empty list'}",
        )
    if len(instances) > max_instances:
        raise RequestError(
            413, "instances", f"Expected at most {max_instances} instances. Received: {len(instances)}"
        )
    return [fields.from_json(x, f"instances[{i}].") for i, x in enumerate(instances)]


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
