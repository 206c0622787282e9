"""MedMNIST v2 2-D subsets from their official ``.npz`` files, and the benchmark's own ACC/AUC.

Each file holds ``{train,val,test}_images`` (N, H, W) for grayscale or (N, H, W, 3) for colour, ``uint8``, and
``{train,val,test}_labels`` (N, 1) integer class indices. Splits are the official train/val/test; nothing is
shuffled here. Built in: ``pneumoniamnist`` (normal vs pneumonia, binary) and ``retinamnist`` (diabetic-retinopathy
grade 0-4, ordinal, scored as multi-class); any other 2-D subset loads with :func:`load_npz`.

The PneumoniaMNIST file may be the mirror's ``pneumoniamnist_reassembled.npz``: same images and split sizes as the
official file, but its train split is ordered pneumonia-first, then normal. That order is not the official one, so
the training pipeline must shuffle train (it should anyway); val/test are the official arrays in official order.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
from sklearn.metrics import accuracy_score, roc_auc_score

from omnifuse.data import Dataset, Split
from omnifuse.data.sources import Source, locate
from omnifuse.errors import OmnifuseError

SPLITS = ("train", "val", "test")
TASK_TYPES = ("binary-class", "multi-class", "ordinal-regression", "multi-label, binary-class")

# name -> class names (label order) and the task type medmnist.INFO gives, which decides how ACC/AUC are computed.
INFO: dict[str, dict] = {
    "pneumoniamnist": {"classes": ["normal", "pneumonia"], "task_type": "binary-class"},
    "retinamnist": {"classes": ["0", "1", "2", "3", "4"], "task_type": "ordinal-regression"},
}

SOURCES: dict[str, Source] = {
    "pneumoniamnist": Source(
        dataset="pneumoniamnist",
        filename="pneumoniamnist.npz",
        url="https://zenodo.org/records/10519652/files/pneumoniamnist.npz?download=1",
        # Only the reassembled mirror's sha256 is known offline; the official file's md5 is
        # 28209eda62fecd6e6a2d98b1501bb15f (medmnist.INFO), its sha256 still has to be added here.
        sha256=("ddf24acbd9d9813360ba1f89918d4d7d4e8b8aa1e891dde85e481f8de8436f58",),
        alternatives=("pneumoniamnist_reassembled.npz",),
        subdir="medical",
        description="MedMNIST v2 PneumoniaMNIST: 28x28 chest X-rays, normal/pneumonia (4,708 / 524 / 624)",
    ),
    "retinamnist": Source(
        dataset="retinamnist",
        filename="retinamnist.npz",
        url="https://zenodo.org/records/10519652/files/retinamnist.npz?download=1",
        sha256=(
            "254915f5f0a2074665c4676356824cf4ef4a3bcab233894b4bafcaf48962bd69",
        ),  # official (md5 bd4c0672...)
        subdir="medical",
        description="MedMNIST v2 RetinaMNIST: 28x28 fundus images, DR grade 0-4 (1,080 / 120 / 400)",
    ),
}


def load(name: str, data_dir=None, download: bool | None = None) -> Dataset:
    """A built-in MedMNIST subset (``"pneumoniamnist"`` or ``"retinamnist"``) with splits train/val/test.

    ``image`` uint8 (N, 28, 28, C) with C = 1 (pneumonia) or 3 (retina); one task named after the subset.
    Example: ``load("retinamnist", data_dir="data")["val"].inputs["image"].shape == (120, 28, 28, 3)``.
    """
    if name not in SOURCES:
        raise OmnifuseError(
            f"Unknown MedMNIST subset {name!r}. Expected one of: {', '.join(sorted(SOURCES))}"
        )
    path = locate(SOURCES[name], data_dir, download)
    return load_npz(path, name, INFO[name]["classes"])


def load_pneumoniamnist(data_dir=None, download: bool | None = None) -> Dataset:
    """PneumoniaMNIST (see :func:`load`); train order may be non-official, so shuffle before training."""
    return load("pneumoniamnist", data_dir, download)


def load_retinamnist(data_dir=None, download: bool | None = None) -> Dataset:
    """RetinaMNIST (see :func:`load`)."""
    return load("retinamnist", data_dir, download)


def load_npz(path: str | Path, name: str, class_names: list[str]) -> Dataset:
    """Any MedMNIST v2 2-D ``.npz`` (official key layout) as a :class:`Dataset` called ``name``.

    One task, also called ``name``, with ``class_names`` in label order; ``ids`` are positions within each split.
    Example: ``load_npz("bloodmnist.npz", "bloodmnist", [str(i) for i in range(8)])``.
    """
    path = Path(path)
    class_names = [str(c) for c in class_names]
    if not class_names:
        raise OmnifuseError(f"Expected at least one class name for '{path}'. Received: {class_names!r}")
    expected_keys = [f"{s}_{k}" for s in SPLITS for k in ("images", "labels")]
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in expected_keys if k not in npz.files]
            if missing:
                raise OmnifuseError(
                    f"Expected a MedMNIST .npz with keys {', '.join(expected_keys)}. Received: '{path}' without "
                    f"{', '.join(missing)} (it has {', '.join(sorted(npz.files)) or 'no arrays'})"
                )
            raw = {k: npz[k] for k in expected_keys}
    except OmnifuseError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise OmnifuseError(
            f"Expected a MedMNIST .npz file (numpy zip archive, no pickled objects). Received: '{path}', which "
            f"cannot be read ({type(exc).__name__}: {exc})"
        ) from exc
    splits = {
        s: _split(raw[f"{s}_images"], raw[f"{s}_labels"], path, s, name, len(class_names)) for s in SPLITS
    }
    shapes = {s: splits[s].inputs["image"].shape[1:] for s in SPLITS}
    if len(set(shapes.values())) != 1:
        raise OmnifuseError(f"Expected the same image shape in every split of '{path}'. Received: {shapes}")
    return Dataset(
        name=name,
        splits=splits,
        tasks={name: class_names},
        modalities={"image": "image"},
        source=str(path),
    )


def _split(
    images: np.ndarray, labels: np.ndarray, path: Path, split: str, task: str, n_classes: int
) -> Split:
    if (
        images.dtype != np.uint8
        or images.ndim not in (3, 4)
        or (images.ndim == 4 and images.shape[3] not in (1, 3))
    ):
        raise OmnifuseError(
            f"Expected '{split}_images' in '{path}' to be uint8 (N, H, W) or (N, H, W, 1|3). "
            f"Received: {images.dtype} {images.shape}"
        )
    if images.ndim == 3:
        images = images[..., None]
    if labels.ndim == 2 and labels.shape[1] != 1:
        raise OmnifuseError(
            f"Expected '{split}_labels' in '{path}' to be (N, 1) class indices; multi-label subsets such as "
            f"ChestMNIST are not supported. Received: shape {labels.shape}"
        )
    if labels.ndim not in (1, 2) or labels.dtype.kind not in "iu":
        raise OmnifuseError(
            f"Expected '{split}_labels' in '{path}' to be integer (N, 1). Received: {labels.dtype} {labels.shape}"
        )
    labels = labels.reshape(-1).astype(np.int64)
    if len(labels) != len(images):
        raise OmnifuseError(
            f"Expected one label per image in split '{split}' of '{path}'. Received: {len(images)} images and "
            f"{len(labels)} labels"
        )
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise OmnifuseError(
            f"Expected '{split}_labels' in '{path}' to be in 0..{n_classes - 1} ({n_classes} class names given). "
            f"Received: values {labels.min()}..{labels.max()}"
        )
    return Split(
        inputs={"image": np.ascontiguousarray(images)},
        labels={task: labels},
        ids=np.arange(len(labels), dtype=np.int64),
    )


def auc_acc(y_true, y_score, task_type: str) -> tuple[float, float]:
    """``(AUC, ACC)`` exactly as MedMNIST v2 (``medmnist.Evaluator``) computes them.

    ``y_true``: (N,) or (N, 1) class indices ((N, L) 0/1 for multi-label). ``y_score``: (N, n_classes)
    probabilities (or (N,) positive-class scores for binary). By ``task_type``:

    - ``"binary-class"``: AUC of the positive-class score (last column); ACC with threshold ``score > 0.5``.
    - ``"multi-class"`` / ``"ordinal-regression"``: mean over classes of the one-vs-rest AUC of that class's
      column; ACC of the argmax.
    - ``"multi-label, binary-class"``: mean per-label AUC; mean per-label ACC at ``> 0.5``.

    Example: ``auc_acc([0, 1, 1], [[0.8, 0.2], [0.3, 0.7], [0.6, 0.4]], "binary-class") == (1.0, 2 / 3)``.
    """
    if task_type not in TASK_TYPES:
        raise OmnifuseError(f"Expected task_type one of {', '.join(TASK_TYPES)}. Received: {task_type!r}")
    y_true = np.asarray(y_true)
    y_score = np.asarray(y_score, dtype=np.float64)
    if task_type != "multi-label, binary-class" and y_true.ndim == 2 and y_true.shape[1] == 1:
        y_true = y_true[:, 0]
    if len(y_true) != len(y_score):
        raise OmnifuseError(
            f"Expected one score row per label. Received: {len(y_true)} labels and {len(y_score)} score rows"
        )
    if task_type == "multi-label, binary-class":
        aucs = [_auc(y_true[:, i], y_score[:, i], f"label {i}") for i in range(y_score.shape[1])]
        accs = [accuracy_score(y_true[:, i], y_score[:, i] > 0.5) for i in range(y_score.shape[1])]
        return float(np.mean(aucs)), float(np.mean(accs))
    if task_type == "binary-class":
        positive = y_score[:, -1] if y_score.ndim == 2 else y_score
        return _auc(y_true, positive, "binary-class"), float(accuracy_score(y_true, positive > 0.5))
    if y_score.ndim != 2:
        raise OmnifuseError(
            f"Expected scores (N, n_classes) for a {task_type} task. Received: shape {y_score.shape}"
        )
    aucs = [_auc((y_true == i).astype(int), y_score[:, i], f"class {i}") for i in range(y_score.shape[1])]
    return float(np.mean(aucs)), float(accuracy_score(y_true, np.argmax(y_score, axis=-1)))


def _auc(y_true: np.ndarray, y_score: np.ndarray, what: str) -> float:
    """ROC AUC, or an error where it is undefined (sklearn would warn and return NaN)."""
    present = np.unique(y_true)
    if len(present) != 2:
        raise OmnifuseError(
            f"Expected both positives and negatives in y_true to compute the AUC of {what}. "
            f"Received: only {present.tolist()}"
        )
    return float(roc_auc_score(y_true, y_score))
