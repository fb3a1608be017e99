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

from se_deploy.calibration.trt_cache import read_calibration_cache, write_calibration_cache
from se_deploy.engines.tensorrt.calibrator import (CacheStore, CalibrationFeeder, calibration_batches,
                                                   calibrator_from_base, make_calibrator)
from se_deploy.runtime.tensorrt._trt import trt_bases
from se_deploy.runtime.tensorrt.cuda import DeviceBuffer
from se_deploy.errors import CalibrationError, InputError, InternalError

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


def test_cache_of_another_algorithm_is_not_used(tmp_path, capsys):
    path = tmp_path / "c.cache"
    path.write_bytes(CACHE)
    assert CacheStore(path, "minmax").read() is None
    assert "holds EntropyCalibration2 scales, not MinMaxCalibration: recalibrating" in capsys.readouterr().err


def test_corrupt_cache_is_refused_and_nothing_is_written(tmp_path):
    path = tmp_path / "c.cache"
    store = CacheStore(path, "entropy")
    with pytest.raises(CalibrationError, match="cannot read"):
        store.write(b"calibration table from onnxruntime\nx 1.0\n")
    assert not path.exists() and list(tmp_path.iterdir()) == []
    path.write_bytes(b"TRT-100300-EntropyCalibration2\ninput: zz\n")
    with pytest.raises(InputError, match="expected 'tensor_name: hex scale'"):
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
    calib = make_calibrator(trt, kind, CalibrationFeeder(calibration_batches({"input": x}, 2), 1, mem), store)
    assert isinstance(calib, getattr(trt, base))
    assert calib.base_initialised == base  # the trampoline's __init__ ran
    assert calib.get_batch_size() == 1
    assert len(calib.get_batch(["input"])) == 1
    assert calib.read_calibration_cache() is None
    cache = CACHE.replace(b"EntropyCalibration2", b"MinMaxCalibration") if kind == "minmax" else CACHE
    calib.write_calibration_cache(memoryview(cache))
    assert calib.read_calibration_cache() == cache


def test_calibrator_factory_refuses_a_base_it_does_not_declare(tmp_path):
    """The API check verified the class against the declared bases only, so any other is a bug."""
    trt = _trt_stand_in()
    feeder = CalibrationFeeder([], 1, HostMemory())
    with pytest.raises(InternalError, match="declares only IInt8EntropyCalibrator2, IInt8MinMaxCalibrator"):
        calibrator_from_base(trt.IInt8LegacyCalibrator, feeder, CacheStore(tmp_path / "c.cache", "entropy"))
    with pytest.raises(CalibrationError, match="unknown calibrator 'legacy'"):
        make_calibrator(trt, "legacy", feeder, CacheStore(tmp_path / "c.cache", "entropy"))
    assert calibrator_from_base.__trt_bases__ == ("IInt8EntropyCalibrator2", "IInt8MinMaxCalibrator")
    assert calibrator_from_base.__trt_majors__ == (10,)


def test_trt_bases_takes_class_names():
    for bad in ((), ("IInt8 Calibrator",), (object,)):
        with pytest.raises(ValueError, match="TensorRT class names"):
            trt_bases(*bad)
