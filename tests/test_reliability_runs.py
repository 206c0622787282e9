"""Checkpoint bookkeeping: a run killed while checkpointing an epoch, then resumed, lists every epoch once."""

import csv
import json

import pytest
from fixtures import write_aclimdb
from fixtures_serving import TINY

import omnifuse
from omnifuse.metrics_log import reconcile_metrics


class _Killed(Exception):
    pass


def _epochs(run):
    return [int(r["epoch"]) for r in csv.DictReader((run / "metrics.csv").open())]


def test_reconcile_keeps_the_checkpointed_epochs_only(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text("epoch,loss\n0,1.5\n1,1.2\n2,1.1\n3,0.")  # the last row cut off mid-write
    assert reconcile_metrics(path, 2) == 2
    assert path.read_text() == "epoch,loss\n0,1.5\n1,1.2\n"
    assert reconcile_metrics(path, 2) == 0 and reconcile_metrics(tmp_path / "none.csv", 3) == 0


def test_a_kill_during_the_checkpoint_write_leaves_each_epoch_listed_once(tmp_path, monkeypatch):
    from omnifuse import training

    write_aclimdb(tmp_path / "data", n_per_class=20)
    config = tmp_path / "tiny.toml"
    config.write_text(
        TINY.format(name="killed", sets='["imdb"]', augment="false").replace("epochs = 1", "epochs = 3")
    )
    original = training._RunCheckpoint.on_epoch_end

    def die_writing_epoch_1(self, epoch, logs=None):
        if epoch == 1:  # metrics.csv has the row of epoch 1; its checkpoint never commits
            raise _Killed()
        original(self, epoch, logs)

    monkeypatch.setattr(training._RunCheckpoint, "on_epoch_end", die_writing_epoch_1)
    with pytest.raises(_Killed):
        omnifuse.train(config, runs_root=tmp_path / "runs", data_dir=str(tmp_path / "data"))
    run = tmp_path / "runs" / "killed"
    assert json.loads((run / "meta.json").read_text())["progress"]["epochs_done"] == 1
    assert _epochs(run) == [0, 1]
    monkeypatch.setattr(training._RunCheckpoint, "on_epoch_end", original)

    omnifuse.train(None, resume=run, data_dir=str(tmp_path / "data"))
    assert json.loads((run / "meta.json").read_text())["progress"]["epochs_done"] == 3
    assert _epochs(run) == [0, 1, 2]
