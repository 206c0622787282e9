"""Requests a served model must refuse with a 4xx (one spoiled field each, every kind that applies to the model's
modalities), and the load that mixes them with valid requests (``omnifuse bench reliability``)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from omnifuse.serving.loadgen import encode_content, percentiles, pump


def _png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header declares ``width x height`` pixels, followed by a few bytes of image data: a decoder
    that trusts the header would allocate the whole area."""
    import struct
    import zlib

    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def _truncated_wav(sample_rate: int) -> bytes:
    """A WAV whose header promises a second of 16-bit frames, with a tenth of them present."""
    import struct

    frames, present = sample_rate, sample_rate // 10
    data = struct.pack(f"<{present}h", *([1000] * present))
    fmt = struct.pack("<HHIIHH", 1, 1, sample_rate, 2 * sample_rate, 2, 16)
    size = 4 + (8 + len(fmt)) + (8 + 2 * frames)
    return (
        b"RIFF"
        + struct.pack("<I", size)
        + b"WAVE"
        + b"fmt "
        + struct.pack("<I", len(fmt))
        + fmt
        + (b"data" + struct.pack("<I", 2 * frames) + data)
    )


def _multipart(url: str, fields: dict[str, tuple[str | None, bytes, str | None]]) -> bytes:
    """A multipart ``POST /predict`` written byte by byte (httpx would encode a text field as UTF-8 itself):
    ``fields``: name -> (filename or None for a form field, raw value, content type or None)."""
    boundary = "omnifuse-bad-mix-7f3a"
    body = b""
    for name, (filename, value, content_type) in fields.items():
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        body += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n".encode()
        if content_type:
            body += f"Content-Type: {content_type}\r\n".encode()
        body += b"\r\n" + value + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    return encode_content(url, body, f"multipart/form-data; boundary={boundary}")


def bad_requests(
    url: str, meta: dict[str, Any], files: dict[str, tuple], data: dict[str, str], seed: int = 0
) -> dict[str, bytes]:
    """Requests the server must refuse with a 4xx, each kind that applies to the served model's modalities, as
    prepared bytes: kind -> request. Each spoils one field of the valid sample ``(files, data)`` and keeps the others
    valid, so only the spoiled field can be why it is refused."""
    rng = np.random.default_rng(seed)
    valid = {k: (v[0], v[1], v[2]) for k, v in files.items()}
    valid.update({k: (None, v.encode(), None) for k, v in data.items()})

    def spoiled(field: str, value: tuple[str | None, bytes, str | None]) -> bytes:
        return _multipart(url, {**valid, field: value})

    bad: dict[str, bytes] = {
        # JSON nested 100,000 deep: the parser must neither recurse that far nor answer 500
        "json_nested_100k": encode_content(url, b"[" * 100_000 + b"]" * 100_000, "application/json"),
    }
    for name, info in meta["modalities"].items():
        kind = info["kind"]
        if kind == "text":
            # json.dumps escapes the lone surrogate as \udce9: valid JSON, not encodable text
            bad[f"{name}_lone_surrogate_json"] = encode_content(
                url, json.dumps({name: "caf\udce9"}).encode(), "application/json"
            )
            bad[f"{name}_not_utf8_multipart"] = spoiled(name, (None, "café".encode("latin-1"), None))
            bad[f"{name}_empty_alone"] = encode_content(
                url, json.dumps({name: ""}).encode(), "application/json"
            )
        elif kind == "image":
            noise = rng.integers(0, 256, 4096, dtype=np.uint8).tobytes()
            bad[f"{name}_corrupt_png"] = spoiled(name, (f"{name}.png", noise, "image/png"))
            bad[f"{name}_png_huge_area"] = spoiled(
                name, (f"{name}.png", _png_claiming(100_000, 100_000), "image/png")
            )
        elif kind == "audio":
            wav = _truncated_wav(int(info["sample_rate"]))
            bad[f"{name}_truncated_wav"] = spoiled(name, (f"{name}.wav", wav, "audio/wav"))
    return bad


async def mixed_load(
    url: str,
    valid: bytes,
    bad: dict[str, bytes],
    bad_fraction: float,
    requests: int,
    concurrency: int,
    deadline: float,
    seed: int = 0,
) -> dict:
    """Valid and bad requests at random (``bad_fraction`` of them bad, the kinds in turn) with ``concurrency`` in
    flight until ``requests`` are sent or ``deadline`` passes. Counts 5xx answers, valid requests that failed
    (anything but a 200 with an answer, or no answer), bad ones answered 4xx (and, by kind, any that were not);
    latency percentiles of the valid requests only."""
    rng = np.random.default_rng(seed)
    kinds = list(bad)
    latencies: list[float] = []
    counts = {"valid": 0, "bad": 0, "status_5xx": 0, "valid_failed": 0, "bad_refused_4xx": 0}
    bad_not_refused: dict[str, list[str]] = {}
    failures: list[str] = []

    def send() -> tuple[str, bytes]:
        if kinds and rng.random() < bad_fraction:
            kind = kinds[counts["bad"] % len(kinds)]
            counts["bad"] += 1
            return kind, bad[kind]
        counts["valid"] += 1
        return "valid", valid

    def settle(kind, status, answer, problem, ms) -> bool:
        counts["status_5xx"] += status >= 500
        if kind != "valid":
            if 400 <= status < 500:
                counts["bad_refused_4xx"] += 1
            else:
                bad_not_refused.setdefault(kind, []).append(problem or f"{status}: {answer[:120]!r}")
            # a fresh connection after a refusal: the server may close one whose body it did not read
            return True
        latencies.append(ms)
        ok = False
        if status == 200:
            try:
                ok = "tasks" in json.loads(answer)
            except ValueError:
                pass
        if not ok:
            counts["valid_failed"] += 1
            failures.append(problem or f"{status}: {answer[:200]!r}")
        return False

    wall = await pump(url, requests, concurrency, deadline, send, settle)
    return {
        "bad_fraction": bad_fraction,
        "concurrency": concurrency,
        "wall_s": round(wall, 3),
        "requests": counts["valid"] + counts["bad"],
        **counts,
        "valid_per_s": round(counts["valid"] / wall, 1) if wall > 0 else 0.0,
        **{k: v for k, v in percentiles(latencies).items() if k != "mean_ms"},
        "bad_kinds": kinds if bad_fraction > 0 else [],
        "bad_not_refused": {k: {"count": len(v), "first": v[:2]} for k, v in bad_not_refused.items()},
        "first_valid_failures": failures[:3],
    }
