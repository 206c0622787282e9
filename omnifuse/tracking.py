"""Experiment tracking: TensorBoard logs in every run directory, and MLflow where asked (``track.mlflow``).

**TensorBoard** (``<run>/logs``; view with ``tensorboard --logdir runs``), on unless ``track.tensorboard = false``
(``--no-tensorboard``): Keras's TensorBoard callback writes the epoch scalars (``logs/train``, ``logs/validation``);
:class:`ModalityWeights` adds, per epoch, the mean modality weights on the first :data:`PROBE` validation samples of
each data set (``modality_weights/<set>/<modality>``); and at the end :func:`log_confusion` draws each task's
confusion matrix on the validation split, of the saved (best) model, as an image (``confusion/<task>``). The test set
stays out of training: its matrices are in the evaluation report. Writing needs the ``tensorboard`` package
(TensorFlow's ``tf.summary`` delegates to it; a dependency of omnifuse).

**MLflow** (``track.mlflow = true``, ``--track mlflow``; the ``mlflow`` extra): through an ``MlflowClient`` (no global
active run). Training creates a run in the experiment ``track.experiment`` (default: the config's name) of the store
``track.uri`` (default ``sqlite:///<runs root>/mlflow.db``, its artifacts in ``<runs root>/mlartifacts``), logs the
flattened config as params, each epoch's metrics, and at the end ``config.toml``, ``meta.json``, ``metrics.csv`` and
``model.keras`` (under ``model/``). The run's id goes into ``meta.json``, so a resumed run goes on logging into
it, and ``omnifuse evaluate`` adds the test metrics and the report, ``omnifuse export`` the model card.
"""

from __future__ import annotations

import importlib.util
import logging
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np

from omnifuse.errors import OmnifuseError
from omnifuse.names import WEIGHTS_OUTPUT

log = logging.getLogger(__name__)

LOGS = "logs"  # the TensorBoard folder in a run directory
PROBE = 64  # validation samples per data set whose mean modality weights are logged each epoch
KEY = "tracking"  # meta.json: {"mlflow": {"uri", "experiment", "run_id"}}


def check(cfg) -> None:
    """Fail before any work when ``track.mlflow`` is on and MLflow is not installed."""
    if cfg.track.mlflow and importlib.util.find_spec("mlflow") is None:
        raise OmnifuseError(
            "Expected the mlflow package for --track mlflow (track.mlflow = true). Received: it is not "
            "installed; pip install 'omnifuse[mlflow]', or leave MLflow off"
        )


def callbacks(cfg, run_dir: Path, meta: dict[str, Any], prepared, model) -> list[keras.callbacks.Callback]:
    """The tracking callbacks of a run: TensorBoard's and the modality weights (``track.tensorboard``), MLflow's
    (``track.mlflow``). ``prepared``: the data the model trains on (its validation samples are the probe)."""
    out: list[keras.callbacks.Callback] = []
    if cfg.track.tensorboard and importlib.util.find_spec("tensorboard") is None:
        log.warning("No TensorBoard logs: the tensorboard package is not installed (pip install tensorboard)")
    elif cfg.track.tensorboard:
        logs = run_dir / LOGS
        out.append(keras.callbacks.TensorBoard(str(logs), write_graph=False, profile_batch=0))
        if WEIGHTS_OUTPUT in model.output_names:
            out.append(ModalityWeights(logs / "validation", _probes(prepared), sorted(prepared.modalities)))
    if cfg.track.mlflow:
        out.append(MlflowMetrics(start_mlflow(cfg, run_dir, meta)))
    return out


def _probes(prepared) -> dict[str, dict[str, np.ndarray]]:
    """Per data set with validation samples, the model's inputs for the first :data:`PROBE` of them."""
    from omnifuse import pipeline

    out = {}
    for part in prepared.parts:
        if len(part.val):
            split = part.val.take(np.arange(min(PROBE, len(part.val))))
            stream, _ = pipeline.stream(prepared, [split], batch_size=PROBE)
            x = next(iter(stream))[0]
            out[part.name] = {name: value.numpy() for name, value in x.items()}
    return out


class ModalityWeights(keras.callbacks.Callback):
    """After each epoch, the mean modality weights on each data set's probe samples, as TensorBoard scalars."""

    def __init__(self, folder: Path, probes: dict[str, dict[str, np.ndarray]], modalities: list[str]):
        super().__init__()
        self.folder, self.probes, self.modalities = folder, probes, modalities
        self.writer = None

    def on_epoch_end(self, epoch, logs=None):
        import tensorflow as tf

        if not self.probes:
            return
        self.writer = self.writer or tf.summary.create_file_writer(str(self.folder))
        with self.writer.as_default():
            for part, feed in self.probes.items():
                # eagerly: one small batch, not worth tracing a predict function for
                out = self.model(feed, training=False)[WEIGHTS_OUTPUT]
                weights = keras.ops.convert_to_numpy(out).mean(axis=0)
                for name, w in zip(self.modalities, weights):
                    tf.summary.scalar(f"modality_weights/{part}/{name}", float(w), step=epoch)
        self.writer.flush()

    def on_train_end(self, logs=None):
        if self.writer is not None:
            self.writer.close()


def log_confusion(run_dir: Path, tasks: dict[str, list[str]], held: tuple[dict, dict], step: int) -> None:
    """Each task's confusion matrix on the validation split (``held``: probabilities and labels per task), drawn as
    an image into the run's TensorBoard logs at ``step``."""
    import tensorflow as tf
    from sklearn.metrics import confusion_matrix

    from omnifuse.evaluation.plots import confusion_figure, rgb

    probs, labels = held
    writer = tf.summary.create_file_writer(str(run_dir / LOGS / "validation"))
    with writer.as_default():
        for task, classes in tasks.items():
            keep = labels.get(task, np.zeros(0)) >= 0
            if not keep.any():
                continue
            matrix = confusion_matrix(
                labels[task][keep], probs[task][keep].argmax(axis=1), labels=list(range(len(classes)))
            )
            # the figure's pixels as they are: no PNG written, read back and decoded
            image = rgb(confusion_figure(matrix.tolist(), classes, f"{task} (validation)"))
            tf.summary.image(f"confusion/{task}", image[None], step=step)
    writer.close()


# --------------------------------------------------------------------------------------------------- MLflow


class MlflowRun:
    """One MLflow run, logged to through a client (no global state): params, metrics, files."""

    def __init__(self, uri: str, run_id: str):
        from mlflow.tracking import MlflowClient

        self.uri, self.run_id = uri, run_id
        self.client = MlflowClient(tracking_uri=uri)

    def log_metrics(self, values: dict[str, Any], step: int) -> None:
        from mlflow.entities import Metric

        now = int(1000 * time.time())
        found = [Metric(k, float(v), now, step) for k, v in values.items() if _is_number(v)]
        for i in range(0, len(found), 1000):  # the most a batch takes
            self.client.log_batch(self.run_id, metrics=found[i : i + 1000])

    def log_files(self, paths: list[Path], folder: str | None = None) -> None:
        for path in paths:
            if path.is_dir():
                self.client.log_artifacts(self.run_id, str(path), folder)
            elif path.is_file():
                self.client.log_artifact(self.run_id, str(path), folder)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.number)) and not isinstance(value, bool)


def default_uri(runs_root: Path) -> str:
    """The local store of the runs under ``runs_root``: ``sqlite:///<runs_root>/mlflow.db`` (absolute)."""
    return "sqlite:///" + (Path(runs_root).resolve() / "mlflow.db").as_posix()


def _artifact_root(uri: str) -> str | None:
    """Where a new experiment of a local sqlite store keeps its files: beside the database (MLflow's default is a
    folder in the working directory); None (the store decides) for any other store."""
    if not uri.startswith("sqlite:///"):
        return None
    return (Path(uri[len("sqlite:///") :]).resolve().parent / "mlartifacts").as_uri()


def flatten(values: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested config values as ``{"train.epochs": "3", ...}`` (MLflow params are strings)."""
    out = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = str(value)[:6000]  # the longest param value MLflow keeps
    return out


def start_mlflow(cfg, run_dir: Path, meta: dict[str, Any]) -> MlflowRun:
    """The run's MLflow run: the one ``meta`` names (a resumed run), or a new one with the config as params."""
    from mlflow.entities import Param

    found = (meta.get(KEY) or {}).get("mlflow")
    if found:
        run = MlflowRun(found["uri"], found["run_id"])
        run.client.update_run(run.run_id, status="RUNNING")
        return run
    uri = cfg.track.uri or default_uri(Path(run_dir).parent)
    name = cfg.track.experiment or cfg.name
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(name)
    experiment_id = (
        experiment.experiment_id
        if experiment is not None
        else client.create_experiment(name, artifact_location=_artifact_root(uri))
    )
    from omnifuse import __version__

    made = client.create_run(
        experiment_id,
        run_name=Path(run_dir).name,
        tags={"omnifuse.version": __version__, "run_dir": str(run_dir)},
    )
    run = MlflowRun(uri, made.info.run_id)
    params = [Param(k, v) for k, v in flatten(cfg.to_dict()).items()]
    for i in range(0, len(params), 100):  # the most params a batch takes
        client.log_batch(run.run_id, params=params[i : i + 100])
    meta[KEY] = {"mlflow": {"uri": uri, "experiment": name, "run_id": run.run_id}}
    return run


class MlflowMetrics(keras.callbacks.Callback):
    """Each epoch's metrics (the Keras logs, as in metrics.csv) to the MLflow run, at step = epoch."""

    def __init__(self, run: MlflowRun):
        super().__init__()
        self.run = run

    def on_epoch_end(self, epoch, logs=None):
        self.run.log_metrics(dict(logs or {}), step=epoch)


def _recorded(meta: dict[str, Any]) -> MlflowRun | None:
    """The MLflow run ``meta`` names, or None (none, or MLflow not installed here: logged as a warning)."""
    found = (meta.get(KEY) or {}).get("mlflow")
    if not found:
        return None
    if importlib.util.find_spec("mlflow") is None:
        log.warning(
            "This run is tracked in MLflow, which is not installed here: nothing more is logged to it"
        )
        return None
    return MlflowRun(found["uri"], found["run_id"])


def finish(run_dir: Path, meta: dict[str, Any]) -> None:
    """At the end of training: the run's files and model to its MLflow run (if any), which is marked finished."""
    run = _recorded(meta)
    if run is None:
        return
    run.log_files([run_dir / name for name in ("config.toml", "meta.json", "metrics.csv")])
    run.log_files([run_dir / "model.keras"], "model")
    run.client.set_terminated(run.run_id, "FINISHED")


def failed(meta: dict[str, Any]) -> None:
    """Training stopped with an error: its MLflow run (if any) is marked failed."""
    found = (meta.get(KEY) or {}).get("mlflow")
    if found and importlib.util.find_spec("mlflow") is not None:
        MlflowRun(found["uri"], found["run_id"]).client.set_terminated(found["run_id"], "FAILED")


def log_evaluation(meta: dict[str, Any], results: dict[str, Any], report: Path) -> None:
    """After ``omnifuse evaluate``: the test metrics (``test/<task>/<metric>``) and the report folder to the
    run's MLflow run, if it has one."""
    run = _recorded(meta)
    if run is None:
        return
    values = {}
    for task, m in results["tasks"].items():
        for key in ("accuracy", "macro_f1", "roc_auc"):
            values[f"test/{task}/{key}"] = m.get(key)
        for key in ("ece_before", "ece_after"):
            values[f"test/{task}/{key}"] = (m.get("calibration") or {}).get(key)
    run.log_metrics(values, step=0)
    run.log_files([report], "report")


def log_export(meta: dict[str, Any], paths: list[Path], format: str) -> None:
    """After ``omnifuse export``: the model card and model info to the run's MLflow run, if it has one."""
    run = _recorded(meta)
    if run is not None:
        run.log_files(paths, f"export/{format}")
