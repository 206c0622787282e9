"""What the API answers beyond classes: tasks without their input are marked unanswerable, explanations on request,
uploaded files named in errors, offline /docs, a favicon, and a CSV model's column schema."""

import numpy as np
import pytest
from fastapi.testclient import TestClient
from fixtures_serving import png_bytes, trained_run

import omnifuse
from omnifuse.serving import create_app
from omnifuse.serving.app import MAX_EXPLAINED


@pytest.fixture(scope="module")
def predictor(tmp_path_factory):
    return omnifuse.load(trained_run(tmp_path_factory, "tiny-joint"))


@pytest.fixture(scope="module")
def client(predictor):
    with TestClient(create_app(predictor)) as c:
        yield c


def test_a_task_without_any_of_its_modalities_is_answered_as_unanswerable(client, predictor):
    assert predictor.task_modalities == {"cifar10": ["image"], "sentiment": ["text"]}
    answer = client.post("/predict", data={"text": "a wonderful, moving film"}).json()
    cifar, sentiment = answer["tasks"]["cifar10"], answer["tasks"]["sentiment"]
    assert cifar["answerable"] is False and cifar["class"] is None and "probabilities" not in cifar
    assert "'cifar10' answers from image" in cifar["reason"]
    assert sentiment["answerable"] is True and sentiment["class"] in ("neg", "pos")
    both = client.post(
        "/predict", files={"image": ("x.png", png_bytes(), "image/png")}, data={"text": "a dull film"}
    ).json()
    assert all(r["answerable"] for r in both["tasks"].values())
    # the Python API says the same, per sample of a batch
    answers = predictor.predict(batch=True, text=["fine", None], image=[None, png_bytes()])
    assert [a["tasks"]["cifar10"]["answerable"] for a in answers] == [False, True]
    assert [a["tasks"]["sentiment"]["answerable"] for a in answers] == [True, False]
    assert client.get("/metadata").json()["task_modalities"] == {"cifar10": ["image"], "sentiment": ["text"]}


def test_explain_true_adds_each_samples_explanation(client, predictor):
    png, text = png_bytes(label=2), "a wonderful, moving film"
    plain = client.post("/predict", files={"image": ("x.png", png, "image/png")}, data={"text": text})
    assert "explanation" not in plain.json()
    got = client.post(
        "/predict",
        params={"explain": "true"},
        files={"image": ("x.png", png, "image/png")},
        data={"text": text},
    )
    assert got.status_code == 200, got.text
    found = got.json()["explanation"]
    want = predictor.predict(image=png, text=text, explain=True)["explanation"]
    for task in ("cifar10", "sentiment"):
        assert found[task]["class"] == got.json()["tasks"][task]["class"]
        assert np.asarray(found[task]["image"]["heatmap"]).shape == (32, 32)
        np.testing.assert_allclose(found[task]["image"]["heatmap"], want[task]["image"]["heatmap"], atol=1e-5)
        assert found[task]["text"]["words"] == ["a", "wonderful,", "moving", "film"]
    # an unanswerable task has nothing to explain
    text_only = client.post("/predict?explain=true", json={"text": text}).json()
    assert set(text_only["explanation"]) == {"sentiment"}
    batch = client.post("/predict?explain=true", json={"instances": [{"text": "ok"}] * 2}).json()
    assert [set(a["explanation"]) for a in batch["predictions"]] == [{"sentiment"}] * 2
    many = client.post("/predict?explain=true", json={"instances": [{"text": "ok"}] * (MAX_EXPLAINED + 1)})
    assert many.status_code == 413 and many.json()["field"] == "explain"


def test_an_uploaded_files_error_names_the_file(client):
    response = client.post("/predict", files={"image": ("holiday.png", b"not an image at all", "image/png")})
    body = response.json()
    assert response.status_code == 422 and body["field"] == "image"
    assert "'holiday.png' (19 bytes)" in body["detail"] and "<bytes>" not in body["detail"]


def test_docs_are_served_from_the_package_and_the_page_has_a_favicon(client):
    docs = client.get("/docs").text
    assert "/static-offline-docs/swagger-ui-bundle.js" in docs and "cdn." not in docs
    script = client.get("/static-offline-docs/swagger-ui-bundle.js")
    assert script.status_code == 200 and len(script.content) > 100_000
    assert client.get("/static-offline-docs/swagger-ui.css").status_code == 200
    icon = client.get("/favicon.ico")
    assert icon.status_code == 200 and icon.headers["content-type"].startswith("image/svg+xml")
    assert icon.text.startswith("<svg")
    assert 'rel="icon" href="/favicon.ico"' in client.get("/").text


def test_the_cli_says_which_task_it_could_not_answer(predictor):
    from typer.testing import CliRunner

    from omnifuse.cli import app

    result = CliRunner().invoke(app, ["predict", str(predictor.run_dir), "--text", "a dull film"])
    assert result.exit_code == 0, result.output
    assert "cifar10: not answered (no input to answer from" in " ".join(result.output.split())
    assert "sentiment: neg" in result.output or "sentiment: pos" in result.output
