"""Calibration data: preprocessing presets, image folders, npz/npy files, synthetic data, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from se_deploy.calibration.dataset import CalibrationSet, load_calibration
from se_deploy.calibration.preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocess, make_preprocess
from se_deploy.errors import CalibrationError, UsageError
from tests.calibration.conftest import write_images

SHAPE = ("N", 3, 8, 8)


def _load(src, pre=None, **kw):
    kw.setdefault("calib_size", None)
    kw.setdefault("seed", 0)
    return load_calibration(src, input_name="input", input_shape=kw.pop("shape", SHAPE),
                            preprocess=pre or make_preprocess("none", crop=8, resize=8), **kw)


def test_imagenet_preset_matches_reference_transform():
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (300, 400, 3), dtype=np.uint8))
    pre = make_preprocess("imagenet")
    got = pre.image_to_array(img, 3, 224, 224)
    # reference: shorter side 256 (300x400 -> 256x341), centre crop 224, /255, mean/std
    ref = img.resize((341, 256), Image.BILINEAR)
    left, top = (341 - 224) // 2, (256 - 224) // 2
    ref = np.asarray(ref.crop((left, top, left + 224, top + 224)), dtype=np.float32).transpose(2, 0, 1) / 255.0
    ref = (ref - np.asarray(IMAGENET_MEAN, np.float32)[:, None, None]) / np.asarray(IMAGENET_STD, np.float32)[:, None, None]
    assert got.shape == (3, 224, 224) and got.dtype == np.float32
    np.testing.assert_allclose(got, ref, atol=1e-5)


def test_explicit_options_override_preset_and_bgr_flips_channels():
    pre = make_preprocess("imagenet", resize=16, crop=8, mean=(0.0,), std=(1.0,))
    assert pre.name == "imagenet+custom" and pre.crop == (8, 8) and pre.scale
    img = Image.new("RGB", (16, 16), (255, 0, 0))
    rgb = pre.image_to_array(img, 3, 8, 8)
    bgr = make_preprocess("imagenet", resize=16, crop=8, mean=(0.0,), std=(1.0,), channel_order="bgr").image_to_array(
        img, 3, 8, 8)
    assert rgb[0].max() == pytest.approx(1.0) and rgb[2].max() == 0.0
    np.testing.assert_array_equal(bgr, rgb[::-1])


@pytest.mark.parametrize("kw, msg", [({"mean": (0.5,)}, "both mean and std"), ({"resize": 0}, "resize"),
                                     ({"crop": (0, 4)}, "crop"), ({"channel_order": "RBG"}, "RGB or BGR")])
def test_preprocess_validation(kw, msg):
    with pytest.raises(UsageError, match=msg):
        Preprocess(**kw)


def test_image_folder_recursive_sorted_labels_and_provenance(tmp_path):
    write_images(tmp_path, n_per_class=3)
    (tmp_path / "notes.txt").write_text("not an image")
    ds = _load(tmp_path)
    assert ds.source_kind == "images" and ds.arrays.shape == (6, 3, 8, 8)
    assert ds.class_names == ["cat", "dog"] and ds.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert ds.provenance["preprocess"]["crop"] == [8, 8] and ds.provenance["skipped"] == 0
    # sorted order: cat/img0.png first, then img1.jpg; pixel values 0..255 without scaling
    # 20x12 image: shorter side 12 -> 8 gives 13x8, centre crop 8x8 starts at x=2
    img = Image.open(tmp_path / "cat" / "img0.png").convert("RGB").resize((13, 8), Image.BILINEAR)
    first = np.asarray(img.crop((2, 0, 10, 8)), dtype=np.float32).transpose(2, 0, 1)
    np.testing.assert_allclose(ds.arrays[0], first, atol=1e-4)


def test_calib_size_is_a_deterministic_subset(tmp_path):
    write_images(tmp_path, n_per_class=5)
    a, b = _load(tmp_path, calib_size=4, seed=3), _load(tmp_path, calib_size=4, seed=3)
    c = _load(tmp_path, calib_size=4, seed=4)
    assert len(a) == 4
    np.testing.assert_array_equal(a.arrays, b.arrays)
    assert not np.array_equal(a.arrays, c.arrays)


def test_corrupt_image_skipped_with_count_or_error_when_strict(tmp_path):
    write_images(tmp_path, n_per_class=2)
    (tmp_path / "cat" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    ds = _load(tmp_path)
    assert len(ds) == 4 and ds.provenance["skipped"] == 1
    assert ds.provenance["skipped_files"] == ["cat/broken.jpg"]
    assert any("skipped 1 unreadable" in w for w in ds.warnings)
    with pytest.raises(CalibrationError, match="unreadable image .*broken.jpg"):
        _load(tmp_path, strict=True)


def test_empty_folder_and_no_readable_images(tmp_path):
    with pytest.raises(CalibrationError, match="calibration folder is empty"):
        _load(tmp_path)
    (tmp_path / "readme.md").write_text("x")
    with pytest.raises(CalibrationError, match="no images"):
        _load(tmp_path)
    for i in range(5):
        (tmp_path / f"bad{i}.png").write_bytes(b"garbage")
    with pytest.raises(CalibrationError, match=r"no readable images .*bad0.png, bad1.png, bad2.png \(\+2 more\)"):
        _load(tmp_path)


def test_npz_round_trip_keyed_by_input_name_with_labels(tmp_path):
    write_images(tmp_path / "imgs", n_per_class=2)
    ds = _load(tmp_path / "imgs")
    out = ds.save_npz(tmp_path / "calib.npz")
    with np.load(out) as z:  # one array per model input, as ModelOpt's --calibration_data_path requires
        assert sorted(z.keys()) == ["input"]
        assert z["input"].dtype == np.float32
    with np.load(tmp_path / "calib.labels.npz") as z:
        assert z["labels"].tolist() == ds.labels.tolist() and len(str(z["data_sha256"])) == 64
    again = _load(out, pre=make_preprocess("none"))
    assert again.source_kind == "npz"
    np.testing.assert_array_equal(again.arrays, ds.arrays)
    np.testing.assert_array_equal(again.labels, ds.labels)
    # labels written for another version of the data file are refused, not silently attached
    CalibrationSet(ds.arrays[::-1].copy(), "input", "npz", {}).save_npz(tmp_path / "other.npz")
    (tmp_path / "calib.labels.npz").replace(tmp_path / "other.labels.npz")
    with pytest.raises(CalibrationError, match="other.labels.npz was written for another version of other.npz"):
        _load(tmp_path / "other.npz", pre=make_preprocess("none"))
    # saving without labels removes a stale labels file, and an old-style npz 'labels' key still reads
    CalibrationSet(ds.arrays, "input", "npz", {}).save_npz(tmp_path / "other.npz")
    assert not (tmp_path / "other.labels.npz").exists()
    np.savez(tmp_path / "old.npz", input=ds.arrays, labels=ds.labels)
    np.testing.assert_array_equal(_load(tmp_path / "old.npz", pre=make_preprocess("none")).labels, ds.labels)


@pytest.mark.parametrize("payload, msg", [
    ({"images": np.zeros((4, 3, 8, 8), np.float32)}, r"no array named 'input'.*\['images'\]"),
    ({"input": np.zeros((4, 3, 9, 8), np.float32)}, r"shape \(4, 3, 9, 8\), expected \(N, 3, 8, 8\)"),
    ({"input": np.zeros((4, 3, 8, 8), np.uint8)}, "dtype uint8, expected float32"),
    ({"input": np.zeros((3, 8, 8), np.float32)}, "expected \\(N, 3, 8, 8\\)"),
    ({"input": np.full((2, 3, 8, 8), np.nan, np.float32)}, "NaN"),
    ({"input": np.zeros((2, 3, 8, 8), np.float32), "labels": np.zeros(3, np.int64)}, "labels must be 2 integers"),
])
def test_bad_npz_is_one_clear_error(tmp_path, payload, msg):
    p = tmp_path / "bad.npz"
    np.savez(p, **payload)
    with pytest.raises(CalibrationError, match=msg):
        _load(p, pre=make_preprocess("none"))


def test_npy_and_preprocessing_options_refused_for_arrays(tmp_path):
    p = tmp_path / "x.npy"
    np.save(p, np.ones((5, 3, 8, 8), np.float32))
    ds = _load(p, pre=make_preprocess("none"))
    assert ds.source_kind == "npy" and len(ds) == 5 and ds.labels is None
    with pytest.raises(UsageError, match="preprocessed arrays"):
        _load(p, pre=make_preprocess("imagenet"))


def test_synthetic_is_labelled_everywhere_and_batches_check_size():
    ds = _load(None, pre=make_preprocess("none"), synthetic=True, calib_size=5)
    assert ds.is_synthetic and ds.describe()["synthetic"] is True
    assert any("SYNTHETIC" in w for w in ds.warnings)
    batches = list(ds.batches(2))
    assert [b["input"].shape[0] for b in batches] == [2, 2, 1]
    assert [b["input"].shape[0] for b in ds.batches(2, drop_last=True)] == [2, 2]
    with pytest.raises(CalibrationError, match="fewer than the batch size 8"):
        next(ds.batches(8))
    with pytest.raises(UsageError, match="not both"):
        _load("somewhere", synthetic=True)


def test_split_is_disjoint_and_deterministic():
    ds = CalibrationSet(np.arange(20, dtype=np.float32).reshape(20, 1, 1, 1), "input", "npz", {},
                        np.arange(20) % 10)
    cal, held = ds.split(0.25, seed=1)
    assert len(held) == 5 and len(cal) == 15
    assert set(cal.arrays.ravel()).isdisjoint(held.arrays.ravel())
    cal2, held2 = ds.split(0.25, seed=1)
    np.testing.assert_array_equal(held.arrays, held2.arrays)
    assert held.provenance["role"] == "held-out evaluation"
