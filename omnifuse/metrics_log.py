"""Keeping ``metrics.csv`` in step with the checkpoints of a run that is resumed.

Keras' CSVLogger writes an epoch's row before the run's checkpoint (``last.keras`` and ``meta.json``) commits it,
so a run killed in between has a row for an epoch it will train again. On resume the rows past the checkpointed
epochs are dropped, so the resumed run lists every epoch exactly once.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path


def reconcile_metrics(path: str | os.PathLike, epochs_done: int) -> int:
    """Keep the rows of ``path`` (a CSVLogger file) for epochs ``0 .. epochs_done - 1``, written atomically;
    return how many rows were dropped. Rows that are cut off or unreadable (a kill mid-write) are dropped too; a
    missing file is left missing.

    Example: a run killed while checkpointing epoch 2 has rows 0, 1, 2 and ``epochs_done == 2``:
    ``reconcile_metrics("runs/x/metrics.csv", 2) == 1``.
    """
    path = Path(path)
    if not path.is_file():
        return 0
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    if not rows or "epoch" not in rows[0]:
        return 0
    header, column = rows[0], rows[0].index("epoch")
    kept = [r for r in rows[1:] if len(r) == len(header) and _epoch(r[column]) in range(epochs_done)]
    dropped = len(rows) - 1 - len(kept)
    if dropped:
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerows([header, *kept])
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(out.getvalue(), encoding="utf-8")
        os.replace(tmp, path)
    return dropped


def _epoch(cell: str) -> int | None:
    try:
        return int(cell)
    except ValueError:
        return None
