"""The base modules every layer shares: run directory files, output names, accuracy."""

import json

import numpy as np
import pytest

from omnifuse import metrics, names, rundir
from omnifuse.config import read_run_config
from omnifuse.errors import OmnifuseError


def test_atomic_write_replaces_the_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "meta.json"
    rundir.atomic_write_text(path, "old")
    rundir.atomic_write_json(path, {"epochs": 2})
    assert json.loads(path.read_text(encoding="utf-8")) == {"epochs": 2}
    rundir.atomic_write_bytes(tmp_path / "blob.bin", b"\x00\x01")
    assert (tmp_path / "blob.bin").read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blob.bin", "meta.json"]


def test_a_failed_write_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    path = tmp_path / "model.keras"
    path.write_text("good", encoding="utf-8")

    def broken(tmp):
        assert tmp.name == ".model.tmp.keras"  # the suffix Keras reads is kept
        tmp.write_text("half", encoding="utf-8")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        rundir.atomic_write(path, broken)
    assert path.read_text(encoding="utf-8") == "good"
    assert [p.name for p in tmp_path.iterdir()] == ["model.keras"]


def test_temporary_path_keeps_every_suffix(tmp_path):
    assert rundir.temporary_path(tmp_path / "epoch-3.weights.h5").name == ".epoch-3.tmp.weights.h5"
    assert rundir.temporary_path(tmp_path / "README").name == ".README.tmp"


def test_new_run_dirs_count_up_and_free_run_dir_makes_nothing(tmp_path):
    assert rundir.new_run_dir(tmp_path / "runs", "mnist").name == "mnist"
    assert rundir.new_run_dir(tmp_path / "runs", "mnist").name == "mnist-2"
    free = rundir.free_run_dir(tmp_path / "runs", "mnist")
    assert free.name == "mnist-3" and not free.exists()


def test_reading_a_folder_that_is_no_run_names_the_missing_file(tmp_path):
    with pytest.raises(OmnifuseError, match="meta.json"):
        rundir.read_meta(tmp_path)
    with pytest.raises(OmnifuseError, match="config.toml"):
        read_run_config(tmp_path)
    (tmp_path / "meta.json").write_text("{oops", encoding="utf-8")
    with pytest.raises(OmnifuseError, match="meta.json"):
        rundir.read_meta(tmp_path)


def test_output_names_parse_back():
    outputs = [
        "digit",
        names.WEIGHTS_OUTPUT,
        names.unimodal_name("digit", "image"),
        names.member_name("digit", 1),
        names.member_name(names.unimodal_name("digit", "audio"), 2),
    ]
    assert names.mask_name("image") == "image_mask"
    assert names.member_outputs(outputs, ["digit"]) == {"digit__member1": "digit"}
    assert names.unimodal_outputs(outputs, ["digit"]) == {
        "digit__image": ("digit", "image"),
        "digit__audio__member2": ("digit", "audio"),
    }
    assert names.auxiliary_outputs(outputs, ["digit"])["digit__member1"] == ("digit", None)
    assert names.member_index("digit__member12") == 12
    with pytest.raises(ValueError, match="digit"):
        names.member_index("digit")


def test_accuracy_counts_labelled_rows_only():
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    labels = np.array([0, 0, -1, 1])
    assert metrics.accuracy(probs, labels) == pytest.approx(2 / 3)
    assert metrics.accuracy(probs, labels, rows=np.array([True, True, True, False])) == 0.5
    assert metrics.accuracy(probs, np.full(4, -1)) is None
    # one sigmoid column: class 1 above 0.5
    assert metrics.accuracy(np.array([[0.7], [0.2]]), np.array([1, 1])) == 0.5


def test_member_accuracy_is_in_member_order():
    labels = {"t": np.array([0, 1])}
    right, wrong = np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([[0.0, 1.0], [1.0, 0.0]])
    out = {"t": right, "t__member2": wrong, "t__member1": right}
    assert metrics.member_accuracy(out, labels) == {"t": [1.0, 0.0]}
