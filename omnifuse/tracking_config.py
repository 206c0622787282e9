"""The ``track`` config section: where a run's training is recorded besides its run directory (Keras-free, so
reading a config never imports TensorFlow or MLflow; the code is omnifuse/tracking.py)."""

from __future__ import annotations

from dataclasses import dataclass

from omnifuse.errors import OmnifuseError


@dataclass(frozen=True)
class TrackConfig:
    """track: experiment tracking: TensorBoard logs in the run directory, and MLflow (omnifuse/tracking.py)."""

    # TensorBoard logs under <run>/logs: the epoch scalars, the mean modality weights on validation samples per
    # epoch, and the validation confusion matrices as images at the end (`tensorboard --logdir runs`)
    tensorboard: bool = True
    # also log to MLflow (the `mlflow` extra): the config as params, the epoch metrics, the run's files and model;
    # `omnifuse evaluate` and `omnifuse export` then add the test metrics, the report and the model card
    mlflow: bool = False
    # the MLflow tracking URI; "" = a local store beside the run directory, sqlite:///<runs root>/mlflow.db
    uri: str = ""
    experiment: str = ""  # the MLflow experiment; "" = the config's name


def overrides(track: str | None, uri: str | None, tensorboard: bool | None) -> dict:
    """Config overrides for the command line's ``--track``, ``--track-uri`` and ``--tensorboard/--no-tensorboard``."""
    if track not in (None, "mlflow", "none"):
        raise OmnifuseError(f"Expected --track mlflow (or none). Received: {track!r}")
    out: dict = {} if track is None else {"track.mlflow": track == "mlflow"}
    if uri is not None:
        out["track.uri"] = uri
    if tensorboard is not None:
        out["track.tensorboard"] = tensorboard
    return out
