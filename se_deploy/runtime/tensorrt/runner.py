"""TensorRT runner: loads a plan and runs it through named I/O tensors (TensorRT 8.6, 10.x, 11.x).

``set_input_shape`` / ``set_tensor_address`` / ``execute_async_v3`` on one CUDA stream, as
NVIDIA's samples and Polygraphy do. Device buffers and their page-locked host twins are sized
once for the largest profile shape, so their addresses never change; that lets an optional
CUDA graph be captured per input shape (one plain enqueue first, then capture and replay, as
trtexec does). Each call records host->device copy, compute and device->host copy separately
with CUDA events; because the host side is page-locked, the copies are truly asynchronous and
the events time the copies alone.

Outputs whose shape depends on the input *values* (``-1`` in ``context.get_tensor_shape`` once
every input shape is set) get their memory from an ``IOutputAllocator`` during the enqueue, as
in Polygraphy's runner; CUDA graphs are refused for them. A plan built for a DLA core gets
``runtime.DLA_core`` before it is deserialized, as trtexec does.

Follows the conventions in ``_trt.py``; ``tools/trt_api_check.py`` checks its TensorRT names.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

import numpy as np

from se_deploy.errors import EngineError, InputError, UsageError
from se_deploy.runtime.base import CopySplit, IOSpec, Runner
from se_deploy.runtime.tensorrt._trt import check_version, load_tensorrt
from se_deploy.runtime.tensorrt.cuda import CUDA_APIS, CudaApi, DeviceBuffer, get_cuda_api
from se_deploy.runtime.tensorrt.dtypes import numpy_dtype, type_name
from se_deploy.runtime.tensorrt.plan_meta import DeviceInfo, check_plan_compatible, read_plan_metadata

if TYPE_CHECKING:  # annotations only; TensorRT is imported lazily at run time
    import tensorrt as trt


@dataclass(frozen=True)
class TrtConfig:
    """How to run a TensorRT plan.

    ``cuda_api``: pycuda | cuda-python (None: the first installed one that reaches the driver).
    ``cuda_graph``: capture one CUDA graph per input shape and replay it.
    ``check_device``: refuse a plan whose sidecar names another TensorRT version or GPU.
    ``dla_core``: the DLA core a DLA plan runs on (None: the one its sidecar records, if any).
    """

    cuda_api: str | None = None
    cuda_graph: bool = False
    check_device: bool = True
    dla_core: int | None = None

    def __post_init__(self) -> None:
        if self.cuda_api is not None and self.cuda_api not in CUDA_APIS:
            raise UsageError(f"cuda_api {self.cuda_api!r} is not one of {', '.join(CUDA_APIS)}")
        if self.dla_core is not None and self.dla_core < 0:
            raise UsageError(f"dla_core must be >= 0, got {self.dla_core}")


def plan_dla_core(meta: dict | None) -> int | None:
    """The DLA core a plan's sidecar says it was built for (``options.dla_core``), else None."""
    core = ((meta or {}).get("options") or {}).get("dla_core")
    return core if isinstance(core, int) and not isinstance(core, bool) and core >= 0 else None


def _apply_runtime_dla(runtime: "trt.Runtime", core: int, plan: Path) -> None:
    """Select the DLA core before deserializing, as trtexec's ``LazilyDeserializedEngine::get`` does."""
    if runtime.num_DLA_cores == 0:
        raise EngineError(f"{plan} was built for DLA core {core}, but TensorRT sees no DLA cores on this device")
    if core >= runtime.num_DLA_cores:
        raise EngineError(f"{plan} was built for DLA core {core}, but this device has {runtime.num_DLA_cores} "
                          "DLA core(s): pass another dla_core")
    runtime.DLA_core = core


def _output_allocator(trt, cuda: CudaApi):
    """An ``IOutputAllocator`` handing TensorRT device memory for outputs of data-dependent shape.

    TensorRT's binding swallows exceptions raised in these callbacks (it prints them and takes
    a null pointer), so a failure is kept in ``error`` for the runner to raise after the enqueue.
    Only ``reallocate_output`` is written: every binding from 8.6 to 11.1 falls back to it when
    ``reallocate_output_async`` is not overridden, and 8.6 has no async variant.
    """

    class OutputAllocator(trt.IOutputAllocator):
        def __init__(self) -> None:
            trt.IOutputAllocator.__init__(self)  # a pybind11 trampoline class must be initialised explicitly
            self.buffers: dict[str, DeviceBuffer] = {}
            self.shapes: dict[str, tuple[int, ...]] = {}
            self.error: BaseException | None = None

        def reallocate_output(self, tensor_name, memory, size, alignment):
            try:
                buf = self.buffers.get(tensor_name)
                if buf is None or buf.nbytes < int(size):
                    if buf is not None:
                        buf.free()
                        del self.buffers[tensor_name]
                    buf = cuda.alloc(max(int(size), 1))
                    self.buffers[tensor_name] = buf
                if alignment and buf.ptr % int(alignment):
                    raise EngineError(f"device memory for output {tensor_name!r} is not {alignment}-byte aligned")
                return buf.ptr
            except Exception as e:  # re-raised by the runner after the enqueue
                self.error = self.error or e
                return 0  # a null pointer: TensorRT fails the enqueue

        def notify_shape(self, tensor_name, shape):
            self.shapes[tensor_name] = tuple(int(d) for d in shape)

    return OutputAllocator()


class TrtRunner(Runner):
    backend = "tensorrt"
    config_class = TrtConfig

    _engine: "trt.ICudaEngine"
    _context: "trt.IExecutionContext"
    _runtime: "trt.Runtime"

    def __init__(self, plan_path: str | os.PathLike, config: TrtConfig | None = None) -> None:
        super().__init__()
        self.plan_path = Path(plan_path)
        self.config = config or TrtConfig()
        self.cuda_api_name = self.config.cuda_api
        self.cuda_graph = self.config.cuda_graph
        self.check_device = self.config.check_device
        self._cuda: CudaApi | None = None
        self._inputs: list[IOSpec] = []
        self._outputs: list[IOSpec] = []
        self._dtypes: dict[str, np.dtype] = {}
        self._buffers: dict[str, DeviceBuffer] = {}
        self._host: dict[str, np.ndarray] = {}  # page-locked uint8 staging buffers
        self._dynamic: list[str] = []  # outputs of data-dependent shape
        self._allocator = None
        self._graphs: dict[tuple, object] = {}
        self._last_key: tuple | None = None  # the input shapes the context last ran with
        self._shapes: dict[str, tuple] = {}
        self._stream = None
        self._events: list = []
        self._trt_version = ""
        self._dla_core: int | None = None

    # lifecycle -------------------------------------------------------------
    def activate(self) -> None:
        if not self.plan_path.is_file():
            raise InputError(f"TensorRT plan not found: {self.plan_path}")
        trt = load_tensorrt("running TensorRT engines")
        check_version(trt)
        self._trt_version = str(trt.__version__)
        cuda = get_cuda_api(self.cuda_api_name)
        self._cuda = cuda
        if cuda.device_count() == 0:
            raise EngineError("no NVIDIA GPU is visible to CUDA here")
        meta = read_plan_metadata(self.plan_path)
        if self.check_device:
            name, cc = cuda.device_info(0)
            check_plan_compatible(self.plan_path, meta, DeviceInfo(self._trt_version, name, cc))
        logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(logger)
        self._dla_core = self.config.dla_core if self.config.dla_core is not None else plan_dla_core(meta)
        if self._dla_core is not None:
            _apply_runtime_dla(self._runtime, self._dla_core, self.plan_path)
        self._engine = self._runtime.deserialize_cuda_engine(self.plan_path.read_bytes())
        if self._engine is None:
            raise EngineError(f"TensorRT {self._trt_version} cannot load {self.plan_path} (built with another "
                              "TensorRT version or for another GPU?): rebuild it on this device")
        self._context = self._engine.create_execution_context()
        if self._context is None:
            raise EngineError(f"TensorRT could not create an execution context for {self.plan_path} (out of device "
                              "memory?)")
        self._stream = cuda.stream()
        self._events = [cuda.event() for _ in range(4)]
        self._describe_io(trt)
        self._allocate(trt)

    def deactivate(self) -> None:
        # TensorRT objects first, while the CUDA context and the memory they point at still exist
        self._context = None
        self._engine = None
        self._runtime = None
        cuda = self._cuda
        for buf in self._buffers.values():
            buf.free()
        self._buffers.clear()
        if self._allocator is not None:
            for buf in self._allocator.buffers.values():
                buf.free()
            self._allocator = None
        if cuda is not None:
            for graph in self._graphs.values():
                cuda.destroy_graph(graph)
            for ev in self._events:
                cuda.destroy_event(ev)
            if self._stream is not None:
                cuda.destroy_stream(self._stream)
            for host in self._host.values():
                cuda.free_pinned(host)
            cuda.close()
        self._graphs.clear()
        self._events = []
        self._stream = None
        self._host.clear()
        self._last_key = None
        self._cuda = None

    # metadata --------------------------------------------------------------
    def _describe_io(self, trt) -> None:
        self._inputs, self._outputs = [], []
        for i in range(self._engine.num_io_tensors):
            name = self._engine.get_tensor_name(i)
            is_input = self._engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            if is_input and self._engine.is_shape_inference_io(name):
                raise EngineError(f"input {name!r} is a shape tensor (TensorRT reads it from host memory): "
                                  "se-deploy runs engines whose inputs are all data tensors")
            dtype = numpy_dtype(type_name(self._engine.get_tensor_dtype(name)), name)
            shape = tuple(int(d) if int(d) >= 0 else None for d in self._engine.get_tensor_shape(name))
            self._dtypes[name] = dtype
            spec = IOSpec(name, shape, dtype.name)
            (self._inputs if is_input else self._outputs).append(spec)

    @property
    def inputs(self) -> list[IOSpec]:
        return list(self._inputs)

    @property
    def outputs(self) -> list[IOSpec]:
        return list(self._outputs)

    def describe(self) -> dict:
        return {"backend": self.backend, "tensorrt_version": self._trt_version, "plan": str(self.plan_path),
                "cuda_api": self._cuda.name if self._cuda else self.cuda_api_name, "cuda_graph": self.cuda_graph,
                "dla_core": self._dla_core, "data_dependent_outputs": list(self._dynamic)}

    # buffers ---------------------------------------------------------------
    def _max_shape(self, spec: IOSpec) -> tuple[int, ...]:
        if all(isinstance(d, int) for d in spec.shape):
            return tuple(spec.shape)
        # profile 0: (min, opt, max)
        return tuple(int(d) for d in self._engine.get_tensor_profile_shape(spec.name, 0)[2])

    def _nbytes(self, name: str, shape) -> int:
        return int(np.prod(shape, dtype=np.int64)) * self._dtypes[name].itemsize

    def _set_address(self, name: str, ptr: int) -> None:
        if not self._context.set_tensor_address(name, ptr):
            raise EngineError(f"TensorRT refused the device address of tensor {name!r} (set_tensor_address)")

    def _allocate(self, trt) -> None:
        cuda = self._cuda
        for spec in self._inputs:
            shape = self._max_shape(spec)
            if not self._context.set_input_shape(spec.name, shape):
                raise EngineError(f"TensorRT refused the profile's largest shape {shape} for input {spec.name!r}")
            nbytes = self._nbytes(spec.name, shape)
            self._buffers[spec.name] = cuda.alloc(nbytes)
            self._host[spec.name] = cuda.pinned(nbytes)
        for spec in self._outputs:
            shape = tuple(int(d) for d in self._context.get_tensor_shape(spec.name))
            if any(d < 0 for d in shape):  # known only once the engine has run (data-dependent)
                self._dynamic.append(spec.name)
                continue
            nbytes = self._nbytes(spec.name, shape)
            self._buffers[spec.name] = cuda.alloc(nbytes)
            self._host[spec.name] = cuda.pinned(nbytes)
        for name, buf in self._buffers.items():
            self._set_address(name, buf.ptr)
        if self._dynamic:
            if self.cuda_graph:
                raise UsageError(f"output(s) {', '.join(self._dynamic)} of {self.plan_path.name} have data-dependent "
                                 "shapes: TensorRT allocates them during the enqueue, which a CUDA graph cannot "
                                 "capture; run without cuda_graph")
            self._allocator = _output_allocator(trt, cuda)
            for name in self._dynamic:
                if not self._context.set_output_allocator(name, self._allocator):
                    raise EngineError(f"TensorRT refused the output allocator for {name!r}")
        self._shapes = {}

    def _host_view(self, name: str, shape: tuple) -> np.ndarray:
        nbytes = self._nbytes(name, shape)
        host = self._host.get(name)
        if host is None or host.nbytes < nbytes:  # a data-dependent output larger than any before
            if host is not None:
                self._cuda.free_pinned(host)
            host = self._host[name] = self._cuda.pinned(nbytes)
        return host[:nbytes].view(self._dtypes[name]).reshape(shape)

    # inference -------------------------------------------------------------
    def _infer(self, feed: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], CopySplit]:
        cuda = self._cuda
        stream = self._stream
        key = tuple(tuple(feed[s.name].shape) for s in self._inputs)
        for spec in self._inputs:
            arr = feed[spec.name]
            if arr.nbytes > self._buffers[spec.name].nbytes:
                raise InputError(f"input {spec.name!r} shape {arr.shape} exceeds the engine's profile maximum")
            if self._shapes.get(spec.name) != tuple(arr.shape):
                if not self._context.set_input_shape(spec.name, tuple(arr.shape)):
                    raise InputError(f"input {spec.name!r} shape {arr.shape} is outside the engine's profile")
                self._shapes[spec.name] = tuple(arr.shape)
        if self.cuda_graph:
            self._ready_graph(key)  # outside the timed span: capture, or re-prime after a shape change
        staged = {}
        for spec in self._inputs:
            view = self._host_view(spec.name, tuple(feed[spec.name].shape))
            np.copyto(view, feed[spec.name], casting="no")
            staged[spec.name] = view
        outs = {spec.name: self._host_view(spec.name, tuple(int(d) for d in self._context.get_tensor_shape(spec.name)))
                for spec in self._outputs if spec.name not in self._dynamic}
        ev = self._events
        cuda.record(ev[0], stream)
        for name, view in staged.items():
            cuda.copy_htod_async(self._buffers[name].ptr, view, stream)
        cuda.record(ev[1], stream)
        if self.cuda_graph:
            cuda.launch_graph(self._graphs[key], stream)
        else:
            self._execute()
        self._last_key = key
        cuda.record(ev[2], stream)
        for name, view in outs.items():
            cuda.copy_dtoh_async(view, self._buffers[name].ptr, stream)
        for name in self._dynamic:
            view = self._host_view(name, self._dynamic_shape(name))
            cuda.copy_dtoh_async(view, self._allocator.buffers[name].ptr, stream)
            outs[name] = view
        cuda.record(ev[3], stream)
        cuda.synchronize(stream)
        split = CopySplit(h2d_ms=cuda.elapsed_ms(ev[0], ev[1]), compute_ms=cuda.elapsed_ms(ev[1], ev[2]),
                          d2h_ms=cuda.elapsed_ms(ev[2], ev[3]))
        # the staging buffers are reused by the next call: hand out copies
        return {s.name: outs[s.name].copy() for s in self._outputs}, split

    def _execute(self) -> None:
        ok = self._context.execute_async_v3(self._cuda.stream_handle(self._stream))
        err = self._allocator.error if self._allocator is not None else None
        if err is not None:
            self._allocator.error = None
            raise EngineError(f"allocating a data-dependent output failed: {err}")
        if not ok:
            raise EngineError("TensorRT execute_async_v3 failed (see the TensorRT messages above)")

    def _dynamic_shape(self, name: str) -> tuple[int, ...]:
        shape = self._allocator.shapes.get(name)
        if shape is None:  # TensorRT reports it during the enqueue; wait for the enqueue to finish
            self._cuda.synchronize(self._stream)
            shape = self._allocator.shapes.get(name)
        if shape is None or name not in self._allocator.buffers:
            raise EngineError(f"TensorRT ran but never reported the shape of data-dependent output {name!r}")
        return shape

    def _ready_graph(self, key: tuple) -> None:
        """Capture the CUDA graph for these input shapes (once), or bring the context to these shapes
        before replaying one captured earlier.

        As trtexec (``IterationStd::createEnqueueFunction``): one plain enqueue first, so that the
        capture holds no initialisation work, then the captured enqueue, whose failure ends the
        capture and discards the graph. A graph holds the kernels of the shapes it was captured
        with, but the context keeps shape-dependent state of its own: after the context ran other
        shapes, one plain enqueue with these shapes precedes the replay.
        """
        cuda, stream = self._cuda, self._stream
        if key in self._graphs:
            if self._last_key != key:
                self._execute()
                cuda.synchronize(stream)
                self._last_key = key
            return
        self._execute()
        cuda.synchronize(stream)
        cuda.begin_capture(stream)
        try:
            ok = self._context.execute_async_v3(cuda.stream_handle(stream))
        except BaseException:
            cuda.abort_capture(stream)
            raise
        if not ok:
            cuda.abort_capture(stream)
            raise EngineError("TensorRT execute_async_v3 failed while capturing a CUDA graph (see the TensorRT "
                              "messages above): run without cuda_graph")
        self._graphs[key] = cuda.end_capture(stream)
        self._last_key = key
