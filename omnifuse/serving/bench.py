"""Serving benchmark: a bounded load generator against ``omnifuse serve`` on 127.0.0.1, in a server process of its own.

The load generator replays one prepared request (built once by httpx, sent as raw bytes over keep-alive
connections, as wrk does), so on a small machine the client takes little of the CPU the server needs; each answer is
still parsed and checked.

Measures single-request latency (one request in flight: p50/p99), then throughput with ``concurrency`` requests in
flight for each server ``max_batch`` in ``batch_sizes`` (1 = no batching), then (``instances`` > 0) the throughput
of batched requests, each carrying ``instances`` samples as JSON ``{"instances": [...]}``; it counts errors and the
server's resident memory after warm-up and after each phase. Every phase sends a fixed number of requests and the
whole run has a deadline, so it always stops by itself.

    python -m omnifuse.serving.bench runs/av-digits --requests 200 --concurrency 32 --batch-sizes 1,32
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from omnifuse.errors import OmnifuseError
from omnifuse.modalities import kind as modality_kind
from omnifuse.serving.bad_requests import bad_requests, mixed_load
from omnifuse.serving.loadgen import encode_request, percentiles, pump


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sample_request(meta: dict[str, Any], seed: int = 0) -> tuple[dict[str, tuple], dict[str, str]]:
    """One realistic multipart request for the served model: ``(files, data)`` as httpx takes them."""
    rng = np.random.default_rng(seed)
    files: dict[str, tuple] = {}
    data: dict[str, str] = {}
    for name, info in meta["modalities"].items():
        where, value = modality_kind(info["kind"], name).upload(name, info, rng)
        (files if where == "file" else data)[name] = value
    return files, data


class _Server:
    """``omnifuse serve`` in a child process; stopped (and killed if need be) on exit."""

    def __init__(
        self,
        run_dir: Path,
        max_batch: int,
        batch_wait_ms: float,
        precision: str = "float32",
        startup_s: float = 180.0,
    ):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "omnifuse.cli", "serve", str(run_dir), "--port", str(self.port)]
        cmd += [
            "--max-batch",
            str(max_batch),
            "--batch-wait-ms",
            str(batch_wait_ms),
            "--precision",
            precision,
        ]
        self.log = tempfile.TemporaryFile()  # a file, not a pipe: a full pipe would block the server
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=self.log)
        self._wait(startup_s)

    def _wait(self, startup_s: float) -> None:
        import httpx

        deadline = time.monotonic() + startup_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.log.seek(0)
                err = self.log.read().decode(errors="replace")[-2000:]
                raise OmnifuseError(
                    f"Expected the server to start. Received: exit {self.proc.returncode}: {err}"
                )
            try:
                if httpx.get(self.url + "/health", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.close()
        raise OmnifuseError(
            f"Expected the server to answer /health within {startup_s:.0f} s. Received: nothing"
        )

    def rss_mb(self) -> float:
        import psutil

        return psutil.Process(self.proc.pid).memory_info().rss / 2**20

    def health(self) -> dict[str, Any]:
        import httpx

        return httpx.get(self.url + "/health", timeout=10.0).json()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class _MemoryTrace:
    """The server's resident memory sampled every ``every_s`` seconds (a thread) while a phase runs: a leak keeps
    growing through the phase, a warm-up levels off. ``summary()``: up to 40 samples and the growth over the
    phase's second half."""

    def __init__(self, server: _Server, every_s: float = 0.25):
        import threading

        self.server, self.every_s = server, every_s
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        self.samples.append((round(time.monotonic() - self._start, 2), round(self.server.rss_mb(), 1)))

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            self._sample()

    def __enter__(self):
        self._start = time.monotonic()
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._sample()

    def summary(self) -> dict[str, Any]:
        step = max(1, len(self.samples) // 40)
        half = self.samples[len(self.samples) // 2][1]
        return {
            "rss_mb_trace": self.samples[::step],
            "rss_mb_second_half_growth": round(self.samples[-1][1] - half, 1),
        }


def batch_body(files: dict[str, tuple], data: dict[str, str], instances: int) -> dict[str, Any]:
    """The JSON body of one batched request: ``instances`` copies of the sample ``(files, data)``."""
    import base64

    one = {k: base64.b64encode(v[1]).decode() for k, v in files.items()}
    one.update(data)
    return {"instances": [one] * instances}


async def _load(
    url: str, raw: bytes, requests: int, concurrency: int, deadline: float, per_request: int = 1
) -> dict:
    """``requests`` replays of the prepared request ``raw`` with at most ``concurrency`` in flight (one keep-alive
    connection each); latencies in ms, error count, and samples per second (``per_request`` samples each)."""
    latencies: list[float] = []
    errors: list[str] = []

    def settle(label, status, answer, problem, ms) -> bool:
        got = {}
        if status == 200:
            try:
                got = json.loads(answer)
            except ValueError:
                pass
        if not ("tasks" in got or len(got.get("predictions", [])) == per_request):
            errors.append(problem or f"{status}: {answer[:200]!r}")
        latencies.append(ms)
        return False

    wall = await pump(url, requests, concurrency, deadline, lambda: ("valid", raw), settle)
    return {
        "requests": len(latencies),
        "concurrency": concurrency,
        "wall_s": round(wall, 3),
        "samples_per_request": per_request,
        "samples_per_s": round(per_request * len(latencies) / wall, 1) if wall > 0 else 0.0,
        **percentiles(latencies),
        "errors": len(errors),
        "first_errors": errors[:3],
    }


def run(
    run_dir: str | Path,
    requests: int = 200,
    concurrency: int = 32,
    batch_sizes: tuple[int, ...] | list[int] = (1, 32),
    batch_wait_ms: float = 0.0,
    max_seconds: float = 120.0,
    instances: int = 64,
    precision: str = "float32",
    bad_fraction: float = 0.0,
    duration: float = 0.0,
) -> dict[str, Any]:
    """Benchmark serving ``run_dir``; returns a JSON-able record (see the module docstring).

    ``requests``: per phase. ``concurrency``: requests in flight in the throughput phases. ``batch_sizes``: the
    server's ``max_batch`` per throughput phase (a fresh server each). ``max_seconds``: deadline of the load
    phases, after which each stops sending (server start-up is not counted). ``precision``: the server's
    ``--precision``.

    ``bad_fraction`` > 0 adds the bad-request mix (``record["bad_mix"]``): two phases of ``concurrency`` clients,
    each on a fresh server (``max_batch``: the last of ``batch_sizes``, 32 if none), the first with valid requests
    only, the second with ``bad_fraction`` of them bad ones of every kind that applies (``bad_requests``); each runs
    ``duration`` seconds if > 0, else ``requests`` requests within the deadline. ``batch_sizes=[]`` runs the mix
    alone.
    """
    import httpx

    run_dir = Path(run_dir)
    if not (run_dir / "model.keras").is_file():
        raise OmnifuseError(f"Expected a finished run directory with model.keras. Received: '{run_dir}'")
    started = time.perf_counter()
    budget = {"left": float(max_seconds), "cut": False}

    def load(url: str, files: dict, data: dict, n: int, in_flight: int, body: dict | None = None) -> dict:
        # the deadline counts load time only (not server start-ups), shared by all phases
        start = time.monotonic()
        raw = encode_request(url, files, data, body)
        per_request = len(body["instances"]) if body is not None else 1
        result = asyncio.run(_load(url, raw, n, in_flight, start + budget["left"], per_request))
        budget["left"] -= time.monotonic() - start
        budget["cut"] |= result["requests"] < n
        return result

    record: dict[str, Any] = {
        "run": run_dir.name,
        "requests_per_phase": requests,
        "batch_wait_ms": batch_wait_ms,
        "precision": precision,
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "throughput": [],
    }
    for i, max_batch in enumerate(batch_sizes):
        with _Server(run_dir, max_batch, batch_wait_ms, precision) as server:
            meta = httpx.get(server.url + "/metadata", timeout=10.0).json()
            files, data = sample_request(meta)
            # a few requests first, so sockets and per-shape traces are warm before anything is timed
            load(server.url, files, data, 2 * concurrency, concurrency)
            rss_start = server.rss_mb()
            if i == 0:
                record["modalities"] = {k: v["kind"] for k, v in meta["modalities"].items()}
                record["single"] = load(server.url, files, data, requests, 1)
            before = server.health()
            with _MemoryTrace(server) as trace:
                phase = load(server.url, files, data, requests, concurrency)
            after = server.health()
            batches = after["batches"] - before["batches"]
            phase.update(
                max_batch=max_batch,
                mean_batch=round((after["requests"] - before["requests"]) / batches, 2) if batches else 0.0,
                largest_batch=after["largest_batch"],
                rss_mb_start=round(rss_start, 1),
                rss_mb_end=round(server.rss_mb(), 1),
                server_errors=after["server_errors"],
                **trace.summary(),
            )
            record["throughput"].append(phase)
            if instances > 0 and i == len(batch_sizes) - 1:
                body = batch_body(files, data, instances)
                load(server.url, files, data, 4, 2, body)  # warm the traces for this batch size
                rss_start = server.rss_mb()
                phase = load(server.url, files, data, max(10, requests // 4), 2, body)
                phase.update(
                    max_batch=max_batch,
                    rss_mb_start=round(rss_start, 1),
                    rss_mb_end=round(server.rss_mb(), 1),
                )
                record["batched_requests"] = phase
    if bad_fraction > 0:
        if not 0 < bad_fraction <= 1:
            raise OmnifuseError(f"Expected bad_fraction in (0, 1]. Received: {bad_fraction}")
        max_batch = batch_sizes[-1] if len(batch_sizes) else 32
        record["bad_mix"] = {}
        for label, fraction in (("clean", 0.0), ("mixed", float(bad_fraction))):
            with _Server(run_dir, max_batch, batch_wait_ms, precision) as server:
                meta = httpx.get(server.url + "/metadata", timeout=10.0).json()
                files, data = sample_request(meta)
                record.setdefault("modalities", {k: v["kind"] for k, v in meta["modalities"].items()})
                load(server.url, files, data, 2 * concurrency, concurrency)  # warm-up, valid requests
                valid = encode_request(server.url, files, data)
                bad = bad_requests(server.url, meta, files, data)
                rss_start = server.rss_mb()
                start = time.monotonic()
                if duration > 0:
                    n, deadline = 2**62, start + float(duration)
                else:
                    n, deadline = requests, start + budget["left"]
                with _MemoryTrace(server) as trace:
                    phase = asyncio.run(
                        mixed_load(server.url, valid, bad, fraction, n, concurrency, deadline)
                    )
                if duration <= 0:
                    budget["left"] -= time.monotonic() - start
                    budget["cut"] |= phase["requests"] < n
                health = server.health()
                phase.update(
                    max_batch=max_batch,
                    rss_mb_start=round(rss_start, 1),
                    rss_mb_peak=max(mb for _, mb in trace.samples),
                    server_errors=health["server_errors"],
                    **trace.summary(),
                )
                record["bad_mix"][label] = phase
    phases = [record.get("single", {})] + record["throughput"] + [record.get("batched_requests", {})]
    record["errors"] = sum(p.get("errors", 0) + p.get("server_errors", 0) for p in phases)
    record["errors"] += sum(
        p["status_5xx"] + p["valid_failed"] + p["server_errors"] for p in record.get("bad_mix", {}).values()
    )
    record["rss_growth_mb"] = max(
        (p["rss_mb_end"] - p["rss_mb_start"] for p in phases if "rss_mb_end" in p), default=0.0
    )
    record["stopped_by_deadline"] = budget["cut"]
    record["wall_s"] = round(time.perf_counter() - started, 1)
    return record


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m omnifuse.serving.bench", description=__doc__.split("\n")[0]
    )
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--requests", type=int, default=200, help="requests per phase")
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight (throughput phases)")
    parser.add_argument("--batch-sizes", default="1,32", help="server max_batch per throughput phase")
    parser.add_argument("--batch-wait-ms", type=float, default=0.0)
    parser.add_argument("--max-seconds", type=float, default=120.0, help="deadline of the load phases")
    parser.add_argument("--instances", type=int, default=64, help="samples per batched request (0: none)")
    parser.add_argument("--precision", default="float32", help="the server's --precision")
    parser.add_argument("--bad-fraction", type=float, default=0.0, help="share of bad requests (0: no mix)")
    parser.add_argument(
        "--duration", type=float, default=0.0, help="seconds per bad-mix phase (0: --requests)"
    )
    parser.add_argument("--json", type=Path, help="also write the record here")
    args = parser.parse_args(argv)
    try:
        sizes = tuple(int(s) for s in args.batch_sizes.split(",") if s.strip())
        record = run(
            args.run_dir,
            requests=args.requests,
            concurrency=args.concurrency,
            batch_sizes=sizes,
            batch_wait_ms=args.batch_wait_ms,
            max_seconds=args.max_seconds,
            instances=args.instances,
            precision=args.precision,
            bad_fraction=args.bad_fraction,
            duration=args.duration,
        )
    except (OmnifuseError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    text = json.dumps(record, indent=2)
    if args.json:
        args.json.write_text(text + "\n", encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
