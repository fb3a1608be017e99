"""onnxruntime runner: CPU EP here; CUDA / TensorRT EPs when the installed build has them."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from se_deploy.engines.base import IOSpec, Runner, Timing
from se_deploy.errors import EngineError, InputError, UsageError

_ORT_TYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(bool)": "bool",
}

_OPT_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
               "all": "ORT_ENABLE_ALL"}


@dataclass(frozen=True)
class OrtConfig:
    """How to run a model under onnxruntime.

    ``providers``: None picks the best available (TensorRT, CUDA, then CPU).
    ``threads``: intra-op threads; 0 lets onnxruntime decide.
    ``optimized_model_path``: where onnxruntime writes the graph after its own fusions.
    """

    providers: tuple[str, ...] | None = ("CPUExecutionProvider",)
    threads: int = 0
    graph_optimization: str = "all"
    optimized_model_path: str | None = None
    enable_profiling: bool = False
    profile_prefix: str | None = None

    def __post_init__(self) -> None:
        if self.graph_optimization not in _OPT_LEVELS:
            raise UsageError(f"graph optimization level {self.graph_optimization!r} is not one of {sorted(_OPT_LEVELS)}")
        if self.threads < 0:
            raise UsageError(f"threads must be >= 0, got {self.threads}")


def available_providers() -> list[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


def _resolve_providers(requested: Sequence[str] | None) -> list[str]:
    avail = available_providers()
    if requested is None:
        order = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
        return [p for p in order if p in avail] or avail
    missing = [p for p in requested if p not in avail]
    if missing:
        raise EngineError(f"requested onnxruntime provider(s) {missing}, but available providers are: {avail}")
    return list(requested)


class OrtRunner(Runner):
    backend = "onnxruntime"

    def __init__(self, model, config: OrtConfig | None = None) -> None:
        """``model``: a path, serialized bytes, or an onnx.ModelProto."""
        super().__init__()
        self.config = config or OrtConfig()
        self._model = model
        self._session = None

    def activate(self) -> None:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.log_severity_level = 3
        so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, _OPT_LEVELS[self.config.graph_optimization])
        if self.config.threads:
            so.intra_op_num_threads = self.config.threads
            so.inter_op_num_threads = 1
        if self.config.optimized_model_path:
            so.optimized_model_filepath = str(self.config.optimized_model_path)
        if self.config.enable_profiling:
            so.enable_profiling = True
            if self.config.profile_prefix:
                so.profile_file_prefix = self.config.profile_prefix
        src = self._model
        if hasattr(src, "SerializeToString"):
            src = src.SerializeToString()
        elif isinstance(src, (str, os.PathLike)):
            if not os.path.exists(src):
                raise InputError(f"ONNX file not found: {src}")
            src = str(src)
        try:
            self._session = ort.InferenceSession(src, sess_options=so,
                                                 providers=_resolve_providers(self.config.providers))
        except Exception as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise EngineError(f"onnxruntime cannot load the model: {first}") from None

    def deactivate(self) -> None:
        self._session = None

    @property
    def session(self):
        if self._session is None:
            raise EngineError("onnxruntime runner is not active")
        return self._session

    def _spec(self, args) -> list[IOSpec]:
        return [IOSpec(a.name, tuple(d if isinstance(d, int) else (d or None) for d in a.shape),
                       _ORT_TYPES.get(a.type, a.type)) for a in args]

    @property
    def inputs(self) -> list[IOSpec]:
        return self._spec(self.session.get_inputs())

    @property
    def outputs(self) -> list[IOSpec]:
        return self._spec(self.session.get_outputs())

    def describe(self) -> dict:
        import onnxruntime as ort

        return {"backend": self.backend, "version": ort.__version__, "providers": self.session.get_providers(),
                "threads": self.config.threads, "graph_optimization": self.config.graph_optimization}

    def _infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        names = [o.name for o in self.session.get_outputs()]
        try:
            outs = self.session.run(names, dict(feed))
        except Exception as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise EngineError(f"onnxruntime inference failed: {first}") from None
        return dict(zip(names, outs))

    def end_profiling(self) -> str | None:
        """Stop the onnxruntime profiler and return the trace file path."""
        if not self.config.enable_profiling:
            return None
        return self.session.end_profiling()


def run_onnx(model, feed: Mapping[str, np.ndarray], config: OrtConfig | None = None) -> dict[str, np.ndarray]:
    """One-shot convenience: run ``model`` on ``feed`` under onnxruntime CPU."""
    with OrtRunner(model, config) as r:
        return r.infer(feed)


__all__ = ["OrtConfig", "OrtRunner", "available_providers", "run_onnx", "Timing"]
