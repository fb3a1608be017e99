"""onnxruntime runner: CPU EP here; CUDA / TensorRT EPs when the installed build has them."""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from se_deploy._util import atomic_output
from se_deploy.errors import BenchmarkError, EngineError, InputError, UsageError, first_line
from se_deploy.runtime.base import Capabilities, CopySplit, IOSpec, NodeProfile, NodeTime, Runner
from se_deploy.runtime.ort_profile import attribute_nodes, parse_trace

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

# Short names users type, and the order ``auto`` prefers when several are installed.
PROVIDER_ALIASES = {"tensorrt": "TensorrtExecutionProvider", "cuda": "CUDAExecutionProvider",
                    "cpu": "CPUExecutionProvider"}
_AUTO_ORDER = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
_GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


def _normalise_providers(value) -> tuple[str, ...] | None:
    if value is None:
        return None
    items = [v.strip() for v in value.split(",")] if isinstance(value, str) else list(value)
    if not items or any(not isinstance(v, str) or not v for v in items):
        raise UsageError(f"providers must be 'auto' or a list of provider names, got {value!r}")
    if [v.lower() for v in items] == ["auto"]:
        return None
    out = []
    for v in items:
        full = PROVIDER_ALIASES.get(v.lower(), v)
        if not full.endswith("ExecutionProvider"):
            raise UsageError(f"unknown onnxruntime provider {v!r}; use auto, {', '.join(PROVIDER_ALIASES)} "
                             f"or a full name such as CPUExecutionProvider")
        out.append(full)
    return tuple(out)


@dataclass(frozen=True)
class OrtConfig:
    """How to run a model under onnxruntime.

    ``providers``: the CPU provider by default, because numerical proofs compare against it
    (GPU providers may compute convolutions in TF32). None or "auto" picks the best
    installed: TensorRT, CUDA, then CPU; ``create_runner`` uses "auto" unless told otherwise.
    A string such as ``"cuda,cpu"`` or a tuple of full provider names picks explicitly.
    ``threads``: intra-op threads; 0 lets onnxruntime decide.
    ``graph_optimization``: disable | basic | extended | all.
    ``optimized_model_path``: where to save the graph after onnxruntime's own fusions.
    ``enable_profiling`` / ``profile_dir``: write onnxruntime's per-node trace (see ``end_profiling``).
    ``io_binding``: time host->device, compute and device->host separately on a GPU provider
    (None: on whenever the first provider is a GPU one).
    ``trt_fp16`` / ``trt_engine_cache_dir``: TensorRT EP options.
    ``allow_spinning``: whether idle intra-op threads busy-wait for the next run (None keeps
    onnxruntime's default, on). Turn it off when timing several runners interleaved in one
    process: spinning threads of one session steal cores from the next candidate.
    """

    providers: tuple[str, ...] | str | None = ("CPUExecutionProvider",)
    threads: int = 0
    graph_optimization: str = "all"
    optimized_model_path: str | None = None
    enable_profiling: bool = False
    profile_prefix: str | None = None
    profile_dir: str | None = None
    io_binding: bool | None = None
    device_id: int = 0
    trt_fp16: bool = False
    trt_engine_cache_dir: str | None = None
    allow_spinning: bool | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "providers", _normalise_providers(self.providers))
        if self.graph_optimization not in _OPT_LEVELS:
            raise UsageError(f"graph optimization level {self.graph_optimization!r} is not one of "
                             f"{', '.join(_OPT_LEVELS)}")
        if not isinstance(self.threads, int) or isinstance(self.threads, bool) or self.threads < 0:
            raise UsageError(f"threads must be an integer >= 0, got {self.threads!r}")
        if not isinstance(self.device_id, int) or self.device_id < 0:
            raise UsageError(f"device_id must be an integer >= 0, got {self.device_id!r}")
        if self.profile_dir is not None and not Path(self.profile_dir).is_dir():
            raise UsageError(f"profile directory does not exist: {self.profile_dir}")
        if self.trt_engine_cache_dir is not None and not Path(self.trt_engine_cache_dir).is_dir():
            raise UsageError(f"TensorRT EP engine cache directory does not exist: {self.trt_engine_cache_dir}")

    def to_dict(self) -> dict:
        from dataclasses import asdict

        d = asdict(self)
        d["providers"] = list(self.providers) if self.providers else "auto"
        return d


def available_providers() -> list[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


def _resolve_providers(requested: Sequence[str] | None) -> list[str]:
    avail = available_providers()
    if requested is None:
        return [p for p in _AUTO_ORDER if p in avail] or avail
    missing = [p for p in requested if p not in avail]
    if missing:
        raise EngineError(f"requested onnxruntime provider(s) {missing}, but available providers are: {avail}")
    return list(requested)


def _provider_options(providers: list[str], cfg: OrtConfig) -> list:
    out: list = []
    for p in providers:
        if p == "TensorrtExecutionProvider":
            opts = {"device_id": str(cfg.device_id), "trt_fp16_enable": "True" if cfg.trt_fp16 else "False"}
            if cfg.trt_engine_cache_dir:
                opts.update(trt_engine_cache_enable="True", trt_engine_cache_path=str(cfg.trt_engine_cache_dir),
                            trt_timing_cache_enable="True", trt_timing_cache_path=str(cfg.trt_engine_cache_dir))
            out.append((p, opts))
        elif p == "CUDAExecutionProvider":
            out.append((p, {"device_id": str(cfg.device_id)}))
        else:
            out.append(p)
    return out


class OrtRunner(Runner):
    backend = "onnxruntime"
    capabilities = Capabilities(threads=True, spinning=True, profiling=True)
    config_class = OrtConfig

    def __init__(self, model, config: OrtConfig | None = None) -> None:
        """``model``: a path, serialized bytes, or an onnx.ModelProto."""
        super().__init__()
        self.config = config or OrtConfig()
        self._model = model
        self._session = None
        self._profile_path: str | None = None

    def _session_options(self):
        import onnxruntime as ort

        cfg = self.config
        so = ort.SessionOptions()
        so.log_severity_level = 3
        so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, _OPT_LEVELS[cfg.graph_optimization])
        if cfg.threads:
            so.intra_op_num_threads = cfg.threads
            so.inter_op_num_threads = 1
        if cfg.allow_spinning is not None:
            so.add_session_config_entry("session.intra_op.allow_spinning", "1" if cfg.allow_spinning else "0")
        if cfg.enable_profiling:
            so.enable_profiling = True
            prefix = cfg.profile_prefix or "ort_profile"
            if cfg.profile_dir:
                prefix = str(Path(cfg.profile_dir) / prefix)
            so.profile_file_prefix = prefix
        return so

    def activate(self) -> None:
        import onnxruntime as ort

        so = self._session_options()
        src = self._model
        if hasattr(src, "SerializeToString"):
            src = src.SerializeToString()
        elif isinstance(src, (str, os.PathLike)):
            if not os.path.exists(src):
                raise InputError(f"ONNX file not found: {src}")
            if os.path.isdir(src):
                raise InputError(f"expected an ONNX file, got a directory: {src}")
            src = str(src)
        elif not isinstance(src, (bytes, bytearray)):
            raise InputError(f"the onnxruntime backend runs an ONNX path, bytes or ModelProto, "
                             f"got {type(src).__name__}")
        providers = _resolve_providers(self.config.providers)

        def create():
            return ort.InferenceSession(src, sess_options=so, providers=_provider_options(providers, self.config))

        try:
            if self.config.optimized_model_path:
                # onnxruntime writes the optimized graph while creating the session; write it under a
                # temporary name so a failed load never leaves a partial file behind.
                with atomic_output(self.config.optimized_model_path, suffix=".onnx") as tmp:
                    so.optimized_model_filepath = str(tmp)
                    self._session = create()
            else:
                self._session = create()
        except (InputError, UsageError):
            raise
        except Exception as e:
            raise EngineError(f"onnxruntime cannot load the model: {first_line(e)}") from None
        self._use_binding = self._wants_io_binding()
        # Cached: check_feed runs on every infer() and the bench loop must not pay for metadata calls.
        self._inputs = self._spec(self._session.get_inputs())
        self._outputs = self._spec(self._session.get_outputs())
        self._in_names = [s.name for s in self._inputs]
        self._out_names = [s.name for s in self._outputs]

    def _wants_io_binding(self) -> bool:
        if self.config.io_binding is not None:
            return self.config.io_binding
        active = self._session.get_providers()
        return bool(active) and active[0] in _GPU_PROVIDERS

    def deactivate(self) -> None:
        if self._session is not None and self.config.enable_profiling and self._profile_path is None:
            try:
                self._profile_path = self._session.end_profiling()
            except Exception:
                pass
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
        self.session  # raises when not active
        return list(self._inputs)

    @property
    def outputs(self) -> list[IOSpec]:
        self.session
        return list(self._outputs)

    def describe(self) -> dict:
        import onnxruntime as ort

        return {"backend": self.backend, "version": ort.__version__, "providers": self.session.get_providers(),
                "threads": self.config.threads, "graph_optimization": self.config.graph_optimization,
                "io_binding": self._use_binding}

    def _infer(self, feed: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], CopySplit | None]:
        try:
            if self._use_binding:
                return self._infer_bound(feed)
            outs = self.session.run(self._out_names, dict(feed))
        except (InputError, EngineError):
            raise
        except Exception as e:
            raise EngineError(f"onnxruntime inference failed: {first_line(e)}") from None
        return dict(zip(self._out_names, outs)), None

    def _infer_bound(self, feed: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], CopySplit]:
        """GPU path: copy inputs to the device, run, copy outputs back, timing each step."""
        import onnxruntime as ort

        dev, dev_id = "cuda", self.config.device_id
        io = self.session.io_binding()
        t0 = time.perf_counter()
        values = {n: ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(feed[n]), dev, dev_id)
                  for n in self._in_names}
        t1 = time.perf_counter()
        for n, v in values.items():
            io.bind_ortvalue_input(n, v)
        for n in self._out_names:
            io.bind_output(n, dev, dev_id)
        self.session.run_with_iobinding(io)  # returns after the EP synchronises its stream
        t2 = time.perf_counter()
        outs = io.copy_outputs_to_cpu()
        t3 = time.perf_counter()
        split = CopySplit(h2d_ms=(t1 - t0) * 1e3, compute_ms=(t2 - t1) * 1e3, d2h_ms=(t3 - t2) * 1e3)
        return dict(zip(self._out_names, outs)), split

    def end_profiling(self) -> str | None:
        """Stop the onnxruntime profiler and return the trace file path (None when not profiling)."""
        if not self.config.enable_profiling:
            return None
        if self._profile_path is None:
            self._profile_path = self.session.end_profiling()
        return self._profile_path

    def profile(self, feed: Mapping[str, np.ndarray], *, iters: int, warmup: int = 3) -> NodeProfile:
        """Per-node kernel times from onnxruntime's profiler, mapped back to this model's nodes.

        Profiling needs its own session (the trace and the optimized graph are written while it
        is created), made with this runner's providers, threads and optimization level.
        """
        import json
        import statistics
        import tempfile

        import onnx

        if not isinstance(iters, int) or iters < 1:
            raise UsageError(f"profile iterations must be >= 1, got {iters!r}")
        if not isinstance(warmup, int) or warmup < 0:
            raise UsageError(f"profile warm-up runs must be >= 0, got {warmup!r}")
        original = self._model if hasattr(self._model, "graph") else _load_proto(self._model)
        notes: list[str] = []
        with tempfile.TemporaryDirectory(prefix="se-deploy-profile-") as tmp:
            opt_path = os.path.join(tmp, "optimized.onnx")
            cfg = dataclasses.replace(self.config, enable_profiling=True, profile_dir=tmp,
                                      optimized_model_path=opt_path, io_binding=False)
            with OrtRunner(self._model, cfg) as runner:
                for _ in range(warmup + iters):
                    runner.infer(feed)
                trace = runner.end_profiling()
                providers = runner.session.get_providers()
            events = json.loads(Path(trace).read_text())
            try:
                optimized = onnx.load(opt_path)
            except Exception as e:  # fall back to the name rules only
                optimized = None
                notes.append(f"optimized graph not readable ({type(e).__name__}); attribution by name only")
        nodes, runs = parse_trace(events, skip_runs=warmup)
        mapping, unattributed = attribute_nodes(original, optimized, nodes)
        times = tuple(NodeTime(name, r["op_type"], r["us"], tuple(mapping.get(name, ())), r["provider"])
                      for name, r in sorted(nodes.items(), key=lambda kv: -kv[1]["us"]))
        return NodeProfile(times, tuple(us / 1e3 for us in runs), tuple(notes), {
            "providers": providers, "threads": self.config.threads,
            "graph_optimization": self.config.graph_optimization, "unattributed": unattributed,
            "run_ms_median": statistics.median(runs) / 1e3})


def _load_proto(model):
    """A ModelProto for attribution from a path or serialized bytes."""
    import onnx

    if isinstance(model, (bytes, bytearray)):
        return onnx.load_from_string(bytes(model))
    try:
        return onnx.load(str(model))
    except Exception as e:
        raise BenchmarkError(f"cannot read {model} for profiling: {first_line(e)}") from None


def run_onnx(model, feed: Mapping[str, np.ndarray], config: OrtConfig | None = None) -> dict[str, np.ndarray]:
    """One-shot convenience: run ``model`` on ``feed`` under onnxruntime (CPU unless configured)."""
    with OrtRunner(model, config) as r:
        return dict(r.infer(feed))


__all__ = ["OrtConfig", "OrtRunner", "PROVIDER_ALIASES", "available_providers", "run_onnx"]
