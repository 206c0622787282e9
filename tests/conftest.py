import gc

import pytest

# Collection imports TensorFlow, Keras and omnifuse (half a million objects that live to the end): with the
# collector paused until pytest_collection_finish, its full passes do not walk them again and again meanwhile
gc.disable()


@pytest.fixture(autouse=True)
def _offline_data(monkeypatch, tmp_path_factory):
    """Tests never download, never touch the real user cache (~/.cache/omnifuse), and see no data folders
    from the environment: a test that wants real data passes ``data_dir`` (read ``OMNIFUSE_DATA`` at import
    time if needed) or sets the variable itself."""
    monkeypatch.setenv("OMNIFUSE_NO_DOWNLOAD", "1")
    monkeypatch.setenv("OMNIFUSE_CACHE", str(tmp_path_factory.mktemp("omnifuse_cache")))
    monkeypatch.delenv("OMNIFUSE_DATA", raising=False)
    # precision "auto" as the CPU's flags say, without timing bfloat16 against float32 in every process a test
    # starts (each test has a cache of its own); tests/test_precision.py measures it
    monkeypatch.setenv("OMNIFUSE_AUTO_PRECISION", _FLAG_PRECISION)


def _flag_precision() -> str:
    from omnifuse.hardware import read_cpuinfo
    from omnifuse.precision import cpuinfo_has_bfloat16

    return "bfloat16" if cpuinfo_has_bfloat16(read_cpuinfo()) else "float32"


_FLAG_PRECISION = _flag_precision()


# The test files that cost most, slowest first (summed wall time of their tests in a whole `-n 3` run; measured
# at 6cd8a62: test_distributed.py 74 s ... test_report_worst.py 5.5 s). With
# `--dist loadfile` each worker takes the next file in this order when it is done with one: the long files
# start first and the short ones fill in at the end, so no worker is left with a long file while the others
# idle. Files not named here follow, in their usual order. Re-measure when a file grows past the last one listed.
SLOWEST_FIRST = (
    "test_distributed.py",
    "test_layers.py",
    "test_cli_e2e.py",
    "test_precision.py",
    "test_fusions.py",
    "test_pretrain.py",
    "test_export_pretrained.py",
    "test_label_page.py",
    "test_e2e_media.py",
    "test_features.py",
    "test_efficientnet_lite.py",
    "test_step.py",
    "test_serving.py",
    "test_export.py",
    "test_label_audit.py",
    "test_minilm.py",
    "test_table.py",
    "test_calibration.py",
    "test_explain.py",
    "test_browser_explain.py",
    "test_tracking.py",
    "test_whisper.py",
    "test_audio_data.py",
    "test_bench_recorder.py",
    "test_cli_quiet.py",
    "test_ensemble.py",
    "test_custom_encoder.py",
    "test_semi.py",
    "test_optimizers.py",
    "test_eager.py",
    "test_label_next.py",
    "test_predict_table.py",
    "test_config.py",
    "test_bench_harness.py",
    "test_browser.py",
    "test_length_buckets.py",
    "test_fastnet.py",
    "test_report_worst.py",
)


def pytest_configure(config):
    # pytest-xdist otherwise hands out files by their number of tests, most first, whatever the order below
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: each file's own order is kept


def pytest_collection_finish(session):
    # what collection imported (TensorFlow, Keras, omnifuse: half a million objects) lives to the end; frozen, the
    # garbage collector's full passes stop walking it (measured on two test files: its time 24 s -> 8 s)
    gc.collect()
    gc.freeze()
    gc.enable()
