"""The server under bad input: one bad request never fails another, nothing a client sends gets a 5xx, decoding
stays bounded (image area, concurrent decodes) and a body that stops arriving is timed out."""

import io
import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from fixtures_serving import LiveServer, png_bytes, trained_run
from PIL import Image

import omnifuse
from omnifuse.limits import InputLimits
from omnifuse.serving import create_app
from omnifuse.serving.app import ModelRejected, _predict_batch


@pytest.fixture(scope="module")
def predictor(tmp_path_factory):
    return omnifuse.load(trained_run(tmp_path_factory, "tiny-joint"))


@pytest.fixture(scope="module")
def client(predictor):
    with TestClient(create_app(predictor, max_upload_bytes=2_000_000)) as c:
        yield c


def test_a_lone_surrogate_fails_only_its_own_request_in_a_batch(predictor):
    # json.dumps escapes the surrogate, so the body is valid JSON that decodes to a str Python cannot encode
    bad = json.dumps({"text": "caf\udce9 au lait"})
    app = create_app(predictor, batch_wait_ms=300)
    with LiveServer(app) as url:

        def post(i):
            if i % 4 == 0:
                return httpx.post(
                    url + "/predict", content=bad, headers={"content-type": "application/json"}, timeout=60
                )
            return httpx.post(url + "/predict", json={"text": f"a great film number {i}"}, timeout=60)

        with ThreadPoolExecutor(12) as pool:
            responses = list(pool.map(post, range(12)))
        health = httpx.get(url + "/health").json()
    for i, response in enumerate(responses):
        if i % 4 == 0:
            assert response.status_code == 422, response.text
            assert response.json()["field"] == "text"
            assert "U+DCE9" in response.json()["detail"] and "byte offset 3" in response.json()["detail"]
        else:
            assert response.status_code == 200, (i, response.text)
    assert health["server_errors"] == 0 and health["bad_requests"] == 3


def test_a_batch_the_model_fails_on_is_retried_request_by_request():
    class Model:
        def predict_feed(self, feed):
            if (feed["x"] < 0).any():
                raise RuntimeError("boom")
            return [{"value": float(v)} for v in feed["x"]]

    feeds = [{"x": np.array([1.0, 2.0])}, {"x": np.array([-1.0])}, {"x": np.array([3.0])}]
    answers = _predict_batch(Model(), feeds)
    assert answers[0] == [{"value": 1.0}, {"value": 2.0}] and answers[2] == [{"value": 3.0}]
    assert isinstance(answers[1], ModelRejected)
    assert _predict_batch(Model(), [feeds[0], feeds[2]]) == [answers[0], answers[2]]


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000 + b"]" * 100_000,  # deeper than the parser's stack
        ("{" + '"text": ' + "[" * 40 + "]" * 40 + "}").encode(),
    ],
    ids=["100000-deep", "36-deep"],
)
def test_deeply_nested_json_is_a_400_counted_in_health(client, body):
    before = client.get("/health").json()["bad_requests"]
    response = client.post("/predict", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400, response.text
    assert response.json()["field"] == "body" and "nested" in response.json()["detail"]
    assert client.get("/health").json()["bad_requests"] == before + 1


def test_text_is_utf8_with_words_in_every_request_form(client):
    cases = [
        dict(files={"text": (None, b"caf\xe9 noir")}),  # a multipart field in Latin-1
        dict(content=b"text=caf%E9+noir", headers={"content-type": "application/x-www-form-urlencoded"}),
        dict(files={"text": ("t.txt", b"caf\xe9 noir", "text/plain")}),  # a file upload
    ]
    for request in cases:
        response = client.post("/predict", **request)
        assert response.status_code == 422, (request, response.text)
        assert response.json()["field"] == "text"
        assert "UTF-8" in response.json()["detail"] and "byte offset 3" in response.json()["detail"]
    wordless = "\U0001f600\u200b\U0001f525 !!"
    for request in (dict(json={"text": wordless}), dict(files={"text": (None, wordless.encode())})):
        response = client.post("/predict", **request)
        assert response.status_code == 422, response.text
        assert response.json()["field"] == "text" and "letter or digit" in response.json()["detail"]
    ok = client.post("/predict", files={"text": (None, "café noir, très bon".encode())})
    assert ok.status_code == 200, ok.text


def test_an_image_over_the_pixel_limit_is_refused_from_its_header(predictor):
    buffer = io.BytesIO()
    Image.new("1", (3000, 3000)).save(buffer, format="PNG")  # 9 Mpx in a few KB
    limited = omnifuse.predictor.Predictor.__new__(omnifuse.predictor.Predictor)
    limited.__dict__.update(predictor.__dict__, limits=InputLimits(max_image_pixels=1000 * 1000))
    with TestClient(create_app(limited)) as c:
        response = c.post("/predict", files={"image": ("big.png", buffer.getvalue(), "image/png")})
        assert response.status_code == 422, response.text
        assert response.json()["field"] == "image" and "3000x3000" in response.json()["detail"]
        assert c.get("/metadata").json()["limits"]["max_image_pixels"] == 1_000_000
        png = c.post("/predict", files={"image": ("ok.png", png_bytes(), "image/png")})
        assert png.status_code == 200, png.text


def test_at_most_max_decoders_requests_decode_at_once(predictor, monkeypatch):
    active, peak, lock = [0], [0], threading.Lock()
    encode = predictor.encode

    def slow_encode(*args, **kwargs):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.2)
        with lock:
            active[0] -= 1
        return encode(*args, **kwargs)

    monkeypatch.setattr(predictor, "encode", slow_encode)
    with TestClient(create_app(predictor, max_decoders=2)) as c:
        with ThreadPoolExecutor(8) as pool:
            codes = list(
                pool.map(lambda i: c.post("/predict", json={"text": f"film {i}"}).status_code, range(8))
            )
    assert codes == [200] * 8
    assert peak[0] == 2


def test_a_body_that_stops_arriving_gets_408_and_its_connection_closed(predictor):
    with LiveServer(create_app(predictor, body_timeout_s=1.0)) as url:
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
            sock.sendall(
                b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b'Content-Length: 1000\r\n\r\n{"text": "half a bo'
            )
            start = time.monotonic()
            received = b""
            while True:
                chunk = sock.recv(4096)
                if not chunk:
                    break  # the server closed the connection
                received += chunk
            waited = time.monotonic() - start
        assert received.startswith(b"HTTP/1.1 408"), received[:200]
        assert b"within 1 s" in received
        assert waited < 10
        health = httpx.get(url + "/health").json()
        assert health["bad_requests"] == 1 and health["server_errors"] == 0
        assert httpx.post(url + "/predict", json={"text": "still up"}, timeout=60).status_code == 200
