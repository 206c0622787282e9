"""MedMNIST v2 .npz loading and the benchmark's ACC/AUC definitions."""

from __future__ import annotations

import numpy as np
import pytest
from fixtures_media import write_medmnist_npz
from sklearn.metrics import roc_auc_score

from omnifuse.data import medmnist
from omnifuse.errors import OmnifuseError


@pytest.fixture(autouse=True)
def _offline(tmp_path, monkeypatch):
    monkeypatch.setenv("OMNIFUSE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("OMNIFUSE_NO_DOWNLOAD", "1")
    monkeypatch.delenv("OMNIFUSE_DATA", raising=False)


def test_pneumonia_from_the_reassembled_mirror_name(tmp_path):
    path = write_medmnist_npz(tmp_path / "medical" / "pneumoniamnist_reassembled.npz", n=(40, 10, 20))
    ds = medmnist.load("pneumoniamnist", data_dir=tmp_path)
    assert ds.source == str(path) and ds.name == "pneumoniamnist"
    assert ds.tasks == {"pneumoniamnist": ["normal", "pneumonia"]}
    assert list(ds.splits) == ["train", "val", "test"]
    assert [len(ds[s]) for s in ds.splits] == [40, 10, 20]
    image = ds["train"].inputs["image"]
    assert image.shape == (40, 28, 28, 1) and image.dtype == np.uint8
    # not shuffled: same order as the file, labels still matching their images (class 1 is brighter)
    with np.load(path) as raw:
        np.testing.assert_array_equal(image[..., 0], raw["train_images"])
        np.testing.assert_array_equal(ds["test"].labels["pneumoniamnist"], raw["test_labels"][:, 0])
    labels = ds["train"].labels["pneumoniamnist"]
    assert image[labels == 1].mean() > image[labels == 0].mean() + 100


def test_retina_is_colour_with_five_grades(tmp_path):
    write_medmnist_npz(tmp_path / "retinamnist.npz", n=15, classes=5, channels=3)
    ds = medmnist.load("retinamnist", data_dir=tmp_path)
    assert ds["val"].inputs["image"].shape == (15, 28, 28, 3)
    assert ds.tasks["retinamnist"] == ["0", "1", "2", "3", "4"]
    assert set(ds["train"].labels["retinamnist"].tolist()) == {0, 1, 2, 3, 4}
    assert medmnist.INFO["retinamnist"]["task_type"] == "ordinal-regression"


def test_load_npz_any_subset(tmp_path):
    path = write_medmnist_npz(tmp_path / "bloodmnist_64.npz", n=(16, 8, 8), classes=8, channels=3, size=64)
    ds = medmnist.load_npz(path, "bloodmnist", [f"c{i}" for i in range(8)])
    assert ds.name == "bloodmnist" and ds["train"].inputs["image"].shape == (16, 64, 64, 3)
    assert ds["test"].ids.tolist() == list(range(8))


def test_npz_errors_name_the_file(tmp_path):
    path = tmp_path / "x.npz"
    np.savez(path, train_images=np.zeros((2, 28, 28), np.uint8), train_labels=np.zeros((2, 1), np.uint8))
    with pytest.raises(
        OmnifuseError, match=r"x\.npz' without val_images, val_labels, test_images, test_labels"
    ):
        medmnist.load_npz(path, "x", ["a", "b"])
    write_medmnist_npz(path, n=4, classes=3)
    with pytest.raises(OmnifuseError, match=r"'train_labels' in '.*x\.npz' to be in 0\.\.1.*0\.\.2"):
        medmnist.load_npz(path, "x", ["a", "b"])
    arrays = dict(np.load(write_medmnist_npz(path, n=4)))
    arrays["val_labels"] = arrays["val_labels"][:3]
    np.savez(path, **arrays)
    with pytest.raises(OmnifuseError, match=r"split 'val' of '.*x\.npz'.*4 images and 3 labels"):
        medmnist.load_npz(path, "x", ["a", "b"])
    arrays = dict(np.load(write_medmnist_npz(path, n=4)))
    arrays["test_images"] = arrays["test_images"].astype(np.float32)
    np.savez(path, **arrays)
    with pytest.raises(OmnifuseError, match=r"'test_images' in '.*x\.npz' to be uint8.*float32"):
        medmnist.load_npz(path, "x", ["a", "b"])
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(OmnifuseError, match=r"junk\.npz'.*cannot be read"):
        medmnist.load_npz(tmp_path / "junk.npz", "x", ["a", "b"])
    with pytest.raises(OmnifuseError, match="pneumoniamnist, retinamnist"):
        medmnist.load("chestmnist", data_dir=tmp_path)
    with pytest.raises(OmnifuseError, match=r"pneumoniamnist\.npz"):
        medmnist.load("pneumoniamnist", data_dir=tmp_path / "empty")


# --- ACC / AUC as medmnist.Evaluator defines them ------------------------------------------------------------


def test_binary_auc_uses_the_positive_column_and_acc_thresholds_at_half():
    y_true = np.array([[0], [1], [1], [0], [1]])
    scores = np.array([[0.8, 0.2], [0.3, 0.7], [0.6, 0.4], [0.5, 0.5], [0.1, 0.9]])
    auc, acc = medmnist.auc_acc(y_true, scores, "binary-class")
    assert auc == pytest.approx(roc_auc_score(y_true[:, 0], scores[:, 1]))
    # predictions: score > 0.5 → [0, 1, 0, 0 (0.5 is not > 0.5), 1] → 4 of 5 right
    assert acc == pytest.approx(0.8)
    assert medmnist.auc_acc(y_true[:, 0], scores[:, 1], "binary-class") == (auc, acc)


def test_multi_class_auc_is_the_mean_one_vs_rest_auc_and_acc_the_argmax():
    rng = np.random.default_rng(0)
    y_true = np.arange(60) % 5
    logits = rng.normal(size=(60, 5)) + 1.5 * np.eye(5)[y_true]
    scores = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    auc, acc = medmnist.auc_acc(y_true[:, None], scores, "ordinal-regression")
    expected_auc = np.mean([roc_auc_score(y_true == c, scores[:, c]) for c in range(5)])
    assert auc == pytest.approx(expected_auc)
    assert auc == pytest.approx(roc_auc_score(y_true, scores, multi_class="ovr", average="macro"))
    assert acc == pytest.approx(np.mean(scores.argmax(axis=1) == y_true))
    assert medmnist.auc_acc(y_true, scores, "multi-class") == (auc, acc)


def test_auc_acc_errors():
    with pytest.raises(OmnifuseError, match="task_type"):
        medmnist.auc_acc([0, 1], [[0.5, 0.5], [0.2, 0.8]], "binary")
    with pytest.raises(OmnifuseError, match="2 labels and 3 score rows"):
        medmnist.auc_acc([0, 1], np.ones((3, 2)) / 2, "binary-class")
    with pytest.raises(OmnifuseError, match=r"AUC of class 0.*only \[1\]"):
        medmnist.auc_acc(
            [0, 0, 0], np.full((3, 3), 1 / 3), "multi-class"
        )  # classes 1, 2 absent: AUC undefined


def test_balanced_class_weights_make_each_class_weigh_the_same_in_the_loss():
    import keras

    from omnifuse.model.heads import MaskedSparseCrossentropy, balanced_class_weights

    labels = np.array([0, 0, 0, 1, -1])  # -1: no label for this task, ignored
    weights = balanced_class_weights(labels, 3)
    assert weights == pytest.approx([4 / 9, 4 / 3, 1.0])  # class 2 absent: weight 1
    probs = np.array([[0.7, 0.2, 0.1], [0.6, 0.3, 0.1], [0.5, 0.4, 0.1], [0.2, 0.7, 0.1], [0.3, 0.3, 0.4]])
    plain = keras.ops.convert_to_numpy(MaskedSparseCrossentropy()(labels, probs))
    weighted = keras.ops.convert_to_numpy(MaskedSparseCrossentropy(class_weights=weights)(labels, probs))
    per_sample = -np.log(probs[np.arange(4), labels[:4]])
    assert plain == pytest.approx(per_sample.mean(), rel=1e-5)
    assert weighted == pytest.approx((per_sample * np.array(weights)[labels[:4]]).mean(), rel=1e-5)
    restored = MaskedSparseCrossentropy.from_config(
        MaskedSparseCrossentropy(class_weights=weights).get_config()
    )
    assert restored.class_weights == pytest.approx(weights)


def test_training_with_balanced_class_weights_weights_the_minority_class(tmp_path):
    import keras

    import omnifuse
    from omnifuse.config import load_config

    # train labels: 3 of class 0 for each of class 1
    path = write_medmnist_npz(tmp_path / "medical" / "pneumoniamnist_reassembled.npz", n=(40, 10, 20))
    with np.load(path) as raw:
        arrays = dict(raw)
    arrays["train_labels"] = (np.arange(40) % 4 == 3).astype(np.uint8)[:, None]
    np.savez(path, **arrays)
    overrides = [
        "train.epochs=1",
        "train.batch_size=20",
        "train.class_weight=balanced",
        "train.verbose=0",
        "model.image.encoder=cnn",
        "model.image.cnn.filters=[4]",
        "model.image.cnn.dense_units=8",
    ]
    run = omnifuse.train(load_config("pneumonia", overrides), runs_root=tmp_path / "runs", data_dir=tmp_path)
    model = keras.saving.load_model(run / "model.keras")
    loss = model.loss["pneumoniamnist"] if isinstance(model.loss, dict) else model.loss
    assert loss.class_weights == pytest.approx([40 / 60, 40 / 20])
    with pytest.raises(
        OmnifuseError, match="Expected one of 'none', 'balanced' for config key 'train.class_weight'"
    ):
        load_config("pneumonia", ["train.class_weight=inverse"])
