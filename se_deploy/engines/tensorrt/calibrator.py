"""TensorRT 10 implicit INT8 calibration: IInt8EntropyCalibrator2 / IInt8MinMaxCalibrator.

The calibrators read the same calibration data as the Q/DQ path and keep their cache in
TensorRT's own format (``TRT-<version>-EntropyCalibration2`` then ``tensor: <hex scale>``
lines; see se_deploy.calibration.trt_cache), so ``trtexec --int8 --calib=FILE`` can reuse
it. Everything but :func:`make_calibrator` and the class it instantiates is plain Python;
those touch TensorRT and serve 10.x only (TensorRT 11 removed calibrators).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterable, Iterator, Mapping

import numpy as np

from se_deploy._util import atomic_output
from se_deploy.calibration.trt_cache import parse_header, read_calibration_cache
from se_deploy.errors import CalibrationError, InputError
from se_deploy.runtime.tensorrt._trt import serves, trt_bases
from se_deploy.names import CalibMethod

# TensorRT's calibration algorithm (as its cache header names it) for each method it implements
ALGORITHMS = {CalibMethod.entropy: "EntropyCalibration2", CalibMethod.minmax: "MinMaxCalibration"}


class CacheStore:
    """The calibrator's cache file in TensorRT's format (se_deploy.calibration.trt_cache reads and
    checks it): read when it holds this algorithm's scales, written atomically and only when valid."""

    def __init__(self, path: str | Path, algorithm: str) -> None:
        if algorithm not in ALGORITHMS:
            raise CalibrationError(f"unknown calibrator {algorithm!r}; choose from {', '.join(ALGORITHMS)}")
        self.path = Path(path)
        self.algorithm = ALGORITHMS[algorithm]

    def read(self) -> bytes | None:
        """The cache bytes for TensorRT, or None (TensorRT then calibrates from the data)."""

        if not self.path.exists():
            return None
        header, _scales = read_calibration_cache(self.path)
        _version, algorithm = parse_header(header)
        if algorithm != self.algorithm:
            print(f"note: {self.path} holds {algorithm} scales, not {self.algorithm}: recalibrating",
                  file=sys.stderr)
            return None
        return self.path.read_bytes()

    def write(self, data) -> Path:
        """Store the cache TensorRT produced; refuse (one line) anything trtexec could not read back."""

        with atomic_output(self.path) as tmp:
            tmp.write_bytes(bytes(data))
            try:
                read_calibration_cache(tmp)
            except InputError as e:
                raise CalibrationError(f"TensorRT produced a calibration cache se-deploy cannot read: {e}") from None
        return self.path


def calibration_batches(arrays: Mapping[str, np.ndarray], batch_size: int,
                        max_batches: int | None = None) -> Iterator[dict[str, np.ndarray]]:
    """Full batches of ``batch_size`` samples per input; a last partial batch is dropped (TensorRT
    expects exactly ``get_batch_size()`` samples per call)."""
    n = min(len(a) for a in arrays.values())
    count = n // batch_size
    if count == 0:
        raise CalibrationError(f"calibration data has {n} samples, fewer than one batch of {batch_size}")
    if max_batches is not None:
        count = min(count, max_batches)
    for i in range(count):
        sl = slice(i * batch_size, (i + 1) * batch_size)
        yield {name: np.ascontiguousarray(a[sl]) for name, a in arrays.items()}


class CalibrationFeeder:
    """Copies calibration batches to device memory for TensorRT (no TensorRT types here)."""
    def __init__(self, batches: Iterable[Mapping[str, np.ndarray]], batch_size: int, cuda) -> None:
        self._batches = iter(batches)
        self.batch_size = batch_size
        self._cuda = cuda
        self._buffers: dict = {}
        self.fed = 0

    def next_pointers(self, names: list[str]) -> list[int] | None:
        batch = next(self._batches, None)
        if batch is None:
            return None
        missing = [n for n in names if n not in batch]
        if missing:
            raise CalibrationError(f"calibration data has no array for network input(s) {missing}; "
                                   f"it has {sorted(batch)}")
        ptrs = []
        for name in names:
            arr = np.ascontiguousarray(batch[name], dtype=np.float32)
            buf = self._buffers.get(name)
            if buf is None or buf.nbytes < arr.nbytes:
                if buf is not None:
                    buf.free()
                buf = self._cuda.alloc(arr.nbytes)
                self._buffers[name] = buf
            self._cuda.copy_htod(buf, arr)
            ptrs.append(buf.ptr)
        self.fed += 1
        return ptrs

    def close(self) -> None:
        for buf in self._buffers.values():
            buf.free()
        self._buffers.clear()


@serves(10)
@trt_bases("IInt8EntropyCalibrator2", "IInt8MinMaxCalibrator")
def calibrator_from_base(base: type, feeder: CalibrationFeeder, store: CacheStore):
    """A calibrator deriving from the TensorRT calibrator class ``base``, over ``feeder`` and ``store``.

    One class body serves every algorithm; TensorRT picks the algorithm from the base. The
    methods are the ones TensorRT calls back, so ``@trt_bases`` names every base this factory
    may get: the static API check verifies each method against each of them.
    """

    class Calibrator(base):
        def __init__(self) -> None:
            base.__init__(self)  # a pybind11 trampoline class must be initialised explicitly

        def get_batch_size(self) -> int:
            return feeder.batch_size

        def get_batch(self, names):
            return feeder.next_pointers(list(names))

        def read_calibration_cache(self):
            return store.read()

        def write_calibration_cache(self, cache) -> None:
            store.write(cache)

    return Calibrator()


@serves(10)
def make_calibrator(trt, kind: str, feeder: CalibrationFeeder, store: CacheStore):
    """A TensorRT 10 calibrator object of ``kind`` (entropy | minmax) over ``feeder``."""
    bases = {CalibMethod.entropy: trt.IInt8EntropyCalibrator2, CalibMethod.minmax: trt.IInt8MinMaxCalibrator}
    if kind not in bases:
        raise CalibrationError(f"unknown calibrator {kind!r}; choose from {', '.join(ALGORITHMS)}")
    return calibrator_from_base(bases[kind], feeder, store)
