"""The TensorRT 10 calibrators' pure-Python parts: cache read/write in TensorRT's format and batching.

TensorRT calls ``read_calibration_cache`` / ``write_calibration_cache`` on the calibrator; both
delegate to CacheStore, tested here. The device copies go through the CUDA module; a host-memory
stand-in for it checks only which batches and pointers the feeder hands out. Stand-ins named like
the TensorRT base classes check the one calibrator class the factory writes for both.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from pathlib import Path

from se_deploy.calibration.trt_cache import read_calibration_cache, write_calibration_cache
from se_deploy.engines.tensorrt.calibrator import (CacheStore, CalibrationFeeder, CallbackErrors, calibration_batches,
                                                   calibrator_from_base, make_calibrator)
from se_deploy.runtime.tensorrt._trt import trt_bases
from se_deploy.runtime.tensorrt.cuda import DeviceBuffer
from se_deploy.errors import CalibrationError, InternalError

REAL = Path(__file__).resolve().parents[1] / "fixtures" / "real" / "calibration_cache"

CACHE = (b"TRT-100300-EntropyCalibration2\n"
         b"input: 3c010204\n"
         b"/layer1/conv/Conv_output_0: 3d4ccccd\n")


def test_cache_round_trip_through_the_calibrator_store(tmp_path):
    store = CacheStore(tmp_path / "m.calib.cache", "entropy")
    assert store.read() is None  # no cache yet: TensorRT calibrates from the data
    store.write(memoryview(CACHE))  # TensorRT hands the calibrator a buffer
    assert store.read() == CACHE
    header, scales = read_calibration_cache(store.path)
    assert header == "TRT-100300-EntropyCalibration2"
    assert scales["/layer1/conv/Conv_output_0"] == pytest.approx(0.05)
    assert scales["input"] == pytest.approx(np.frombuffer(bytes.fromhex("3c010204"), ">f4")[0])


def test_cache_written_by_the_calibration_package_is_read_back(tmp_path):
    path = write_calibration_cache(tmp_path / "c.cache", {"input": 2.54, "r": 12.7}, algorithm="MinMaxCalibration",
                                   trt_version="10.3.0")
    data = CacheStore(path, "minmax").read()
    assert data.splitlines()[0] == b"TRT-100300-MinMaxCalibration"
    assert read_calibration_cache(path)[1]["input"] == pytest.approx(0.02)


def test_cache_of_another_algorithm_is_not_used(tmp_path):
    path = tmp_path / "c.cache"
    path.write_bytes(CACHE)
    notes = []
    assert CacheStore(path, "minmax", log=notes.append).read() is None
    assert notes == [f"note: {path} holds EntropyCalibration2 scales, not MinMaxCalibration: recalibrating (the cache "
                     "is rewritten)"]


def test_cache_of_another_tensorrt_version_is_not_used(tmp_path):
    """TensorRT discards a cache whose header names another version; se-deploy does not hand it over at all."""
    path = tmp_path / "c.cache"
    path.write_bytes(CACHE)  # TRT-100300
    notes = []
    assert CacheStore(path, "entropy", trt_version="10.3.0.30", log=notes.append).read() == CACHE
    assert CacheStore(path, "entropy", trt_version="10.13.3.9", log=notes.append).read() is None
    assert notes == [f"note: {path} was written for TensorRT 100300 (header), this is TensorRT 10.13.3.9 (101303): "
                     "recalibrating (the cache is rewritten)"]


@pytest.mark.parametrize("name, digits, algorithm", [
    ("calib_cache_TRT-8600-EntropyCalibration2_cuDLA-samples_excerpt.cache", "8600", "entropy"),
    ("calib_cache_TRT-100900-EntropyCalibration2_DEIMKit_excerpt.cache", "100900", "entropy"),
    ("calib_cache_TRT-101000-EntropyCalibration2_radioml-transformer_excerpt.cache", "101000", "entropy"),
    ("calib_cache_TRT-101200-EntropyCalibration2_secondkeeper_excerpt.cache", "101200", "entropy"),
    ("calib_cache_TRT-101303-MinMaxCalibration_MPNet_excerpt.cache", "101303", "minmax"),
])
def test_caches_tensorrt_wrote_are_stored_verbatim_and_handed_back(tmp_path, name, digits, algorithm):
    """Real caches (unpadded hex such as ``name: 0``, ``7f800000``, names with ':' and '/'): what TensorRT gives
    the calibrator to store is written byte for byte and handed back to the same TensorRT version."""
    real = (REAL / name).read_bytes()
    assert real.startswith(f"TRT-{digits}-".encode())
    version = f"{int(digits[:-4])}.{int(digits[-4:-2])}.{int(digits[-2:])}" if len(digits) == 6 else \
        f"{digits[0]}.{digits[1]}.{int(digits[2:])}"
    store = CacheStore(tmp_path / "c.cache", algorithm, trt_version=version)
    store.write(memoryview(real))  # TensorRT hands write_calibration_cache a memoryview
    assert (tmp_path / "c.cache").read_bytes() == real
    assert store.read() == real


def test_corrupt_cache_is_refused_and_nothing_is_written(tmp_path):
    path = tmp_path / "c.cache"
    store = CacheStore(path, "entropy")
    with pytest.raises(CalibrationError, match="is not a TensorRT calibration cache"):
        store.write(b"calibration table from onnxruntime\nx 1.0\n")
    with pytest.raises(CalibrationError, match="TensorRT wrote a MinMaxCalibration cache for the EntropyCalibration2"):
        store.write(CACHE.replace(b"EntropyCalibration2", b"MinMaxCalibration"))
    assert not path.exists() and list(tmp_path.iterdir()) == []
    path.write_bytes(b"# not a cache\ninput: 3c010204\n")
    with pytest.raises(CalibrationError, match="first line is '# not a cache'"):
        store.read()


def test_unknown_calibrator_kind():
    with pytest.raises(CalibrationError, match="unknown calibrator"):
        CacheStore("c.cache", "percentile")


def test_calibration_batches_are_full_and_ordered():
    x = np.arange(10 * 2, dtype=np.float32).reshape(10, 2)
    batches = list(calibration_batches({"input": x}, 4))
    assert len(batches) == 2  # the partial last batch is dropped
    np.testing.assert_array_equal(batches[1]["input"], x[4:8])
    assert len(list(calibration_batches({"input": x}, 2, max_batches=3))) == 3
    with pytest.raises(CalibrationError, match="fewer than one batch of 16"):
        list(calibration_batches({"input": x}, 16))


class HostMemory:
    """Host-memory stand-in for the CUDA module (alloc + copy only)."""

    def __init__(self):
        self.blocks = {}

    def alloc(self, nbytes):
        ptr = 0x1000 * (len(self.blocks) + 1)
        self.blocks[ptr] = bytearray(nbytes)
        return DeviceBuffer(ptr, nbytes, lambda p=ptr: self.blocks.pop(p))

    def copy_htod(self, buf, host):
        self.blocks[buf.ptr][: host.nbytes] = host.tobytes()


def test_feeder_hands_each_batch_once_then_none():
    mem = HostMemory()
    x = np.random.default_rng(0).standard_normal((6, 3, 2, 2)).astype(np.float32)
    feeder = CalibrationFeeder(calibration_batches({"input": x}, 2), 1, mem)
    seen = []
    while (ptrs := feeder.next_pointers(["input"])) is not None:
        assert len(ptrs) == 1
        seen.append(np.frombuffer(bytes(mem.blocks[ptrs[0]]), np.float32).reshape(2, 3, 2, 2).copy())
    assert feeder.fed == 3
    np.testing.assert_array_equal(np.concatenate(seen), x)
    with pytest.raises(CalibrationError, match="no array for network input"):
        CalibrationFeeder(calibration_batches({"input": x}, 2), 1, mem).next_pointers(["images"])
    assert len(mem.blocks) == 1  # one device buffer, reused for every batch
    feeder.close()
    assert mem.blocks == {}  # released


def _trt_stand_in():
    """Classes named like TensorRT's calibrator bases (the factory checks the name), recording initialisation."""

    def base(name):
        def __init__(self):
            self.base_initialised = name

        return type(name, (), {"__init__": __init__})

    return SimpleNamespace(IInt8EntropyCalibrator2=base("IInt8EntropyCalibrator2"),
                           IInt8MinMaxCalibrator=base("IInt8MinMaxCalibrator"),
                           IInt8LegacyCalibrator=base("IInt8LegacyCalibrator"))


@pytest.mark.parametrize("kind, base", [("entropy", "IInt8EntropyCalibrator2"), ("minmax", "IInt8MinMaxCalibrator")])
def test_one_calibrator_class_serves_both_bases(tmp_path, kind, base):
    trt = _trt_stand_in()
    mem = HostMemory()
    x = np.zeros((4, 3), np.float32)
    store = CacheStore(tmp_path / "c.cache", kind)
    errors = CallbackErrors()
    calib = make_calibrator(trt, kind, CalibrationFeeder(calibration_batches({"input": x}, 2), 1, mem), store, errors)
    assert isinstance(calib, getattr(trt, base))
    assert calib.base_initialised == base  # the trampoline's __init__ ran
    assert calib.get_batch_size() == 1
    assert len(calib.get_batch(["input"])) == 1
    assert calib.read_calibration_cache() is None
    cache = CACHE.replace(b"EntropyCalibration2", b"MinMaxCalibration") if kind == "minmax" else CACHE
    calib.write_calibration_cache(memoryview(cache))
    assert calib.read_calibration_cache() == cache
    errors.raise_first()  # nothing went wrong


def _calibrator(tmp_path, feeder, errors):
    return make_calibrator(_trt_stand_in(), "entropy", feeder, CacheStore(tmp_path / "c.cache", "entropy"), errors)


def test_an_error_in_get_batch_never_reaches_tensorrt_and_is_the_builds_error(tmp_path):
    """TensorRT's binding would print the exception and read "no more batches"; the calibrator answers that
    itself, keeps the exception, and the builder raises it once build_serialized_network returns."""
    errors = CallbackErrors()
    x = np.zeros((4, 3), np.float32)
    calib = _calibrator(tmp_path, CalibrationFeeder(calibration_batches({"input": x}, 2), 1, HostMemory()), errors)
    assert calib.get_batch(["images"]) is None  # the data has no "images": raises inside, None to TensorRT
    assert calib.get_batch(["input"]) is None  # after a failure, calibration ends
    with pytest.raises(CalibrationError, match="no array for network input") as e:
        errors.raise_first()
    assert "\n" not in str(e.value)
    errors.raise_first()  # raised once


def test_errors_outside_se_deploy_name_the_callback(tmp_path):
    class Broken:
        batch_size = 1

        def next_pointers(self, names):
            raise MemoryError("cudaMalloc")

    errors = CallbackErrors()
    calib = _calibrator(tmp_path, Broken(), errors)
    assert calib.get_batch(["input"]) is None
    with pytest.raises(CalibrationError, match=r"^the INT8 calibrator's get_batch\(\) failed: MemoryError: cudaMalloc$"):
        errors.raise_first()


def test_cache_callbacks_keep_their_errors_too(tmp_path):
    errors = CallbackErrors()
    (tmp_path / "c.cache").write_bytes(b"garbage\n")
    calib = _calibrator(tmp_path, CalibrationFeeder([], 1, HostMemory()), errors)
    assert calib.read_calibration_cache() is None  # TensorRT would calibrate; the build then fails with the cause
    calib.write_calibration_cache(b"also garbage")  # the first error wins
    with pytest.raises(CalibrationError, match="c.cache is not a TensorRT calibration cache"):
        errors.raise_first()


def test_calibrator_factory_refuses_a_base_it_does_not_declare(tmp_path):
    """The API check verified the class against the declared bases only, so any other is a bug."""
    trt = _trt_stand_in()
    feeder = CalibrationFeeder([], 1, HostMemory())
    store, errors = CacheStore(tmp_path / "c.cache", "entropy"), CallbackErrors()
    with pytest.raises(InternalError, match="declares only IInt8EntropyCalibrator2, IInt8MinMaxCalibrator"):
        calibrator_from_base(trt.IInt8LegacyCalibrator, feeder, store, errors)
    with pytest.raises(CalibrationError, match="unknown calibrator 'legacy'"):
        make_calibrator(trt, "legacy", feeder, store, errors)
    assert calibrator_from_base.__trt_bases__ == ("IInt8EntropyCalibrator2", "IInt8MinMaxCalibrator")
    assert calibrator_from_base.__trt_majors__ == (8, 10)


def test_trt_bases_takes_class_names():
    for bad in ((), ("IInt8 Calibrator",), (object,)):
        with pytest.raises(ValueError, match="TensorRT class names"):
            trt_bases(*bad)
