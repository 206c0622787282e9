"""``omnifuse bench label-page --run RUN --set pool=POOL``: the labelling page's click latency and its survival of a
``kill -9``, measured on the real server (``omnifuse serve RUN --label-queue ... --labels-out ...``, a fresh
process) over loopback.

1. ``label next`` ranks ``pool`` into a queue of ``clicks + warmup + burst`` samples.
2. **Clicks**: one HTTP/1.1 connection (as a browser keeps), answering as the page does on a click: ``POST
   /label/answer`` (appended and fsynced before the reply), then ``GET /label/next`` for the sample to show. The
   first ``warmup`` clicks are not timed. Recorded: the answer's round trip and the whole click (answer + next),
   median, p95 and max in milliseconds.
3. **kill -9**: a thread keeps clicking while the server gets SIGKILL (no shutdown, no flush); then a new server
   on the same labels CSV reports how many answers it reads back, which must be every acknowledged one (an answer
   in flight when the kill came may be kept too, or cut as a torn line).
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from omnifuse.errors import OmnifuseError


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(run_dir: Path, queue: Path, labels: Path, port: int, timeout: float = 300.0) -> subprocess.Popen:
    command = [sys.executable, "-m", "omnifuse.cli", "serve", str(run_dir), "--host", "127.0.0.1"]
    command += ["--port", str(port), "--label-queue", str(queue), "--labels-out", str(labels)]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/label/status")
            if conn.getresponse().status == 200:
                conn.close()
                return server
        except OSError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            raise OmnifuseError(
                f"The labelling server did not start: {server.stderr.read().decode()[-2000:]}"
            )
        time.sleep(0.3)


def _call(conn: http.client.HTTPConnection, method: str, path: str, body: dict | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    conn.request(method, path, data, {"content-type": "application/json"} if data else {})
    response = conn.getresponse()
    payload = json.loads(response.read() or b"{}")
    if response.status != 200:
        raise OmnifuseError(f"{method} {path} answered {response.status}: {payload}")
    return payload


def _click(conn, client: str, sample: dict) -> tuple[float, float, dict]:
    """Answer ``sample`` with the model's guess, then fetch the next: (answer s, click s, next reply)."""
    start = time.perf_counter()
    _call(conn, "POST", "/label/answer", {"client": client, "row": sample["row"], "label": sample["guess"]})
    answered = time.perf_counter()
    following = _call(conn, "GET", f"/label/next?client={client}")
    return answered - start, time.perf_counter() - start, following


def _stats(seconds: list[float]) -> dict[str, float]:
    ms = sorted(1000 * s for s in seconds)
    return {
        "median": round(statistics.median(ms), 2),
        "p95": round(ms[min(len(ms) - 1, int(0.95 * len(ms)))], 2),
        "max": round(ms[-1], 2),
    }


def run(
    run_dir: str | Path, pool: str | Path, clicks: int = 200, warmup: int = 5, burst_s: float = 1.0
) -> dict[str, Any]:
    """Measure ``clicks`` timed clicks, then a kill -9 during clicking; the record's numbers."""
    from omnifuse.label.next import write_next

    run_dir, pool = Path(run_dir), Path(pool)
    with tempfile.TemporaryDirectory(prefix="label-page-") as work:
        queue, labels = Path(work) / "queue.csv", Path(work) / "labels.csv"
        write_next(run_dir, pool, clicks + warmup + 10_000, queue, "margin")
        port = _port()
        server = _serve(run_dir, queue, labels, port)
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            total = _call(conn, "GET", "/label/status")["total"]
            if total < clicks + warmup + 20:
                raise OmnifuseError(
                    f"Expected a pool of at least {clicks + warmup + 20} samples for {clicks} clicks. "
                    f"Received: '{pool}' with {total}"
                )
            sample = _call(conn, "GET", "/label/next?client=bench")["sample"]
            answers, whole = [], []
            for k in range(warmup + clicks):
                a, c, reply = _click(conn, "bench", sample)
                if k >= warmup:
                    answers.append(a)
                    whole.append(c)
                sample = reply["sample"]
            acknowledged = warmup + clicks
            # kill -9 while a second tab is clicking: every answer it heard "saved" for must survive
            state = {"acked": 0, "stop": False}

            def clicking() -> None:
                other = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                current = _call(other, "GET", "/label/next?client=burst")["sample"]
                try:
                    while not state["stop"] and current:
                        _call(other, "POST", "/label/answer", {"client": "burst", "row": current["row"],
                                                                 "label": current["guess"]})  # fmt: skip
                        state["acked"] += 1
                        current = _call(other, "GET", "/label/next?client=burst")["sample"]
                except (OSError, http.client.HTTPException, OmnifuseError):
                    pass  # the server died under it

            thread = threading.Thread(target=clicking)
            thread.start()
            time.sleep(burst_s)
            server.send_signal(signal.SIGKILL)
            server.wait(timeout=30)
            state["stop"] = True
            thread.join(timeout=30)
        finally:
            if server.poll() is None:
                server.kill()
        acknowledged += state["acked"]
        tail = labels.read_bytes()
        port = _port()
        restarted = _serve(run_dir, queue, labels, port)
        try:
            back = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            kept = _call(back, "GET", "/label/status")["answered"]
        finally:
            restarted.kill()
            restarted.wait(timeout=30)
    return {
        "clicks": clicks,
        "warmup": warmup,
        "answer_ms": _stats(answers),
        "click_ms": _stats(whole),
        "kill": {
            "acknowledged": acknowledged,
            "during_burst": state["acked"],
            "kept_after_restart": kept,
            "lost": max(0, acknowledged - kept),
            "torn_last_line": not tail.endswith(b"\n"),
        },
    }


def bench(run_dir: str | Path | None, options: list[str], results: str | Path, echo=print) -> dict[str, Any]:
    """``omnifuse bench label-page --run RUN --set pool=POOL [--set clicks=200]``: :func:`run`, its record (with
    the usual header) written to ``<results>/label-page/``, and the labelling tables regenerated."""
    from omnifuse.bench.recorder import environment, stamp, write_json
    from omnifuse.bench.report import update_results
    from omnifuse.config import apply_overrides

    if run_dir is None:
        raise OmnifuseError("Expected --run RUN_DIR (a trained run) for `omnifuse bench label-page`.")
    keys = [item.split("=", 1)[0].strip() for item in options]
    kwargs = apply_overrides(dict.fromkeys(keys), list(options))
    if not kwargs.get("pool"):
        raise OmnifuseError("Expected --set pool=POOL (a CSV or folder of samples the run reads).")
    header = environment()
    load = os.getloadavg()[0]
    found = run(run_dir, **kwargs)
    shown = {
        k: Path(str(v)).name if k == "pool" else v for k, v in kwargs.items()
    }  # no local paths in records
    record = {**header, **found, "name": "label-page", "label": Path(run_dir).name, "kind": "label-page",
              "invocation": header["started"], "options": shown,
              # the machine's other work, which the latencies include (1-minute load average, before and after)
              "load_average": [round(load, 2), round(os.getloadavg()[0], 2)]}  # fmt: skip
    out = Path(results) / "label-page" / f"{stamp()}-{Path(run_dir).name}.json"
    write_json(out, record)
    update_results(results)
    echo(
        f"[bench] label page: answer {found['answer_ms']['median']} ms median, {found['answer_ms']['p95']} ms p95; "
        f"click {found['click_ms']['median']} / {found['click_ms']['p95']} ms; kill -9: "
        f"{found['kill']['kept_after_restart']} of {found['kill']['acknowledged']} answers kept. Record: {out}"
    )
    return record
