"""The user's own data: CSV and folder loaders, bad rows, missing modalities, the tabular encoder, and the CLI path
``omnifuse train --data x.csv --label y`` -> evaluate -> predict, on files the tests write in the real formats."""

import csv
import io
import json

import keras
import numpy as np
import pytest
from fixtures_media import tone, wav_bytes
from PIL import Image
from typer.testing import CliRunner

import omnifuse
from omnifuse.cli import app
from omnifuse.data.catalog import load_dataset
from omnifuse.data.table import load_csv, load_folder
from omnifuse.encoders.numbers import TabularMLP
from omnifuse.errors import OmnifuseError

HEADER = ["id", "photo", "review", "voice", "age", "color", "species"]
WORDS = {"cat": "purr meow soft", "dog": "bark woof loud"}
PITCH = {"cat": 3, "dog": 9}  # tone(digit) pitch: 750 Hz vs 1650 Hz


def _image(species: str, rng, size=(16, 16), fmt="PNG") -> bytes:
    level = 200 if species == "cat" else 50
    pixels = np.clip(level + rng.normal(0, 20, (*size, 3)), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


def write_pets(root, n=40, broken=True, seed=0):
    """``root/pets.csv`` with image, text, audio, number and category columns; returns (path, facts).

    Rows alternate cat/dog. Row 1's review spans two lines (so file lines and row numbers differ). Rows 4-8 have
    empty cells (a missing modality each; row 8 misses only its age). With ``broken``, three bad rows are mixed in:
    a missing image file, a corrupt image, an empty label; ``facts["bad"]`` maps each to its line in the file.
    """
    rng = np.random.default_rng(seed)
    (root / "imgs").mkdir(parents=True, exist_ok=True)
    (root / "wavs").mkdir(exist_ok=True)
    rows = []
    for i in range(n):
        species = "cat" if i % 2 == 0 else "dog"
        suffix, fmt, size = (".jpg", "JPEG", (20, 24)) if i == 3 else (".png", "PNG", (16, 16))
        (root / "imgs" / f"{i:03d}{suffix}").write_bytes(_image(species, rng, size, fmt))
        rate = 8000 if i % 2 else 16000
        wave = tone(PITCH[species], rate, 0.3, rng)
        (root / "wavs" / f"{i:03d}.wav").write_bytes(wav_bytes(wave, rate))
        age = (3.0 if species == "cat" else 8.0) + rng.normal(0, 0.7)
        review = f"{WORDS[species]} {rng.choice(['nice', 'ok', 'fine', 'well'])} pet number {i}"
        rows.append(
            {
                "id": str(i + 1),
                "photo": f"imgs/{i:03d}{suffix}",
                "review": review + ("\nsecond line" if i == 1 else ""),
                "voice": f"wavs/{i:03d}.wav",
                "age": f"{age:.1f}",
                "color": ["red", "green", "blue"][i % 3],
                "species": species,
            }
        )
    rows[4]["review"] = ""
    rows[5]["photo"] = ""
    rows[6]["voice"] = ""
    rows[7]["age"] = rows[7]["color"] = rows[7]["id"] = ""
    rows[8]["age"] = ""
    bad = {}
    if broken:
        (root / "imgs" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 4)
        template = dict(rows[0], id="999")
        rows.insert(10, dict(template, photo="imgs/missing.png"))
        rows.insert(20, dict(template, photo="imgs/corrupt.png"))
        rows.insert(30, dict(template, species=""))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, HEADER, lineterminator="\n")
    writer.writeheader()
    lines = []
    for row in rows:
        lines.append(buffer.getvalue().count("\n") + 1)
        writer.writerow(row)
    if broken:
        bad = {"missing": lines[10], "corrupt": lines[20], "no_label": lines[30]}
    path = root / "pets.csv"
    path.write_text(buffer.getvalue(), encoding="utf-8")
    return path, {"bad": bad, "n_good": n}


@pytest.fixture(scope="module")
def pets(tmp_path_factory):
    return write_pets(tmp_path_factory.mktemp("pets"))


def test_bad_rows_are_listed_with_line_column_and_reason(pets):
    path, facts = pets
    with pytest.raises(OmnifuseError) as err:
        load_csv(path, label="species")
    text = str(err.value)
    bad = facts["bad"]
    assert bad["missing"] == 13  # row 1's review takes two lines, so row 10 is on line 13, not 12
    assert f"line {bad['missing']}, column 'photo': file not found: 'imgs/missing.png'" in text
    assert f"line {bad['corrupt']}, column 'photo':" in text and "corrupt.png" in text
    assert f"line {bad['no_label']}, column 'species': empty label" in text
    assert "3 bad row(s)" in text and "--skip-bad-rows" in text


def test_skip_bad_rows_counts_them_and_infers_kinds(pets, tmp_path, monkeypatch):
    path, facts = pets
    # relative paths in the CSV resolve against its folder, not the working directory
    monkeypatch.chdir(tmp_path)
    ds = load_csv(path, label="species", skip_bad_rows=True, sample_rate=8000, num_samples=2000)
    assert ds.meta["skipped_rows"] == 3
    assert sorted(b["row"] for b in ds.meta["bad_rows"]) == sorted(facts["bad"].values())
    assert ds.meta["columns"] == {
        "id": "number",
        "photo": "image",
        "review": "text",
        "voice": "audio",
        "age": "number",
        "color": "category",
    }
    assert ds.modalities == {"photo": "image", "review": "text", "voice": "audio", "tabular": "numbers"}
    assert ds.tasks == {"species": ["cat", "dog"]}
    assert sum(len(s) for s in ds.splits.values()) == facts["n_good"]
    train = ds["train"]
    assert train.inputs["photo"].shape[1:] == (16, 16, 3)  # the first image's size; the 20x24 JPEG is resized
    assert train.inputs["voice"].shape[1:] == (2000,)
    assert ds.meta["numbers"]["tabular"]["features"] == [
        "id",
        "age",
        "color=blue",
        "color=green",
        "color=red",
    ]
    # decoded contents stay with their rows: cats are bright, dogs dark
    has_photo = train.masks["photo"] > 0
    brightness = train.inputs["photo"][has_photo].mean(axis=(1, 2, 3))
    cat = train.labels["species"][has_photo] == 0
    assert brightness[cat].min() > 150 and brightness[~cat].max() < 100


def test_empty_cells_are_missing_modalities_not_bad_rows(pets):
    path, _ = pets
    ds = load_csv(path, label="species", skip_bad_rows=True, num_samples=2000)
    whole = {
        key: [] for key in ("ids", "photo", "review", "voice", "tabular", "tab_mask", "rev_mask", "ph_mask")
    }
    for split in ds.splits.values():
        whole["ids"] += list(split.ids)
        whole["photo"] += list(split.inputs["photo"])
        whole["review"] += list(split.inputs["review"])
        whole["tabular"] += list(split.inputs["tabular"])
        whole["tab_mask"] += list(split.masks["tabular"])
        whole["rev_mask"] += list(split.masks["review"])
        whole["ph_mask"] += list(split.masks["photo"])
    row = {line: i for i, line in enumerate(whole["ids"])}
    # data rows 4-8 sit on lines 7-11 (row 1 spans two lines; no bad row comes before row 10)
    assert whole["rev_mask"][row[7]] == 0 and whole["review"][row[7]] == ""
    assert whole["ph_mask"][row[8]] == 0 and not whole["photo"][row[8]].any()
    assert whole["tab_mask"][row[10]] == 0 and np.isnan(whole["tabular"][row[10]]).all()
    assert whole["tab_mask"][row[11]] == 1 and np.isnan(
        whole["tabular"][row[11]][1]
    )  # age empty, rest present
    assert np.isfinite(whole["tabular"][row[11]][[0, 2, 3, 4]]).all()
    assert sum(whole["rev_mask"]) == len(whole["ids"]) - 1
    assert "second line" in whole["review"][row[3]]


def test_kinds_override_and_unknown_kind(pets):
    path, _ = pets
    ds = load_csv(
        path, label="species", kinds={"id": "ignore", "age": "category"}, skip_bad_rows=True, num_samples=2000
    )
    features = ds.meta["numbers"]["tabular"]["features"]
    assert "id" not in features and all(f.startswith(("age=", "color=")) for f in features)
    with pytest.raises(OmnifuseError, match=r"column 'age'.*Received: 'numeric'"):
        load_csv(path, label="species", kinds={"age": "numeric"})
    with pytest.raises(OmnifuseError, match="'weight'.*Columns: id, photo"):
        load_csv(path, label="species", kinds={"weight": "number"})
    with pytest.raises(OmnifuseError, match="label column 'kind'.*Columns: id, photo"):
        load_csv(path, label="kind")


def test_split_column_and_train_only_vocabulary(tmp_path):
    path = tmp_path / "tiny.csv"
    lines = ["note,size,colour,split,y"]
    for i in range(12):
        split = "train" if i < 8 else "val" if i < 10 else "TEST"
        colour = "purple" if split == "TEST" else ["red", "blue"][i % 2]
        lines.append(f"note number {i} here,{i},{colour},{split},{'ab'[i % 2]}")
    path.write_text("\n".join(lines) + "\n")
    # size = the row number: read as an id (ignored) unless its kind is given
    assert "size" not in load_csv(path, label="y").meta["columns"]
    ds = load_csv(path, label="y", kinds={"size": "number"})
    assert {k: len(v) for k, v in ds.splits.items()} == {"train": 8, "val": 2, "test": 2}
    assert ds.modalities == {"note": "text", "tabular": "numbers"}
    assert ds.meta["numbers"]["tabular"]["features"] == ["size", "colour=blue", "colour=red"]
    test = ds["test"].inputs["tabular"]
    np.testing.assert_array_equal(test[:, 1:], 0.0)  # a colour train never saw: no one-hot bit, not NaN
    np.testing.assert_array_equal(test[:, 0], [10, 11])

    path.write_text(path.read_text().replace("val,", "holdout,", 1))
    with pytest.raises(OmnifuseError, match=r"line 10, column 'split': expected train, val or test"):
        load_csv(path, label="y")


def test_stratified_split_without_split_column_is_seeded(pets):
    path, facts = pets
    a = load_csv(path, label="species", skip_bad_rows=True, num_samples=2000, kinds={"voice": "ignore"})
    b = load_csv(path, label="species", skip_bad_rows=True, num_samples=2000, kinds={"voice": "ignore"})
    for name in ("train", "val", "test"):
        np.testing.assert_array_equal(a[name].ids, b[name].ids)
        assert set(a[name].labels["species"]) == {0, 1}  # stratified: every split has both classes
    assert len(a["test"]) == round(0.2 * facts["n_good"])
    assert not set(a["train"].ids) & set(a["test"].ids)


def _patients_csv(path, patients=30, rows_each=4, with_split=False):
    """A CSV of scans: several rows per patient, one label per patient, a note and a number per row."""
    lines = ["patient,note,dose,split,y" if with_split else "patient,note,dose,y"]
    for p in range(patients):
        label = "sick" if p % 3 == 0 else "well"
        for r in range(rows_each):
            split = ",train" if not with_split else ",train" if p < patients - 4 else ",test"
            if with_split and p == 0 and r == 1:
                split = ",test"  # patient 0 on both sides of the given split
            lines.append(f"P{p:03d},scan {r} of {label} patient,{p + r}{split if with_split else ''},{label}")
    lines[1] = lines[1].replace("P000", "", 1)  # an empty group cell: that row is a group of its own
    path.write_text("\n".join(lines) + "\n")


def test_a_group_column_keeps_each_patient_in_one_split(tmp_path):
    path = tmp_path / "scans.csv"
    _patients_csv(path)
    kinds = {"patient": "group", "note": "text"}
    ds = load_csv(path, label="y", kinds=kinds, val_fraction=0.2, test_fraction=0.2)
    assert ds.modalities == {"note": "text", "tabular": "numbers"}  # the group is not an input
    assert ds.meta["numbers"]["tabular"]["features"] == ["dose"]
    seen = {name: set(split.extra["group"].tolist()) for name, split in ds.splits.items()}
    assert (
        not seen["train"] & seen["val"]
        and not seen["train"] & seen["test"]
        and not seen["val"] & seen["test"]
    )
    assert sum(len(v) for v in ds.splits.values()) == 120
    assert "(row 2)" in set().union(*seen.values())  # the row with an empty cell, a group of its own
    for name in ("val", "test"):
        assert 16 <= len(ds[name]) <= 32  # about a fifth of 120 rows, in whole patients of 4 rows
        assert set(ds[name].labels["y"].tolist()) == {0, 1}  # stratified: both classes
    again = load_csv(path, label="y", kinds=kinds, val_fraction=0.2, test_fraction=0.2)
    np.testing.assert_array_equal(again["test"].ids, ds["test"].ids)  # seeded

    # Without the group column, rows are split one by one and patients fall on both sides.
    rows = load_csv(path, label="y", kinds={"patient": "ignore"}, val_fraction=0.2, test_fraction=0.2)
    patient = {int(line): text.split(",")[0] for line, text in enumerate(path.read_text().splitlines(), 1)}
    assert {patient[i] for i in rows["train"].ids} & {patient[i] for i in rows["test"].ids}

    with pytest.raises(OmnifuseError, match="at most one group column.*patient, note"):
        load_csv(path, label="y", kinds={"patient": "group", "note": "group"})


def test_a_given_split_with_a_group_on_both_sides_warns_and_validation_keeps_groups(tmp_path, caplog):
    from omnifuse import pipeline
    from omnifuse.config import Config

    path = tmp_path / "scans.csv"
    _patients_csv(path, with_split=True)
    with caplog.at_level("WARNING", logger="omnifuse.data.table"):
        ds = load_csv(path, label="y", kinds={"patient": "group"})
    assert "1 group(s)" in caplog.text and "'P000'" in caplog.text
    assert set(ds.splits) == {"train", "test"}  # the user's split, as given
    part = pipeline.prepare(Config().replace(["data.val_fraction=0.25"]), [ds]).parts[0]
    train, val = (set(s.extra["group"].tolist()) for s in (part.train, part.val))
    assert val and not train & val  # the validation hold-out keeps the patients whole too


def test_folder_layout_with_missing_modalities_and_bad_files(tmp_path):
    rng = np.random.default_rng(1)
    for species in ("cat", "dog"):
        folder = tmp_path / "pets" / species
        folder.mkdir(parents=True)
        for i in range(10):
            (folder / f"{i:03d}.png").write_bytes(_image(species, rng))
            if i != 2:
                (folder / f"{i:03d}.txt").write_text(f"{WORDS[species]} {i}")
            if i % 2 == 0:
                (folder / f"{i:03d}.wav").write_bytes(wav_bytes(tone(PITCH[species], 8000, 0.2, rng), 8000))
    (tmp_path / "pets" / "dog" / "009.wav").write_bytes(b"RIFF but not a wave file")
    (tmp_path / "pets" / "cat" / "README.md").write_text("ignored")
    # two images and nothing else under one stem: two samples; with a text beside them: which image is it?
    for suffix, fmt in ((".png", "PNG"), (".jpg", "JPEG")):
        (tmp_path / "pets" / "cat" / f"010{suffix}").write_bytes(_image("cat", rng, fmt=fmt))
        (tmp_path / "pets" / "dog" / f"010{suffix}").write_bytes(_image("dog", rng, fmt=fmt))
    (tmp_path / "pets" / "dog" / "010.txt").write_text("woof")
    with pytest.raises(OmnifuseError, match=r"sample 'dog/009', column 'audio'") as err:
        load_folder(tmp_path / "pets", num_samples=1000)
    assert "sample 'dog/010', column 'image': 2 image files share the stem (010.jpg, 010.png)" in str(
        err.value
    )
    ds = load_dataset("table", folder=str(tmp_path / "pets"), skip_bad_rows=True, num_samples=1000)
    assert ds.meta["skipped_rows"] == 2
    assert ds.modalities == {"image": "image", "text": "text", "audio": "audio"}
    assert ds.tasks == {"class": ["cat", "dog"]}
    everything = {}
    for split in ds.splits.values():
        for sid, audio, text in zip(split.ids, split.masks["audio"], split.masks["text"]):
            everything[sid] = (audio, text)
    assert len(everything) == 21 and "dog/009" not in everything and "dog/010" not in everything
    assert everything["cat/010.png"] == everything["cat/010.jpg"] == (0, 0)
    assert (
        everything["cat/000"] == (1, 1)
        and everything["cat/001"] == (0, 1)
        and everything["dog/002"] == (1, 0)
    )


def test_tabular_encoder_imputes_with_the_train_mean_and_saves_its_statistics(tmp_path):
    train = np.array([[1.0, 10.0], [3.0, np.nan], [5.0, 30.0]], dtype="float32")
    inp = keras.Input((2,))
    encoder = TabularMLP(units=(8,), dropout=0.0, missing_indicator=False)
    encoder.adapt(train)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(encoder.mean), [3.0, 20.0])
    np.testing.assert_allclose(keras.ops.convert_to_numpy(encoder.std), [np.sqrt(8 / 3), 10.0], rtol=1e-5)
    model = keras.Model(inp, encoder(inp))
    rows = np.array([[np.nan, np.nan], [3.0, 20.0], [7.0, -4.0]], dtype="float32")
    out = model.predict(rows, verbose=0)
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out[0], out[1], rtol=1e-6)  # a missing cell reads as the training mean
    model.save(tmp_path / "m.keras")
    np.testing.assert_allclose(
        keras.saving.load_model(tmp_path / "m.keras").predict(rows, verbose=0), out, rtol=1e-6
    )


def test_kinds_config_values_are_checked():
    cfg = omnifuse.load_config("table", ['data.kinds={photo="image", id="ignore"}'])
    assert cfg.data.kinds == {"photo": "image", "id": "ignore"}
    with pytest.raises(
        OmnifuseError, match=r"Expected one of 'image', .*'group' for config key .data.kinds.id."
    ):
        omnifuse.load_config("table", ["data.kinds={id=3}"])
    with pytest.raises(
        OmnifuseError, match=r"'category'.* for config key .data.kinds.id.*Received: 'catgory'"
    ):
        omnifuse.load_config("table", ['data.kinds={id="catgory"}'])


SMALL = [  # 5 epochs of 2 steps (26 training rows): eager, and every assertion held for train.seed 0-2
    "train.epochs=5",
    "train.batch_size=16",
    "train.learning_rate=1e-2",
    "train.early_stopping=0",
    "train.verbose=0",
    "track.tensorboard=false",  # no TensorBoard logs: tests/test_tracking.py checks them
    "data.num_samples=2000",
    "data.sample_rate=8000",
    "model.fusion_dim=16",
    "model.image.cnn.filters=[4]",
    "model.image.cnn.dense_units=8",
    "model.audio.cnn.filters=[4]",
    "model.audio.cnn.dense_units=8",
    "model.text.vocab_size=100",
    "model.text.sequence_length=8",
    "model.tabular.mlp.units=[16]",
]


def test_cli_train_evaluate_predict_on_a_csv(pets, tmp_path):
    path, facts = pets
    runner = CliRunner()
    args = ["train", "--data", str(path), "--label", "species", "--runs-root", str(tmp_path)]
    for item in SMALL:
        args += ["--set", item]
    failed = runner.invoke(app, [*args, "--runs-root", str(tmp_path / "failed")])
    assert failed.exit_code != 0 and "--skip-bad-rows" in str(failed.exception)
    result = runner.invoke(app, [*args, "--skip-bad-rows"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    run = tmp_path / "pets"
    meta = json.loads((run / "meta.json").read_text())
    assert meta["skipped_rows"]["pets"]["count"] == 3
    assert meta["modalities"] == {"photo": "image", "review": "text", "voice": "audio", "tabular": "numbers"}

    # without the robustness section (15 modality subsets, 4 corruption curves): test_fusions.py checks it, and
    # tests/test_modalities.py every kind's corruption
    result = runner.invoke(app, ["evaluate", str(run), "--no-robustness"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    metrics = json.loads((run / "report" / "metrics.json").read_text())
    assert "robustness" not in metrics
    assert metrics["tasks"]["species"]["n"] == round(0.2 * facts["n_good"])
    assert metrics["tasks"]["species"]["accuracy"] >= 0.75  # every modality separates cats from dogs
    report = (run / "report" / "report.md").read_text()
    assert "3 row(s) skipped" in report and "imgs/missing.png" in report

    root = path.parent
    result = runner.invoke(
        app,
        ["predict", str(run), "--json", "-i", f"photo={root / 'imgs' / '000.png'}", "-i", "review=purr meow"]
        + ["-i", f"voice={root / 'wavs' / '000.wav'}", "-i", "age=3.2", "-i", "color=red"],
    )
    assert result.exit_code == 0, result.output
    answer = json.loads(result.output)
    assert answer["modalities_used"] == ["photo", "review", "tabular", "voice"]
    assert answer["tasks"]["species"]["class"] == "cat"

    p = omnifuse.load(run)
    dog = p.predict(tabular={"age": 8.5, "color": "blue", "id": 4})
    assert dog["modalities_used"] == ["tabular"] and dog["modality_weights"]["tabular"] == pytest.approx(1.0)
    cat = p.predict(tabular={"age": 2.5, "color": "blue", "id": 4})
    # the tabular branch alone has learned that older pets are dogs
    assert dog["tasks"]["species"]["probabilities"]["dog"] > cat["tasks"]["species"]["probabilities"]["dog"]
    same = p.predict(
        tabular=np.array([4, 8.5, 1, 0, 0], dtype="float32")
    )  # features: id, age, one-hot colour
    assert same["tasks"]["species"]["probabilities"] == pytest.approx(
        dog["tasks"]["species"]["probabilities"]
    )
    with pytest.raises(OmnifuseError, match="Unknown tabular column 'weight'"):
        p.predict(tabular={"weight": 3})


def test_hold_outs_keep_groups_whole_and_say_when_there_is_only_one(caplog):
    from omnifuse.data.splits import holdout

    labels = np.array([0, 1] * 20)
    groups = np.repeat(np.arange(10), 4)  # 10 groups of 4, each with both labels
    kept, held = holdout(np.arange(40), labels, 0.2, seed=3, groups=groups)
    assert sorted([*kept, *held]) == list(range(40))
    assert not set(groups[kept]) & set(groups[held]) and len(held) == 8
    few = np.repeat([0, 1, 2], [20, 10, 10])  # too few groups for 5 stratified folds: a shuffle of groups
    kept, held = holdout(np.arange(40), labels, 0.2, seed=3, groups=few)
    assert not set(few[kept]) & set(few[held]) and len(held) in (10, 20)
    with caplog.at_level("WARNING", logger="omnifuse.data.splits"):
        kept, held = holdout(np.arange(40), labels, 0.2, seed=3, groups=np.zeros(40))
    assert len(held) == 8 and "one group" in caplog.text


def test_the_catalog_loads_a_config_s_sets_with_the_options_each_loader_declares(tmp_path):
    import dataclasses
    import inspect

    from omnifuse.config import Config, DataConfig
    from omnifuse.data import catalog

    path = tmp_path / "scans.csv"
    _patients_csv(path)
    base = {
        "data.sets": ["table"],
        "data.csv": str(path),
        "data.label": "y",
        "data.kinds": {"patient": "ignore"},
    }
    # the CSV loader's own default hold-out is the config's: one default
    assert (
        inspect.signature(catalog.loader("table")).parameters["val_fraction"].default
        == DataConfig.val_fraction
    )
    (default,) = catalog.load_datasets(Config().replace(base))
    assert len(default["val"]) == len(load_csv(path, label="y", kinds={"patient": "ignore"})["val"])
    (wider,) = catalog.load_datasets(Config().replace({**base, "data.val_fraction": 0.25}))
    assert len(wider["val"]) == 30 > len(default["val"])  # 0.25 of the 120 rows
    # every loader's declared keys are data-config keys and arguments of its load function
    keys = {f.name for f in dataclasses.fields(DataConfig)}
    for name in catalog.NAMES:
        params = inspect.signature(catalog.loader(name)).parameters
        for key, arg in catalog.options(name).items():
            assert key in keys and arg in params, (name, key, arg)
