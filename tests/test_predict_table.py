"""Tables in and out: ``omnifuse predict RUN --data new.csv --out predictions.csv``, ``predict(df)``, and the user's
id column in the evaluation's predictions.csv, on a tiny model trained on a CSV the test writes."""

import csv
import json

import numpy as np
import pytest
from fixtures_tables import pets_rows, tiny_overrides, write_pets_table, write_table
from typer.testing import CliRunner

import omnifuse
from omnifuse.cli import app
from omnifuse.errors import OmnifuseError


@pytest.fixture(scope="module")
def pets_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("pets_run")
    csv_path = write_pets_table(root / "pets.csv")
    more = {"track.tensorboard": False}
    run = omnifuse.train("table", tiny_overrides(csv_path, **more), runs_root=root / "runs")
    return run, root


@pytest.fixture(scope="module")
def predictor(pets_run):
    return omnifuse.load(pets_run[0])


def _new_rows():
    rows = pets_rows(6, seed=5)
    rows[1]["age"] = "abc"  # a bad number: line 3
    rows[3].update(review="", age="", color="")  # nothing to predict from: line 5
    rows[4]["age"] = ""  # a missing number is a missing cell, not an error
    return rows


def test_the_training_csv_s_id_column_names_the_rows_of_the_evaluation(pets_run):
    run, _ = pets_run
    meta = json.loads((run / "meta.json").read_text())
    assert meta["tables"]["pets"]["id_column"] == "pet_id"
    assert not (run / "logs").exists()  # track.tensorboard = false
    omnifuse.evaluate(run, robustness=False, worst_samples=False)
    rows = list(csv.DictReader((run / "report" / "predictions.csv").open()))
    ids = {r["pet_id"] for r in pets_rows()}
    assert rows and all(r["pet_id"] in ids for r in rows) and "id" not in rows[0]


def test_predict_data_lists_every_bad_row_and_fails(pets_run, tmp_path):
    run, _ = pets_run
    new = write_table(tmp_path / "new.csv", _new_rows(), ["pet_id", "review", "age", "color"])
    result = CliRunner().invoke(app, ["predict", str(run), "--data", str(new)])
    assert result.exit_code != 0 and isinstance(result.exception, OmnifuseError)
    text = str(result.exception)
    assert "2 bad row(s)" in text
    assert "line 3, column 'age': expected a number. Received: 'abc'" in text
    assert "line 5, column '(all)': every input column is empty" in text


def test_predict_data_skips_bad_rows_keeps_ids_and_matches_single_predictions(pets_run, predictor, tmp_path):
    run, _ = pets_run
    rows = _new_rows()
    new = write_table(tmp_path / "new.csv", rows)  # with the label column this time
    out = tmp_path / "predictions.csv"
    args = ["predict", str(run), "--data", str(new), "--out", str(out), "--skip-bad-rows"]
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "skipped: line 3, column 'age'" in result.output and "4 row(s) (2 skipped)" in result.output
    got = list(csv.DictReader(out.open()))
    assert [r["pet_id"] for r in got] == [rows[i]["pet_id"] for i in (0, 2, 4, 5)]
    assert list(got[0])[:5] == ["pet_id", "species", "species_predicted", "species_p_cat", "species_p_dog"]
    for r, i in zip(got, (0, 2, 4, 5)):
        one = predictor.predict(
            review=rows[i]["review"], tabular={"age": rows[i]["age"] or None, "color": rows[i]["color"]}
        )
        p = one["tasks"]["species"]["probabilities"]
        assert float(r["species_p_cat"]) == pytest.approx(p["cat"], abs=1e-5)
        assert (
            r["species_predicted"] == one["tasks"]["species"]["class"] and r["species"] == rows[i]["species"]
        )
    assert got[2]["modalities_used"] == "review+tabular"


def test_predict_takes_a_dataframe_and_returns_one(predictor):
    pd = pytest.importorskip("pandas", reason="pandas is optional (pip install pandas)")
    rows = pets_rows(4, seed=9)
    frame = pd.DataFrame(rows, index=["a", "b", "c", "d"]).drop(columns=["species"])
    frame["age"] = frame["age"].astype(float)
    frame.loc["b", "age"] = np.nan  # NaN is an empty cell
    answers = predictor.predict(frame)
    assert isinstance(answers, pd.DataFrame) and list(answers.index) == ["a", "b", "c", "d"]
    assert list(answers["pet_id"]) == [r["pet_id"] for r in rows]
    total = answers["species_p_cat"] + answers["species_p_dog"]
    assert np.allclose(total, 1.0, atol=1e-4)
    frame["age"] = frame["age"].astype(object)
    frame.loc["c", "age"] = "old"
    with pytest.raises(OmnifuseError, match="row c, column 'age': expected a number"):
        predictor.predict(frame)
    with pytest.raises(OmnifuseError, match="Expected the id column 'nope'"):
        predictor.predict_table(frame, id_column="nope")
