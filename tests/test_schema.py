"""The schema of the user's own data: kinds, empty cells, distinct values, ids ignored (and how to bring them back),
shown by ``omnifuse data inspect`` without TensorFlow and written to the run as schema.json (tests/test_cli_quiet.py
trains once and checks the file)."""

import csv
import json
import logging

import pytest
from typer.testing import CliRunner

from omnifuse.cli import app
from omnifuse.data.schema import ID_MIN_ROWS, infer_schema, inspect_csv, inspect_folder
from omnifuse.data.table import load_csv
from omnifuse.errors import OmnifuseError


def write_pets(path, n=12):
    """A CSV with an id of words, a row number, a number, a category with an empty cell, a text and a label."""
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["pet_id", "row", "age", "color", "note", "species"])
        for i in range(n):
            color = "" if i == 3 else ["red", "blue", "red"][i % 3]
            note = f"likes {'fish' if i % 2 else 'bones'} and naps number {i}"
            w.writerow([f"P{i:04d}", i + 1, 2 + (i * 7) % 9, color, note, ["cat", "dog"][i % 2]])
    return path


@pytest.fixture
def pets(tmp_path):
    return write_pets(tmp_path / "pets.csv")


def test_schema_lists_kinds_missing_distinct_and_category_values(pets):
    schema = inspect_csv(pets, "species")
    by = {c.name: c for c in schema.columns}
    assert schema.rows == 12 and schema.label == "species"
    assert {n: c.kind for n, c in by.items()} == {
        "species": "label",
        "pet_id": "ignore",
        "row": "ignore",
        "age": "number",
        "color": "category",
        "note": "text",
    }
    assert by["color"].missing == 1 and by["color"].distinct == 2
    assert by["color"].values == ["red", "blue"]  # most common first
    assert sorted(by["species"].values) == ["cat", "dog"]
    assert by["age"].values == [] and by["age"].distinct == len({2 + (i * 7) % 9 for i in range(12)})
    assert "single word" in by["pet_id"].why and "increase" in by["row"].why
    # each id gets one note naming the override that brings it back
    assert len(schema.notes) == 2
    assert "pet_id" in schema.notes[0] and "--set 'data.kinds={pet_id = \"text\"}'" in schema.notes[0]
    assert 'data.kinds={row = "number"}' in schema.notes[1]
    json.dumps(schema.to_dict())  # JSON-ready, as written to the run


def test_naming_a_kind_brings_an_id_back_and_the_loader_agrees(pets, caplog):
    with caplog.at_level(logging.WARNING, logger="omnifuse.data.table"):
        ds = load_csv(pets, "species")
    assert set(ds.meta["columns"]) == {"age", "color", "note"}  # what the schema says is used
    assert sum("looks like an id" in r.getMessage() for r in caplog.records) == 2
    given = load_csv(pets, "species", kinds={"row": "number"})
    assert "row" in given.meta["columns"]
    schema = inspect_csv(pets, "species", kinds={"row": "number"})
    assert {c.name: c.why for c in schema.columns}["row"] == "data.kinds" and len(schema.notes) == 1


def test_short_tables_and_repeats_are_not_ids(tmp_path):
    path = tmp_path / "few.csv"
    rows = [["k", "n", "y"]] + [[f"a{i}", i, i % 2] for i in range(ID_MIN_ROWS - 1)]
    path.write_text("\n".join(",".join(map(str, r)) for r in rows) + "\n")
    kinds = {c.name: c.kind for c in inspect_csv(path, "y").columns}
    assert kinds["n"] == "number"  # too few rows to call it a row number
    path.write_text("n,y\n" + "".join(f"{v},{i % 2}\n" for i, v in enumerate([1, 2, 2, 3, 5, 8, 9])))
    assert {c.name: c.kind for c in inspect_csv(path, "y").columns}[
        "n"
    ] == "number"  # not strictly increasing


def test_mistyped_label_and_kinds_columns_say_did_you_mean(pets):
    with pytest.raises(OmnifuseError, match="Did you mean 'species'"):
        inspect_csv(pets, "specis")
    with pytest.raises(OmnifuseError, match="Did you mean 'color'"):
        inspect_csv(pets, "species", kinds={"colour": "category"})
    with pytest.raises(OmnifuseError, match="Did you mean 'category'"):
        inspect_csv(pets, "species", kinds={"color": "categroy"})


def test_folder_schema_counts_files_per_kind(tmp_path):
    for cls, stems in (("cat", ["a", "b"]), ("dog", ["c"])):
        (tmp_path / cls).mkdir()
        for stem in stems:
            (tmp_path / cls / f"{stem}.png").write_bytes(b"x")
        (tmp_path / cls / f"{stems[0]}.txt").write_text("meow")
    schema = inspect_folder(tmp_path)
    by = {c.name: c for c in schema.columns}
    assert schema.rows == 3 and by["class"].values == ["cat", "dog"]
    assert by["image"].missing == 0 and by["text"].missing == 1
    assert infer_schema(folder=str(tmp_path)).to_dict() == schema.to_dict()


def test_data_inspect_prints_the_table_and_the_override(pets):
    result = CliRunner().invoke(app, ["data", "inspect", str(pets), "--label", "species"])
    assert result.exit_code == 0, result.output
    for text in ("pet_id", "ignore", "category", "red, blue", "looks like an id", "data.kinds={pet_id"):
        assert text in result.output
    shown = CliRunner().invoke(app, ["data", "inspect", str(pets), "--label", "species", "--json"])
    assert json.loads(shown.output)["columns"][0] == {
        "name": "species",
        "kind": "label",
        "missing": 0,
        "distinct": 2,
        "values": ["cat", "dog"],
        "why": "inferred",
    }
    given = CliRunner().invoke(
        app,
        ["data", "inspect", str(pets), "--label", "species", "--set", 'data.kinds={pet_id="text"}', "--json"],
    )
    assert {c["name"]: c["kind"] for c in json.loads(given.output)["columns"]}["pet_id"] == "text"


def test_paths_are_not_ids_and_a_table_of_only_ids_says_how_to_use_them(tmp_path):
    path = tmp_path / "scans.csv"
    path.write_text("scan,y\n" + "".join(f"scans/{i}.dcm,{i % 2}\n" for i in range(8)))
    assert {c.name: c.kind for c in inspect_csv(path, "y").columns}["scan"] == "text"
    path.write_text("word,y\n" + "".join(f"w{i}x,{i % 2}\n" for i in range(8)))
    with pytest.raises(
        OmnifuseError, match=r"Received: none; Column 'word' looks like an id.*data\.kinds=\{word"
    ):
        load_csv(path, "y")
