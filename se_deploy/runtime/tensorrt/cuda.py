"""CUDA memory, streams, events and graphs for the TensorRT runner and calibrators.

Two implementations behind one small interface, so nothing else touches CUDA:

* ``cuda-python`` (``from cuda.bindings import runtime as cudart``), used by NVIDIA's
  TensorRT samples since 10.14;
* ``pycuda`` (common on Jetson), on the device's primary context so it shares memory
  with TensorRT.

``get_cuda_api(None)`` picks whichever is installed (cuda-python first); ``--cuda-api``
names one. Both are imported lazily. CUDA-graph capture is offered by the cuda-python
implementation.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Callable

import numpy as np

from se_deploy._util import lazy_import
from se_deploy.errors import EngineError, MissingDependencyError, UsageError

CUDA_PYTHON_HINT = "pip install cuda-python (matching your CUDA major version)"
PYCUDA_HINT = "pip install pycuda (on a Jetson: sudo apt install python3-pycuda, or pip with the CUDA toolkit on PATH)"


@dataclass
class DeviceBuffer:
    ptr: int
    nbytes: int
    _free: Callable[[], None]

    def free(self) -> None:
        if self.ptr:
            self._free()
            self.ptr = 0


class CudaApi:
    """The interface both implementations provide."""

    name = "abstract"

    def device_count(self) -> int: ...
    def device_info(self, index: int = 0) -> tuple[str, str]: ...  # (name, "major.minor")
    def alloc(self, nbytes: int) -> DeviceBuffer: ...
    def pinned(self, shape, dtype) -> np.ndarray: ...
    def stream(self): ...
    def stream_handle(self, stream) -> int: ...
    def synchronize(self, stream) -> None: ...
    def copy_htod(self, buf: DeviceBuffer, host: np.ndarray) -> None: ...
    def copy_htod_async(self, ptr: int, host: np.ndarray, stream) -> None: ...
    def copy_dtoh_async(self, host: np.ndarray, ptr: int, stream) -> None: ...
    def event(self): ...
    def record(self, event, stream) -> None: ...
    def elapsed_ms(self, start, end) -> float: ...
    def begin_capture(self, stream) -> None: ...
    def end_capture(self, stream): ...  # -> graph exec
    def launch_graph(self, graph_exec, stream) -> None: ...
    def close(self) -> None: ...


class CudaPythonApi(CudaApi):
    name = "cuda-python"

    def __init__(self) -> None:
        try:
            from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
        except ImportError:
            cudart = lazy_import("cuda.cudart", install_hint=CUDA_PYTHON_HINT, purpose="CUDA memory for TensorRT")
        self.rt = cudart
        self._pinned: list[int] = []
        self._graphs: list = []

    def _ok(self, result, what: str):
        err, *rest = result if isinstance(result, tuple) else (result,)
        if err != self.rt.cudaError_t.cudaSuccess:
            msg = self.rt.cudaGetErrorString(err)
            if isinstance(msg, tuple):
                msg = msg[-1]
            if isinstance(msg, bytes):
                msg = msg.decode(errors="replace")
            raise EngineError(f"CUDA {what} failed: {msg}")
        if not rest:
            return None
        return rest[0] if len(rest) == 1 else tuple(rest)

    def device_count(self) -> int:
        err, n = self.rt.cudaGetDeviceCount()
        return int(n) if err == self.rt.cudaError_t.cudaSuccess else 0

    def device_info(self, index: int = 0) -> tuple[str, str]:
        prop = self._ok(self.rt.cudaGetDeviceProperties(index), "cudaGetDeviceProperties")
        name = prop.name.decode(errors="replace") if isinstance(prop.name, bytes) else str(prop.name)
        return name.rstrip("\x00"), f"{prop.major}.{prop.minor}"

    def alloc(self, nbytes: int) -> DeviceBuffer:
        ptr = self._ok(self.rt.cudaMalloc(max(int(nbytes), 1)), "cudaMalloc")
        return DeviceBuffer(int(ptr), int(nbytes), lambda p=ptr: self._ok(self.rt.cudaFree(p), "cudaFree"))

    def pinned(self, shape, dtype) -> np.ndarray:
        dt = np.dtype(dtype)
        nbytes = max(int(np.prod(shape, dtype=np.int64)) * dt.itemsize, 1)
        ptr = int(self._ok(self.rt.cudaMallocHost(nbytes), "cudaMallocHost"))
        self._pinned.append(ptr)
        raw = (ctypes.c_byte * nbytes).from_address(ptr)
        return np.frombuffer(raw, dtype=np.uint8)[: int(np.prod(shape, dtype=np.int64)) * dt.itemsize] \
            .view(dt).reshape(shape)

    def stream(self):
        return self._ok(self.rt.cudaStreamCreate(), "cudaStreamCreate")

    def stream_handle(self, stream) -> int:
        return int(stream)

    def synchronize(self, stream) -> None:
        self._ok(self.rt.cudaStreamSynchronize(stream), "cudaStreamSynchronize")

    def copy_htod(self, buf: DeviceBuffer, host: np.ndarray) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._ok(self.rt.cudaMemcpy(buf.ptr, host.ctypes.data, host.nbytes, kind), "cudaMemcpy")

    def copy_htod_async(self, ptr: int, host: np.ndarray, stream) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._ok(self.rt.cudaMemcpyAsync(ptr, host.ctypes.data, host.nbytes, kind, stream), "cudaMemcpyAsync")

    def copy_dtoh_async(self, host: np.ndarray, ptr: int, stream) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._ok(self.rt.cudaMemcpyAsync(host.ctypes.data, ptr, host.nbytes, kind, stream), "cudaMemcpyAsync")

    def event(self):
        return self._ok(self.rt.cudaEventCreate(), "cudaEventCreate")

    def record(self, event, stream) -> None:
        self._ok(self.rt.cudaEventRecord(event, stream), "cudaEventRecord")

    def elapsed_ms(self, start, end) -> float:
        self._ok(self.rt.cudaEventSynchronize(end), "cudaEventSynchronize")
        return float(self._ok(self.rt.cudaEventElapsedTime(start, end), "cudaEventElapsedTime"))

    def begin_capture(self, stream) -> None:
        mode = self.rt.cudaStreamCaptureMode.cudaStreamCaptureModeGlobal
        self._ok(self.rt.cudaStreamBeginCapture(stream, mode), "cudaStreamBeginCapture")

    def end_capture(self, stream):
        graph = self._ok(self.rt.cudaStreamEndCapture(stream), "cudaStreamEndCapture")
        graph_exec = self._ok(self.rt.cudaGraphInstantiate(graph, 0), "cudaGraphInstantiate")
        self._graphs.append((graph, graph_exec))
        return graph_exec

    def launch_graph(self, graph_exec, stream) -> None:
        self._ok(self.rt.cudaGraphLaunch(graph_exec, stream), "cudaGraphLaunch")

    def close(self) -> None:
        for graph, graph_exec in self._graphs:
            self.rt.cudaGraphExecDestroy(graph_exec)
            self.rt.cudaGraphDestroy(graph)
        self._graphs.clear()
        for ptr in self._pinned:
            self.rt.cudaFreeHost(ptr)
        self._pinned.clear()


class PyCudaApi(CudaApi):
    name = "pycuda"

    def __init__(self) -> None:
        self.drv = lazy_import("pycuda.driver", install_hint=PYCUDA_HINT, purpose="CUDA memory for TensorRT")
        try:
            self.drv.init()
        except Exception as e:  # no driver / no GPU
            raise EngineError(f"pycuda cannot initialise CUDA (no NVIDIA GPU or driver?): {e}") from None
        self._ctx = None

    def _context(self):
        # TensorRT uses the CUDA runtime, which works on the primary context: share it.
        if self._ctx is None:
            self._ctx = self.drv.Device(0).retain_primary_context()
            self._ctx.push()
        return self._ctx

    def device_count(self) -> int:
        return int(self.drv.Device.count())

    def device_info(self, index: int = 0) -> tuple[str, str]:
        dev = self.drv.Device(index)
        major, minor = dev.compute_capability()
        return str(dev.name()), f"{major}.{minor}"

    def alloc(self, nbytes: int) -> DeviceBuffer:
        self._context()
        mem = self.drv.mem_alloc(max(int(nbytes), 1))
        return DeviceBuffer(int(mem), int(nbytes), mem.free)

    def pinned(self, shape, dtype) -> np.ndarray:
        self._context()
        return self.drv.pagelocked_empty(tuple(shape), np.dtype(dtype))

    def stream(self):
        self._context()
        return self.drv.Stream()

    def stream_handle(self, stream) -> int:
        return int(stream.handle)

    def synchronize(self, stream) -> None:
        stream.synchronize()

    def copy_htod(self, buf: DeviceBuffer, host: np.ndarray) -> None:
        self.drv.memcpy_htod(buf.ptr, host)

    def copy_htod_async(self, ptr: int, host: np.ndarray, stream) -> None:
        self.drv.memcpy_htod_async(ptr, host, stream)

    def copy_dtoh_async(self, host: np.ndarray, ptr: int, stream) -> None:
        self.drv.memcpy_dtoh_async(host, ptr, stream)

    def event(self):
        return self.drv.Event()

    def record(self, event, stream) -> None:
        event.record(stream)

    def elapsed_ms(self, start, end) -> float:
        end.synchronize()
        return float(end.time_since(start))

    def begin_capture(self, stream) -> None:
        raise UsageError("CUDA-graph replay needs --cuda-api cuda-python")

    def end_capture(self, stream):
        raise UsageError("CUDA-graph replay needs --cuda-api cuda-python")

    def launch_graph(self, graph_exec, stream) -> None:
        raise UsageError("CUDA-graph replay needs --cuda-api cuda-python")

    def close(self) -> None:
        if self._ctx is not None:
            self._ctx.pop()
            self._ctx = None


_IMPLS = {"cuda-python": CudaPythonApi, "pycuda": PyCudaApi}
CUDA_APIS = tuple(_IMPLS)


def get_cuda_api(name: str | None = None) -> CudaApi:
    """The named implementation, or the first one installed (cuda-python, then pycuda)."""
    if name is not None:
        if name not in _IMPLS:
            raise UsageError(f"--cuda-api {name!r} is not one of {', '.join(_IMPLS)}")
        return _IMPLS[name]()
    errors = []
    for impl in _IMPLS.values():
        try:
            return impl()
        except MissingDependencyError as e:
            errors.append(str(e))
    raise MissingDependencyError("neither cuda-python nor pycuda is installed (TensorRT needs one for device "
                                 f"memory): {CUDA_PYTHON_HINT}, or {PYCUDA_HINT}")
