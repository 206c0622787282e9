"""User-facing failures are one line (exit 2 in the CLI): damaged run directories, models refused by safe_mode,
text that is not UTF-8 or has no words, truncated WAV files."""

import shutil
import subprocess
import sys

import numpy as np
import pytest
from fixtures_media import tone, wav_bytes
from fixtures_serving import trained_run
from typer.testing import CliRunner

from omnifuse.cli import app as cli_app
from omnifuse.data.decode import check_text, decode_text
from omnifuse.data.wav import decode_wav
from omnifuse.errors import OmnifuseError


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return trained_run(tmp_path_factory, "tiny-joint")


def _copy(run, tmp_path):
    return shutil.copytree(run, tmp_path / "copy")


def _refused(args) -> str:
    """The one-line message of a CLI command that must fail with an OmnifuseError (exit 2 through main)."""
    result = CliRunner().invoke(cli_app, args)
    assert isinstance(result.exception, OmnifuseError), result.exception
    message = str(result.exception)
    assert "\n" not in message
    return message


def test_a_damaged_run_directory_is_one_line(run, tmp_path):
    copy = _copy(run, tmp_path)
    model = copy / "model.keras"
    model.write_bytes(model.read_bytes()[: model.stat().st_size // 2])
    message = _refused(["predict", str(copy), "--text", "great film"])
    assert "model.keras" in message and "truncated" in message

    copy = shutil.copytree(run, tmp_path / "meta")
    (copy / "meta.json").write_text('{"modalities": {"text": ')
    message = _refused(["predict", str(copy), "--text", "great film"])
    assert "meta.json" in message


def test_a_model_with_python_code_is_refused_in_one_line(run, tmp_path):
    import keras

    copy = _copy(run, tmp_path)
    inputs = keras.Input((2,))
    keras.Model(inputs, keras.layers.Lambda(lambda x: x * 2)(inputs)).save(copy / "model.keras")
    message = _refused(["predict", str(copy), "--text", "great film"])
    assert "safe_mode" in message and "model.keras" in message


def test_cli_text_that_is_not_utf8_or_has_no_words_exits_2(run):
    # bytes in argv that are not UTF-8 reach Python as surrogates; they used to fail in the model with a traceback
    done = subprocess.run(
        [sys.executable, "-m", "omnifuse.cli", "predict", str(run), "--text", b"caf\xe9 noir"],
        capture_output=True,
        timeout=300,
    )
    stderr = done.stderr.decode("utf-8", "replace")
    assert done.returncode == 2, stderr
    assert "byte offset 3" in stderr and "Traceback" not in stderr
    message = _refused(["predict", str(run), "--text", "\U0001f600\u200b\U0001f525"])
    assert "letter or digit" in message


def test_one_text_policy():
    with pytest.raises(OmnifuseError, match="byte offset 7"):
        check_text("naïve \udce9", "'t'")
    with pytest.raises(OmnifuseError, match="byte offset 5"):
        decode_text(b"caf\xc3\xa9\xff", "'t.txt'")
    with pytest.raises(OmnifuseError, match="letter or digit"):
        decode_text("\u200b\u200b !!! \U0001f44d".encode(), "'t.txt'")
    with pytest.raises(OmnifuseError, match="at most 5 characters"):
        check_text("a long text", "'t'", max_chars=5)
    assert check_text("Это 5 звёзд", "'t'") == "Это 5 звёзд" and check_text("  ", "'t'") == "  "


def test_a_truncated_wav_is_an_error_naming_the_file(tmp_path):
    data = wav_bytes(tone(2, 8000, 1.0, np.random.default_rng(0)), 8000)
    assert decode_wav(data, 8000, 8000).shape == (8000,)
    path = tmp_path / "two.wav"
    path.write_bytes(data[: len(data) // 3])  # the header promises 16000 bytes of audio
    with pytest.raises(OmnifuseError, match="truncated") as info:
        decode_wav(path, 8000, 8000)
    assert "two.wav" in str(info.value) and "16000" in str(info.value)
    with pytest.raises(OmnifuseError) as info:
        decode_wav(data[:30], 8000, 8000)  # the header itself is cut off
    assert "<bytes>" in str(info.value) and "BytesIO" not in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(OmnifuseError, match="at most 0.5 s"):
        decode_wav(data, 8000, 8000, max_seconds=0.5)
