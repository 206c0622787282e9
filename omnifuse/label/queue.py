"""The labelling queue behind the web page: hands out queued samples, records each answer in the labels CSV.

- Each answer is one CSV line appended and ``fsync``ed before the page hears "saved": a server killed at any
  moment keeps every answer it acknowledged (a torn last line, from a crash mid-write, is cut at the next start).
- The labels CSV holds the queue's own columns (its ``_``-prefixed ranking columns left out, paths rebased on the
  labels CSV's folder) plus the label column: a valid ``--data`` input. A restarted server reads it back and does
  not ask again for what it holds.
- Two browser tabs never get the same sample: a handed-out sample is leased to its tab (``client``) for
  ``lease_s`` seconds, and a sample already answered is refused (409), whoever asks.
- ``skip`` puts a sample at the back of that tab's queue; ``undo`` removes the tab's last answer from the file
  (rewritten atomically) and hands the sample back to it.
"""

from __future__ import annotations

import csv
import io
import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from omnifuse.errors import OmnifuseError
from omnifuse.label.pool import Pool, predict_pool, read_pool, rebase
from omnifuse.modalities import held_as


class QueueError(Exception):
    """A request the queue cannot honour: ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # some systems cannot open a folder; the file itself is synced
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LabelQueue:
    """The queue CSV (or folder) ``queue`` for ``predictor``'s task ``task`` (default its first), answered into
    the CSV ``labels_out``."""

    def __init__(
        self, predictor, queue: str | Path, labels_out: str | Path, task: str | None = None, lease_s=120.0
    ):
        self.predictor = predictor
        self.task = task or next(iter(predictor.tasks))
        if self.task not in predictor.tasks:
            raise OmnifuseError(f"Unknown task {self.task!r}. This run's tasks: {', '.join(predictor.tasks)}")
        self.classes = list(predictor.tasks[self.task])
        self.pool: Pool = read_pool(queue)
        self.columns = [c for c in self.pool.columns if not c.startswith("_")]
        if self.task in self.columns:
            raise OmnifuseError(
                f"Expected a queue without a column named like the label {self.task!r}. "
                f"Received: '{self.pool.source}' with columns {', '.join(self.pool.columns)}"
            )
        self.path = Path(labels_out)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.cells = [self._cells(i) for i in range(len(self.pool))]
        self.probs = predict_pool(predictor, self.pool)[self.task]
        self.lease_s = lease_s
        self.lock = threading.Lock()
        self.leases: dict[int, tuple[str, float]] = {}  # row -> (client, expiry)
        self.skipped: dict[str, list[int]] = {}  # client -> rows it skipped, oldest first
        self.history: dict[str, list[int]] = {}  # client -> rows it answered, last last
        self.answers: dict[int, str] = self._read_answers()

    def _cells(self, i: int) -> dict[str, str]:
        cells = rebase(self.pool, self.pool.cells[i], self.path.parent)
        return {c: cells.get(c, "") for c in self.columns}

    def _key(self, cells: dict[str, str]) -> tuple:
        return tuple(cells.get(c, "") for c in self.columns)

    def _read_answers(self) -> dict[int, str]:
        """The answers already in the labels CSV (a torn last line cut off), by queue row."""
        if not self.path.is_file() or self.path.stat().st_size == 0:
            with self.path.open("w", newline="", encoding="utf-8") as f:
                csv.writer(f, lineterminator="\n").writerow([*self.columns, self.task])
                f.flush()
                os.fsync(f.fileno())
            _fsync_dir(self.path.parent)
            return {}
        data = self.path.read_bytes()
        if not data.endswith(b"\n"):
            data = data[: data.rfind(b"\n") + 1]
            with self.path.open("r+b") as f:
                f.truncate(len(data))
                os.fsync(f.fileno())
        rows = list(csv.reader(io.StringIO(data.decode("utf-8"))))
        expected = [*self.columns, self.task]
        if not rows or rows[0] != expected:
            raise OmnifuseError(
                f"Expected the labels CSV '{self.path}' to have the columns {', '.join(expected)} (this queue's). "
                f"Received: {', '.join(rows[0]) if rows else 'no header'}; choose another --labels-out"
            )
        where = {self._key(c): i for i, c in enumerate(self.cells)}
        answers = {}
        for row in rows[1:]:
            i = where.get(tuple(row[:-1]))
            if i is not None:
                answers[i] = row[-1]
        return answers

    def _line(self, i: int, label: str) -> str:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerow([*(self.cells[i][c] for c in self.columns), label])
        return buffer.getvalue()

    def sample(self, i: int) -> dict[str, Any]:
        """What the page shows of queue row ``i``: its fields, the model's guess and probabilities."""
        fields = []
        for c in self.columns:
            value = self.pool.cells[i].get(c, "")
            if not value.strip():
                continue
            kind = self.pool.files.get(c, "text")
            fields.append({"name": c, "kind": kind, "value": None if held_as(kind) == "path" else value})
        probs = self.probs[i]
        return {
            "row": i,
            "source_row": self.pool.rows[i],
            "fields": fields,
            "guess": self.classes[int(np.argmax(probs))],
            "probabilities": {c: float(p) for c, p in zip(self.classes, probs)},
            "answer": self.answers.get(i),
        }

    def status(self) -> dict[str, Any]:
        return {
            "total": len(self.cells),
            "answered": len(self.answers),
            "classes": self.classes,
            "task": self.task,
        }

    def next(self, client: str) -> dict[str, Any] | None:
        """The next sample for ``client``: one it holds a lease on, else the first free one (skipped ones last)."""
        with self.lock:
            now = time.monotonic()
            self.leases = {
                i: lease for i, lease in self.leases.items() if lease[1] > now and i not in self.answers
            }
            skipped = self.skipped.get(client, [])
            held = [i for i, (who, _) in self.leases.items() if who == client and i not in skipped]
            free = [i for i in range(len(self.cells)) if i not in self.answers and i not in self.leases]
            order = (
                sorted(held)
                + [i for i in free if i not in skipped]
                + [i for i in skipped if i in free or i in held]
            )
            if not order:
                return None
            i = order[0]
            self.leases[i] = (client, now + self.lease_s)
        return self.sample(i)

    def answer(self, client: str, i: int, label: str) -> dict[str, Any]:
        """Record ``label`` for row ``i``: appended and synced before this returns."""
        self._check_row(i)
        if label not in self.classes:
            raise QueueError(422, f"Expected a label in {', '.join(self.classes)}. Received: {label!r}")
        with self.lock:
            if i in self.answers:
                raise QueueError(409, f"Row {i} is already labelled {self.answers[i]!r}")
            lease = self.leases.get(i)
            if lease and lease[0] != client and lease[1] > time.monotonic():
                raise QueueError(409, f"Row {i} is being labelled in another tab")
            with self.path.open("a", newline="", encoding="utf-8") as f:
                f.write(self._line(i, label))
                f.flush()
                os.fsync(f.fileno())
            self.answers[i] = label
            self.leases.pop(i, None)
            self.history.setdefault(client, []).append(i)
            if i in self.skipped.get(client, []):
                self.skipped[client].remove(i)
            return self.status()

    def skip(self, client: str, i: int) -> None:
        self._check_row(i)
        with self.lock:
            skipped = self.skipped.setdefault(client, [])
            if i in skipped:
                skipped.remove(i)
            skipped.append(i)
            if self.leases.get(i, ("",))[0] == client:
                del self.leases[i]

    def undo(self, client: str) -> dict[str, Any]:
        """Remove ``client``'s last answer from the labels CSV (rewritten atomically); that sample comes back."""
        with self.lock:
            history = self.history.get(client, [])
            while history and history[-1] not in self.answers:
                history.pop()
            if not history:
                raise QueueError(409, "Nothing to undo in this tab")
            i = history.pop()
            del self.answers[i]
            self._rewrite()
            self.leases[i] = (client, time.monotonic() + self.lease_s)
        return self.sample(i)

    def _rewrite(self) -> None:
        text = "".join(
            [self._line_header()] + [self._line(i, label) for i, label in sorted(self.answers.items())]
        )
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        with tmp.open("w", newline="", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        _fsync_dir(self.path.parent)

    def _line_header(self) -> str:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerow([*self.columns, self.task])
        return buffer.getvalue()

    def _check_row(self, i: int) -> None:
        if not isinstance(i, int) or isinstance(i, bool) or not 0 <= i < len(self.cells):
            raise QueueError(422, f"Expected a row between 0 and {len(self.cells) - 1}. Received: {i!r}")

    def file(self, i: int, column: str) -> Path:
        """The file of row ``i``'s image or audio ``column`` (only those: the page cannot read other files)."""
        self._check_row(i)
        if column not in self.pool.files or column not in self.columns:
            raise QueueError(404, f"Expected an image or audio column. Received: {column!r}")
        value = self.pool.cells[i].get(column, "").strip()
        file = self.pool.base / value
        if not value or not file.is_file():
            raise QueueError(404, f"Row {i} has no file in {column!r}")
        return file
