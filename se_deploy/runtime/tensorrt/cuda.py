"""CUDA memory, streams, events and graphs for the TensorRT runner and calibrators.

Two implementations behind one small interface, so nothing else touches CUDA:

* ``cuda-python`` (``from cuda.bindings import runtime as cudart``; before 12.6 ``from cuda
  import cudart``, removed in 13.0), used by NVIDIA's TensorRT samples since 10.14;
* ``pycuda`` (common on Jetson), on the device's primary context so it shares memory
  with TensorRT.

``get_cuda_api(None)`` picks the first one that is installed *and* can talk to the driver
(cuda-python first): cuda-python 13 links the CUDA 13 runtime and answers
``cudaErrorInsufficientDriver`` on a CUDA 12 driver (JetPack 6), where pycuda, built against
the local toolkit, still works. ``--cuda-api`` names one. Both are imported lazily.

Every stream, event, graph and page-locked host buffer an implementation creates is
tracked and released by :meth:`CudaApi.close` (the owner may release one earlier). Host
staging buffers are page-locked (``cudaMallocHost`` / ``pagelocked_empty``), so the async
copies really are asynchronous and the events around them time the copy alone.
CUDA-graph capture is offered by the cuda-python implementation; it uses the thread-local
capture mode, as trtexec does (``TrtCudaGraph::beginCapture`` in samples/common/sampleDevice.h).
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Callable

import numpy as np

from se_deploy._util import lazy_import
from se_deploy.errors import EngineError, MissingDependencyError, UsageError

CUDA_PYTHON_HINT = ("pip install cuda-python (matching your CUDA major version: cuda-python 12.x for a CUDA 12 "
                    "driver such as JetPack 6, 13.x needs a CUDA 13 driver)")
# Ubuntu's python3-pycuda package pulls Ubuntu's own CUDA toolkit, which does not match JetPack's: build from pip
PYCUDA_HINT = "pip install pycuda (it compiles against the CUDA toolkit: on a Jetson put /usr/local/cuda/bin on PATH)"


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

    def device_count(self) -> int:
        """Visible CUDA devices; 0 only when CUDA says there is none. Any other CUDA error (an
        old driver, a broken install) raises one EngineError line naming it."""
        ...

    def device_info(self, index: int = 0) -> tuple[str, str]: ...  # (name, "major.minor")
    def alloc(self, nbytes: int) -> DeviceBuffer: ...
    def pinned(self, nbytes: int) -> np.ndarray: ...  # page-locked uint8[nbytes]; freed by free_pinned or close
    def free_pinned(self, host: np.ndarray) -> None: ...
    def stream(self): ...
    def destroy_stream(self, stream) -> None: ...
    def stream_handle(self, stream) -> int: ...
    def synchronize(self, stream) -> None: ...
    def copy_htod(self, buf: DeviceBuffer, host: np.ndarray) -> None: ...
    def copy_htod_async(self, ptr: int, host: np.ndarray, stream) -> None: ...
    def copy_dtoh_async(self, host: np.ndarray, ptr: int, stream) -> None: ...
    def event(self): ...
    def destroy_event(self, event) -> None: ...
    def record(self, event, stream) -> None: ...
    def elapsed_ms(self, start, end) -> float: ...
    def begin_capture(self, stream) -> None: ...
    def end_capture(self, stream): ...  # -> graph exec
    def abort_capture(self, stream) -> None: ...  # end a failed capture, discard its graph, clear the error
    def launch_graph(self, graph_exec, stream) -> None: ...
    def destroy_graph(self, graph_exec) -> None: ...
    def close(self) -> None: ...


def _text(value) -> str:
    """cuda-python returns names/messages as ``(err, b"...")`` tuples or bytes."""
    if isinstance(value, tuple):
        value = value[-1]
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    return str(value)


class CudaPythonApi(CudaApi):
    name = "cuda-python"

    def __init__(self) -> None:
        try:
            from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
        except ImportError:
            cudart = lazy_import("cuda.cudart", install_hint=CUDA_PYTHON_HINT, purpose="CUDA memory for TensorRT")
        self.rt = cudart
        self._pinned: dict[int, int] = {}  # host address -> cudaMallocHost pointer
        self._graphs: dict[int, object] = {}  # id -> graph exec
        self._streams: dict[int, object] = {}
        self._events: dict[int, object] = {}

    def error_text(self, err) -> str:
        """``cudaErrorInsufficientDriver (CUDA driver version is insufficient for CUDA runtime version)``."""
        try:
            name = _text(self.rt.cudaGetErrorName(err))
        except Exception:  # an enum value the bindings cannot name
            name = str(err)
        try:
            msg = _text(self.rt.cudaGetErrorString(err))
        except Exception:
            msg = ""
        return f"{name} ({msg})" if msg and msg != name else name

    def _ok(self, result, what: str):
        err, *rest = result if isinstance(result, tuple) else (result,)
        if err != self.rt.cudaError_t.cudaSuccess:
            raise EngineError(f"CUDA {what} failed: {self.error_text(err)}")
        if not rest:
            return None
        return rest[0] if len(rest) == 1 else tuple(rest)

    def device_count(self) -> int:
        err, n = self.rt.cudaGetDeviceCount()
        if err == self.rt.cudaError_t.cudaSuccess:
            return int(n)
        if err == self.rt.cudaError_t.cudaErrorNoDevice:
            return 0
        raise EngineError(f"CUDA cudaGetDeviceCount failed through cuda-python: {self.error_text(err)}")

    def device_info(self, index: int = 0) -> tuple[str, str]:
        prop = self._ok(self.rt.cudaGetDeviceProperties(index), "cudaGetDeviceProperties")
        name = prop.name.decode(errors="replace") if isinstance(prop.name, bytes) else str(prop.name)
        return name.rstrip("\x00"), f"{prop.major}.{prop.minor}"

    def alloc(self, nbytes: int) -> DeviceBuffer:
        ptr = self._ok(self.rt.cudaMalloc(max(int(nbytes), 1)), "cudaMalloc")
        return DeviceBuffer(int(ptr), int(nbytes), lambda p=ptr: self._ok(self.rt.cudaFree(p), "cudaFree"))

    def pinned(self, nbytes: int) -> np.ndarray:
        n = max(int(nbytes), 1)
        ptr = int(self._ok(self.rt.cudaMallocHost(n), "cudaMallocHost"))
        host = np.frombuffer((ctypes.c_byte * n).from_address(ptr), dtype=np.uint8)
        self._pinned[ptr] = ptr
        return host

    def free_pinned(self, host: np.ndarray) -> None:
        ptr = self._pinned.pop(int(host.ctypes.data), None)
        if ptr is not None:
            self._ok(self.rt.cudaFreeHost(ptr), "cudaFreeHost")

    def stream(self):
        s = self._ok(self.rt.cudaStreamCreate(), "cudaStreamCreate")
        self._streams[id(s)] = s
        return s

    def destroy_stream(self, stream) -> None:
        if self._streams.pop(id(stream), None) is not None:
            self._ok(self.rt.cudaStreamDestroy(stream), "cudaStreamDestroy")

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
        ev = self._ok(self.rt.cudaEventCreate(), "cudaEventCreate")
        self._events[id(ev)] = ev
        return ev

    def destroy_event(self, event) -> None:
        if self._events.pop(id(event), None) is not None:
            self._ok(self.rt.cudaEventDestroy(event), "cudaEventDestroy")

    def record(self, event, stream) -> None:
        self._ok(self.rt.cudaEventRecord(event, stream), "cudaEventRecord")

    def elapsed_ms(self, start, end) -> float:
        self._ok(self.rt.cudaEventSynchronize(end), "cudaEventSynchronize")
        return float(self._ok(self.rt.cudaEventElapsedTime(start, end), "cudaEventElapsedTime"))

    def begin_capture(self, stream) -> None:
        # thread-local: another thread's CUDA calls neither join nor invalidate this capture (as trtexec)
        mode = self.rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
        self._ok(self.rt.cudaStreamBeginCapture(stream, mode), "cudaStreamBeginCapture")

    def end_capture(self, stream):
        graph = self._ok(self.rt.cudaStreamEndCapture(stream), "cudaStreamEndCapture")
        try:
            graph_exec = self._ok(self.rt.cudaGraphInstantiate(graph, 0), "cudaGraphInstantiate")
        finally:
            self.rt.cudaGraphDestroy(graph)  # the instantiated graph no longer needs its template
        self._graphs[id(graph_exec)] = graph_exec
        return graph_exec

    def abort_capture(self, stream) -> None:
        """What trtexec's ``endCaptureOnError`` does: end the capture; an invalidated capture yields no
        graph, any other yields one that cannot be used, so destroy it; then clear the sticky error."""
        err, graph = self.rt.cudaStreamEndCapture(stream)
        if err != self.rt.cudaError_t.cudaErrorStreamCaptureInvalidated and graph is not None and int(graph):
            self.rt.cudaGraphDestroy(graph)
        self.rt.cudaGetLastError()

    def launch_graph(self, graph_exec, stream) -> None:
        self._ok(self.rt.cudaGraphLaunch(graph_exec, stream), "cudaGraphLaunch")

    def destroy_graph(self, graph_exec) -> None:
        if self._graphs.pop(id(graph_exec), None) is not None:
            self._ok(self.rt.cudaGraphExecDestroy(graph_exec), "cudaGraphExecDestroy")

    def close(self) -> None:
        # release everything still tracked; errors here would hide the one that led to the close
        for graph_exec in self._graphs.values():
            self.rt.cudaGraphExecDestroy(graph_exec)
        for ev in self._events.values():
            self.rt.cudaEventDestroy(ev)
        for s in self._streams.values():
            self.rt.cudaStreamDestroy(s)
        for ptr in self._pinned.values():
            self.rt.cudaFreeHost(ptr)
        self._graphs.clear()
        self._events.clear()
        self._streams.clear()
        self._pinned.clear()


class PyCudaApi(CudaApi):
    name = "pycuda"

    def __init__(self) -> None:
        self.drv = lazy_import("pycuda.driver", install_hint=PYCUDA_HINT, purpose="CUDA memory for TensorRT")
        self._init_error: str | None = None
        try:
            self.drv.init()
        except Exception as e:  # no driver, no device, or a driver older than pycuda's toolkit
            self._init_error = str(e).strip() or type(e).__name__
        self._ctx = None
        self._pinned: dict[int, object] = {}  # host address -> HostAllocation

    def _context(self):
        # TensorRT uses the CUDA runtime, which works on the primary context: share it.
        if self._init_error is not None:
            raise EngineError(f"pycuda cannot initialise CUDA: {self._init_error}")
        if self._ctx is None:
            self._ctx = self.drv.Device(0).retain_primary_context()
            self._ctx.push()
        return self._ctx

    def device_count(self) -> int:
        if self._init_error is not None:
            if "NO_DEVICE" in self._init_error.upper():
                return 0
            raise EngineError(f"pycuda cannot initialise CUDA: {self._init_error}")
        return int(self.drv.Device.count())

    def device_info(self, index: int = 0) -> tuple[str, str]:
        dev = self.drv.Device(index)
        major, minor = dev.compute_capability()
        return str(dev.name()), f"{major}.{minor}"

    def alloc(self, nbytes: int) -> DeviceBuffer:
        self._context()
        mem = self.drv.mem_alloc(max(int(nbytes), 1))
        return DeviceBuffer(int(mem), int(nbytes), mem.free)

    def pinned(self, nbytes: int) -> np.ndarray:
        self._context()
        host = self.drv.pagelocked_empty((max(int(nbytes), 1),), np.uint8)
        self._pinned[int(host.ctypes.data)] = host.base
        return host

    def free_pinned(self, host: np.ndarray) -> None:
        alloc = self._pinned.pop(int(host.ctypes.data), None)
        if alloc is not None:
            alloc.free()

    def stream(self):
        self._context()
        return self.drv.Stream()

    def destroy_stream(self, stream) -> None:
        return None  # pycuda destroys a Stream with its last reference

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

    def destroy_event(self, event) -> None:
        return None  # pycuda destroys an Event with its last reference

    def record(self, event, stream) -> None:
        event.record(stream)

    def elapsed_ms(self, start, end) -> float:
        end.synchronize()
        return float(end.time_since(start))

    def begin_capture(self, stream) -> None:
        raise UsageError("CUDA-graph replay needs --cuda-api cuda-python")

    def end_capture(self, stream):
        raise UsageError("CUDA-graph replay needs --cuda-api cuda-python")

    def abort_capture(self, stream) -> None:
        return None

    def launch_graph(self, graph_exec, stream) -> None:
        raise UsageError("CUDA-graph replay needs --cuda-api cuda-python")

    def destroy_graph(self, graph_exec) -> None:
        return None

    def close(self) -> None:
        for alloc in self._pinned.values():
            alloc.free()
        self._pinned.clear()
        if self._ctx is not None:
            # pop it off this thread's stack, then release the primary-context reference retain took
            self._ctx.pop()
            self._ctx.detach()
            self._ctx = None


_IMPLS = {"cuda-python": CudaPythonApi, "pycuda": PyCudaApi}
CUDA_APIS = tuple(_IMPLS)


def get_cuda_api(name: str | None = None) -> CudaApi:
    """The named implementation, or the first one installed that can reach the driver (cuda-python, then
    pycuda). When every installed one fails, one EngineError line gives each one's CUDA error."""
    if name is not None:
        if name not in _IMPLS:
            raise UsageError(f"--cuda-api {name!r} is not one of {', '.join(_IMPLS)}")
        return _IMPLS[name]()
    failures = []
    for impl_name, impl in _IMPLS.items():
        try:
            api = impl()
        except MissingDependencyError:
            continue
        try:
            api.device_count()  # raises on any CUDA error but "no device"
        except EngineError as e:
            api.close()
            failures.append(f"{impl_name}: {e}")
            continue
        return api
    if failures:
        others = [n for n in _IMPLS if not any(f.startswith(n + ":") for f in failures)]
        hint = f"; installing {' or '.join(others)} may work where this fails" if others else ""
        raise EngineError("no CUDA binding can use the driver here (" + "; ".join(failures) + ")" + hint)
    raise MissingDependencyError("neither cuda-python nor pycuda is installed (TensorRT needs one for device "
                                 f"memory): {CUDA_PYTHON_HINT}, or {PYCUDA_HINT}")
