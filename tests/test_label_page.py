"""The labelling page (`omnifuse serve RUN --label-queue q.csv --labels-out labels.csv`): answers are appended and
synced one by one (a server killed with SIGKILL keeps them all), two tabs never get the same sample, skip and undo
work, the labels CSV trains; and in headless Chromium, clicks and keys label samples."""

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
from fastapi.testclient import TestClient
from fixtures_serving import LiveServer, free_port
from label_fixtures import sample, shared_sky, write_csv

import omnifuse
from omnifuse.data.table import load_csv
from omnifuse.label.next import write_next
from omnifuse.serving import create_app


@pytest.fixture(scope="module")
def sky(tmp_path_factory):
    root = tmp_path_factory.mktemp("sky")
    run = shared_sky(tmp_path_factory, root)
    rng = np.random.default_rng(5)
    rows = [sample(root, f"q{i:03d}", c, c, c, rng) for i, c in enumerate(["sun", "moon"] * 4)]
    write_csv(root / "pool.csv", rows)
    queue = root / "out" / "queue.csv"
    write_next(run, root / "pool.csv", 6, queue, "margin")
    return root, run, queue


@pytest.fixture(scope="module")
def predictor(sky):
    """The run's model, loaded once for the file's in-process apps (the server restarted below is about the labels
    file; each app's start-up warm-up traces the model's predict graph once for all)."""
    return omnifuse.load(sky[1])


def _labels(path):
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_answers_skip_undo_and_two_tabs(sky, predictor, tmp_path):
    root, run, queue = sky
    labels = root / "labels-a.csv"  # beside the images: its paths are relative, inside its folder
    with TestClient(create_app(predictor, label_queue=queue, labels_out=labels)) as http:
        assert http.get("/label").status_code == 200
        a = http.get("/label/next", params={"client": "tab-a"}).json()
        b = http.get("/label/next", params={"client": "tab-b"}).json()
        assert a["total"] == 6 and a["classes"] == ["moon", "sun"]
        assert a["sample"]["row"] != b["sample"]["row"]  # two tabs, two samples
        assert (
            http.get("/label/next", params={"client": "tab-a"}).json()["sample"]["row"] == a["sample"]["row"]
        )
        fields = {f["name"]: f for f in a["sample"]["fields"]}
        assert (
            fields["image"]["kind"] == "image"
            and http.get(f"/label/file/{a['sample']['row']}/image").status_code == 200
        )
        assert http.get(f"/label/file/{a['sample']['row']}/text").status_code == 404  # only files are served
        taken = http.post(
            "/label/answer", json={"client": "tab-a", "row": b["sample"]["row"], "label": "sun"}
        )
        assert taken.status_code == 409 and "another tab" in taken.json()["detail"]
        bad = http.post("/label/answer", json={"client": "tab-a", "row": a["sample"]["row"], "label": "star"})
        assert bad.status_code == 422 and "Received: 'star'" in bad.json()["detail"]
        ok = http.post("/label/answer", json={"client": "tab-a", "row": a["sample"]["row"], "label": "sun"})
        assert ok.status_code == 200 and ok.json()["answered"] == 1
        again = http.post(
            "/label/answer", json={"client": "tab-b", "row": a["sample"]["row"], "label": "moon"}
        )
        assert again.status_code == 409
        assert len(_labels(labels)) == 1  # on disk before the reply
        # skip: the skipped sample comes after the others
        c = http.get("/label/next", params={"client": "tab-a"}).json()["sample"]
        http.post("/label/skip", json={"client": "tab-a", "row": c["row"]})
        d = http.get("/label/next", params={"client": "tab-a"}).json()["sample"]
        assert d["row"] not in (c["row"], a["sample"]["row"], b["sample"]["row"])
        http.post("/label/answer", json={"client": "tab-a", "row": d["row"], "label": "moon"})
        # undo: the last answer leaves the file and its sample comes back to this tab
        undone = http.post("/label/undo", json={"client": "tab-a"}).json()
        assert undone["sample"]["row"] == d["row"] and undone["answered"] == 1
        assert [r["label"] for r in _labels(labels)] == ["sun"]
        assert http.post("/label/undo", json={"client": "tab-b"}).status_code == 409
    # a restarted server does not ask again for what the file holds
    with TestClient(create_app(predictor, label_queue=queue, labels_out=labels)) as http:
        status = http.get("/label/status").json()
        assert status["answered"] == 1
        seen = set()
        for _ in range(6):
            s = http.get("/label/next", params={"client": "x"}).json()["sample"]
            if s is None:
                break
            seen.add(s["row"])
            http.post("/label/answer", json={"client": "x", "row": s["row"], "label": s["guess"]})
        assert a["sample"]["row"] not in seen and len(seen) == 5
    rows = _labels(labels)
    assert all(r["image"].startswith("imgs/") for r in rows)
    assert len(rows) == 6 and set(rows[0]) == {"image", "text", "size", "label"}  # ranking columns left out
    # the labels CSV is a valid --data input: its paths are rebased on its own folder
    ds = load_csv(labels, "label", test_fraction=0.34, val_fraction=0.0, allow_outside_paths=False)
    assert len(ds["train"]) + len(ds["test"]) == 6


def test_a_killed_server_keeps_every_answer(sky, tmp_path):
    root, run, queue = sky
    labels = tmp_path / "labels.csv"
    port = free_port()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.getcwd(), *sys.path]))
    command = [sys.executable, "-c", "from omnifuse.cli import main; main()", "serve", str(run)]
    command += ["--port", str(port), "--label-queue", str(queue), "--labels-out", str(labels)]
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(url + "/label/status", timeout=2)
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, server.stderr.read().decode()
                time.sleep(0.3)
        answered, took = [], []
        for _ in range(4):
            with urllib.request.urlopen(url + "/label/next?client=k") as r:
                row = json.load(r)["sample"]["row"]
            body = json.dumps({"client": "k", "row": row, "label": "moon"}).encode()
            request = urllib.request.Request(
                url + "/label/answer", body, {"content-type": "application/json"}
            )
            start = time.perf_counter()
            with urllib.request.urlopen(request) as r:
                assert r.status == 200
            took.append(time.perf_counter() - start)
            answered.append(row)
        server.send_signal(signal.SIGKILL)  # no shutdown, no flush: only what was synced survives
        server.wait(timeout=30)
    finally:
        if server.poll() is None:
            server.kill()
    assert len(_labels(labels)) == 4
    assert sorted(took)[len(took) // 2] < 0.5  # a click is answered at once (generous: a loaded CI machine)
    p = omnifuse.load(run)
    from omnifuse.label.queue import LabelQueue

    assert len(LabelQueue(p, queue, labels).answers) == 4


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
IN_CI = os.environ.get("CI", "").lower() == "true"


@pytest.mark.skipif(
    not IN_CI and (CHROMIUM is None or not os.path.exists(CHROMEDRIVER)),
    reason="headless Chromium is not installed (apt-get install chromium chromium-driver); required in CI",
)
def test_the_page_labels_with_clicks_and_keys_in_chromium(sky, predictor, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    root, run, queue = sky
    labels = tmp_path / "labels.csv"
    options = webdriver.ChromeOptions()
    if CHROMIUM:
        options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"):
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'profile'}")
    with LiveServer(create_app(predictor, label_queue=queue, labels_out=labels)) as url:
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        try:
            wait = WebDriverWait(driver, 60)
            driver.get(url + "/label")

            def answered(n):
                return lambda d: d.find_element(By.ID, "progress").get_attribute("data-answered") == str(n)

            wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, "button.class-button")))
            assert "Model's guess" in driver.find_element(By.ID, "model-guess").text
            assert driver.find_element(By.CSS_SELECTOR, "#sample img").get_attribute("naturalWidth") != "0"
            first = driver.find_element(By.ID, "sample").get_attribute("data-row")
            driver.find_element(By.CSS_SELECTOR, "button.class-button[data-label='sun']").click()
            wait.until(answered(1))
            body = driver.find_element(By.TAG_NAME, "body")
            second = driver.find_element(By.ID, "sample").get_attribute("data-row")
            body.send_keys("1")  # key 1: the first class, moon
            wait.until(answered(2))
            body.send_keys("u")  # undo: the second sample is back
            wait.until(answered(1))
            assert driver.find_element(By.ID, "sample").get_attribute("data-row") == second
            body.send_keys(Keys.CONTROL, "z")  # undo again: the first one too
            wait.until(answered(0))
            assert driver.find_element(By.ID, "sample").get_attribute("data-row") == first
            body.send_keys("s")  # skip it
            wait.until(lambda d: d.find_element(By.ID, "sample").get_attribute("data-row") != first)
            body.send_keys("2")
            wait.until(answered(1))
        finally:
            driver.quit()
    rows = _labels(labels)
    assert [r["label"] for r in rows] == ["sun"]
