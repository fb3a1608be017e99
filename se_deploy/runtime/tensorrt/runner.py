"""TensorRT runner: loads a plan and runs it through named I/O tensors (TensorRT >= 10).

``set_input_shape`` / ``set_tensor_address`` / ``execute_async_v3`` on one CUDA stream.
Device buffers are sized once for the largest profile shape, so their addresses never
change; that lets an optional CUDA graph be captured per input shape (one enqueue first,
then capture and replay). Each call records host->device copy, compute and
device->host copy separately (CUDA events).

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
from se_deploy.runtime.tensorrt._trt import load_tensorrt, trt_major
from se_deploy.runtime.tensorrt.cuda import CUDA_APIS, CudaApi, DeviceBuffer, get_cuda_api
from se_deploy.runtime.tensorrt.plan_meta import DeviceInfo, check_plan_compatible, read_plan_metadata

if TYPE_CHECKING:  # annotations only; TensorRT is imported lazily at run time
    import tensorrt as trt


@dataclass(frozen=True)
class TrtConfig:
    """How to run a TensorRT plan.

    ``cuda_api``: pycuda | cuda-python (None: whichever is installed, cuda-python first).
    ``cuda_graph``: capture one CUDA graph per input shape and replay it.
    ``check_device``: refuse a plan whose sidecar names another TensorRT version or GPU.
    """

    cuda_api: str | None = None
    cuda_graph: bool = False
    check_device: bool = True

    def __post_init__(self) -> None:
        if self.cuda_api is not None and self.cuda_api not in CUDA_APIS:
            raise UsageError(f"cuda_api {self.cuda_api!r} is not one of {', '.join(CUDA_APIS)}")


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
        self._buffers: dict[str, DeviceBuffer] = {}
        self._graphs: dict[tuple, object] = {}
        self._shapes: dict[str, tuple] = {}
        self._trt_version = ""

    # lifecycle -------------------------------------------------------------
    def activate(self) -> None:
        if not self.plan_path.is_file():
            raise InputError(f"TensorRT plan not found: {self.plan_path}")
        trt = load_tensorrt("running TensorRT engines")
        major = trt_major(trt)
        if major < 10:
            raise EngineError(f"TensorRT {trt.__version__} is too old: se-deploy runs plans with TensorRT >= 10")
        self._trt_version = str(trt.__version__)
        cuda = get_cuda_api(self.cuda_api_name)
        self._cuda = cuda
        if cuda.device_count() == 0:
            raise EngineError("no NVIDIA GPU is visible to CUDA here")
        if self.check_device:
            name, cc = cuda.device_info(0)
            check_plan_compatible(self.plan_path, read_plan_metadata(self.plan_path),
                                  DeviceInfo(self._trt_version, name, cc))
        logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(logger)
        self._engine = self._runtime.deserialize_cuda_engine(self.plan_path.read_bytes())
        if self._engine is None:
            raise EngineError(f"TensorRT {self._trt_version} cannot load {self.plan_path} (built with another "
                              "TensorRT version or for another GPU?): rebuild it on this device")
        self._context = self._engine.create_execution_context()
        self._stream = cuda.stream()
        self._events = [cuda.event() for _ in range(4)]
        self._describe_io(trt)
        self._allocate(trt)

    def deactivate(self) -> None:
        for buf in self._buffers.values():
            buf.free()
        self._buffers.clear()
        self._graphs.clear()
        if self._cuda is not None:
            self._cuda.close()
        self._cuda = None
        self._context = None
        self._engine = None
        self._runtime = None

    # metadata --------------------------------------------------------------
    def _describe_io(self, trt) -> None:
        self._inputs, self._outputs = [], []
        for i in range(self._engine.num_io_tensors):
            name = self._engine.get_tensor_name(i)
            shape = tuple(int(d) if int(d) >= 0 else None for d in self._engine.get_tensor_shape(name))
            dtype = np.dtype(trt.nptype(self._engine.get_tensor_dtype(name))).name
            spec = IOSpec(name, shape, dtype)
            if self._engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                self._inputs.append(spec)
            else:
                self._outputs.append(spec)

    @property
    def inputs(self) -> list[IOSpec]:
        return list(self._inputs)

    @property
    def outputs(self) -> list[IOSpec]:
        return list(self._outputs)

    def describe(self) -> dict:
        return {"backend": self.backend, "tensorrt_version": self._trt_version, "plan": str(self.plan_path),
                "cuda_api": self._cuda.name if self._cuda else self.cuda_api_name, "cuda_graph": self.cuda_graph}

    # buffers ---------------------------------------------------------------
    def _max_shape(self, spec: IOSpec) -> tuple[int, ...]:
        if all(isinstance(d, int) for d in spec.shape):
            return tuple(spec.shape)
        # profile 0: (min, opt, max)
        return tuple(int(d) for d in self._engine.get_tensor_profile_shape(spec.name, 0)[2])

    def _allocate(self, trt) -> None:
        cuda = self._cuda
        for spec in self._inputs:
            shape = self._max_shape(spec)
            self._context.set_input_shape(spec.name, shape)
            self._buffers[spec.name] = cuda.alloc(int(np.prod(shape)) * np.dtype(spec.dtype).itemsize)
        for spec in self._outputs:
            shape = tuple(int(d) for d in self._context.get_tensor_shape(spec.name))
            self._buffers[spec.name] = cuda.alloc(int(np.prod(shape)) * np.dtype(spec.dtype).itemsize)
        for name, buf in self._buffers.items():
            self._context.set_tensor_address(name, buf.ptr)
        self._shapes = {}

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
        outs = {}
        for spec in self._outputs:
            shape = tuple(int(d) for d in self._context.get_tensor_shape(spec.name))
            outs[spec.name] = np.empty(shape, dtype=spec.dtype)
        ev = self._events
        cuda.record(ev[0], stream)
        for spec in self._inputs:
            host = np.ascontiguousarray(feed[spec.name])
            cuda.copy_htod_async(self._buffers[spec.name].ptr, host, stream)
        cuda.record(ev[1], stream)
        self._enqueue(key)
        cuda.record(ev[2], stream)
        for name, host in outs.items():
            cuda.copy_dtoh_async(host, self._buffers[name].ptr, stream)
        cuda.record(ev[3], stream)
        cuda.synchronize(stream)
        split = CopySplit(h2d_ms=cuda.elapsed_ms(ev[0], ev[1]), compute_ms=cuda.elapsed_ms(ev[1], ev[2]),
                          d2h_ms=cuda.elapsed_ms(ev[2], ev[3]))
        return outs, split

    def _enqueue(self, key: tuple) -> None:
        handle = self._cuda.stream_handle(self._stream)
        if not self.cuda_graph:
            if not self._context.execute_async_v3(handle):
                raise EngineError("TensorRT execute_async_v3 failed")
            return
        graph = self._graphs.get(key)
        if graph is None:
            # One plain enqueue first (TensorRT may allocate or reshape on it), then capture.
            if not self._context.execute_async_v3(handle):
                raise EngineError("TensorRT execute_async_v3 failed")
            self._cuda.synchronize(self._stream)
            self._cuda.begin_capture(self._stream)
            self._context.execute_async_v3(handle)
            graph = self._cuda.end_capture(self._stream)
            self._graphs[key] = graph
        self._cuda.launch_graph(graph, self._stream)
