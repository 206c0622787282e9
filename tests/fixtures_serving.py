"""Tiny trained runs and a live server for the serving, export and browser tests.

Each run is trained once per test session (on fixtures in the real formats) and shared by every module that asks
for it, so the test files pay for one training of each model (:func:`shared`; the labelling tests' run too).
"""

from __future__ import annotations

import fcntl
import io
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from fixtures import cifar10_images, write_aclimdb, write_cifar10
from PIL import Image

TINY = """
name = "{name}"
[data]
sets = {sets}
val_fraction = 0.2
[model]
fusion = "attention"
fusion_dim = 8
[model.image]
augment = {augment}
[model.image.cnn]
filters = [4, 8]
dense_units = 8
[model.text]
encoder = "bag"
vocab_size = 100
sequence_length = 16
[model.text.bag]
embed_dim = 8
[train]
epochs = 1
batch_size = 16
learning_rate = 5e-3
early_stopping = 0
verbose = 0
[track]
tensorboard = false  # tests/test_tracking.py checks the logs
"""


def shared(tmp_path_factory, make: Callable[[Path], Path]) -> Path:
    """``make(folder)`` under the session's lock, ``folder`` one for the whole test session: the workers of
    ``pytest -n`` share the session's temporary folder, so the first that asks makes what ``make`` makes (a trained
    run) and the others wait for it; ``make`` returns what is already there when it finds it done."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # the session's folder, above each worker's own
    base.mkdir(parents=True, exist_ok=True)
    with open(base / "serving-runs.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        return make(base / "serving-runs")


def trained_run(tmp_path_factory, name: str = "tiny-joint", evaluate: bool = False) -> Path:
    """The run ``tiny-joint`` (image + text, CIFAR-10 + IMDb fixtures) or ``tiny-image`` (CIFAR-10 only, with the
    default image augmentation), trained on first use in this session (see :func:`shared`)."""
    return shared(tmp_path_factory, lambda folder: _trained_run(folder, name, evaluate))


def _trained_run(root: Path, name: str, evaluate: bool) -> Path:
    import omnifuse

    run = root / "runs" / name
    if not (run / "model.keras").is_file():
        data = root / "data"
        if not data.is_dir():
            data.mkdir(parents=True)
            write_cifar10(data, n_per_batch=12, n_test=20)
            write_aclimdb(data, n_per_class=20)
        joint = name == "tiny-joint"
        config = root / f"{name}.toml"
        config.write_text(
            TINY.format(
                name=name,
                sets='["cifar10", "imdb"]' if joint else '["cifar10"]',
                augment="false" if joint else "true",
            )
        )
        omnifuse.train(config, runs_root=root / "runs", data_dir=str(data))
    if evaluate and not (run / "report" / "metrics.json").is_file():
        import omnifuse

        omnifuse.evaluate(run, data_dir=str(root / "data"))  # the report whole: test_report_worst reads it
    return run


def png_bytes(label: int = 3, seed: int = 0, size: int = 48) -> bytes:
    """A PNG of CIFAR-10 fixture class ``label`` (larger than the model's input, so the server resizes it)."""
    image = cifar10_images(np.array([label]), np.random.default_rng(seed))[0]
    buffer = io.BytesIO()
    Image.fromarray(image).resize((size, size)).save(buffer, format="PNG")
    return buffer.getvalue()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """uvicorn serving ``app`` on 127.0.0.1 in a background thread: ``with LiveServer(app) as url: ...``."""

    def __init__(self, app):
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="uvicorn", daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 120
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
        return self.url

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
