"""Reading ``POST /predict`` requests: multipart form data or JSON (one sample, or ``{"instances": [...]}``) into
the model's arrays, every mistake a :class:`RequestError` naming its field (answered as a 4xx JSON error)."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

import numpy as np
from fastapi import Request
from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from omnifuse.data.decode import NamedBytes
from omnifuse.errors import OmnifuseError
from omnifuse.modalities import KINDS
from omnifuse.predictor import Predictor

# A part that declares no type (or a generic one) is accepted too, whatever the kind's CONTENT_TYPES: the decoder
# then decides, and answers a corrupt or foreign file with a 422 naming the field.
GENERIC_TYPES = ("", "application/octet-stream")
MAX_JSON_DEPTH = (
    32  # nesting of arrays and objects in a JSON body; a sample needs 4 (instances, sample, numbers)
)


def carried(kind: str) -> str:
    """How a request carries a field of ``kind``: its modality kind's ``REQUEST`` ("file", "text" or "json");
    a numbers modality's column: "value" (a form's text, or any JSON value)."""
    return KINDS[kind].REQUEST if kind in KINDS else "value"


def content_types(kind: str) -> tuple[str, ...]:
    """The declared types a file upload of a field of ``kind`` may have (its modality kind's ``CONTENT_TYPES``)."""
    return KINDS[kind].CONTENT_TYPES if kind in KINDS else ()


def _name(filename: str | None) -> str:
    return f"'{filename}', " if filename else ""


class RequestError(Exception):
    """A bad request: answered with ``status`` and ``{"detail": message, "field": field}``."""

    def __init__(self, status: int, field: str | None, message: str):
        super().__init__(message)
        self.status, self.field, self.message = status, field, message


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


def _form_text(field: str, value: bytes | str) -> str:
    """A form field's value as strict UTF-8; the error names the field and the byte offset."""
    if isinstance(value, str):
        return value
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RequestError(
            422,
            field,
            f"Expected {field!r} as UTF-8 text. Received: invalid byte(s) {value[exc.start : exc.start + 4]!r} "
            f"at byte offset {exc.start} ({exc.reason})",
        ) from exc


class _RawFieldParser(MultiPartParser):
    """Starlette's multipart parser, keeping form fields as bytes: it decodes a field that is not UTF-8 as
    Latin-1 without a word, which would hand the model mojibake (one text policy: UTF-8 or a 422)."""

    def on_part_end(self) -> None:
        if self._current_part.file is None:
            self.items.append((self._current_part.field_name, bytes(self._current_part.data)))
        else:
            super().on_part_end()


def _urlencoded(body: bytes) -> FormData:
    """``a=1&b=x`` as form data with byte values (percent-escapes undone, ``+`` as space)."""
    from urllib.parse import unquote_plus, unquote_to_bytes

    items = []
    for pair in body.split(b"&"):
        if not pair:
            continue
        name, _, value = pair.partition(b"=")
        items.append((unquote_plus(name.decode("latin-1")), unquote_to_bytes(value.replace(b"+", b" "))))
    return FormData(items)


def json_depth(value: Any) -> int:
    """How deeply arrays and objects nest in a parsed JSON value (a scalar: 0), without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in children)
    return deepest


class Fields:
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
                inputs[field] = self._upload(field, kind, value.content_type or "", data, value.filename)
                continue
            value = _form_text(field, value)  # a field's bytes, as the client sent them
            if carried(kind) == "file":
                if value == "":
                    continue
                raise RequestError(
                    422, field, f"Expected {field!r} as a file upload ({kind}). Received: a text field"
                )
            elif carried(kind) == "json":
                inputs[field] = self._json_value(field, value)
            elif value != "":
                inputs[field] = value
        return inputs

    def _upload(
        self, field: str, kind: str, content_type: str, data: bytes, filename: str | None = None
    ) -> Any:
        ctype = content_type.split(";")[0].strip().lower()
        accepted = content_types(kind)
        if ctype not in GENERIC_TYPES and ctype not in accepted:
            raise RequestError(
                415,
                field,
                f"Expected {field!r} as one of {', '.join(accepted) or 'a form field'}. "
                f"Received: a file of type {ctype!r}",
            )
        if carried(kind) == "file":
            if not data:
                raise RequestError(
                    422, field, f"Expected {field!r} as a non-empty file. Received: {_name(filename)}0 bytes"
                )
            # the file's name travels with its bytes, so a decoding error names it (not "<bytes>")
            return NamedBytes(data, filename) if filename else data
        if carried(kind) == "text":
            from omnifuse.data.decode import decode_text

            try:
                return decode_text(data, f"the uploaded {field!r}" + (f" ('{filename}')" if filename else ""))
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
        if carried(kind) == "file":
            inputs[field] = _b64(field, value)
        elif carried(kind) == "text" and not isinstance(value, str):
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


def encode_all(predictor: Predictor, inputs: dict[str, Any] | list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """One request's model arrays: a single sample, or the samples of ``{"instances": [...]}`` decoded in one batch
    call (a field an instance lacks is an absent modality there); if that fails, each instance is decoded on its own
    so the error names the culprit (``instances[3].image``)."""
    if isinstance(inputs, dict):
        return _encode(predictor, inputs)
    fields = list(dict.fromkeys(k for x in inputs for k in x))
    if all(inputs) and fields:
        try:
            return predictor.encode(batch=True, **{k: [x.get(k) for x in inputs] for k in fields})
        except OmnifuseError:
            pass  # found and named below
    feeds = [_encode(predictor, x, f"instances[{i}].") for i, x in enumerate(inputs)]
    return {k: np.concatenate([f[k] for f in feeds]) for k in feeds[0]}


async def read_request(
    request: Request, fields: Fields, max_bytes: int, max_instances: int
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
    if ctype == "application/x-www-form-urlencoded":
        form = _urlencoded(await request.body())
        if len(form) > 64:
            raise RequestError(400, "body", f"Expected at most 64 form fields. Received: {len(form)}")
        return await fields.from_form(form)
    if ctype == "multipart/form-data":
        parser = _RawFieldParser(
            request.headers, request.stream(), max_files=16, max_fields=64, max_part_size=max_bytes
        )
        try:
            form = await parser.parse()
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
        except RecursionError as exc:  # deeper than the parser's stack allows
            raise RequestError(
                400, "body", f"Expected JSON nested at most {MAX_JSON_DEPTH} deep. Received: deeper"
            ) from exc
        depth = json_depth(body)
        if depth > MAX_JSON_DEPTH:
            raise RequestError(
                400, "body", f"Expected JSON nested at most {MAX_JSON_DEPTH} deep. Received: {depth} deep"
            )
        if isinstance(body, dict) and "instances" in body and "instances" not in fields.kinds:
            return _instances(body, fields, max_instances)
        return fields.from_json(body)
    raise RequestError(
        415,
        "content-type",
        f"Expected multipart/form-data or application/json. Received: {ctype or 'no content type'}",
    )


def _instances(body: dict[str, Any], fields: Fields, max_instances: int) -> list[dict[str, Any]]:
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
