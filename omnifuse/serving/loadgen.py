"""The load generator of the serving benchmarks: prepared raw HTTP requests replayed on keep-alive connections
(as wrk replays one, so the client costs almost nothing), with latency percentiles."""

from __future__ import annotations

import asyncio
import time

import numpy as np


def encode_request(url: str, files: dict, data: dict, body: dict | None = None) -> bytes:
    """The bytes of one ``POST /predict`` (multipart ``files`` + ``data``, or the JSON ``body``), built once by httpx
    and replayed by the load generator, as wrk replays a prepared request: the client then costs almost nothing."""
    import httpx

    if body is None:
        request = httpx.Request("POST", url + "/predict", files=files, data=data)
    else:
        request = httpx.Request("POST", url + "/predict", json=body)
    return _raw(request, request.read())


def encode_content(url: str, content: bytes, content_type: str) -> bytes:
    """The bytes of one ``POST /predict`` carrying ``content`` as it is (see ``encode_request``)."""
    import httpx

    request = httpx.Request("POST", url + "/predict", content=content, headers={"content-type": content_type})
    request.read()
    return _raw(request, content)


def _raw(request, payload: bytes) -> bytes:
    head = [f"POST {request.url.raw_path.decode()} HTTP/1.1", f"Host: {request.url.netloc.decode()}"]
    head += [f"{k}: {v}" for k, v in request.headers.items() if k.lower() != "host"]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + payload


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, raw: bytes
) -> tuple[int, bytes]:
    """Send one prepared request on a keep-alive connection; the status and body of the answer."""
    writer.write(raw)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = next(
        (int(v) for k, _, v in (h.partition(":") for h in lines[1:]) if k.lower() == "content-length"), 0
    )
    return status, await reader.readexactly(length)


async def pump(url: str, requests: int, concurrency: int, deadline: float, send, settle) -> float:
    """``concurrency`` keep-alive connections sending until ``requests`` are sent or ``deadline`` passes; for each,
    ``send()`` gives ``(label, raw request)`` and ``settle(label, status, answer, problem, ms)`` takes the answer
    (``problem``: why there was none) and says whether to open a fresh connection. Returns the wall seconds."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    sent = 0

    async def worker() -> None:
        nonlocal sent
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            while sent < requests and time.monotonic() < deadline:
                sent += 1
                label, raw = send()
                start = time.perf_counter()
                status, answer, problem = 0, b"", ""
                try:
                    status, answer = await asyncio.wait_for(_exchange(reader, writer, raw), 30.0)
                except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError) as exc:
                    problem = f"{type(exc).__name__}: {exc}"
                if settle(label, status, answer, problem, 1000 * (time.perf_counter() - start)) or problem:
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, int(port))
        finally:
            writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - start


def percentiles(latencies: list[float]) -> dict[str, float]:
    lat = np.asarray(latencies) if latencies else np.zeros(1)
    return {
        "p50_ms": round(float(np.percentile(lat, 50)), 2),
        "p99_ms": round(float(np.percentile(lat, 99)), 2),
        "mean_ms": round(float(lat.mean()), 2),
    }
