"""A quiet, fast command line: mistakes answered before TensorFlow loads, "did you mean", TensorFlow's start-up lines
hidden (shown with --verbose), one plain line per epoch and no wrapped paths when output is not a terminal."""

import gc
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cli_lines import run_lines
from test_schema import write_pets

from omnifuse.config import apply_overrides, load_config
from omnifuse.data.cells import encode_tabular
from omnifuse.errors import OmnifuseError
from omnifuse.modalities import kind as modality_kind

ROOT = Path(__file__).resolve().parents[1]
# what TensorFlow prints on its way up (seen on x86 CPUs with oneDNN on, the default there)
NOISE = (
    "All log messages before absl::InitializeLog()",
    "oneDNN custom operations are on",
    "oneDNN supports DT_",
)


def _env(**extra) -> dict:
    path = os.pathsep.join([*extra.pop("path", []), str(ROOT), os.environ.get("PYTHONPATH", "")])
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "OMNIFUSE_VERBOSE")}
    return {**env, "PYTHONPATH": path, **extra}


MISTAKES = [
    (["train", "cifar10-imbd"], "Did you mean 'cifar10-imdb'?"),
    (["train", "mnist", "--set", "trian.epochs=1"], "Did you mean 'train.epochs'?"),
    (["train", "mnist", "--set", "model.fusion=atention"], "Did you mean 'attention'?"),
    (["train", "--data", "{csv}", "--label", "specis"], "Did you mean 'species'?"),
    (["evaluate", "{runs}/pest"], "Did you mean '{runs}/pets'?"),
    (["train", "--resume", "{runs}/pets2"], "Did you mean '{runs}/pets'?"),
    (["export", "{runs}/pets", "--format", "onxx"], "Did you mean 'onnx'?"),
    (["data", "inspect", "{csv}", "--label", "species"], None),
]
VERBOSE_LAST = ["data", "inspect", "{csv}", "--label", "species", "--verbose"]


@pytest.fixture(scope="module")
def answers(tmp_path_factory):
    """The command lines below answered by the command line's main() one after the other in one fresh interpreter
    (tests/cli_lines.py), ``--verbose`` last (it sets the environment for what follows); and the fill-ins."""
    root = tmp_path_factory.mktemp("mistakes")
    csv = write_pets(root / "pets.csv")
    (root / "runs" / "pets").mkdir(parents=True)
    (root / "runs" / "pets" / "meta.json").write_text("{}")
    fill = {"{csv}": str(csv), "{runs}": str(root / "runs")}
    lines = [_fill(args, fill) for args, _ in MISTAKES] + [_fill(VERBOSE_LAST, fill)]
    return run_lines(lines, _env()), fill


def _fill(args: list[str], fill: dict[str, str]) -> list[str]:
    for key, value in fill.items():
        args = [a.replace(key, value) for a in args]
    return args


@pytest.mark.parametrize("args, expected", MISTAKES)
def test_a_mistake_is_answered_without_loading_tensorflow(args, expected, answers):
    answers, fill = answers
    done = answers[tuple(_fill(args, fill))]
    expected = expected and _fill([expected], fill)[0]
    code = 2 if expected else 0
    assert (done["code"], done["tensorflow"], done["keras"]) == (code, False, False), done
    if expected:
        assert expected in done["stderr"] and "Traceback" not in done["stderr"]
    # measured 0.6-0.8 s of CPU in a process of its own (0.5 for the first line here, which imports the command
    # line, then 0.01-0.2); importing Keras alone takes 6.3 s of CPU, so this bound catches a heavy import that the
    # module check above does not name. (No wall-clock bound: on a loaded machine it measures the load.)
    assert done["cpu"] < 2.0, f"{done['cpu']:.2f} s of CPU"


def test_did_you_mean_for_config_keys_files_columns_and_modalities(tmp_path):
    with pytest.raises(OmnifuseError, match=r"'train\.epoch'\. Did you mean 'train\.epochs'\?"):
        apply_overrides({"train": {"epochs": 1}}, ["train.epoch=3"])
    bad = tmp_path / "x.toml"
    bad.write_text('name = "x"\n[model]\nfuson = "late"\n')
    with pytest.raises(OmnifuseError, match=r"Did you mean 'model\.fusion'\?"):
        load_config(bad)
    with pytest.raises(OmnifuseError, match="Did you mean 'image'"):
        modality_kind("imgae")
    spec = {"columns": [{"name": "age", "kind": "number"}], "features": ["age"]}
    with pytest.raises(OmnifuseError, match="Did you mean 'age'"):
        encode_tabular(spec, [{"agee": 3}])


def test_startup_lines_are_filtered_at_the_descriptor_and_shown_with_verbose(tmp_path):
    # a stand-in tensorflow whose import writes to file descriptor 2 as the C++ library does (past sys.stderr)
    fake = tmp_path / "fake" / "tensorflow"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(
        "import os\n"
        "os.write(2, b'WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\\n')\n"
        "os.write(2, b'I0000 00:00:1796543508.000560   15512 port.cc:153] oneDNN custom operations are on.\\n')\n"
        "os.write(2, b'a real problem\\n')\n"
    )
    script = "import sys\nfrom omnifuse import quiet\nquiet.setup(sys.argv[1] == 'v')\nimport tensorflow\n"
    for mode, shown in (("q", "a real problem\n"), ("v", None)):
        done = subprocess.run(
            [sys.executable, "-c", script, mode],
            capture_output=True,
            text=True,
            env=_env(path=[str(fake.parent)]),
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        if shown:
            assert done.stderr == shown
        else:
            assert all(line in done.stderr for line in ("InitializeLog()", "oneDNN custom", "a real problem"))


def test_verbose_is_taken_anywhere_on_the_line(answers):
    answers, fill = answers
    done = answers[tuple(_fill(VERBOSE_LAST, fill))]
    assert done["code"] == 0 and done["verbose"] == "1", done
    assert all(d["verbose"] is None for argv, d in answers.items() if "--verbose" not in argv)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One real, tiny ``omnifuse train --data`` in a subprocess, output to pipes (not a terminal), with oneDNN on
    (so that its start-up lines are printed on any x86 CPU)."""
    root = tmp_path_factory.mktemp("quiet")
    csv = write_pets(root / "pets.csv", n=24)
    args = ["train", "--data", str(csv), "--label", "species", "--runs-root", str(root / "runs")]
    args += ["--set", "train.epochs=2", "--set", "train.batch_size=8", "--set", "model.tabular.mlp.units=[8]"]
    args.append(
        "--no-tensorboard"
    )  # TensorFlow's start-up lines come at its import; its TensorBoard log is tested apart
    done = subprocess.run(
        [sys.executable, "-m", "omnifuse.cli", *args],
        capture_output=True,
        text=True,
        env=_env(TF_ENABLE_ONEDNN_OPTS="1", COLUMNS="40"),
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done, root / "runs" / "pets"


def test_training_prints_no_tensorflow_startup_lines(trained):
    done, _ = trained
    for line in NOISE:
        assert line not in done.stderr, done.stderr


def test_training_prints_the_schema_then_one_plain_line_per_epoch(trained):
    done, run = trained
    out = done.stdout
    assert "\x1b" not in out and "\r" not in out  # no terminal escape codes in a log
    assert out.index("pet_id") < out.index("looks like an id") < out.index("epoch 1/2 - ")
    epochs = [line for line in out.splitlines() if line.startswith("epoch ")]
    assert [line.split(" - ")[0] for line in epochs] == ["epoch 1/2", "epoch 2/2"]
    assert all(" loss " in line and "val_loss" in line for line in epochs)
    # paths are one line each, even at 40 columns
    assert (
        f"Run directory: {run}\n" in out
        and f"Columns of {run.parent.parent / 'pets.csv'} (24 rows):\n" in out
    )
    assert (
        out.count("looks like an id (every value is a different single word)") == 1
    )  # not repeated by the loader
    assert "looks like an id" not in done.stderr


def test_the_run_holds_the_schema_it_was_trained_with(trained):
    import json

    _, run = trained
    schema = json.loads((run / "schema.json").read_text())
    kinds = {c["name"]: c["kind"] for c in schema["columns"]}
    assert kinds["pet_id"] == "ignore" and kinds["color"] == "category"
    assert set(json.loads((run / "meta.json").read_text())["numbers"]["tabular"]["features"]) >= {"age"}


def test_the_export_formats_checked_early_are_the_exporters():
    import ast

    from omnifuse.cli_serve import EXPORT_FORMATS

    source = ast.parse((ROOT / "omnifuse" / "export.py").read_text())
    (found,) = [
        n.value
        for n in source.body
        if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "FORMATS"
    ]
    assert ast.literal_eval(found) == EXPORT_FORMATS


def test_keras_is_imported_without_the_integrations_omnifuse_does_not_use(tmp_path, monkeypatch):
    # stand-ins: a root (keras) that imports an optional package as Keras does, and that package; a split library
    # (scikit-learn) that imports another (pandas) as scikit-learn does
    from omnifuse import lean

    files = {
        "fake_root/__init__.py": "import gc\ncollecting = gc.isenabled()\n"
        "try:\n    import fake_optional.sub\nexcept ImportError:\n    fake_optional = None\n",
        "fake_optional/__init__.py": "",
        "fake_optional/sub.py": "",
        "fake_split/__init__.py": "import gc\ncollecting = gc.isenabled()\n"
        "try:\n    import fake_later\nexcept ImportError:\n    fake_later = None\n",
        "fake_later/__init__.py": "",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(lean, "ROOTS", ("fake_root",))
    monkeypatch.setattr(lean, "OPTIONAL", ("fake_optional",))
    monkeypatch.setattr(lean, "SPLIT_ROOTS", ("fake_split",))
    monkeypatch.setattr(lean, "SPLIT_OPTIONAL", ("fake_later",))
    finders = list(sys.meta_path)
    frozen = gc.get_freeze_count()
    try:
        lean.setup()
        import fake_root
        import fake_split

        assert fake_root.fake_optional is None, "the optional package looked absent while the root imported"
        assert fake_split.fake_later is None, "and the split library's while it imported"
        # the garbage collector paused while each imported, and what they made frozen after
        assert not fake_root.collecting and not fake_split.collecting and gc.isenabled()
        assert gc.get_freeze_count() > frozen
        module_dicts = [vars(fake_root), vars(fake_split)]
        assert not any(o is d for o in gc.get_objects() for d in module_dicts), "frozen: in no generation"
        assert sys.meta_path == finders, "nothing is left hidden after"
        import fake_later
        import fake_optional.sub  # import as usual afterwards

        assert fake_optional.sub.__name__ == "fake_optional.sub" and fake_later.__name__ == "fake_later"
        lean.setup()  # the roots are imported: nothing to do
        assert sys.meta_path == finders
    finally:
        sys.meta_path[:] = finders
        for name in ("fake_root", "fake_optional", "fake_optional.sub", "fake_split", "fake_later"):
            sys.modules.pop(name, None)
