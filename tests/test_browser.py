"""The web page in a real browser: headless Chromium loads it, submits an image and a text, shows the answer.

Needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them) and the ``selenium`` package. Outside
CI the test is skipped when they are missing; in CI (``CI=true``) it always runs.
"""

import fixtures_browser
import pytest
from fixtures_serving import LiveServer, png_bytes, trained_run

import omnifuse
from omnifuse.serving import create_app

fixtures_browser.skip_without_chromium()
browser = fixtures_browser.browser  # the shared headless Chromium (a module-scoped fixture)

from selenium.webdriver.common.by import By  # noqa: E402


@pytest.fixture(scope="module")
def predictor(tmp_path_factory):
    return omnifuse.load(trained_run(tmp_path_factory, "tiny-joint"))


@pytest.fixture(scope="module")
def server(predictor):
    with LiveServer(create_app(predictor)) as url:
        yield url


def _open(browser, url):
    return fixtures_browser.open_page(browser, url)


def test_page_predicts_from_an_image_and_a_text(browser, server, predictor, tmp_path):
    image = tmp_path / "truck.png"
    image.write_bytes(png_bytes(label=9, seed=4))
    text = "A wonderful, moving film with a great cast."
    want = predictor.predict(image=str(image), text=text)

    wait = _open(browser, server)
    assert "tiny-joint" in browser.find_element(By.ID, "run-name").text
    # only the model's modalities get an input: image and text, no audio
    kinds = [f.get_attribute("data-kind") for f in browser.find_elements(By.CSS_SELECTOR, "#fields .field")]
    assert kinds == ["image", "text"]
    browser.find_element(By.ID, "field-image").send_keys(str(image))
    browser.find_element(By.ID, "field-text").send_keys(text)
    browser.find_element(By.ID, "predict-button").click()
    wait.until(lambda d: d.find_element(By.ID, "result").get_attribute("data-state") == "done")

    cards = {c.get_attribute("data-task"): c for c in browser.find_elements(By.CSS_SELECTOR, "#result .task")}
    assert set(cards) == set(want["tasks"])
    for task, card in cards.items():
        assert card.find_element(By.CLASS_NAME, "predicted").text == want["tasks"][task]["class"]
        rows = card.find_elements(By.CSS_SELECTOR, ".bar-row")
        assert len(rows) == min(10, len(want["tasks"][task]["probabilities"]))
        shown = {r.get_attribute("data-label"): float(r.get_attribute("data-value")) for r in rows}
        for label, p in shown.items():
            assert p == pytest.approx(want["tasks"][task]["probabilities"][label], abs=1e-5)
        assert rows[0].get_attribute("data-label") == want["tasks"][task]["class"]  # most probable first
    weights = browser.find_elements(By.CSS_SELECTOR, "#result .modality-weights .bar-row")
    shown = {r.get_attribute("data-label"): float(r.get_attribute("data-value")) for r in weights}
    assert shown == pytest.approx(want["modality_weights"], abs=1e-5)
    assert not browser.find_element(By.ID, "error").is_displayed()

    shot = tmp_path / "page.png"
    assert browser.save_screenshot(str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000


def test_page_shows_the_servers_error_for_a_broken_image(browser, server, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"this is not an image")
    wait = _open(browser, server)
    browser.find_element(By.ID, "field-image").send_keys(str(broken))
    browser.find_element(By.ID, "predict-button").click()
    wait.until(lambda d: d.find_element(By.ID, "result").get_attribute("data-state") == "error")
    error = browser.find_element(By.ID, "error")
    assert (
        error.is_displayed() and error.text.startswith("image:") and "not in any image format" in error.text
    )
    assert "'broken.png'" in error.text and "<bytes>" not in error.text  # the file is named
