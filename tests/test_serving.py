"""The HTTP API: answers match the Predictor, bad requests get a 4xx naming the field, requests are batched."""

import asyncio
import base64
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from fastapi.testclient import TestClient
from fixtures_serving import LiveServer, free_port, png_bytes, trained_run
from typer.testing import CliRunner

import omnifuse
from omnifuse.cli import app as cli_app
from omnifuse.serving import create_app
from omnifuse.serving.app import MicroBatcher


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return trained_run(tmp_path_factory, "tiny-joint")


@pytest.fixture(scope="module")
def predictor(run):
    return omnifuse.load(run)


@pytest.fixture(scope="module")
def client(predictor):
    with TestClient(create_app(predictor, max_upload_bytes=64_000)) as c:
        yield c


def _probabilities(answer):
    return {t: r["probabilities"] for t, r in answer["tasks"].items() if r["answerable"]}


def _assert_same_answer(got, want):
    assert {t: r["class"] for t, r in got["tasks"].items()} == {
        t: r["class"] for t, r in want["tasks"].items()
    }
    for task, probs in _probabilities(want).items():
        assert got["tasks"][task]["probabilities"] == pytest.approx(probs, abs=1e-5)
    assert got["modality_weights"] == pytest.approx(want["modality_weights"], abs=1e-5)
    assert got["modalities_used"] == want["modalities_used"]


def test_multipart_and_json_answers_match_the_predictor(client, predictor):
    png = png_bytes(label=1)
    want = predictor.predict(image=png, text="a wonderful, moving film")
    form = client.post(
        "/predict", files={"image": ("car.png", png, "image/png")}, data={"text": "a wonderful, moving film"}
    )
    assert form.status_code == 200, form.text
    _assert_same_answer(form.json(), want)
    assert sum(form.json()["modality_weights"].values()) == pytest.approx(1.0, abs=1e-5)

    as_json = client.post(
        "/predict", json={"image": base64.b64encode(png).decode(), "text": "a wonderful, moving film"}
    )
    assert as_json.status_code == 200, as_json.text
    _assert_same_answer(as_json.json(), want)

    # a browser's data URL works too, and a single modality is enough
    text_only = client.post("/predict", json={"text": "dull and far too long"})
    assert text_only.json()["modality_weights"] == {"image": 0.0, "text": 1.0}
    image_only = client.post(
        "/predict", json={"image": "data:image/png;base64," + base64.b64encode(png).decode()}
    )
    assert image_only.json()["modalities_used"] == ["image"]


def test_a_batch_of_instances_answers_each_sample_in_order(client, predictor):
    pngs = [png_bytes(label=k, seed=k) for k in range(3)]
    samples = [
        {"image": base64.b64encode(pngs[0]).decode(), "text": "a wonderful, moving film"},
        {"text": "dull and far too long"},
        {"image": base64.b64encode(pngs[2]).decode()},
    ]
    want = [
        predictor.predict(image=pngs[0], text="a wonderful, moving film"),
        predictor.predict(text="dull and far too long"),
        predictor.predict(image=pngs[2]),
    ]
    response = client.post("/predict", json={"instances": samples})
    assert response.status_code == 200, response.text
    got = response.json()["predictions"]
    assert len(got) == 3
    # the server's warm-up traced the model once for any batch size: batches of 1, 2 and 3 all ran through it
    assert predictor.model.predict_function.experimental_get_tracing_count() == 1
    for answer, expected in zip(got, want):
        _assert_same_answer(answer, expected)

    bad = [
        ({"instances": [samples[1], {"image": "not base64!"}]}, 422, "instances[1].image", "base64"),
        ({"instances": [samples[1], {"colour": "red"}]}, 422, "instances[1].colour", "image, text"),
        ({"instances": [samples[1], {}]}, 422, "instances[1]", "at least one"),
        ({"instances": [samples[1], "great"]}, 422, "instances[1]", "JSON object"),
        ({"instances": []}, 422, "instances", "non-empty list"),
        ({"instances": [samples[1]], "text": "x"}, 422, "text", "only 'instances'"),
        ({"instances": [{"text": "ok"}] * 2000}, 413, "instances", "at most 1024"),
    ]
    for body, status, field, words in bad:
        response = client.post("/predict", json=body)
        assert response.status_code == status, (field, response.text)
        assert response.json()["field"] == field and words in response.json()["detail"], response.json()


def test_metadata_describes_inputs_tasks_and_classes(client, run):
    meta = client.get("/metadata").json()
    saved = json.loads((run / "meta.json").read_text())
    assert meta["run"] == "tiny-joint"
    assert {k: v["kind"] for k, v in meta["modalities"].items()} == {"image": "image", "text": "text"}
    assert meta["modalities"]["image"]["shape"] == [32, 32, 3]
    assert "image/png" in meta["modalities"]["image"]["content_types"]
    assert meta["tasks"] == saved["tasks"]
    assert meta["modality_weights"] is True
    assert meta["limits"]["max_upload_bytes"] == 64_000
    assert client.get("/health").json()["status"] == "ok"


def test_every_bad_request_gets_a_4xx_naming_the_field_and_the_server_keeps_answering(client):
    png = png_bytes()
    cases = [
        # (request, status, field, words the message must contain)
        (dict(files={"image": ("x.png", b"not a png at all", "image/png")}), 422, "image", "image"),
        (dict(files={"image": ("x.png", png[: len(png) // 2], "image/png")}), 422, "image", "image"),
        (dict(files={"image": ("x.wav", png, "audio/wav")}), 415, "image", "audio/wav"),
        (dict(files={"image": ("big.png", b"\0" * 80_000, "image/png")}), 413, "body", "64000"),
        (dict(data={"colour": "red", "text": "great"}), 422, "colour", "image, text"),
        (dict(json={}), 422, None, "image, text"),
        (dict(json={"text": "   "}), 422, "text", "at least one"),
        (dict(json={"image": "not base64!"}), 422, "image", "base64"),
        (dict(json={"text": 42}), 422, "text", "string"),
        (dict(json=["great film"]), 422, "body", "JSON object"),
        (dict(content=b"{oops", headers={"content-type": "application/json"}), 400, "body", "JSON"),
        (
            dict(content=b"great film", headers={"content-type": "text/plain"}),
            415,
            "content-type",
            "multipart",
        ),
        (dict(data={"image": "cat.png"}), 422, "image", "file upload"),
        (dict(files={"text": ("review.txt", b"\xff\xfe bad utf-8", "text/plain")}), 422, "text", "UTF-8"),
    ]
    for request, status, field, words in cases:
        response = client.post("/predict", **request)
        assert response.status_code == status, (request, response.text)
        body = response.json()
        assert body["field"] == field, body
        assert words in body["detail"], body
    assert client.get("/health").json()["bad_requests"] >= len(cases)
    ok = client.post("/predict", data={"text": "still here"})
    assert ok.status_code == 200 and ok.json()["modalities_used"] == ["text"]


def test_page_docs_and_openapi_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and 'id="predict-form"' in page.text and "/static/app.js" in page.text
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/docs").status_code == 200
    body = client.get("/openapi.json").json()["paths"]["/predict"]["post"]["requestBody"]["content"]
    form = body["multipart/form-data"]["schema"]["properties"]
    assert form["image"]["format"] == "binary" and form["text"]["type"] == "string"
    assert body["application/json"]["schema"]["properties"]["image"]["format"] == "byte"


def test_micro_batcher_groups_waiting_requests_and_survives_failures():
    calls = []

    def run_batch(items):
        calls.append(list(items))
        if "boom" in items:
            raise RuntimeError("model failed")
        return [f"answer {i}" for i in items]

    async def scenario():
        batcher = MicroBatcher(run_batch, max_batch=4)
        await batcher.start()
        try:
            answers = await asyncio.gather(*(batcher.submit(i) for i in range(10)))
            failed = await asyncio.gather(batcher.submit("boom"), batcher.submit(1), return_exceptions=True)
            after = await batcher.submit(7)
        finally:
            await batcher.stop()
        return answers, failed, after, batcher.stats

    answers, failed, after, stats = asyncio.run(scenario())
    assert answers == [f"answer {i}" for i in range(10)]  # each request gets its own answer, in order
    assert [len(c) for c in calls[:3]] == [4, 4, 2]  # the 10 waiting requests ran as 3 batches of <= 4
    assert all(isinstance(f, RuntimeError) for f in failed)  # a failed batch fails its requests ...
    assert after == "answer 7"  # ... and the worker goes on serving
    assert stats["largest_batch"] == 4 and stats["requests"] == 13


def test_live_server_batches_concurrent_requests_and_refuses_oversize_uploads(predictor):
    texts = [
        "a wonderful great film",
        "dull awful boring",
        "great story",
        "not good at all",
        "the best",
        "bad",
    ]
    images = [png_bytes(label=k, seed=k) for k in range(len(texts))]
    want = [predictor.predict(image=img, text=t) for img, t in zip(images, texts)]
    app = create_app(predictor, max_upload_bytes=100_000, batch_wait_ms=300)
    with LiveServer(app) as url:

        def post(i):
            files = {"image": ("x.png", images[i], "image/png")}
            return httpx.post(url + "/predict", files=files, data={"text": texts[i]}, timeout=60)

        with ThreadPoolExecutor(len(texts)) as pool:
            responses = list(pool.map(post, range(len(texts))))
        for response, expected in zip(responses, want):
            assert response.status_code == 200, response.text
            _assert_same_answer(response.json(), expected)  # batching never mixes up answers
        assert httpx.get(url + "/health").json()["largest_batch"] >= 2

        big = httpx.post(
            url + "/predict", files={"image": ("big.png", b"\0" * 300_000, "image/png")}, timeout=60
        )
        assert big.status_code == 413 and big.json()["field"] == "body"
        assert httpx.post(url + "/predict", data={"text": "still up"}, timeout=60).status_code == 200


def test_cli_serve_builds_the_app_and_runs_uvicorn(run, monkeypatch, tmp_path):
    import uvicorn

    seen = {}
    monkeypatch.setattr(
        uvicorn, "run", lambda app, host, port, **kw: seen.update(app=app, host=host, port=port)
    )
    result = CliRunner().invoke(cli_app, ["serve", str(run), "--port", "8123", "--max-batch", "8"])
    assert result.exit_code == 0, result.output
    assert seen["host"] == "127.0.0.1" and seen["port"] == 8123
    assert seen["app"].state.batcher.max_batch == 8

    missing = CliRunner().invoke(cli_app, ["serve", str(tmp_path / "no-run")])
    assert missing.exit_code != 0 and "no-run" in str(missing.exception)


def test_serving_benchmark_measures_single_concurrent_and_batched_requests(run):
    from omnifuse.serving import bench as serving_bench

    record = serving_bench.run(run, requests=8, concurrency=2, batch_sizes=(2,), instances=4, max_seconds=60)
    assert record["errors"] == 0 and not record["stopped_by_deadline"]
    assert record["single"]["requests"] == 8 and record["single"]["p50_ms"] > 0
    (phase,) = record["throughput"]
    assert phase["requests"] == 8 and phase["max_batch"] == 2 and phase["largest_batch"] <= 2
    trace = phase["rss_mb_trace"]  # memory at the start, every 0.25 s, and at the end of the phase
    assert len(trace) >= 2 and all(mb > 0 for _, mb in trace) and trace[0][0] == 0.0
    assert phase["rss_mb_second_half_growth"] == pytest.approx(
        trace[-1][1] - trace[len(trace) // 2][1], abs=0.2
    )
    batched = record["batched_requests"]
    assert batched["requests"] == 10 and batched["samples_per_request"] == 4
    # samples/s counts every sample of a batched request (wall_s is rounded to the millisecond: on a fast machine
    # the phase lasts a few tens of ms, so that rounding alone moves the ratio by up to 0.0005 / wall_s)
    rounding = 0.0005 / batched["wall_s"]
    assert batched["samples_per_s"] == pytest.approx(
        4 * batched["requests"] / batched["wall_s"], rel=0.002 + rounding
    )


class _ServeInThisProcess:
    """What the serving benchmark starts, ``omnifuse serve RUN --port P --max-batch B ...``, in a thread of this
    process: the app and uvicorn settings the command builds (the command line runs as typed; only its final
    ``uvicorn.run`` is taken over), served by uvicorn in a thread as ``uvicorn.run`` would serve them. The
    benchmark's own server process (start, /health wait, memory, stop) is covered by the test above."""

    def __init__(self, run_dir, max_batch, batch_wait_ms, precision="float32", startup_s=180.0):
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        args = ["serve", str(run_dir), "--port", str(self.port), "--max-batch", str(max_batch)]
        args += ["--batch-wait-ms", str(batch_wait_ms), "--precision", precision]
        seen = {}
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(uvicorn, "run", lambda app, **kw: seen.update(app=app, kw=kw))
            result = CliRunner().invoke(cli_app, args, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        self.server = uvicorn.Server(uvicorn.Config(seen["app"], **seen["kw"]))
        self.thread = threading.Thread(target=self.server.run, name="uvicorn", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + startup_s
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)

    def rss_mb(self) -> float:
        import psutil

        return psutil.Process().memory_info().rss / 2**20

    def health(self) -> dict:
        return httpx.get(self.url + "/health", timeout=10.0).json()

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def test_a_bad_request_mix_is_refused_with_4xx_and_leaves_valid_requests_alone(run, monkeypatch):
    from omnifuse.serving import bench as serving_bench

    # the clean and the mixed phase each on a fresh server, here in this process (a server process costs seconds
    # of imports; what is tested is the app's answers to the bad requests and to the valid ones beside them)
    monkeypatch.setattr(serving_bench, "_Server", _ServeInThisProcess)
    record = serving_bench.run(
        run, requests=60, concurrency=4, batch_sizes=(), instances=0, bad_fraction=0.5, max_seconds=120
    )
    clean, mixed = record["bad_mix"]["clean"], record["bad_mix"]["mixed"]
    assert clean["bad"] == 0 and clean["valid"] == 60 and mixed["requests"] == 60
    # every kind that applies to an image + text model, each sent (they take turns) and each refused with a 4xx
    assert set(mixed["bad_kinds"]) == {
        "json_nested_100k",
        "text_lone_surrogate_json",
        "text_not_utf8_multipart",
        "text_empty_alone",
        "image_corrupt_png",
        "image_png_huge_area",
    }
    assert mixed["bad"] >= 2 * len(mixed["bad_kinds"]), mixed  # seeded: 0.5 of 60
    assert mixed["bad_refused_4xx"] == mixed["bad"] and mixed["bad_not_refused"] == {}
    for phase in (clean, mixed):
        assert phase["status_5xx"] == 0 and phase["server_errors"] == 0
        assert phase["valid_failed"] == 0, phase["first_valid_failures"]
        assert phase["valid"] == phase["requests"] - phase["bad"] > 0
        assert 0 < phase["p50_ms"] <= phase["p99_ms"] and phase["rss_mb_peak"] >= phase["rss_mb_start"] > 0
    assert record["errors"] == 0 and not record["stopped_by_deadline"]


def test_the_bad_mix_for_an_audio_model_sends_a_truncated_wav_the_decoder_refuses():
    from omnifuse.data.wav import decode_wav
    from omnifuse.errors import OmnifuseError
    from omnifuse.modalities import audio
    from omnifuse.serving import bench as serving_bench

    meta = {"modalities": {"audio": {"kind": "audio", "sample_rate": 8000, "num_samples": 8000}}}
    files, data = serving_bench.sample_request(meta)
    bad = serving_bench.bad_requests("http://127.0.0.1:1", meta, files, data)
    assert set(bad) == {"json_nested_100k", "audio_truncated_wav"}
    assert bad["audio_truncated_wav"].startswith(b"POST /predict HTTP/1.1\r\n")
    with pytest.raises(OmnifuseError, match="truncated"):
        decode_wav(audio._truncated_wav(8000), 8000, 8000)


def test_bfloat16_inference_answers_like_float32_and_a_bad_precision_is_named(run, predictor):
    png = png_bytes(label=2)
    want = predictor.predict(image=png, text="a wonderful, moving film")
    fast = omnifuse.load(run, precision="bfloat16")
    assert fast.metadata()["precision"] == "bfloat16"
    got = fast.predict(image=png, text="a wonderful, moving film")
    for task, probs in _probabilities(want).items():
        assert got["tasks"][task]["probabilities"] == pytest.approx(probs, abs=0.03)
        assert sum(got["tasks"][task]["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    assert got["modality_weights"] == pytest.approx(want["modality_weights"], abs=0.03)

    with pytest.raises(omnifuse.OmnifuseError, match="float32, bfloat16.*'half'"):
        omnifuse.load(run, precision="half")

    import uvicorn

    seen = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(uvicorn, "run", lambda app, host, port, **kw: seen.update(app=app))
        result = CliRunner().invoke(cli_app, ["serve", str(run), "--precision", "bfloat16"])
    assert result.exit_code == 0, result.output
    assert seen["app"].state.predictor.precision == "bfloat16"


def test_bench_reliability_is_the_load_run_with_bad_requests(monkeypatch, tmp_path):
    """`omnifuse bench reliability --run RUN` runs the serving bench with the issue's load (64 clients, 60 s, 10%
    bad requests, beside a clean phase); a --set item overrides one of them."""
    from typer.testing import CliRunner

    import omnifuse.bench as bench_pkg
    from omnifuse import cli

    seen = {}
    monkeypatch.setattr(
        bench_pkg, "run_serve", lambda run, options, results, echo: seen.update(options=options)
    )
    result = CliRunner().invoke(
        cli.app,
        ["bench", "reliability", "--run", str(tmp_path), "--set", "duration=5", "--results", str(tmp_path)],
    )
    assert result.exit_code == 0, result.output
    options = dict(item.split("=", 1) for item in seen["options"])  # the last one of a key wins, as in --set
    assert options["bad_fraction"] == "0.1" and options["concurrency"] == "64" and options["duration"] == "5"
