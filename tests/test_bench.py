"""The benchmark harness on tiny fixtures (records, table, comparison), the reference scripts, and the pieces the fast
CIFAR-10 presets add (the fastnet encoder's whitening, augmentation and test-time augmentation; lookahead)."""

import json
import runpy
import sys
import types
from pathlib import Path

import keras
import numpy as np
import pytest
from fixtures import write_aclimdb, write_cifar10
from typer.testing import CliRunner

from omnifuse import bench
from omnifuse.cli import app
from omnifuse.encoders.image import ImageFastNet
from omnifuse.errors import OmnifuseError

REFERENCE = Path(__file__).resolve().parents[1] / "benchmarks" / "reference"

# A tiny fastnet run with the features of the cifar10-fast preset: no validation hold-out, SGD, lookahead.
TINY = """
name = "tiny"
[data]
sets = ["cifar10"]
val_fraction = 0.0
[model]
fusion = "concat"
fusion_dim = 16
[model.image]
encoder = "fastnet"
[model.image.fastnet]
widths = [8, 16]
[train]
epochs = 2
batch_size = 50
optimizer = "sgd"
learning_rate = 0.05
schedule = "onecycle"
label_smoothing = 0.2
lookahead = 0.5
early_stopping = 0
"""

# A reference that reports fixed numbers, so the comparison's ratio is known.
FAKE_REFERENCE = """
import argparse, json
p = argparse.ArgumentParser()
p.add_argument("--seed", type=int); p.add_argument("--json"); p.add_argument("--data-dir"); p.add_argument("--epochs")
a = p.parse_args()
epochs = [{"epoch": 1, "train_seconds": 40.0, "cumulative_seconds": 40.0, "eval_seconds": 1.0,
           "test_accuracy": {"cifar10": 0.04}}]
json.dump({"kind": "reference", "seed": a.seed, "epochs": epochs, "train_seconds": 40.0,
           "final": {"cifar10": {"accuracy": 0.04, "macro_f1": 0.01, "roc_auc": 0.5}}}, open(a.json, "w"))
"""

HAND_WRITTEN_HEAD = "# Results\n\nHand-written notes, with the published anchors: NBSVM 91.2%.\n\n"
HAND_WRITTEN_TAIL = "\n\n## Notes\n\nMore hand-written text | with a pipe.\n"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_cifar10(root, n_per_batch=40, n_test=60)
    write_aclimdb(root, n_per_class=30)
    return root


def test_bench_command_writes_records_table_and_ratio(data_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.toml").write_text(TINY)
    (tmp_path / "fake_ref.py").write_text(FAKE_REFERENCE)
    results = tmp_path / "benchmarks" / "results"
    results.parent.mkdir()
    md = results.parent / "RESULTS.md"
    md.write_text(HAND_WRITTEN_HEAD + f"{bench.BEGIN}\nan old table\n{bench.END}" + HAND_WRITTEN_TAIL)

    args = ["bench", "tiny.toml", "--seeds", "1", "--first-seed", "2", "--compare", "fake_ref.py"]
    args += ["--data-dir", str(data_dir)]
    args += ["--results", str(results), "--thresholds", "0.01,0.999"]
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output

    files = sorted((results / "tiny").glob("*.json"))
    records = {json.loads(f.read_text())["label"]: json.loads(f.read_text()) for f in files}
    assert set(records) == {"tiny", "keras-fake_ref"}
    assert all(f.name.endswith("-seed2.json") for f in files)  # --first-seed 2
    rec = records["tiny"]
    assert rec["name"] == "tiny" and rec["role"] == "main" and rec["references"] == ["keras-fake_ref"]
    assert set(rec["commit"]) == {"sha", "dirty"}
    assert rec["hardware"]["cores"] >= 1 and rec["hardware"]["cpu"]
    assert rec["versions"]["keras"] == keras.__version__ and rec["versions"]["tensorflow"]
    assert rec["backend"] == "tensorflow" and rec["os"] and rec["seed"] == 2
    # the resolved config: the file's values and the defaults it left out
    assert rec["config"]["train"]["epochs"] == 2 and rec["config"]["model"]["image"]["fastnet"]["tta"] == 1
    assert [e["epoch"] for e in rec["epochs"]] == [1, 2]
    first, second = rec["epochs"]
    assert second["cumulative_seconds"] == pytest.approx(
        first["train_seconds"] + second["train_seconds"], abs=2e-3
    )
    assert rec["train_seconds"] == pytest.approx(second["cumulative_seconds"], abs=2e-3)
    assert all(0.0 <= e["test_accuracy"]["cifar10"] <= 1.0 and e["eval_seconds"] >= 0 for e in rec["epochs"])
    assert rec["first_step_seconds"] > 0 and rec["step_seconds"] > 0 and rec["steps"] == 2 * 4
    assert rec["wall_seconds"] >= rec["train_seconds"] and rec["process_seconds"] >= rec["wall_seconds"]
    assert set(rec["final"]["cifar10"]) == {"accuracy", "macro_f1", "roc_auc"}
    # 1% is reached at the first epoch unless the model gets every test image wrong; 99.9% is never reached
    reached = rec["time_to_accuracy"]["cifar10"]
    assert reached["0.999"] is None
    if first["test_accuracy"]["cifar10"] >= 0.01:
        assert reached["0.01"] == first["cumulative_seconds"]
    assert records["keras-fake_ref"]["time_to_accuracy"] == {"cifar10": {"0.01": 40.0, "0.999": None}}

    acc_ratio = rec["final"]["cifar10"]["accuracy"] / 0.04
    time_ratio = rec["train_seconds"] / 40.0
    expected = f"acc ×{acc_ratio:.3f}, time ×{time_ratio:.3f}"
    assert expected in result.output
    text = md.read_text()
    assert text.startswith(HAND_WRITTEN_HEAD + bench.BEGIN) and text.endswith(bench.END + HAND_WRITTEN_TAIL)
    assert "an old table" not in text
    row = next(line for line in text.splitlines() if line.startswith("| tiny | tiny |"))
    assert f"{expected} vs keras-fake_ref" in row
    assert "| tiny | keras-fake_ref (reference) | 1 | 4.00 |" in text


def _record(
    label,
    acc,
    train_seconds,
    invocation="i1",
    role="main",
    references=(),
    reached=None,
    sha="abc1234",
    samples_per_second=100.0,
):
    epochs = [{"epoch": 1, "train_seconds": train_seconds, "cumulative_seconds": train_seconds}]
    epochs[0]["test_accuracy"] = {"cifar10": acc}
    return {
        "name": "cifar10-x",
        "label": label,
        "role": role,
        "references": list(references),
        "invocation": invocation,
        "started": f"2030-01-01T00:00:{len(label):02d}",
        "commit": {"sha": sha + "0" * 33, "dirty": False},
        "hardware": {"cpu": "Test CPU", "cores": 2},
        "epochs": epochs,
        "train_seconds": train_seconds,
        "first_step_seconds": 1.5,
        "samples_per_second": samples_per_second,
        "final": {"cifar10": {"accuracy": acc, "macro_f1": acc, "roc_auc": 0.9}},
        "time_to_accuracy": {"cifar10": reached or {"0.8": None}},
    }


def _write(results, records):
    for i, r in enumerate(records):
        bench.write_json(results / r["name"] / f"{i:03d}-{r['label']}.json", r)


def test_table_has_mean_std_ratio_and_unreached_thresholds(tmp_path):
    results = tmp_path / "results"
    main = [
        _record("fast", 0.90, 50.0, references=["ref"], reached={"0.8": 20.0, "0.85": 30.0, "0.9": None}),
        _record("fast", 0.92, 70.0, references=["ref"], reached={"0.8": 22.0, "0.85": None, "0.9": None}),
    ]
    refs = [_record("ref", 0.60, 100.0, role="reference", sha="def5678", samples_per_second=80.0)]
    _write(results, main + refs)
    path = bench.update_results(results)
    assert path == tmp_path / "RESULTS.md"
    text = path.read_text()
    assert text.startswith("# omnifuse results") and bench.BEGIN in text and bench.END in text
    row = next(line for line in text.splitlines() if line.startswith("| cifar10-x | fast |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[2] == "2"  # seeds
    assert cells[3] == "91.00 ± 1.41"  # accuracy mean ± std (ddof 1)
    assert cells[4] == "90.00 ± 0.00"  # ROC-AUC
    assert cells[5] == "60 ± 14"  # train seconds
    assert cells[6] == "80% 21 ± 1 s, 85% 30 s (1/2), 90% —"
    # 0.91 / 0.60, 60 / 100, and training throughput 100 / 80 samples/s
    assert cells[9] == "acc ×1.517, time ×0.600, samples/s ×1.250 vs ref"
    assert cells[10] == "abc1234" and cells[11] == "Test CPU, 2 cores"
    assert bench.compare_lines(main + refs) == [
        "[bench] cifar10-x: fast / ref: acc ×1.517, time ×0.600, samples/s ×1.250"
    ]


def test_runs_on_other_machines_get_rows_of_their_own_and_pool_only_in_the_summary(tmp_path):
    results = tmp_path / "results"
    slow = [_record("fast", 0.90, 100.0, invocation="a", references=["ref"])]
    fast = [_record("fast", 0.92, 40.0, invocation="b", references=["ref"]) for _ in range(2)]
    refs = [_record("ref", 0.60, 50.0, invocation="a", role="reference")]
    for r in fast:
        r["hardware"] = {"cpu": "Other CPU", "cores": 2}
    _write(results, slow + fast + refs)
    lines = bench.update_results(results).read_text().splitlines()
    rows = [
        [c.strip() for c in line.strip("|").split("|")]
        for line in lines
        if line.startswith("| cifar10-x | fast |")
    ]
    assert [(r[2], r[3], r[5], r[11]) for r in rows] == [
        ("1", "90.00", "100", "Test CPU, 2 cores"),
        ("2", "92.00 ± 0.00", "40 ± 0", "Other CPU, 2 cores"),
    ]
    assert (
        rows[0][9] == "acc ×1.500, time ×2.000, samples/s ×1.000 vs ref"
    )  # beside the reference it ran with
    assert rows[1][9] == "—"  # no reference ran on that machine
    summary = bench.render_summary(slow + fast + refs)  # accuracy pools over machines
    assert "| cifar10-x | fast | 3 | 91.33 ± 1.15 | 90.00 ± 0.00 |" in summary.splitlines()


def test_superseded_records_stay_on_disk_but_out_of_the_tables(tmp_path):
    results = tmp_path / "results"
    _write(results, [_record("fast", 0.90, 50.0)])
    bench.write_json(results / "cifar10-x" / bench.SUPERSEDED / "old-fast.json", _record("fast", 0.70, 90.0))
    assert [r["final"]["cifar10"]["accuracy"] for r in bench.load_records(results)] == [0.90]
    row = next(line for line in bench.update_results(results).read_text().splitlines() if "| fast |" in line)
    assert "90.00" in row and "| 1 |" in row


def test_fold_suites_get_a_pooled_row_and_robustness_gets_its_own_table(tmp_path):
    folds = [_record(f"fold{k}", acc, 10.0) for k, acc in enumerate((0.80, 0.90, 0.70))]
    for r in folds:
        r["name"] = "brain-mri-cv"
    fused = _record("attention", 0.9, 10.0)
    fused["robustness"] = {
        "av_digits": {
            "modalities": ["audio", "image"],
            "subsets": [
                {"modalities": ["audio"], "accuracy": {"cifar10": 0.6}},
                {"modalities": ["audio", "image"], "accuracy": {"cifar10": 0.9}},
            ],
            "corruption": {
                "audio": {
                    "corruption": "noise std",
                    "levels": [0.0, 0.5],
                    "accuracy": {"cifar10": [0.9, 0.4]},
                    "weights": {"audio": [0.7, 0.2], "image": [0.3, 0.8]},
                }
            },
        }
    }
    table = bench.render_table(folds + [fused])
    pooled = next(line for line in table.splitlines() if "pooled" in line)
    cells = [c.strip() for c in pooled.strip("|").split("|")]
    assert cells[:4] == ["brain-mri-cv", "**all 3 folds pooled**", "3", "80.00 ± 10.00"]
    row = next(line for line in table.splitlines() if line.startswith("| cifar10-x | attention | 1 | audio"))
    assert "audio: 60.00<br>audio + image: 90.00" in row
    assert "audio at noise std 0.5: acc 40.00, weight of audio 0.70 → 0.20" in row
    assert "| fold0 | 1 | audio" not in table  # runs without a robustness evaluation stay out of that table
    summary = bench.render_summary(folds)  # the README's table shows the pooled row only
    assert (
        "| brain-mri-cv | **all 3 folds pooled** | 3 | 80.00 ± 10.00 |" in summary and "fold0" not in summary
    )


def test_the_readme_summary_is_regenerated_between_its_markers(tmp_path):
    results = tmp_path / "benchmarks" / "results"
    speed = dict(_record("resnet", 0.13, 100.0), name="step-overhead")
    _write(
        results,
        [_record("a", 0.5, 10.0), _record("a", 0.7, 12.0), _record("r", 0.1, 5.0, role="reference"), speed],
    )
    readme = tmp_path / "README.md"
    readme.write_text(f"# Tool\n\n{bench.README_BEGIN}\nold table\n{bench.README_END}\n\nafter\n")
    bench.update_results(results)
    text = readme.read_text()
    assert text.startswith(f"# Tool\n\n{bench.README_BEGIN}\n| benchmark |") and text.endswith("\n\nafter\n")
    assert "| cifar10-x | a | 2 | 60.00 ± 14.14 | 90.00 ± 0.00 |" in text and "old table" not in text
    assert "| r |" not in text  # reference runs stay in RESULTS.md
    assert "step-overhead" not in text  # so do speed runs, whose accuracy means nothing
    assert "| step-overhead | resnet |" in (results.parent / "RESULTS.md").read_text()
    no_markers = "# Tool without a generated table\n"
    readme.write_text(no_markers)
    bench.update_results(results)
    assert readme.read_text() == no_markers


def test_results_region_is_the_only_part_rewritten(tmp_path):
    results = tmp_path / "results"
    _write(results, [_record("a", 0.5, 10.0)])
    md = tmp_path / "RESULTS.md"
    md.write_text(HAND_WRITTEN_HEAD + f"{bench.BEGIN}\nstale\n{bench.END}" + HAND_WRITTEN_TAIL)
    bench.update_results(results)
    once = md.read_text()
    assert once.startswith(HAND_WRITTEN_HEAD + bench.BEGIN + "\n") and once.endswith(
        bench.END + HAND_WRITTEN_TAIL
    )
    assert "stale" not in once and "| cifar10-x | a | 1 | 50.00 |" in once
    bench.update_results(results)
    assert md.read_text() == once  # regenerating is stable

    md.write_text("# Only hand-written text\n")  # no markers yet: the table is appended, the text kept
    bench.update_results(results)
    text = md.read_text()
    assert text.startswith("# Only hand-written text\n\n" + bench.BEGIN) and text.rstrip().endswith(bench.END)


@pytest.mark.parametrize(
    "script,task",
    [("cifar10_cnn.py", "cifar10"), ("imdb_lstm.py", "sentiment"), ("resnet_torch.py", "cifar10")],
)
def test_reference_scripts_write_the_same_record_fields(script, task, data_dir, tmp_path, monkeypatch):
    if script == "resnet_torch.py":
        pytest.importorskip("torch", reason="the PyTorch reference needs torch (the torch-reference extra)")
    out = tmp_path / "ref.json"
    argv = [script, "--epochs", "2", "--seed", "1", "--data-dir", str(data_dir), "--json", str(out)]
    monkeypatch.setattr(sys, "argv", [*argv, "--limit-train", "60"])
    runpy.run_path(str(REFERENCE / script), run_name="__main__")
    rec = json.loads(out.read_text())
    assert rec["kind"] == "reference" and rec["seed"] == 1 and rec["config"]["epochs"] == 2
    assert [e["epoch"] for e in rec["epochs"]] == [1, 2]
    assert all(0.0 <= e["test_accuracy"][task] <= 1.0 for e in rec["epochs"])
    assert rec["train_seconds"] == pytest.approx(rec["epochs"][-1]["cumulative_seconds"], abs=2e-3)
    assert rec["first_step_seconds"] > 0 and rec["step_seconds"] > 0
    assert set(rec["final"][task]) == {"accuracy", "macro_f1", "roc_auc"}
    assert rec["hardware"]["cores"] >= 1 and rec["versions"]["keras"] == keras.__version__
    assert bench.time_to_accuracy(rec["epochs"], [0.0])[task]["0"] == rec["epochs"][0]["cumulative_seconds"]


def test_the_recorder_scores_one_sigmoid_unit_as_binary_and_keeps_the_commit_it_started_at(monkeypatch):
    x = np.array([[-2.0], [-1.0], [1.0], [3.0]], "float32")
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, activation="sigmoid")])
    model.set_weights([np.ones((1, 1), "float32"), np.zeros(1, "float32")])  # p > 0.5 exactly where x > 0
    monkeypatch.setattr(bench, "_git", lambda *args: "start" if args[0] == "rev-parse" else "")
    recorder = bench.EpochRecorder(x, {"sentiment": np.array([0, 1, 1, 1])}, verbose=False)
    recorder.set_model(model)
    assert recorder.test_accuracy() == {"sentiment": 0.75}  # argmax of one column would say 0.25
    monkeypatch.setattr(bench, "_git", lambda *args: "later" if args[0] == "rev-parse" else "")
    recorder.on_epoch_begin(0)
    recorder.on_epoch_end(0)
    rec = bench.record_run(
        recorder, kind="reference", seed=0, config={}, batch_size=4, final={}, wall_seconds=1.0
    )
    assert rec["commit"] == {"sha": "start", "dirty": False}
    assert (
        rec["epochs"][0]["test_accuracy"] == {"sentiment": 0.75} and "member_accuracy" not in rec["epochs"][0]
    )


def test_the_pytorch_reference_trains_the_step_overhead_suites_network():
    pytest.importorskip("torch", reason="the PyTorch reference needs torch (the torch-reference extra)")
    import numpy as np

    from omnifuse.config import load_config
    from omnifuse.model.builder import build_model

    (_, preset, overrides), (_, preset_xla, overrides_xla) = bench.SUITES["step-overhead"]
    assert (preset_xla, overrides_xla) == (preset, [*overrides, "train.jit_compile=true"])
    cfg = load_config(preset).replace(overrides)
    model = build_model(cfg, {"image": "image"}, {"cifar10": [str(i) for i in range(10)]})
    ref = runpy.run_path(str(REFERENCE / "resnet_torch.py"), run_name="reference")
    r = cfg.model.image.resnet
    net = ref["ResNet"](list(r.widths), r.blocks, r.dense_units, cfg.model.fusion_dim, 10, r.dropout)
    assert sum(p.numel() for p in net.parameters()) == sum(
        int(np.prod(w.shape)) for w in model.trainable_weights
    )
    assert sum(p.numel() for p in net.parameters()) > 10**6
    x = ref["augment"](
        ref["to_tensor"](np.zeros((4, 32, 32, 3), np.uint8) + 7), __import__("torch").Generator()
    )
    assert tuple(x.shape) == (4, 3, 32, 32) and float(x.min()) == pytest.approx(7 / 255, abs=1e-5)


def test_names_suites_and_references_resolve(monkeypatch):
    monkeypatch.setitem(
        bench.SUITES, "two-folds", [(f"fold{k}", "brain-mri", [f"data.fold={k}"]) for k in (0, 1)]
    )
    entries = bench.resolve("two-folds")
    assert [(e.label, e.target, e.overrides) for e in entries] == [
        ("fold0", "brain-mri", ("data.fold=0",)),
        ("fold1", "brain-mri", ("data.fold=1",)),
    ]
    assert bench.resolve("cifar10-fast") == [bench.Entry("cifar10-fast", "omnifuse", "cifar10-fast")]
    assert bench.resolve_reference("two-folds:fold1") == [entries[1]]
    assert bench.resolve("two-folds:fold1") == [entries[1]]  # some entries of a suite ...
    assert bench.bench_name("two-folds:fold1") == "two-folds"  # ... recorded with the whole suite
    with pytest.raises(OmnifuseError, match="Labels: fold0, fold1"):
        bench.resolve("two-folds:fold9")
    with pytest.raises(OmnifuseError, match="Labels: fold0, fold1"):
        bench.resolve_reference("two-folds:fold7")
    ref = bench.resolve_reference("cifar10_cnn")[0]
    assert ref.kind == "reference" and Path(ref.target).name == "cifar10_cnn.py"
    with pytest.raises(OmnifuseError, match="Suites: .*two-folds"):
        bench.resolve("no-such-benchmark")
    with pytest.raises(OmnifuseError, match="Reference scripts: .*imdb_lstm"):
        bench.resolve_reference("no-such-reference")
    with pytest.raises(OmnifuseError, match="--thresholds"):
        bench.parse_thresholds("0.8,high")


def test_bench_serve_runs_the_serving_benchmark_and_keeps_its_record(monkeypatch, tmp_path):
    calls = []
    module = types.ModuleType("omnifuse.serving.bench")
    module.run = lambda run_dir, **kw: calls.append((run_dir, kw)) or {"single": {"p50_ms": 12.5}}
    monkeypatch.setitem(sys.modules, "omnifuse.serving.bench", module)
    args = ["bench", "serve", "--run", "runs/av", "--set", "requests=20", "--set", "batch_sizes=[1, 8]"]
    result = CliRunner().invoke(app, [*args, "--results", str(tmp_path / "results")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert calls == [(Path("runs/av"), {"requests": 20, "batch_sizes": [1, 8]})]
    (path,) = (tmp_path / "results" / "serve").glob("*-av.json")
    record = json.loads(path.read_text())
    assert (
        record["single"] == {"p50_ms": 12.5} and record["kind"] == "serve" and record["commit"]["sha"] != ""
    )
    assert bench.load_records(tmp_path / "results") == []  # not a training benchmark: kept out of the table

    with pytest.raises(OmnifuseError, match="--run"):
        bench.run_serve(None)
    monkeypatch.setitem(sys.modules, "omnifuse.serving.bench", None)  # not installed
    with pytest.raises(OmnifuseError, match="omnifuse.serving.bench"):
        bench.run_serve("runs/av")


# ------------------------------------------------------------------------------------------ fastnet, lookahead


def _images(n=64, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (n, 16, 16, 3)).astype("float32")
    base[..., 1] = 0.7 * base[..., 0] + 0.3 * base[..., 1]  # correlated channels, as in real photos
    return base.astype("uint8")


def test_fastnet_adapt_whitens_patches():
    images = _images()
    layer = ImageFastNet(widths=(4, 8))
    layer.adapt(images)
    x = images.astype("float32") / 255.0
    out = keras.ops.convert_to_numpy(keras.ops.conv(x, layer.whiten_w, padding="valid") + layer.whiten_b)
    half = out.shape[-1] // 2  # the second half are the negated filters
    flat = out[..., :half].reshape(-1, half).astype("float64")
    np.testing.assert_allclose(flat.mean(axis=0), 0.0, atol=1e-3)
    np.testing.assert_allclose(np.cov(flat, rowvar=False), np.eye(half), atol=0.02)
    np.testing.assert_allclose(out[..., half:], -out[..., :half], atol=1e-5)
    assert not layer.whiten_w.trainable and layer.whiten_b.trainable


def test_fastnet_augments_in_training_and_averages_the_mirror_in_inference():
    images = _images(8)
    layer = ImageFastNet(widths=(4, 8), tta=1)
    first = keras.ops.convert_to_numpy(layer(images, training=True))
    second = keras.ops.convert_to_numpy(layer(images, training=True))
    assert not np.allclose(first, second)  # a fresh flip/shift draw each step

    plain = keras.ops.convert_to_numpy(layer(images, training=False))
    mirrored = keras.ops.convert_to_numpy(layer(images[:, :, ::-1], training=False))
    np.testing.assert_allclose(plain, mirrored, rtol=1e-4, atol=1e-5)
    no_tta = ImageFastNet.from_config({**layer.get_config(), "tta": 0})
    no_tta.build(images.shape)
    no_tta.set_weights(layer.get_weights())
    assert not np.allclose(keras.ops.convert_to_numpy(no_tta(images, training=False)), plain)
    with pytest.raises(ValueError, match="tta"):
        ImageFastNet(tta=3)


def test_lookahead_ends_training_on_the_slow_weights():
    from omnifuse.training import _Lookahead

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(keras.optimizers.SGD(0.1), "mse")
    x, y = np.random.default_rng(0).normal(size=(32, 3)), np.zeros((32, 2))
    look = _Lookahead(0.9, every=3, total_steps=8)  # the last sync is at step 6: steps 7-8 run fast
    slow_at_end = []

    class Spy(keras.callbacks.Callback):
        def on_train_end(self, logs=None):
            slow_at_end.extend(s.copy() for s in look.slow)

    model.fit(x, y, batch_size=8, epochs=2, callbacks=[look, Spy()], verbose=0)
    assert look.step == 8
    for weight, slow in zip(model.get_weights(), slow_at_end):
        np.testing.assert_allclose(weight, slow, rtol=1e-6)


def test_batch_norm_beta_grad_scale_multiplies_only_betas_gradient():
    import tensorflow as tf

    from omnifuse.encoders.layers import BatchNormalization

    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 4, 4, 3)).astype("float32")
    probe = rng.normal(size=x.shape).astype("float32")  # a loss whose gradient reaches beta unevenly
    plain, fast = BatchNormalization(scale=False), BatchNormalization(scale=False, beta_grad_scale=64)
    outs, grads = [], []
    for layer in (plain, fast):
        layer.build(x.shape)
        layer.beta.assign([0.1, -0.2, 0.3])
        with tf.GradientTape() as tape:
            out = layer(x, training=True)
            loss = tf.reduce_sum(out * probe)
        outs.append(out.numpy())
        grads.append(tape.gradient(loss, layer.beta).numpy())
    np.testing.assert_array_equal(outs[0], outs[1])  # the outputs are unchanged
    assert np.abs(grads[0]).min() > 1e-3
    np.testing.assert_allclose(grads[1], 64 * grads[0], rtol=1e-5)
    np.testing.assert_array_equal(fast(x, training=False), plain(x, training=False))
    assert BatchNormalization.from_config(fast.get_config()).beta_grad_scale == 64
    net = ImageFastNet(widths=(4, 8), bias_lr_scale=8)
    assert net.get_config()["bias_lr_scale"] == 8
    assert all(
        layer.beta_grad_scale == 8 for g in net.groups for layer in g if isinstance(layer, BatchNormalization)
    )


def test_unprojected_concat_and_a_scaled_bias_free_head_train_save_and_load(data_dir, tmp_path):
    from omnifuse.config import from_dict, read_toml
    from omnifuse.model.heads import ScaledSoftmax
    from omnifuse.modelio import load_model
    from omnifuse.training import train

    (tmp_path / "tiny.toml").write_text(TINY)
    overrides = ["model.fusion_dim=0", "model.head_bias=false", "model.head_scale=0.125", "train.epochs=1"]
    cfg = from_dict(read_toml(tmp_path / "tiny.toml")).replace(overrides)
    run = train(cfg, runs_root=tmp_path / "runs", data_dir=str(data_dir))
    model = load_model(run / "model.keras")
    logits = model.get_layer("cifar10_logits")
    assert not logits.use_bias and logits.kernel.shape == (16, 10)  # right on the encoder's 16 features
    assert isinstance(model.get_layer("cifar10"), ScaledSoftmax) and model.get_layer("cifar10").scale == 0.125
    images = np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3)).astype("uint8")
    feed = {"image": images, "image_mask": np.ones(5, "float32")}
    probs = model.predict_on_batch(feed)["cifar10"]
    features = keras.Model(model.inputs, model.get_layer("fusion").output).predict_on_batch(feed)
    want = keras.ops.convert_to_numpy(keras.ops.softmax(0.125 * (features @ logits.get_weights()[0])))
    np.testing.assert_allclose(probs, want, rtol=1e-4, atol=1e-6)
    with pytest.raises(OmnifuseError, match="model.fusion_dim > 0"):
        train(cfg.replace(["model.fusion=gated"]), runs_root=tmp_path / "runs", data_dir=str(data_dir))


def test_reference_arguments_and_other_backends_are_named_in_the_labels(tmp_path, monkeypatch):
    (tmp_path / "tiny.toml").write_text(TINY)
    ran = []

    def fake_run(entry, seed, folder, meta, options, echo):
        command = bench._command(
            entry, seed, folder / "x.json", None, options["ref_epochs"], options["runs_root"]
        )
        ran.append((entry.label, command))
        return {"label": entry.label}

    monkeypatch.setattr(bench, "_run_entry", fake_run)
    monkeypatch.setattr(bench, "update_results", lambda results: results)
    monkeypatch.setattr(bench, "compare_lines", lambda records: [])
    args = dict(compare="resnet_torch", ref_epochs=1, results=tmp_path / "results")
    bench.run_bench(str(tmp_path / "tiny.toml"), ref_args=["--channels-last"], **args)
    (main_label, main_cmd), (ref_label, ref_cmd) = ran
    assert main_label == "tiny" and "--channels-last" not in main_cmd
    assert ref_label == "keras-resnet_torch+channels-last"
    assert ref_cmd[1].endswith("resnet_torch.py") and ref_cmd[-3:] == ["--epochs", "1", "--channels-last"]
    ran.clear()  # omnifuse runs on another Keras backend are labelled apart; the reference script is not
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    bench.run_bench(str(tmp_path / "tiny.toml"), ref_args=["--channels-last"], **args)
    assert [label for label, _ in ran] == ["tiny+jax", "keras-resnet_torch+channels-last"]
    monkeypatch.delenv("KERAS_BACKEND")
    with pytest.raises(OmnifuseError, match="--ref-arg needs --compare"):
        bench.run_bench(str(tmp_path / "tiny.toml"), ref_args=["--channels-last"], results=tmp_path / "r")
    with pytest.raises(OmnifuseError, match="names none"):
        bench.run_bench(
            str(tmp_path / "tiny.toml"), ref_args=["--x"], compare="cifar10-fast", results=tmp_path / "r"
        )


JAX_RUN = """
import json, sys
from pathlib import Path
from omnifuse.config import from_dict, read_toml
from omnifuse.training import train
cfg = from_dict(read_toml(Path(sys.argv[1]))).replace(["train.epochs=1", "train.lookahead=0"])
run = train(cfg, runs_root=sys.argv[2], data_dir=sys.argv[3])
import keras
print(json.dumps({"backend": keras.backend.backend(), "run": str(run)}))
"""


def test_a_fastnet_model_trains_and_saves_on_the_jax_backend(data_dir, tmp_path):
    pytest.importorskip("jax", reason="the JAX backend needs jax (the jax extra)")
    import os
    import subprocess

    (tmp_path / "tiny.toml").write_text(TINY)
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    cmd = [sys.executable, "-c", JAX_RUN, str(tmp_path / "tiny.toml"), str(tmp_path / "runs"), str(data_dir)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["backend"] == "jax"
    meta = json.loads((Path(out["run"]) / "meta.json").read_text())
    assert (Path(out["run"]) / "model.keras").is_file() and meta
