"""TensorRT 8.6/10 implicit INT8 calibration: IInt8EntropyCalibrator2 / IInt8MinMaxCalibrator.

The calibrators read the same calibration data as the Q/DQ path and keep their cache in
TensorRT's own format (``TRT-<version>-EntropyCalibration2`` then ``tensor: <hex scale>``
lines; see se_deploy.calibration.trt_cache), so ``trtexec --int8 --calib=FILE`` can reuse an
EntropyCalibration2 cache. Everything but :func:`make_calibrator` and the class it
instantiates is plain Python; those touch TensorRT and serve 8.6 and 10.x only (TensorRT 11
removed calibrators).

TensorRT's Python binding catches every exception a calibrator callback raises, prints
``[ERROR] Exception caught in get_batch(): ...`` and answers TensorRT as if nothing happened
(``get_batch``: no more batches; ``read_calibration_cache``: no cache; ``write_calibration_cache``:
nothing), so the build goes on and fails, or succeeds on partial data, for another reason
(``python/src/infer/pyInt8.cpp``, 8.6 to 10.16). The callbacks here therefore never let an
exception reach the binding: :class:`CallbackErrors` keeps the first one, and the builder
raises it as the build's error once ``build_serialized_network`` returns.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping, TypeVar

import numpy as np

from se_deploy._util import atomic_output
from se_deploy.calibration.trt_cache import parse_header, trt_version_digits
from se_deploy.errors import CalibrationError, InputError, SeDeployError
from se_deploy.runtime.tensorrt._trt import serves, trt_bases
from se_deploy.names import CalibMethod

# TensorRT's calibration algorithm (as its cache header names it) for each method it implements
ALGORITHMS = {CalibMethod.entropy: "EntropyCalibration2", CalibMethod.minmax: "MinMaxCalibration"}

T = TypeVar("T")


def _quiet(msg: str) -> None:
    return None


def _header(data: bytes, source: str) -> tuple[str, str]:
    """(version digits, algorithm) of a cache's first line; CalibrationError when it is not a TensorRT cache."""
    first = data.split(b"\n", 1)[0].decode("utf-8", "replace").strip()
    try:
        return parse_header(first)
    except InputError:
        raise CalibrationError(f"{source} is not a TensorRT calibration cache: its first line is {first[:60]!r}, "
                               "not TRT-<version>-<algorithm>") from None


class CacheStore:
    """The calibrator's cache file in TensorRT's format.

    TensorRT reads the scales itself; what decides whether it uses them is the header, which must
    name the algorithm of the calibrator reading it and (as far as public reports show) the very
    TensorRT version (``trt_version``, e.g. ``"10.3.0.30"``). A cache written for another one is not
    handed to TensorRT: it calibrates from the data instead and the cache is rewritten. The bytes
    TensorRT produces are stored verbatim, atomically, once their header checks out.
    """

    def __init__(self, path: str | Path, algorithm: str, *, trt_version: str | None = None,
                 log: Callable[[str], None] = _quiet) -> None:
        if algorithm not in ALGORITHMS:
            raise CalibrationError(f"unknown calibrator {algorithm!r}; choose from {', '.join(ALGORITHMS)}")
        self.path = Path(path)
        self.algorithm = ALGORITHMS[algorithm]
        self.digits = trt_version_digits(".".join(str(trt_version).split(".")[:3])) if trt_version else None
        self.trt_version = trt_version
        self.log = log

    def read(self) -> bytes | None:
        """The cache bytes for TensorRT, or None (TensorRT then calibrates from the data)."""
        if not self.path.exists():
            return None
        data = self.path.read_bytes()
        digits, algorithm = _header(data, str(self.path))
        if algorithm != self.algorithm:
            self.log(f"note: {self.path} holds {algorithm} scales, not {self.algorithm}: recalibrating (the cache "
                     "is rewritten)")
            return None
        if self.digits is not None and digits != self.digits:
            self.log(f"note: {self.path} was written for TensorRT {digits} (header), this is TensorRT "
                     f"{self.trt_version} ({self.digits}): recalibrating (the cache is rewritten)")
            return None
        return data

    def write(self, data) -> Path:
        """Store the cache TensorRT produced; refuse (one line) anything that is not a calibration cache."""
        blob = bytes(data)
        _digits, algorithm = _header(blob, "the cache TensorRT produced")
        if algorithm != self.algorithm:
            raise CalibrationError(f"TensorRT wrote a {algorithm} cache for the {self.algorithm} calibrator")
        with atomic_output(self.path) as tmp:
            tmp.write_bytes(blob)
        return self.path


class CallbackErrors:
    """The first exception raised inside a TensorRT callback, kept to be raised after the build.

    ``call(where, fn, *args, fallback=...)`` runs ``fn``; when it raises, the exception is kept
    (the first one wins: later ones usually follow from it) and ``fallback`` is what TensorRT
    gets, the answer its binding would have given. :meth:`raise_first` raises it once the TensorRT
    call that triggered the callbacks has returned.
    """

    def __init__(self) -> None:
        self.where: str | None = None
        self.error: BaseException | None = None

    def call(self, where: str, fn: Callable[..., T], *args, fallback: T) -> T:
        try:
            return fn(*args)
        except Exception as e:  # TensorRT's binding would print and swallow it
            if self.error is None:
                self.where, self.error = where, e
            return fallback

    def raise_first(self) -> None:
        err, where = self.error, self.where
        if err is None:
            return
        self.error = self.where = None
        if isinstance(err, SeDeployError):
            raise err
        raise CalibrationError(f"the INT8 calibrator's {where}() failed: {type(err).__name__}: {err}") from err


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


@serves(8, 10)
@trt_bases("IInt8EntropyCalibrator2", "IInt8MinMaxCalibrator")
def calibrator_from_base(base: type, feeder: CalibrationFeeder, store: CacheStore, errors: CallbackErrors):
    """A calibrator deriving from the TensorRT calibrator class ``base``, over ``feeder`` and ``store``.

    One class body serves every algorithm; TensorRT picks the algorithm from the base. The
    methods are the ones TensorRT calls back, so ``@trt_bases`` names every base this factory
    may get: the static API check verifies each method against each of them. Each method runs
    through ``errors`` (see :class:`CallbackErrors`), so no exception reaches TensorRT's binding.
    """

    class Calibrator(base):
        def __init__(self) -> None:
            base.__init__(self)  # a pybind11 trampoline class must be initialised explicitly

        def get_batch_size(self) -> int:
            return feeder.batch_size

        def get_batch(self, names):
            # after a failure, no more batches: TensorRT then ends calibration and the build fails with it
            if errors.error is not None:
                return None
            return errors.call("get_batch", feeder.next_pointers, list(names), fallback=None)

        def read_calibration_cache(self):
            return errors.call("read_calibration_cache", store.read, fallback=None)

        def write_calibration_cache(self, cache) -> None:
            errors.call("write_calibration_cache", store.write, cache, fallback=None)

    return Calibrator()


@serves(8, 10)
def make_calibrator(trt, kind: str, feeder: CalibrationFeeder, store: CacheStore, errors: CallbackErrors):
    """A TensorRT 8.6/10 calibrator object of ``kind`` (entropy | minmax) over ``feeder``."""
    bases = {CalibMethod.entropy: trt.IInt8EntropyCalibrator2, CalibMethod.minmax: trt.IInt8MinMaxCalibrator}
    if kind not in bases:
        raise CalibrationError(f"unknown calibrator {kind!r}; choose from {', '.join(ALGORITHMS)}")
    return calibrator_from_base(bases[kind], feeder, store, errors)
