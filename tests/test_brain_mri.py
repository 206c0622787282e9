"""The brain MRI folder loader, on mixed JPEG/PNG images of assorted sizes and modes written here."""

from __future__ import annotations

import io
import shutil
import zipfile

import numpy as np
import pytest
from fixtures_media import write_brain_mri, write_tar
from PIL import Image

from omnifuse.data import brain_mri
from omnifuse.errors import OmnifuseError


@pytest.fixture(autouse=True)
def _offline(tmp_path, monkeypatch):
    monkeypatch.setenv("OMNIFUSE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("OMNIFUSE_NO_DOWNLOAD", "1")
    monkeypatch.delenv("OMNIFUSE_DATA", raising=False)


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    return write_brain_mri(tmp_path_factory.mktemp("mri") / "medical", n_yes=12, n_no=8)


def test_load_archive(archive):
    ds = brain_mri.load(data_dir=archive.parent.parent, size=32)  # found in the "medical" subfolder
    assert ds.name == "brain_mri" and ds.source == str(archive)
    assert ds.tasks == {"tumor": ["no", "yes"]} and ds.modalities == {"image": "image"}
    assert list(ds.splits) == ["all"]
    split = ds["all"]
    assert split.inputs["image"].shape == (20, 32, 32, 1) and split.inputs["image"].dtype == np.uint8
    assert np.bincount(split.labels["tumor"]).tolist() == [8, 12]
    assert split.ids[0] == "no/1 no.PNG" and "yes/Y1.jpg" in split.ids.tolist()
    assert split.ids.tolist() == sorted(split.ids.tolist())
    for i, sample_id in enumerate(split.ids):
        assert split.labels["tumor"][i] == (1 if sample_id.startswith("yes/") else 0)
    # the tumour is a bright blob: the brightest pixels of "yes" images beat those of "no" images
    brightest = split.inputs["image"].reshape(20, -1).max(axis=1)
    assert brightest[split.labels["tumor"] == 1].min() > brightest[split.labels["tumor"] == 0].max()


def test_png_named_jpg_and_every_mode_decode(archive):
    split = brain_mri.load(data_dir=archive, size=24, channels=3)["all"]
    assert split.inputs["image"].shape == (20, 24, 24, 3)
    assert "yes/Y4.jpg" in split.ids.tolist()  # fixtures_media writes Y4 as a PNG under a .jpg name
    assert split.inputs["image"][split.ids.tolist().index("yes/Y4.jpg")].max() > 150


def test_folds_are_stratified_and_seeded(archive):
    fold = brain_mri.load(data_dir=archive, size=16, folds=4, seed=3)["all"].extra["fold"]
    labels = brain_mri.load(data_dir=archive, size=16, folds=4, seed=3)["all"].labels["tumor"]
    assert sorted(set(fold.tolist())) == [0, 1, 2, 3]
    for k in range(4):
        assert np.bincount(labels[fold == k], minlength=2).tolist() == [2, 3]
    again = brain_mri.load(data_dir=archive, size=16, folds=4, seed=3)["all"].extra["fold"]
    other = brain_mri.load(data_dir=archive, size=16, folds=4, seed=4)["all"].extra["fold"]
    np.testing.assert_array_equal(fold, again)
    assert not np.array_equal(fold, other)
    with pytest.raises(OmnifuseError, match="folds <= 8"):
        brain_mri.load(data_dir=archive, size=16, folds=9)
    with pytest.raises(OmnifuseError, match="at least 2"):
        brain_mri.load(data_dir=archive, folds=1)


def test_extracted_folder_and_bare_yes_no_folder(archive, tmp_path):
    folder = write_brain_mri(tmp_path / "x", n_yes=12, n_no=8, archive=False)
    from_archive = brain_mri.load(data_dir=archive, size=20)["all"]
    from_folder = brain_mri.load(data_dir=tmp_path / "x", size=20)
    from_bare = brain_mri.load(data_dir=folder, size=20)  # a folder holding yes/ and no/ directly
    assert from_folder.source == str(folder) and from_bare.source == str(folder)
    for ds in (from_folder, from_bare):
        np.testing.assert_array_equal(ds["all"].ids, from_archive.ids)
        np.testing.assert_array_equal(ds["all"].inputs["image"], from_archive.inputs["image"])


def test_kaggle_zip_with_duplicated_trees(archive, tmp_path):
    folder = write_brain_mri(tmp_path / "x", n_yes=12, n_no=8, archive=False)
    zip_path = tmp_path / "brain-mri-images-for-brain-tumor-detection.zip"
    with zipfile.ZipFile(zip_path, "w") as zf:
        for file in sorted(folder.rglob("*")):
            if file.is_file():
                relative = file.relative_to(folder).as_posix()
                zf.write(file, f"brain_tumor_dataset/{relative}")
                zf.write(file, relative)  # Kaggle's zip has the images twice
    split = brain_mri.load(data_dir=zip_path, size=20)["all"]
    assert len(split) == 20
    np.testing.assert_array_equal(
        split.inputs["image"], brain_mri.load(data_dir=archive, size=20)["all"].inputs["image"]
    )


def test_unreadable_image_names_the_member(tmp_path):
    png = io.BytesIO()
    Image.new("L", (30, 30), 50).save(png, format="PNG")
    members = {
        "brain_tumor_dataset/no/N1.jpg": png.getvalue(),
        "brain_tumor_dataset/yes/Y1.jpg": b"\xff\xd8\xff\xe0 truncated jpeg",
    }
    path = write_tar(tmp_path / "brain_mri_tumor.tar.gz", members)
    with pytest.raises(OmnifuseError, match=r"brain_mri_tumor\.tar\.gz:brain_tumor_dataset/yes/Y1\.jpg"):
        brain_mri.load(data_dir=path, folds=2)
    folder = tmp_path / "f"
    shutil.copytree(write_brain_mri(tmp_path / "g", n_yes=3, n_no=3, archive=False), folder)
    (folder / "no" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(OmnifuseError, match=r"no/broken\.png"):
        brain_mri.load(data_dir=folder, folds=2)


def test_missing_class_and_missing_data(tmp_path):
    png = io.BytesIO()
    Image.new("L", (30, 30), 50).save(png, format="PNG")
    path = write_tar(tmp_path / "brain_mri_tumor.tar.gz", {"brain_tumor_dataset/yes/Y1.png": png.getvalue()})
    with pytest.raises(OmnifuseError, match=r"1 in yes/, 0 in no/"):
        brain_mri.load(data_dir=path)
    with pytest.raises(OmnifuseError, match=r"brain_mri_tumor\.tar\.gz.*kaggle"):
        brain_mri.load(data_dir=tmp_path / "nothing")


def test_near_duplicates_stay_in_one_fold(tmp_path):
    """Copies of one slice under other names (re-encoded, re-sized, brightened) share a group and a fold."""
    folder = write_brain_mri(tmp_path / "mri", n_yes=12, n_no=8, archive=False)
    original = Image.open(folder / "yes" / "Y1.jpg").convert("L")
    original.save(folder / "yes" / "Y90.png")  # the same picture as PNG
    original.resize((original.width * 2, original.height * 2)).save(folder / "yes" / "Y91.jpg", quality=80)
    Image.eval(original, lambda v: min(255, v + 20)).save(folder / "yes" / "Y92.jpg")  # brighter copy
    split = brain_mri.load(data_dir=folder.parent, size=32, folds=4, seed=0)["all"]
    ids = split.ids.tolist()
    copies = [ids.index(name) for name in ("yes/Y1.jpg", "yes/Y90.png", "yes/Y91.jpg", "yes/Y92.jpg")]
    assert len(set(split.extra["group"][copies].tolist())) == 1
    assert len(set(split.extra["fold"][copies].tolist())) == 1
    # every other slice is a picture of its own
    assert len(np.unique(split.extra["group"])) == len(ids) - 3
    for seed in (1, 2):
        fold = brain_mri.load(data_dir=folder.parent, size=32, folds=4, seed=seed)["all"].extra["fold"]
        assert len(set(fold[copies].tolist())) == 1


def test_near_duplicate_groups_threshold():
    from omnifuse.data.duplicates import describe_groups, near_duplicate_groups

    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (5, 24, 24, 1)).astype(np.uint8)
    images[3] = np.clip(images[1].astype(int) + 10, 0, 255)  # brighter copy of image 1
    groups = near_duplicate_groups(images)
    assert groups.tolist() == [0, 1, 2, 1, 3]
    assert describe_groups(groups, np.array(list("abcde"))) == [["b", "d"]]
    with pytest.raises(ValueError, match="threshold"):
        near_duplicate_groups(images, threshold=0)
