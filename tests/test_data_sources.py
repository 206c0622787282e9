import dataclasses
import hashlib
import http.server
import lzma
import os
import tarfile
import threading
from pathlib import Path

import pytest
from fixtures import tar_bytes, write_aclimdb, write_cifar10

from omnifuse.data import catalog, cifar10, imdb
from omnifuse.data.sources import (
    Source,
    cache_dir,
    data_roots,
    download,
    find,
    locate,
    open_tar_stream,
    sha256_file,
    verify,
)
from omnifuse.errors import OmnifuseError

TOY = Source(
    dataset="toy",
    filename="toy.tar.gz",
    url="https://example.org/toy.tar.gz",
    sha256=("0" * 64,),
    alternatives=("toy", "toy.tar.xz"),
    subdir="toyset",
    description="a toy data set",
    members=("a.txt", "sub/b.txt"),
)


@pytest.fixture
def roots(tmp_path, monkeypatch):
    """Three empty roots: an explicit data dir, two $OMNIFUSE_DATA folders; plus the (test) cache."""
    explicit, env1, env2 = tmp_path / "explicit", tmp_path / "env1", tmp_path / "env2"
    for d in (explicit, env1, env2):
        d.mkdir()
    monkeypatch.setenv("OMNIFUSE_DATA", os.pathsep.join([str(env1), str(env2)]))
    return explicit, env1, env2, cache_dir()


def _put(path: Path, text: str = "x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_data_roots_order(roots):
    explicit, env1, env2, cache = roots
    assert data_roots(explicit) == [explicit, env1, env2, cache]
    assert data_roots() == [env1, env2, cache]


def test_cache_dir_defaults_to_home(monkeypatch, tmp_path):
    monkeypatch.delenv("OMNIFUSE_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache_dir() == tmp_path / ".cache" / "omnifuse"


def test_lookup_order_data_dir_beats_env_beats_cache(roots):
    explicit, env1, env2, cache = roots
    in_cache = _put(cache / "toyset" / "toy.tar.gz")
    assert locate(TOY) == in_cache
    in_env2 = _put(env2 / "toy.tar.gz")
    assert locate(TOY) == in_env2
    in_env1 = _put(env1 / "toyset" / "toy.tar.gz")
    assert locate(TOY) == in_env1
    in_explicit = _put(explicit / "toyset" / "toy.tar.gz")
    assert locate(TOY, data_dir=explicit) == in_explicit
    assert locate(TOY) == in_env1  # without data_dir the explicit folder is not searched


def test_alternative_names_and_root_being_the_file(roots):
    explicit, *_ = roots
    folder = explicit / "toyset" / "toy"
    folder.mkdir(parents=True)
    assert locate(TOY, data_dir=explicit) == folder
    # The official file name is preferred to an alternative in the same root.
    official = _put(explicit / "toy.tar.gz")
    assert locate(TOY, data_dir=explicit) == official
    # --data-dir may name the file itself.
    xz = _put(explicit / "elsewhere" / "toy.tar.xz")
    assert locate(TOY, data_dir=xz) == xz


def test_missing_data_error_names_file_url_and_roots(roots, monkeypatch):
    explicit, env1, env2, cache = roots
    with pytest.raises(OmnifuseError) as info:
        locate(TOY, data_dir=explicit)
    message = str(info.value)
    for expected in ("toy.tar.gz", TOY.url, str(explicit), str(env1), str(env2), str(cache)):
        assert expected in message
    assert "OMNIFUSE_DATA" in message and "--data-dir" in message and "OMNIFUSE_NO_DOWNLOAD" in message
    assert find(TOY, explicit) is None


def test_real_loaders_report_missing_data(roots):
    with pytest.raises(OmnifuseError, match=r"cifar-10-python\.tar\.gz.*https://www\.cs\.toronto\.edu"):
        cifar10.load(data_dir=roots[0])
    with pytest.raises(OmnifuseError, match=r"aclImdb_v1\.tar\.gz.*https://ai\.stanford\.edu"):
        imdb.load(data_dir=roots[0])


def test_verify_file_and_folder(tmp_path):
    good = _put(tmp_path / "toy.tar.gz", "payload")
    digest = hashlib.sha256(b"payload").hexdigest()
    assert sha256_file(good) == digest
    source = dataclasses.replace(TOY, sha256=("f" * 64, digest))
    ok, message = verify(source, good)
    assert ok and "re-pack" in message
    ok, message = verify(TOY, good)
    assert not ok and digest in message

    folder = tmp_path / "toy"
    _put(folder / "a.txt")
    ok, message = verify(TOY, folder)
    assert not ok and "sub/b.txt" in message
    _put(folder / "sub" / "b.txt")
    assert verify(TOY, folder)[0]


# ------------------------------------------------------------------------------------------ downloads (loopback)


class _Handler(http.server.BaseHTTPRequestHandler):
    routes: dict[str, tuple[bytes, int | None]] = {}  # path -> (body, Content-Length to announce)

    def do_GET(self):
        if self.path not in self.routes:
            self.send_error(404)
            return
        body, length = self.routes[self.path]
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        if length is not None:
            self.send_header("Content-Length", str(length))
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    """A loopback HTTP server; tests fill ``routes``. Yields the base URL."""
    _Handler.routes = {}
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", _Handler.routes
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


def _archive(tmp_path) -> tuple[bytes, str]:
    data = write_cifar10(tmp_path / "made", n_per_batch=2, n_test=2).read_bytes()
    return data, hashlib.sha256(data).hexdigest()


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_download_good_file_then_found_without_downloading(tmp_path, server):
    base, routes = server
    data, digest = _archive(tmp_path)
    routes["/cifar.tar.gz"] = (data, len(data))
    source = dataclasses.replace(cifar10.SOURCE, url=f"{base}/cifar.tar.gz", sha256=("a" * 64, digest))

    path = locate(source, download=True)
    assert path == cache_dir() / "cifar10" / "cifar-10-python.tar.gz"
    assert path.read_bytes() == data
    assert _leftovers(path.parent) == ["cifar-10-python.tar.gz"]
    assert verify(source, path)[0]

    del routes["/cifar.tar.gz"]  # a second download would now fail
    assert locate(source, download=True) == path
    assert locate(source) == path  # downloads are off in tests


def test_loader_downloads_when_allowed(tmp_path, server, monkeypatch):
    base, routes = server
    data, digest = _archive(tmp_path)
    routes["/c.tar.gz"] = (data, None)  # no Content-Length: only the checksum guards the download
    monkeypatch.setattr(
        cifar10, "SOURCE", dataclasses.replace(cifar10.SOURCE, url=f"{base}/c.tar.gz", sha256=(digest,))
    )
    with pytest.raises(OmnifuseError, match="downloads are off"):
        cifar10.load()
    monkeypatch.setenv("OMNIFUSE_NO_DOWNLOAD", "0")
    ds = cifar10.load()
    assert len(ds["train"]) == 10 and ds.source == str(cache_dir() / "cifar10" / "cifar-10-python.tar.gz")


def test_download_wrong_checksum_leaves_nothing(tmp_path, server):
    base, routes = server
    data, digest = _archive(tmp_path)
    routes["/x.tar.gz"] = (data, len(data))
    source = dataclasses.replace(cifar10.SOURCE, url=f"{base}/x.tar.gz", sha256=("b" * 64,))
    dest = tmp_path / "dest"
    with pytest.raises(OmnifuseError) as info:
        download(source, dest)
    message = str(info.value)
    assert f"{base}/x.tar.gz" in message and "b" * 64 in message and digest in message
    assert _leftovers(dest) == []


@pytest.mark.parametrize("announced_extra", [1000, 1])
def test_download_truncated_leaves_nothing(tmp_path, server, announced_extra):
    base, routes = server
    data, digest = _archive(tmp_path)
    half = data[: len(data) // 2]
    routes["/t.tar.gz"] = (half, len(half) + announced_extra)
    source = dataclasses.replace(cifar10.SOURCE, url=f"{base}/t.tar.gz", sha256=(digest,))
    dest = tmp_path / "dest"
    with pytest.raises(OmnifuseError) as info:
        download(source, dest)
    message = str(info.value)
    assert (
        f"{base}/t.tar.gz" in message
        and str(len(half) + announced_extra) in message
        and str(len(half)) in message
    )
    assert _leftovers(dest) == []


def test_locate_download_failure_adds_instructions(tmp_path, server, monkeypatch):
    base, _ = server
    source = dataclasses.replace(TOY, url=f"{base}/missing.tar.gz")
    with pytest.raises(OmnifuseError) as info:
        locate(source, data_dir=tmp_path, download=True)
    message = str(info.value)
    assert "404" in message and "toy.tar.gz" in message and str(tmp_path) in message
    assert _leftovers(cache_dir() / "toyset") == []


# ------------------------------------------------------------------------------------------------------ catalog


def test_catalog_load_and_status(tmp_path):
    write_cifar10(tmp_path / "cifar10", n_per_batch=2, n_test=2)
    write_aclimdb(tmp_path, n_per_class=2)
    assert catalog.load_dataset("cifar10", data_dir=tmp_path).name == "cifar10"
    with pytest.raises(OmnifuseError, match="Unknown data set 'nope'.*cifar10.*imdb"):
        catalog.load_dataset("nope")

    rows = {row["name"]: row for row in catalog.status(tmp_path)}
    assert set(rows) >= {"cifar10", "imdb"}
    assert rows["cifar10"]["found"] == str(tmp_path / "cifar10" / "cifar-10-python.tar.gz")
    assert rows["imdb"]["found"] == str(tmp_path / "aclImdb") and rows["imdb"]["verified"] is None
    checked = {row["name"]: row for row in catalog.status(tmp_path, check=True)}
    assert checked["cifar10"]["verified"] is False  # a fixture archive is not the official file
    assert checked["imdb"]["verified"] is True  # the folder has train/test × neg/pos
    empty = catalog.status(tmp_path / "nothing", check=True)
    assert all(row["found"] is None and row["verified"] is None for row in empty)


@pytest.mark.parametrize("compression", ["gz", "xz", None])
def test_a_tar_stream_reads_every_member(tmp_path, compression):
    members = {f"d/{i}.txt": f"member {i}".encode() * 40 for i in range(30)}
    path = tmp_path / "a.tar"
    path.write_bytes(tar_bytes(members, compression))
    with open_tar_stream(path) as tar:
        read = {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}
    assert read == members


@pytest.mark.parametrize("compression", ["gz", "xz"])
def test_a_truncated_compressed_tar_stream_never_ends_quietly(tmp_path, compression):
    # tarfile on its own stops without an error where the cut falls inside a member's header; whatever the cut,
    # reading the stream to its end must raise, never hand back fewer members as if that were all.
    members = {f"d/{i}.txt": bytes(range(256)) * (i + 1) for i in range(30)}
    data = tar_bytes(members, compression)
    path = tmp_path / "cut.tar"
    for cut in range(len(data) // 20, len(data) - 8, max(1, len(data) // 60)):
        path.write_bytes(data[:cut])
        with pytest.raises((EOFError, tarfile.TarError, lzma.LZMAError, OSError)):  # noqa: PT012
            with open_tar_stream(path) as tar:
                for member in tar:
                    tar.extractfile(member).read()
