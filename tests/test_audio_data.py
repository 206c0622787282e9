"""WAV decoding (omnifuse.data.wav) and the FSDD loader, on recordings written here in the real formats."""

from __future__ import annotations

import os

import numpy as np
import pytest
from fixtures_media import tone, tone_frequency, wav_bytes, write_fsdd, write_tar

from omnifuse.data import fsdd
from omnifuse.data.wav import decode_wav, fit_length, resample_factors
from omnifuse.errors import OmnifuseError


@pytest.fixture(autouse=True)
def _offline(tmp_path, monkeypatch):
    monkeypatch.setenv("OMNIFUSE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("OMNIFUSE_NO_DOWNLOAD", "1")
    monkeypatch.delenv("OMNIFUSE_DATA", raising=False)


@pytest.fixture(scope="module")
def fsdd_archive(tmp_path_factory):
    return write_fsdd(tmp_path_factory.mktemp("fsdd_xz"), archive="xz")


@pytest.fixture(scope="module")
def fsdd_folder(tmp_path_factory):
    return write_fsdd(tmp_path_factory.mktemp("fsdd_dir"))


def peak_hz(wave: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(wave))
    return float(np.fft.rfftfreq(len(wave), 1 / rate)[np.argmax(spectrum)])


# --- decode_wav ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [8000, 16000, 44100, 22050, 11025, 48000])
def test_decode_resamples_to_the_target_rate_keeping_pitch(rate):
    wave = tone(5, rate, 0.5, np.random.default_rng(0))
    out = decode_wav(wav_bytes(wave, rate), sample_rate=8000)
    assert out.dtype == np.float32 and out.ndim == 1
    assert abs(len(out) - 4000) <= 1
    assert abs(peak_hz(out, 8000) - tone_frequency(5)) < 10


def test_decode_mixes_any_channel_count_to_mono(tmp_path):
    wave = tone(2, 8000, 0.3, np.random.default_rng(0))
    for channels in (1, 2, 3, 6):
        out = decode_wav(wav_bytes(wave, 8000, channels=channels), 8000)
        # wav_bytes scales channel c by (1 - 0.2 c): the mono mix is the mean of those copies
        scale = np.mean([1 - 0.2 * c for c in range(channels)])
        np.testing.assert_allclose(out, wave * scale, atol=2e-4)


def test_decode_centre_pads_and_centre_crops(tmp_path):
    wave = np.ones(100, dtype=np.float32) * 0.5
    padded = decode_wav(wav_bytes(wave, 8000, subtype="FLOAT"), 8000, num_samples=300)
    assert padded.shape == (300,)
    assert np.all(padded[:100] == 0) and np.all(padded[200:] == 0) and np.allclose(padded[100:200], 0.5)
    ramp = np.linspace(-0.9, 0.9, 1000).astype(np.float32)
    cropped = decode_wav(wav_bytes(ramp, 8000, subtype="FLOAT"), 8000, num_samples=10)
    np.testing.assert_allclose(cropped, ramp[495:505])
    assert fit_length(np.arange(5), 8).tolist() == [0, 0, 1, 2, 3, 4, 0, 0]


def test_decode_reads_paths_and_bytes_alike(tmp_path):
    data = wav_bytes(tone(1, 16000, 0.2, np.random.default_rng(0)), 16000, channels=2)
    (tmp_path / "a.wav").write_bytes(data)
    np.testing.assert_array_equal(decode_wav(tmp_path / "a.wav", 8000, 2000), decode_wav(data, 8000, 2000))
    np.testing.assert_array_equal(decode_wav(str(tmp_path / "a.wav"), 8000), decode_wav(data, 8000))


def test_non_wav_and_damaged_files_name_the_file(tmp_path):
    fake = tmp_path / "notes.wav"
    fake.write_text("this is not audio")
    with pytest.raises(OmnifuseError, match=r"notes\.wav.*cannot be decoded"):
        decode_wav(fake, 8000)
    with pytest.raises(OmnifuseError, match="<bytes>"):
        decode_wav(b"RIFF\x00\x00\x00\x00junk", 8000)
    with pytest.raises(OmnifuseError, match="length 0"):
        decode_wav(b"", 8000)
    with pytest.raises(OmnifuseError, match=r"missing\.wav.*does not exist"):
        decode_wav(tmp_path / "missing.wav", 8000)
    flac = tmp_path / "tone.flac"
    flac.write_bytes(wav_bytes(tone(1, 8000, 0.1, np.random.default_rng(0)), 8000, fmt="FLAC"))
    with pytest.raises(OmnifuseError, match=r"Expected a WAV file.*tone\.flac.*FLAC"):
        decode_wav(flac, 8000)


def test_empty_and_silent_files_are_rejected(tmp_path):
    empty = tmp_path / "empty.wav"
    empty.write_bytes(wav_bytes(np.zeros(0, dtype=np.float32), 8000))
    with pytest.raises(OmnifuseError, match=r"empty\.wav.*0 frames"):
        decode_wav(empty, 8000)
    silent = tmp_path / "silent.wav"
    silent.write_bytes(wav_bytes(np.zeros(800, dtype=np.float32), 8000))
    with pytest.raises(OmnifuseError, match=r"silent\.wav.*all zero"):
        decode_wav(silent, 8000)


def test_unresamplable_rates_are_rejected(tmp_path):
    odd = tmp_path / "odd_rate.wav"
    odd.write_bytes(
        wav_bytes(tone(1, 7919, 0.1, np.random.default_rng(0)), 7919)
    )  # prime rate: ratio 8000/7919
    with pytest.raises(OmnifuseError, match=r"odd_rate\.wav.*7919 Hz"):
        decode_wav(odd, 8000)
    assert decode_wav(odd, 7919).shape == (791,)
    with pytest.raises(OmnifuseError, match="sample_rate"):
        decode_wav(odd, 0)
    with pytest.raises(OmnifuseError, match="num_samples"):
        decode_wav(odd, 8000, num_samples=-1)
    assert resample_factors(44100, 8000) == (80, 441)
    with pytest.raises(OmnifuseError, match="positive"):
        resample_factors(-8000, 8000)


# --- FSDD --------------------------------------------------------------------------------------------------------


def test_fsdd_official_split_from_xz_archive(fsdd_archive):
    ds = fsdd.load(data_dir=fsdd_archive.parent)
    assert ds.name == "fsdd" and ds.modalities == {"audio": "audio"}
    assert ds.tasks == {"digit": [str(d) for d in range(10)]}
    assert ds.source == str(fsdd_archive)
    train, test = ds["train"], ds["test"]
    assert len(train) == 3 * 10 * 1 and len(test) == 3 * 10 * 5
    assert set(test.extra["index"].tolist()) == {0, 1, 2, 3, 4} and set(train.extra["index"].tolist()) == {5}
    assert train.inputs["audio"].shape == (30, 8000) and train.inputs["audio"].dtype == np.float32
    assert np.bincount(test.labels["digit"]).tolist() == [15] * 10
    for split in (train, test):
        for i in (0, len(split) - 1):
            digit, speaker, index = split.ids[i].split("_")
            assert split.labels["digit"][i] == int(digit)
            assert split.extra["speaker"][i] == speaker and split.extra["index"][i] == int(index)
            # the tone of the file is the digit's pitch: waveform and label stayed together
            assert abs(peak_hz(split.inputs["audio"][i], 8000) - tone_frequency(int(digit))) < 20
    assert fsdd.speakers(ds) == ["ann", "bob", "cid"]


def test_fsdd_folder_and_archive_give_the_same_arrays(fsdd_archive, fsdd_folder):
    from_archive = fsdd.load(data_dir=fsdd_archive, sample_rate=8000, num_samples=4000)
    from_folder = fsdd.load(data_dir=fsdd_folder.parent, sample_rate=8000, num_samples=4000)
    assert from_folder.source == str(fsdd_folder)
    for split in ("train", "test"):
        np.testing.assert_array_equal(from_archive[split].ids, from_folder[split].ids)
        np.testing.assert_array_equal(from_archive[split].inputs["audio"], from_folder[split].inputs["audio"])
        assert from_folder[split].inputs["audio"].shape[1] == 4000


def test_fsdd_loso_split(fsdd_archive):
    ds = fsdd.load(data_dir=fsdd_archive, split="loso:bob")
    assert set(ds["test"].extra["speaker"].tolist()) == {"bob"} and len(ds["test"]) == 60
    assert "bob" not in set(ds["train"].extra["speaker"].tolist()) and len(ds["train"]) == 120
    with pytest.raises(OmnifuseError, match=r"ann, bob, cid.*'loso:zed'"):
        fsdd.load(data_dir=fsdd_archive, split="loso:zed")
    with pytest.raises(OmnifuseError, match="official"):
        fsdd.load(data_dir=fsdd_archive, split="random")


def test_fsdd_parsed_cache_is_reused_and_keyed_by_settings(fsdd_archive, tmp_path, monkeypatch):
    first = fsdd.load(data_dir=fsdd_archive)
    cached = sorted((tmp_path / "cache" / "parsed").glob("fsdd-*.npz"))
    assert len(cached) == 1
    with monkeypatch.context() as patched:  # a cache hit must not decode anything
        patched.setattr(fsdd, "decode_wav", lambda *a, **k: pytest.fail("decoded despite a current cache"))
        again = fsdd.load(data_dir=fsdd_archive)
    np.testing.assert_array_equal(first["test"].inputs["audio"], again["test"].inputs["audio"])
    other = fsdd.load(data_dir=fsdd_archive, sample_rate=4000, num_samples=2000)
    assert other["train"].inputs["audio"].shape == (30, 2000)
    assert len(list((tmp_path / "cache" / "parsed").glob("fsdd-*.npz"))) == 2


def test_fsdd_cache_is_invalidated_when_the_archive_changes(tmp_path):
    path = write_fsdd(tmp_path / "a", speakers=("ann",), per_digit=6, archive="gz")
    assert len(fsdd.load(data_dir=path)["test"]) == 50
    write_fsdd(tmp_path / "a", speakers=("ann", "bob"), per_digit=6, archive="gz")
    os.utime(path, ns=(1, 1))  # a new mtime even on coarse-clock file systems
    assert len(fsdd.load(data_dir=path)["test"]) == 100


def test_fsdd_errors_name_the_file(tmp_path):
    rng = np.random.default_rng(0)
    good = wav_bytes(tone(3, 8000, 0.2, rng), 8000)
    bad_name = write_tar(tmp_path / "a" / "fsdd_recordings.tar.gz", {"recordings/three.wav": good})
    with pytest.raises(OmnifuseError, match=r"<digit>_<speaker>_<index>\.wav.*three\.wav"):
        fsdd.load(data_dir=bad_name)
    corrupt = write_tar(
        tmp_path / "b" / "fsdd_recordings.tar.gz",
        {"recordings/3_ann_0.wav": good, "recordings/4_ann_0.wav": b"not a wav"},
    )
    with pytest.raises(OmnifuseError, match=r"fsdd_recordings\.tar\.gz:recordings/4_ann_0\.wav"):
        fsdd.load(data_dir=corrupt)
    silent = write_tar(
        tmp_path / "c" / "fsdd_recordings.tar.gz", {"recordings/5_ann_0.wav": wav_bytes(np.zeros(50), 8000)}
    )
    with pytest.raises(OmnifuseError, match=r"5_ann_0\.wav.*all zero"):
        fsdd.load(data_dir=silent)
    truncated = tmp_path / "d" / "fsdd_recordings.tar.xz"
    truncated.parent.mkdir()
    truncated.write_bytes(write_fsdd(tmp_path / "e", per_digit=1, archive="xz").read_bytes()[:3000])
    with pytest.raises(OmnifuseError, match=r"fsdd_recordings\.tar\.xz.*cannot be read"):
        fsdd.load(data_dir=truncated)
    (tmp_path / "f" / "recordings").mkdir(parents=True)
    with pytest.raises(OmnifuseError, match="no WAV files"):
        fsdd.load(data_dir=tmp_path / "f")
    with pytest.raises(OmnifuseError, match="fsdd_recordings.tar.xz"):
        fsdd.load(data_dir=tmp_path / "nowhere")
    with pytest.raises(OmnifuseError, match="num_samples"):
        fsdd.load(data_dir=bad_name, num_samples=0)
