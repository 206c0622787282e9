"""The web page in headless Chromium, beyond the plain answer: the Explain switch (heat map over the image, words
highlighted, a strip for a recording, per-column scores), a task without its input greyed out with the reason, one
typed field per column of a CSV model, and /docs rendering its operations offline."""

import csv

import fixtures_browser
import numpy as np
import pytest
from fixtures_serving import LiveServer, png_bytes, trained_run

import omnifuse
from omnifuse.serving import create_app

fixtures_browser.skip_without_chromium()
browser = fixtures_browser.browser  # the shared headless Chromium (a module-scoped fixture)

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402


@pytest.fixture(scope="module")
def joint(tmp_path_factory):
    predictor = omnifuse.load(trained_run(tmp_path_factory, "tiny-joint"))
    with LiveServer(create_app(predictor)) as url:
        yield predictor, url


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    """A tiny CSV model: a number column and a category column, the label follows both."""
    root = tmp_path_factory.mktemp("table")
    rng = np.random.default_rng(0)
    with (root / "shop.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["size", "colour", "label"])
        for i in range(48):
            big = i % 2 == 0
            colour = ["red", "blue", "green"][i % 3]
            writer.writerow(
                [f"{(8 if big else 2) + rng.normal(0, 0.5):.2f}", colour, "big" if big else "small"]
            )
    overrides = [
        f"data.csv={root / 'shop.csv'}",
        "data.label=label",
        "name=shop",
        "train.epochs=1",  # a handful of eager steps: the page shows what the model answers, learnt or not
        "train.batch_size=8",
        "train.early_stopping=0",
        "train.verbose=0",
        "track.tensorboard=false",  # no TensorBoard logs: tests/test_tracking.py checks them
        "model.fusion_dim=8",
        "model.tabular.mlp.units=[8]",
    ]
    predictor = omnifuse.load(omnifuse.train("table", overrides=overrides, runs_root=root / "runs"))
    with LiveServer(create_app(predictor)) as url:
        yield predictor, url


def _submit(browser, wait, explain: bool):
    switch = browser.find_element(By.ID, "explain")
    if switch.is_selected() != explain:
        switch.click()
    browser.find_element(By.ID, "predict-button").click()
    wait.until(lambda d: d.find_element(By.ID, "result").get_attribute("data-state") in ("done", "error"))
    assert not browser.find_element(By.ID, "error").is_displayed(), browser.find_element(By.ID, "error").text


def _cards(browser):
    return {c.get_attribute("data-task"): c for c in browser.find_elements(By.CSS_SELECTOR, "#result .task")}


def test_explain_draws_the_heat_map_over_the_image_and_highlights_words(browser, joint, tmp_path):
    predictor, url = joint
    image = tmp_path / "ship.png"
    image.write_bytes(png_bytes(label=8, seed=3))
    text = "A wonderful, moving film"
    want = predictor.predict(image=str(image), text=text, explain=True)["explanation"]

    wait = fixtures_browser.open_page(browser, url)
    browser.find_element(By.ID, "field-image").send_keys(str(image))
    browser.find_element(By.ID, "field-text").send_keys(text)
    _submit(browser, wait, explain=False)
    assert not browser.find_elements(By.CSS_SELECTOR, "#result .explanation")
    _submit(browser, wait, explain=True)
    for task, card in _cards(browser).items():
        canvas = card.find_element(By.CSS_SELECTOR, '.explain-part[data-modality="image"] canvas.heatmap')
        heat = np.abs(np.asarray(want[task]["image"]["heatmap"]))
        assert canvas.get_attribute("data-peak") == ",".join(
            map(str, np.unravel_index(heat.argmax(), heat.shape))
        )
        assert canvas.get_attribute("data-drawn") == "true" and canvas.size["width"] > 100
        words = card.find_elements(By.CSS_SELECTOR, '.explain-part[data-modality="text"] .word')
        assert [w.text for w in words] == want[task]["text"]["words"]
        scores = [float(w.get_attribute("data-score")) for w in words]
        assert scores == pytest.approx(want[task]["text"]["scores"], abs=1e-5)
        strongest = words[int(np.argmax(np.abs(scores)))]
        assert "rgba" in strongest.value_of_css_property("background-color")


def test_a_task_without_its_input_is_greyed_out_with_the_reason(browser, joint):
    _, url = joint
    wait = fixtures_browser.open_page(browser, url)
    browser.find_element(By.ID, "field-text").send_keys("a dull film")
    _submit(browser, wait, explain=False)
    cards = _cards(browser)
    cifar, sentiment = cards["cifar10"], cards["sentiment"]
    assert cifar.get_attribute("data-answerable") == "false"
    assert cifar.find_element(By.CLASS_NAME, "predicted").text == "not answered"
    assert "answers from image" in cifar.find_element(By.CLASS_NAME, "reason").text
    assert not cifar.find_elements(By.CSS_SELECTOR, ".bar-row")
    assert float(cifar.value_of_css_property("opacity")) < 1
    assert sentiment.get_attribute("data-answerable") == "true"
    assert float(sentiment.value_of_css_property("opacity")) == 1


def test_a_recordings_explanation_is_a_strip_of_its_moments(browser, joint):
    _, url = joint
    fixtures_browser.open_page(browser, url)
    scores = [0.0] * 32
    scores[20] = -0.5
    scores[5] = 0.2
    answer = {
        "tasks": {"digit": {"answerable": True, "class": "3", "probabilities": {"3": 0.9, "5": 0.1}}},
        "explanation": {
            "digit": {
                "class": "3",
                "probability": 0.9,
                "audio": {
                    "method": "integrated_gradients",
                    "start_seconds": [i / 32 for i in range(32)],
                    "end_seconds": [(i + 1) / 32 for i in range(32)],
                    "scores": scores,
                },
            }
        },
    }
    browser.execute_script("showResult(arguments[0]);", answer)  # the page's own renderer, on an audio answer
    strip = browser.find_element(
        By.CSS_SELECTOR, '#result .explain-part[data-modality="audio"] canvas.audio-strip'
    )
    assert strip.get_attribute("data-segments") == "32" and strip.get_attribute("data-peak") == "20"
    assert "0.63–0.66 s" in browser.find_element(By.CSS_SELECTOR, "#result .audio-explained").text


def test_a_csv_model_gets_one_typed_field_per_column_and_column_scores(browser, table):
    predictor, url = table
    schema = predictor.metadata()["modalities"]["tabular"]["schema"]
    assert schema == [
        {"name": "size", "kind": "number"},
        {"name": "colour", "kind": "category", "vocabulary": ["blue", "green", "red"]},
    ]
    wait = fixtures_browser.open_page(browser, url)
    assert browser.find_element(By.ID, "column-size").get_attribute("type") == "number"
    colour = Select(browser.find_element(By.ID, "column-colour"))
    assert [o.text for o in colour.options] == ["(missing)", "blue", "green", "red"]
    assert not browser.find_elements(By.CSS_SELECTOR, "#fields input[type='text']")  # no JSON box
    browser.find_element(By.ID, "column-size").send_keys("7.5")
    colour.select_by_visible_text("green")
    _submit(browser, wait, explain=True)
    want = predictor.predict(size=7.5, colour="green", explain=True)
    card = _cards(browser)["label"]
    assert card.find_element(By.CLASS_NAME, "predicted").text == want["tasks"]["label"]["class"]
    rows = card.find_elements(By.CSS_SELECTOR, ".column-scores tr")
    shown = {r.get_attribute("data-column"): float(r.get_attribute("data-score")) for r in rows}
    assert shown == pytest.approx(want["explanation"]["label"]["tabular"]["columns"], abs=1e-5)


def test_docs_render_the_operations_without_a_network(browser, joint):
    _, url = joint
    browser.get(url + "/docs")
    WebDriverWait(browser, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".opblock"))
    paths = [e.text for e in browser.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")]
    assert {"/predict", "/metadata", "/health"} <= set(paths)
    icon = browser.execute_script("return document.querySelector('link[rel~=icon]').href")
    assert icon.endswith("/favicon.ico")
