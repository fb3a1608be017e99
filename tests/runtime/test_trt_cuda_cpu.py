"""The CUDA module's error handling, on CPU: which CUDA answers mean "no GPU" and which are errors to report.

No CUDA binding runs here. ``CudartAnswers`` stands in for ``cuda.bindings.runtime`` only as far as
the calls under test go, returning what the real binding returns (``(cudaError_t, value)`` tuples;
``cudaGetErrorName`` as ``(cudaError_t.cudaSuccess, b"name")``), so these tests check se-deploy's
reading of those answers, not CUDA. The GPU paths are in tests/engines/test_trt_gpu.py.
"""

from __future__ import annotations

import enum

import pytest

from se_deploy.errors import EngineError, MissingDependencyError
from se_deploy.runtime.tensorrt import cuda as cuda_module
from se_deploy.runtime.tensorrt.cuda import CudaApi, CudaPythonApi, get_cuda_api


class cudaError_t(enum.IntEnum):  # the values of CUDA's cudaError enum
    cudaSuccess = 0
    cudaErrorInsufficientDriver = 35
    cudaErrorNoDevice = 100
    cudaErrorStreamCaptureInvalidated = 901


MESSAGES = {35: "CUDA driver version is insufficient for CUDA runtime version", 100: "no CUDA-capable device is detected"}


class CudartAnswers:
    cudaError_t = cudaError_t

    def __init__(self, err: cudaError_t, count: int = 0) -> None:
        self.err, self.count = err, count

    def cudaGetDeviceCount(self):
        return self.err, self.count

    def cudaGetErrorName(self, err):
        return cudaError_t.cudaSuccess, err.name.encode()

    def cudaGetErrorString(self, err):
        return cudaError_t.cudaSuccess, MESSAGES.get(int(err), "").encode()


def _api(err, count=0) -> CudaPythonApi:
    api = CudaPythonApi.__new__(CudaPythonApi)  # skip the import of cuda-python
    api.rt = CudartAnswers(err, count)
    api._pinned, api._graphs, api._streams, api._events = {}, {}, {}, {}
    return api


def test_device_count_reports_devices_and_no_device():
    assert _api(cudaError_t.cudaSuccess, 2).device_count() == 2
    assert _api(cudaError_t.cudaErrorNoDevice).device_count() == 0  # the one error that means "no GPU"


def test_other_cuda_errors_are_reported_not_read_as_no_gpu():
    """cuda-python 13 on a CUDA 12 driver (JetPack 6) answers cudaErrorInsufficientDriver (35)."""
    with pytest.raises(EngineError) as e:
        _api(cudaError_t.cudaErrorInsufficientDriver).device_count()
    assert str(e.value) == ("CUDA cudaGetDeviceCount failed through cuda-python: cudaErrorInsufficientDriver (CUDA "
                            "driver version is insufficient for CUDA runtime version)")


class _Impl(CudaApi):
    """An implementation whose driver answer is given: a count, or an EngineError."""

    closed: list = []

    def __init__(self, answer) -> None:
        self.answer = answer

    def device_count(self) -> int:
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer

    def close(self) -> None:
        _Impl.closed.append(self.name)


def _impls(monkeypatch, **answers):
    """Replace the implementations: name -> answer (an int, an EngineError, or None for "not installed")."""
    table = {}
    for name, answer in answers.items():
        def make(answer=answer, name=name):
            if answer is None:
                raise MissingDependencyError(f"{name} is not installed")
            impl = _Impl(answer)
            impl.name = name
            return impl
        table[name.replace("_", "-")] = make
    monkeypatch.setattr(cuda_module, "_IMPLS", table)
    _Impl.closed = []


def test_the_first_binding_that_reaches_the_driver_is_used(monkeypatch):
    _impls(monkeypatch, cuda_python=EngineError("CUDA cudaGetDeviceCount failed through cuda-python: "
                                                "cudaErrorInsufficientDriver"), pycuda=1)
    api = get_cuda_api()
    assert api.name == "pycuda" and _Impl.closed == ["cuda_python"]
    _impls(monkeypatch, cuda_python=0, pycuda=1)
    assert get_cuda_api().name == "cuda_python"  # no GPU is an answer, not a failure: the caller reports it


def test_when_every_binding_fails_each_error_is_named(monkeypatch):
    _impls(monkeypatch, cuda_python=EngineError("cudaErrorInsufficientDriver"), pycuda=None)
    with pytest.raises(EngineError) as e:
        get_cuda_api()
    msg = str(e.value)
    assert msg.startswith("no CUDA binding can use the driver here (cuda-python: cudaErrorInsufficientDriver)")
    assert "installing pycuda may work where this fails" in msg and "\n" not in msg
    _impls(monkeypatch, cuda_python=None, pycuda=None)
    with pytest.raises(MissingDependencyError, match="neither cuda-python nor pycuda is installed"):
        get_cuda_api()
