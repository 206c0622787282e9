"""Requests a served model must refuse with a 4xx (one spoiled field each, every kind that applies to the model's
modalities), and the load that mixes them with valid requests (``omnifuse bench reliability``)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from omnifuse.modalities import KINDS
from omnifuse.serving.loadgen import encode_content, percentiles, pump


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
        kind = KINDS.get(info["kind"])
        # each kind's own: ("json", value) alone in a JSON body, or ("part", (filename, bytes, type)) in the sample
        for what, (how, value) in (kind.bad_requests(name, info, rng) if kind else {}).items():
            if how == "json":
                bad[f"{name}_{what}"] = encode_content(
                    url, json.dumps({name: value}).encode(), "application/json"
                )
            else:
                bad[f"{name}_{what}"] = spoiled(name, value)
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
