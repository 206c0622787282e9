"""Training on several devices or machines with TensorFlow's distribution engine (``tf.distribute``).

``train.distribution`` picks the engine; the model, data and config stay the same:

- ``none``: one process, as without this module.
- ``mirrored``: ``tf.distribute.MirroredStrategy`` over this machine's devices (every GPU, or else every logical CPU
  device): one model replica per device, gradients summed across replicas every step.
- ``multi_worker``: ``tf.distribute.MultiWorkerMirroredStrategy``: one process per worker (a machine, or several
  processes on one), the cluster described by ``TF_CONFIG`` or by ``train.workers`` + ``train.worker_index``.

``train.batch_size`` stays the global batch: tf.data splits every batch between the replicas (sharding by data, so
each worker reads the whole in-memory data set and keeps its share of every batch). Only the chief (worker 0, or the
task of type ``chief``) writes the run directory; the other workers write to a temporary folder, except for their
backup. After every epoch each worker saves its training state in ``<run>/backup/<task>/``; a worker that is
killed is restarted with the same command (TensorFlow needs every worker of the cluster restarted then), and all
continue after the last epoch that every worker finished. ``omnifuse launch --workers N CONFIG`` starts N workers on
127.0.0.1 and restarts them on a failure when asked to.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from omnifuse import keras_compat
from omnifuse.errors import OmnifuseError
from omnifuse.launch import WorkerFailed, free_ports, launch  # noqa: F401 (the launcher, omnifuse/launch.py)
from omnifuse.rundir import atomic_write, atomic_write_text, read_meta

DISTRIBUTIONS = ("none", "mirrored", "multi_worker")
BACKUP = "backup"
_STATE = "state.json"
_KEEP_BACKUPS = 2  # the last two epochs: a worker killed between two workers' saves can still meet the others


# ----------------------------------------------------------------------------------------------- cluster spec


def parse_workers(workers: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """``"host:port,host:port"`` (or a list of them) as a tuple of checked ``host:port`` strings."""
    items = workers.split(",") if isinstance(workers, str) else list(workers)
    out = []
    for item in items:
        item = str(item).strip()
        host, sep, port = item.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise OmnifuseError(
                f"Expected every worker as host:port (e.g. 10.0.0.1:12345). Received: {item!r} in {list(items)}"
            )
        out.append(item)
    if not out:
        raise OmnifuseError("Expected at least one worker host:port. Received: none")
    return tuple(out)


def cluster_spec(workers: str | list[str] | tuple[str, ...], index: int) -> dict[str, Any]:
    """The ``TF_CONFIG`` of worker ``index`` in a cluster of ``workers`` (``host:port`` each; worker 0 is chief)."""
    workers = parse_workers(workers)
    if not 0 <= index < len(workers):
        raise OmnifuseError(
            f"Expected train.worker_index in 0..{len(workers) - 1} for {len(workers)} workers. Received: {index}"
        )
    return {"cluster": {"worker": list(workers)}, "task": {"type": "worker", "index": index}}


def read_tf_config(text: str | None) -> dict[str, Any]:
    """Parse and check a ``TF_CONFIG`` value: a cluster of ``chief``/``worker`` jobs and this process's task."""
    if not text:
        raise OmnifuseError(
            'train.distribution = "multi_worker" needs the cluster. Set TF_CONFIG on every worker (see the README) '
            "or pass --workers host:port,host:port --worker-index I. Received: neither"
        )
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as exc:
        raise OmnifuseError(f"Expected TF_CONFIG to be JSON. Received: {text[:120]!r} ({exc.msg})") from None
    cluster = spec.get("cluster") if isinstance(spec, dict) else None
    task = spec.get("task") if isinstance(spec, dict) else None
    if not isinstance(cluster, dict) or not cluster:
        raise OmnifuseError(
            'Expected TF_CONFIG to hold "cluster": {"worker": ["host:port", ...]}. Received: ' + text[:120]
        )
    for job, addresses in cluster.items():
        if job not in ("chief", "worker"):
            raise OmnifuseError(
                f"Expected TF_CONFIG cluster jobs 'chief' and 'worker' (MultiWorkerMirroredStrategy). "
                f"Received: job {job!r}"
            )
        parse_workers(addresses)
    if not isinstance(task, dict) or task.get("type") not in cluster:
        raise OmnifuseError(
            f'Expected TF_CONFIG "task": {{"type": one of {sorted(cluster)}, "index": i}}. Received: {task!r}'
        )
    index = task.get("index", 0)
    if not isinstance(index, int) or not 0 <= index < len(cluster[task["type"]]):
        raise OmnifuseError(
            f"Expected TF_CONFIG task index in 0..{len(cluster[task['type']]) - 1} for job {task['type']!r}. "
            f"Received: {index!r}"
        )
    return spec


def is_chief(spec: dict[str, Any]) -> bool:
    """TensorFlow's rule: the task of type ``chief`` if the cluster has one, else worker 0."""
    task = spec["task"]
    if "chief" in spec["cluster"]:
        return task["type"] == "chief"
    return task["type"] == "worker" and int(task.get("index", 0)) == 0


def resolve_cluster(train) -> dict[str, Any]:
    """This process's cluster spec: from ``train.workers``/``worker_index`` (exported as ``TF_CONFIG`` for
    TensorFlow) when given, else from ``$TF_CONFIG``."""
    if train.workers:
        spec = cluster_spec(train.workers, train.worker_index)
        os.environ["TF_CONFIG"] = json.dumps(spec)
        return spec
    return read_tf_config(os.environ.get("TF_CONFIG"))


# ----------------------------------------------------------------------------------------------- the engine


@dataclass
class Distribution:
    """A ``tf.distribute`` strategy and this process's part in it (see :func:`setup`)."""

    kind: str  # mirrored | multi_worker
    strategy: Any
    chief: bool = True
    task: str = "worker-0"  # names this process's backup folder
    workers: int = 1
    run_dir: Path | None = None  # multi_worker: the run directory (the chief's), where the backups live ...
    write_dir: Path | None = None  # ... and where this process writes (a temporary folder unless chief)
    restored_epoch: int = 0
    _backup_weights: Path | None = field(default=None, repr=False)
    _average: tuple | None = field(default=None, repr=False)  # (model, its traced averaging step)

    @property
    def replicas(self) -> int:
        return int(self.strategy.num_replicas_in_sync)

    @property
    def backup_dir(self) -> Path | None:
        return None if self.run_dir is None else self.run_dir / BACKUP / self.task

    def describe(self) -> dict[str, Any]:
        return {"strategy": self.kind, "workers": self.workers, "replicas": self.replicas}

    # -- run directory (multi_worker) --------------------------------------------------------------------------

    def open_run(self, cfg, run_dir: str | Path | None, runs_root: str | Path) -> tuple[Path, dict[str, Any]]:
        """Where this worker writes, and the run's meta (with the progress all workers continue from).

        Every worker of a run must name the same run directory (default ``runs_root/<name>``, not made unique, so
        that a restarted worker finds its run): the chief writes the run there, the others only their backups.
        """
        self.run_dir = Path(run_dir) if run_dir is not None else Path(runs_root) / cfg.name
        # the cluster's addresses and this worker's index are how the run was started, not what it is
        config_toml = cfg.replace({"train.workers": [], "train.worker_index": 0}).to_toml()
        meta: dict[str, Any] = {}
        if self.chief:
            if (self.run_dir / "meta.json").exists():
                meta = read_meta(self.run_dir)
                if meta.get("progress", {}).get("finished"):
                    raise OmnifuseError(
                        f"Run directory '{self.run_dir}' already holds a finished run. Pass --run-dir NEW_DIR."
                    )
                written = (self.run_dir / "config.toml").read_text(encoding="utf-8")
                if written != config_toml:
                    raise OmnifuseError(
                        f"Run directory '{self.run_dir}' holds an unfinished run of another config; a restarted "
                        "worker must be given the same config and --set overrides. Pass --run-dir NEW_DIR for a new run."
                    )
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self.write_dir = self.run_dir
        else:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self.write_dir = Path(tempfile.mkdtemp(prefix=f"omnifuse-{self.task}-"))
        atomic_write_text(self.write_dir / "config.toml", config_toml)
        progress = self._agree_on_backup()
        meta.pop("progress", None)  # the chief's may be an epoch ahead of the backup all workers share
        if progress is not None:
            meta["progress"] = progress
        if self.chief:
            _trim_csv(self.write_dir / "metrics.csv", self.restored_epoch)
        return self.write_dir, meta

    def _agree_on_backup(self) -> dict[str, Any] | None:
        """Find the epoch every worker has a backup of (the latest such); return the progress saved with it."""
        state = _read_state(self.backup_dir)
        mine = sorted((int(e) for e in state), reverse=True)
        latest = self.gather([mine[0] if mine else 0])[:, 0]
        epoch = int(latest.min())
        if epoch == 0:
            return None
        entry = state.get(str(epoch))
        if entry is None:
            raise OmnifuseError(
                f"Cannot continue the run in '{self.run_dir}': the workers' backups end after epochs "
                f"{latest.tolist()}, and {self.task} has no backup of epoch {epoch} (it keeps "
                f"{mine or 'none'}). Remove '{self.run_dir / BACKUP}' on every worker to train from the start."
            )
        self.restored_epoch = epoch
        self._backup_weights = self.backup_dir / entry["weights"]
        print(f"{self.task}: restoring the backup after epoch {epoch} from {self.backup_dir}", flush=True)
        return dict(entry["progress"])

    def close(self, write_dir: Path) -> Path:
        """After a finished run: drop this worker's backup (and a non-chief's temporary folder); the run directory."""
        if self.backup_dir is not None:
            shutil.rmtree(self.backup_dir, ignore_errors=True)
            with contextlib.suppress(OSError):
                (self.run_dir / BACKUP).rmdir()  # left to the last worker that empties it
        if not self.chief:
            shutil.rmtree(write_dir, ignore_errors=True)
        return self.run_dir if self.run_dir is not None else write_dir

    # -- training ------------------------------------------------------------------------------------------------

    def shard(self, dataset):
        """Split every (global) batch between the workers; in-memory data has no files to shard by."""
        import tensorflow as tf

        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        return dataset.with_options(options)

    def prepare(self, model, element_spec) -> None:
        """Build the compiled model's state under the strategy, then restore this worker's backup if any.

        Keras builds the state itself from the first batch averaged over the replicas (``reduce("MEAN")``), which
        fails on string inputs (a text modality). So the state is built here from the training stream's
        ``element_spec`` (shapes and dtypes are all it needs; drawing a batch would move the stream's shuffling on
        by one epoch), and the model is told to take the strategy from the enclosing ``scope()`` (Keras's own
        fallback), which makes Keras skip that step; ``fit`` must then run inside ``scope()``.
        """
        keras_compat.build_under_strategy(model, self.strategy, element_spec)
        if self._backup_weights is not None:
            with self.strategy.scope():
                model.load_weights(self._backup_weights)

    def scope(self):
        return self.strategy.scope()

    def callbacks(self, model, progress: dict[str, Any]) -> tuple[list, list]:
        """Callbacks to run before the run's own (average replica state) and after them (back up)."""
        import keras

        first = keras.callbacks.LambdaCallback(
            on_epoch_end=lambda epoch, logs: self.average_local_state(model)
        )
        last = []
        if self.backup_dir is not None:
            last.append(
                keras.callbacks.LambdaCallback(
                    on_epoch_end=lambda epoch, logs: save_backup(model, self.backup_dir, epoch + 1, progress)
                )
            )
        return [first], last

    def average_local_state(self, model) -> None:
        """Average the non-trainable float variables (BatchNormalization's moving statistics) over the replicas.

        Keras updates them on each replica from its own share of the batch, so without this the replicas (and
        the workers' saved models) would disagree on them.
        """
        import tensorflow as tf

        variables = [
            v
            for v in model.non_trainable_variables
            if v.aggregation == "none" and "float" in str(v.dtype) and v.synchronization != "on_read"
        ]
        if not variables:
            return

        def average():
            ctx = tf.distribute.get_replica_context()
            means = ctx.all_reduce("MEAN", [tf.identity(v.value) for v in variables])
            for v, m in zip(variables, means):
                v.value.assign(m)  # aggregation "none": each replica sets its own copy

        if self._average is None or self._average[0] is not model:
            self._average = (model, tf.function(lambda: self.strategy.run(average)))
        self._average[1]()

    def gather(self, values: list[int] | list[list[int]]) -> np.ndarray:
        """int64 ``values`` from every replica of every worker: an array (replicas, len(values)).

        ``values`` is one list for all of this process's replicas, or one list per local replica.
        """
        import tensorflow as tf

        rows = values if values and isinstance(values[0], list) else None
        local = iter([tf.constant([row], tf.int64) for row in rows] if rows else [])
        same = None if rows else tf.constant([values], tf.int64)
        per_replica = self.strategy.experimental_distribute_values_from_function(
            lambda ctx: same if same is not None else next(local)
        )
        return np.asarray(self.strategy.gather(per_replica, axis=0))

    def record(self, model, meta: dict[str, Any]) -> None:
        """Store the strategy and every replica's weights digest (equal when the replicas agree) in the meta."""
        local = [
            np.frombuffer(bytes.fromhex(d), np.int64).tolist() for d in _replica_digests(self.strategy, model)
        ]
        digests = [np.asarray(row, np.int64).tobytes().hex() for row in self.gather(local)]
        meta["distribution"] = {**self.describe(), "weights_sha256": digests}


def scope(dist: Distribution | None):
    """``dist``'s strategy scope, or nothing for one process."""
    return contextlib.nullcontext() if dist is None else dist.scope()


def setup(train) -> Distribution | None:
    """The strategy ``train.distribution`` asks for (``None`` for ``"none"``).

    ``multi_worker`` must be set up before TensorFlow runs anything in this process.
    """
    kind = train.distribution
    if kind not in DISTRIBUTIONS:
        raise OmnifuseError(f"Unknown train.distribution {kind!r}. Valid: {', '.join(DISTRIBUTIONS)}")
    if kind != "multi_worker" and (train.workers or train.worker_index):
        raise OmnifuseError(
            'train.workers and train.worker_index describe a cluster for train.distribution = "multi_worker". '
            f"Received them with train.distribution = {kind!r}"
        )
    if kind == "none":
        return None
    import tensorflow as tf

    if kind == "mirrored":
        return Distribution(kind, tf.distribute.MirroredStrategy())
    spec = resolve_cluster(train)
    try:
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    except (RuntimeError, ValueError) as exc:
        raise OmnifuseError(
            "multi_worker training must set up TensorFlow's cluster before TensorFlow runs anything in the "
            f"process; start it in a fresh process (omnifuse train / omnifuse launch). ({exc})"
        ) from None
    keras_compat.reduce_scalars_without_axis(strategy)
    task = spec["task"]
    return Distribution(
        kind,
        strategy,
        chief=is_chief(spec),
        task=f"{task['type']}-{int(task.get('index', 0))}",
        workers=sum(len(v) for v in spec["cluster"].values()),
    )


def check_resume(train) -> None:
    if train.distribution == "multi_worker":
        raise OmnifuseError(
            "A multi_worker run continues by starting every worker again with the same command (each restores "
            "its backup in RUN_DIR/backup), not with --resume."
        )


# ----------------------------------------------------------------------------------------------- backups


def _read_state(folder: Path | None) -> dict[str, Any]:
    path = None if folder is None else folder / _STATE
    if path is None or not path.is_file():
        return {}
    state = json.loads(path.read_text(encoding="utf-8"))
    return {e: entry for e, entry in state.items() if (folder / entry["weights"]).is_file()}


def save_backup(model, folder: Path, epochs_done: int, progress: dict[str, Any]) -> None:
    """Save the model and optimizer state after ``epochs_done`` epochs, with the run's progress, in ``folder``.

    Weights go to a new file first and ``state.json`` is replaced last, so a kill at any point leaves the previous
    backup usable; the last two are kept.
    """
    folder.mkdir(parents=True, exist_ok=True)
    name = f"epoch-{epochs_done}.weights.h5"
    atomic_write(folder / name, model.save_weights)
    state = _read_state(folder)
    state[str(epochs_done)] = {"weights": name, "progress": json.loads(json.dumps(progress))}
    keep = sorted(state, key=int)[-_KEEP_BACKUPS:]
    atomic_write_text(folder / _STATE, json.dumps({e: state[e] for e in keep}, indent=2))
    for e in set(state) - set(keep):
        (folder / state[e]["weights"]).unlink(missing_ok=True)


def _trim_csv(path: Path, epochs: int) -> None:
    """Keep the rows of the first ``epochs`` epochs (an epoch logged after the backup that is restored reruns)."""
    if not path.is_file():
        return
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    if not rows:
        return
    kept = [rows[0]] + [r for r in rows[1:] if r and int(r[0]) < epochs]
    if len(kept) != len(rows):
        buf = io.StringIO(newline="")
        csv.writer(buf).writerows(kept)
        atomic_write_text(path, buf.getvalue())


def weights_digest(model) -> str:
    """sha256 of the model's float weights, in order: equal digests mean equal models."""
    h = hashlib.sha256()
    for v in model.weights:
        value = np.asarray(v.numpy())
        if value.dtype.kind == "f":
            h.update(np.ascontiguousarray(value).tobytes())
    return h.hexdigest()


def _replica_digests(strategy, model) -> list[str]:
    """:func:`weights_digest` of the copy of the model that each of this process's replicas holds."""
    n = len(strategy.extended.worker_devices)
    hashes = [hashlib.sha256() for _ in range(n)]
    for v in model.weights:
        copies = strategy.experimental_local_results(getattr(v, "value", v))
        copies = copies if len(copies) == n else copies[:1] * n  # a variable made outside the scope: one copy
        for h, copy in zip(hashes, copies):
            value = np.asarray(copy.numpy())
            if value.dtype.kind == "f":
                h.update(np.ascontiguousarray(value).tobytes())
    return [h.hexdigest() for h in hashes]
