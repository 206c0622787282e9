"""Data confinement: files named by a CSV or found in a folder stay inside it (after symlinks) unless allowed;
text cells follow the one text policy; a text column of paths is warned about."""

import io
import logging
import os

import numpy as np
import pytest
from PIL import Image

from omnifuse.data.table import load_csv, load_folder
from omnifuse.errors import OmnifuseError


def _png(level: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((8, 8, 3), level, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def _pets(root, paths):
    """``root/data/pets.csv`` with a photo column: ``paths`` for its first rows, then 12 good rows."""
    data = root / "data"
    (data / "imgs").mkdir(parents=True)
    lines = ["photo,species"] + [f"{p},cat" for p in paths]
    for i in range(12):
        (data / "imgs" / f"{i}.png").write_bytes(_png(40 if i % 2 else 200))
        lines.append(f"imgs/{i}.png,{'dog' if i % 2 else 'cat'}")
    (data / "pets.csv").write_text("\n".join(lines) + "\n")
    return data / "pets.csv"


def test_csv_paths_outside_the_folder_are_refused_row_by_row(tmp_path):
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.png").write_bytes(_png(90))
    secret = tmp_path / "outside" / "secret.png"
    csv = _pets(tmp_path, ["../outside/secret.png", str(secret), "../../../../../../../etc/passwd.png"])
    with pytest.raises(OmnifuseError) as info:
        load_csv(csv, "species", kinds={"photo": "image"})
    message = str(info.value)
    assert "Found 3 bad row(s)" in message and message.count("outside the data folder") == 3
    assert "line 2, column 'photo'" in message and "line 4, column 'photo'" in message

    skipped = load_csv(csv, "species", kinds={"photo": "image"}, skip_bad_rows=True)
    assert skipped.meta["skipped_rows"] == 3
    assert [b["row"] for b in skipped.meta["bad_rows"]] == [2, 3, 4]
    assert sum(len(s.labels["species"]) for s in skipped.splits.values()) == 12

    allowed = load_csv(csv, "species", kinds={"photo": "image"}, allow_outside_paths=True, skip_bad_rows=True)
    assert allowed.meta["skipped_rows"] == 1  # only /etc/passwd.png, which does not exist


def test_a_symlink_out_of_a_folder_data_set_is_not_read(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("root password hunter2")
    root = tmp_path / "pets"
    for species, word in (("cat", "purr"), ("dog", "woof")):
        (root / species).mkdir(parents=True)
        for i in range(6):
            (root / species / f"{i}.txt").write_text(f"{word} {word} number {i}")
    os.symlink(secret, root / "cat" / "7.txt")
    data = load_folder(root, skip_bad_rows=True)
    assert data.meta["skipped_rows"] == 1 and "outside the data folder" in data.meta["bad_rows"][0]["reason"]
    texts = [t for split in data.splits.values() for t in split.inputs["text"]]
    assert not any("hunter2" in t for t in texts)
    allowed = load_folder(root, allow_outside_paths=True)
    assert any("hunter2" in t for split in allowed.splits.values() for t in split.inputs["text"])


def test_text_cells_follow_the_text_policy_and_path_like_text_is_warned_about(tmp_path, caplog):
    rows = ["note,kind"] + [f"a fine review {i},{'a' if i % 2 else 'b'}" for i in range(12)]
    rows.append("\U0001f600\U0001f600 !!,a")
    (tmp_path / "t.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    with pytest.raises(OmnifuseError, match="line 14, column 'note'.*letter or digit"):
        load_csv(tmp_path / "t.csv", "kind")

    rows = ["scan,kind"] + [f"scans/{i}.dcm,{'a' if i % 2 else 'b'}" for i in range(12)]
    (tmp_path / "p.csv").write_text("\n".join(rows) + "\n")
    with caplog.at_level(logging.WARNING, logger="omnifuse.data.table"):
        load_csv(tmp_path / "p.csv", "kind")
    assert any("'scan'" in r.message and "look like file paths" in r.message for r in caplog.records)


def test_data_verify_reports_ok_and_failed_files(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from omnifuse.cli import app
    from omnifuse.data import catalog
    from omnifuse.data.sources import Source, sha256_file

    good, bad = tmp_path / "good.tar.gz", tmp_path / "bad.tar.gz"
    good.write_bytes(b"the official bytes")
    bad.write_bytes(b"something else")
    sources = {
        "one": Source("one", "good.tar.gz", "https://example.invalid/good", (sha256_file(good),)),
        "two": Source("two", "bad.tar.gz", "https://example.invalid/bad", ("0" * 64,)),
    }
    monkeypatch.setattr(catalog, "NAMES", ("one",))
    monkeypatch.setattr(catalog, "source", sources.get)
    result = CliRunner().invoke(app, ["data", "verify", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "sha256 ok" in result.output and "FAILED" not in result.output

    monkeypatch.setattr(catalog, "NAMES", ("one", "two"))
    result = CliRunner().invoke(app, ["data", "verify", "--data-dir", str(tmp_path)])
    assert isinstance(result.exception, OmnifuseError) and "failed verification" in str(result.exception)
    assert result.output.count("FAILED") == 1 and "is not a known checksum" in result.output
