import pytest


@pytest.fixture(autouse=True)
def _offline_data(monkeypatch, tmp_path_factory):
    """Tests never download, never touch the real user cache (~/.cache/omnifuse), and see no data folders
    from the environment: a test that wants real data passes ``data_dir`` (read ``OMNIFUSE_DATA`` at import
    time if needed) or sets the variable itself."""
    monkeypatch.setenv("OMNIFUSE_NO_DOWNLOAD", "1")
    monkeypatch.setenv("OMNIFUSE_CACHE", str(tmp_path_factory.mktemp("omnifuse_cache")))
    monkeypatch.delenv("OMNIFUSE_DATA", raising=False)
