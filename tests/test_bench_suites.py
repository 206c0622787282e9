"""suites.toml: every suite names a preset and only config keys that exist; the loader's errors; NAME and
--compare resolution."""

import runpy
from pathlib import Path

import pytest

from omnifuse.bench import harness, suites
from omnifuse.config import apply_overrides, load_config, presets
from omnifuse.errors import OmnifuseError

REFERENCE = Path(__file__).resolve().parents[1] / "benchmarks" / "reference"

TWO_FOLDS = """
[bases]
small = ["train.epochs=1"]

[suites.two-folds]
preset = "brain-mri"
pooled = true
variants = [
  { label = "fold0", overrides = ["data.fold=0"] },
  { label = "fold1", base = "small", overrides = ["data.fold=1"] },
  { label = "mri-cnn", preset = "cifar10-cnn" },
]
"""


def _suites_file(tmp_path, monkeypatch, text):
    path = tmp_path / "suites.toml"
    path.write_text(text)
    monkeypatch.setattr(suites, "SUITES_FILE", path)


def _value(config: dict, key: str):
    for part in key.split("."):
        config = config[part]
    return config


def test_every_suite_names_a_preset_and_only_config_keys_that_exist():
    found = suites.load_suites()
    assert {"fsdd-loso", "brain-mri-cv", "av-digits-fusions", "step-overhead"} <= set(found)
    assert {name for name, suite in found.items() if suite.pooled} == {
        "fsdd-loso",
        "brain-mri-cv",
        "fsdd-pretrained-loso",
        "brain-mri-pretrained-cv",
        "fsdd-finetuned-loso",
        "brain-mri-finetuned-cv",
    }
    for name, suite in found.items():
        assert len({e.label for e in suite.entries}) == len(suite.entries), name
        for entry in suite.entries:
            assert entry.kind == "omnifuse" and entry.target in presets(), (name, entry.label)
            # the preset's config with the overrides: an unknown key or a value of the wrong type raises here
            config = load_config(entry.target, list(entry.overrides)).to_dict()
            expected = apply_overrides(config, list(entry.overrides))  # the last value of a key repeated wins
            for item in entry.overrides:
                key = item.split("=", 1)[0]
                assert _value(config, key) == _value(expected, key), (name, entry.label, item)


def test_a_suite_file_with_a_mistake_names_the_key_and_what_it_expected(tmp_path, monkeypatch):
    variant = '{ label = "a", preset = "mnist" }'
    cases = {
        f"[suites.x]\nvariants = [{variant}]\nseeds = 3\n": "Unknown key 'seeds' in \\[suites.x\\] of suites.toml. Valid keys: preset, pooled, variants",
        '[suites.x]\nvariants = [{ label = "a", preset = "mnist", set = [] }]\n': "Unknown key 'set' in .*variant 1",
        '[suites.x]\nvariants = [{ label = "a" }]\n': "Expected a preset for .*'a'.*Received: None",
        f"[suites.x]\nvariants = [{variant}, {variant}]\n": "variant 2 to have a label of its own",
        '[suites.x]\nvariants = [{ label = "a", preset = "mnist", base = "v9" }]\n': "Received: 'v9'. Bases: ",
        '[suites.x]\nvariants = [{ label = "a", preset = "mnist", overrides = "x=1" }]\n': "list of 'key=value'",
        "[suites.x]\nvariants = []\n": "non-empty list",
        '[suites.x]\nvariants = [{ label = "a", preset = "mnist", pretrain = "yes" }]\n': "pretrain to be true or false",
        "[suite.x]\n": "Unknown key 'suite' in the top level",
        "[suites.x\n": "Expected valid TOML",
    }
    for text, message in cases.items():
        _suites_file(tmp_path, monkeypatch, text)
        with pytest.raises(OmnifuseError, match=message):
            suites.load_suites()


def test_names_suites_and_references_resolve(tmp_path, monkeypatch):
    _suites_file(tmp_path, monkeypatch, TWO_FOLDS)

    entries = suites.resolve("two-folds")
    assert [(e.label, e.target, e.overrides) for e in entries] == [
        ("fold0", "brain-mri", ("data.fold=0",)),
        ("fold1", "brain-mri", ("train.epochs=1", "data.fold=1")),  # the base first
        ("mri-cnn", "cifar10-cnn", ()),  # a variant's own preset
    ]
    assert suites.load_suites()["two-folds"].pooled
    assert suites.resolve("cifar10-fast") == [suites.Entry("cifar10-fast", "omnifuse", "cifar10-fast")]
    assert suites.resolve_reference("two-folds:fold1") == [entries[1]]
    assert suites.resolve("two-folds:fold1") == [entries[1]]  # some entries of a suite ...
    assert suites.bench_name("two-folds:fold1") == "two-folds"  # ... recorded with the whole suite
    with pytest.raises(OmnifuseError, match="Labels: fold0, fold1, mri-cnn"):
        suites.resolve("two-folds:fold9")
    with pytest.raises(OmnifuseError, match="Labels: fold0, fold1, mri-cnn"):
        suites.resolve_reference("two-folds:fold7")
    ref = suites.resolve_reference("cifar10_cnn")[0]
    assert ref.kind == "reference" and Path(ref.target).name == "cifar10_cnn.py"
    with pytest.raises(OmnifuseError, match="Suites: .*two-folds"):
        suites.resolve("no-such-benchmark")
    with pytest.raises(OmnifuseError, match="Reference scripts: .*imdb_lstm"):
        suites.resolve_reference("no-such-reference")
    with pytest.raises(OmnifuseError, match="--thresholds"):
        harness.parse_thresholds("0.8,high")


def test_the_pytorch_reference_trains_the_step_overhead_suites_network():
    pytest.importorskip("torch", reason="the PyTorch reference needs torch (the torch-reference extra)")
    import numpy as np

    from omnifuse.model.builder import build_model

    plain, xla = suites.load_suites()["step-overhead"].entries
    assert (xla.target, xla.overrides) == (plain.target, (*plain.overrides, "train.jit_compile=true"))
    cfg = load_config(plain.target).replace(list(plain.overrides))
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


def test_airbench94_resolves_to_its_torch_reference_and_builds_its_command(tmp_path, monkeypatch):
    (ref,) = suites.resolve_reference("airbench94")
    assert (ref.kind, ref.label, Path(ref.target)) == (
        "reference",
        "torch-airbench94",
        REFERENCE / "airbench94.py",
    )
    assert (
        suites.resolve_reference("cifar10_cnn")[0].label == "keras-cifar10_cnn"
    )  # the plain-Keras scripts' label
    ran = []

    def fake_run(entry, seed, folder, meta, options, echo):
        out = folder / "x.json"
        ran.append((entry.label, harness._command(entry, seed, out, "DATA", options["ref_epochs"], "runs")))
        return {"label": entry.label}

    monkeypatch.setattr(harness, "_run_entry", fake_run)
    monkeypatch.setattr(harness, "update_results", lambda results: results)
    monkeypatch.setattr(harness, "compare_lines", lambda records: [])
    harness.run_bench(
        "cifar10-94",
        compare="airbench94",
        ref_epochs=0.2,  # a fifth of an epoch: airbench counts its 9.9 epochs in fractions
        ref_args=["--limit-test=1000"],
        results=tmp_path / "results",
        first_seed=3,
    )
    (main, main_cmd), (label, cmd) = ran
    assert main == "cifar10-94" and "--limit-test=1000" not in main_cmd
    assert label == "torch-airbench94+limit-test-1000"
    out = str(tmp_path / "results" / "cifar10-94" / "x.json")
    assert cmd[1:] == [
        *(ref.target, "--seed", "3", "--json", out, "--data-dir", "DATA"),
        *("--epochs", "0.2", "--limit-test=1000"),
    ]
    # whole epochs stay whole numbers for the scripts that count them as integers
    assert harness._command(ref, 0, Path("x.json"), None, 2.0, "runs")[-2:] == ["--epochs", "2"]


def test_a_variant_with_pretrain_runs_omnifuse_pretrain_first():
    variants = {v.label: v for v in suites.resolve("imdb-unlabeled-small")}
    scratch, pretrained, slower = variants["scratch"], variants["pretrained"], variants["pretrained-lr0.1"]
    assert not scratch.pretrain and pretrained.pretrain and slower.pretrain
    # the same model and labels, but for the start; the pretrained ones apart only in the encoder's learning rate
    assert scratch.overrides[:-2] == pretrained.overrides[:-1] == slower.overrides[:-1]
    assert (pretrained.overrides[-1], slower.overrides[-1]) == (
        "train.pretrained_lr_scale=1.0",
        "train.pretrained_lr_scale=0.1",
    )
    command = harness._command(pretrained, 0, Path("out.json"), None, None, Path("runs"))
    assert "--pretrain" in command
    assert "--pretrain" not in harness._command(scratch, 0, Path("out.json"), None, None, Path("runs"))
