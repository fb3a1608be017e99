"""OpenVINO runner: reads the ONNX directly (no conversion step) and runs it on a CPU, Intel GPU or NPU.

``openvino`` is an optional dependency (``pip install 'se-deploy[openvino]'``), imported
only when a runner activates or a probe asks for it. The ``openvino.runtime`` namespace
was removed in OpenVINO 2026.0, so everything goes through ``import openvino as ov``.

Precision. OpenVINO's CPU plugin picks bf16 on any CPU with AVX-512 BF16 unless told
otherwise, and on a CPU without AMX that is slower than f32 (measured: SE-ResNet-50 at
batch 1, 51.9 ms bf16 vs 33.8 ms f32 on an AVX-512 BF16 Xeon without AMX). So this runner
chooses the precision hint itself (``precision="auto"``, see :func:`choose_precision`),
and records what the compiled model actually uses, read back with
``compiled.get_property("INFERENCE_PRECISION_HINT")``: the plugin silently ignores a hint
the CPU cannot run, so an explicit request it did not honour is refused, never relabelled.
"""

from __future__ import annotations

import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

from se_deploy.envinfo import _read_file, parse_cpuinfo
from se_deploy.errors import BenchmarkError, EngineError, InputError, MissingDependencyError, UsageError, first_line
from se_deploy.runtime.base import Capabilities, IOSpec, NodeProfile, NodeTime, Runner
from se_deploy.runtime.ov_profile import attribute, counter_rows, kernel_summary, mean_times, runtime_ops

INSTALL = "pip install 'se-deploy[openvino]'  (or: pip install openvino)"

#: ``precision`` values: auto (this module's chooser), default (the plugin's own choice), or a hint.
PRECISIONS = ("auto", "default", "f32", "bf16", "f16")
#: OpenVINO performance hints (``ov.properties.hint.PerformanceMode`` member names).
PERFORMANCE_HINTS = ("LATENCY", "THROUGHPUT", "CUMULATIVE_THROUGHPUT")


# --------------------------------------------------------------------------- precision chooser
@dataclass(frozen=True)
class PrecisionChoice:
    precision: str  # f32 | bf16 | f16
    reason: str


def choose_precision(flags: Iterable[str], arch: str) -> PrecisionChoice:
    """The inference precision hint for OpenVINO's CPU plugin on a CPU with these cpuinfo ``flags``.

    f32 unless the CPU has matrix or fp16 hardware that makes the lower precision faster:

    - x86 with AMX-BF16 (``amx_bf16``: Sapphire Rapids and later): bf16, run on AMX tiles
      (about 3.6-4x f32 on ResNet-class models here). bf16 keeps f32's exponent range, so it
      is also chosen when the CPU has AMX-FP16 too (Granite Rapids).
    - x86 with AMX-FP16 but not AMX-BF16 (no such part is known): f16.
    - Arm with fp16 arithmetic (``asimdhp``/``fphp``: Armv8.2-A and later, Jetson Orin's
      Cortex-A78AE included): f16, as OpenVINO's Arm plugin would pick itself.
    - everything else f32. AVX-512 BF16 without AMX (Cooper Lake, and the cloud Xeons that
      hide AMX) runs bf16 slower than f32, and AVX512-FP16 without AMX-FP16 runs f16 slower
      than f32 (SE-ResNet-50: 135 ms f16 vs 105 ms f32 measured on a Sapphire Rapids VM),
      although the plugin accepts both hints there.
    """
    f = {s.lower() for s in flags}
    arm = arch.lower() in ("aarch64", "arm64") or arch.lower().startswith("arm")
    if arm:
        if f & {"asimdhp", "fphp"}:
            return PrecisionChoice("f16", "Arm CPU with fp16 arithmetic (asimdhp)")
        return PrecisionChoice("f32", "Arm CPU without fp16 arithmetic")
    if "amx_bf16" in f:
        return PrecisionChoice("bf16", "AMX-BF16 present: bf16 runs on AMX tiles")
    if "amx_fp16" in f:
        return PrecisionChoice("f16", "AMX-FP16 present: f16 runs on AMX tiles")
    why = "no AMX"
    if "avx512_bf16" in f:
        why += " (AVX-512 BF16 alone runs bf16 slower than f32)"
    return PrecisionChoice("f32", why)


def host_precision() -> PrecisionChoice:
    """:func:`choose_precision` for this machine's CPU."""
    info = parse_cpuinfo(_read_file("/proc/cpuinfo") or "")
    return choose_precision(info["raw_flags"], platform.machine() or "")


# --------------------------------------------------------------------------- config
@dataclass(frozen=True)
class OvConfig:
    """How to run a model under OpenVINO.

    ``device``: CPU, GPU, NPU (``GPU.1`` for a second GPU) or AUTO; checked against the
    devices OpenVINO finds when the runner activates.
    ``threads``: CPU inference threads (``INFERENCE_NUM_THREADS``); 0 lets OpenVINO decide.
    ``performance_hint``: LATENCY (one stream; what a single-request runner wants), THROUGHPUT
    or CUMULATIVE_THROUGHPUT. This runner sends one request at a time, so the throughput
    hints only change how OpenVINO splits the cores, not how many requests run.
    ``num_streams``: 0 keeps what the hint implies.
    ``precision``: auto (:func:`choose_precision` on a CPU, the plugin's default elsewhere),
    default (the plugin's own choice: bf16 on any AVX-512 BF16 CPU), or f32 / bf16 / f16.
    An explicit hint the device does not honour is an error.
    ``static_shapes``: compile one model per input shape seen (the batch of a dynamic-batch
    model is set by reshaping before compiling, which lets the plugin plan memory and pick
    kernels for that shape); the first call at a new shape compiles it. False compiles the
    model once with its dynamic dimensions.
    ``batch``: the batch compiled when the runner activates, for a dynamic-batch model.
    ``cpu_pinning``: pin CPU worker threads to cores (None: OpenVINO's default, on for Linux).
    """

    device: str = "CPU"
    threads: int = 0
    performance_hint: str = "LATENCY"
    num_streams: int = 0
    precision: str = "auto"
    static_shapes: bool = True
    batch: int = 1
    cpu_pinning: bool | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.device, str) or not self.device.strip():
            raise UsageError(f"OpenVINO device must be a name such as CPU, GPU or NPU, got {self.device!r}")
        object.__setattr__(self, "device", self.device.strip().upper())
        for name in ("threads", "num_streams"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise UsageError(f"{name} must be an integer >= 0, got {v!r}")
        if not isinstance(self.batch, int) or isinstance(self.batch, bool) or self.batch < 1:
            raise UsageError(f"batch must be an integer >= 1, got {self.batch!r}")
        hint = str(self.performance_hint).upper()
        if hint not in PERFORMANCE_HINTS:
            raise UsageError(f"OpenVINO performance hint {self.performance_hint!r} is not one of "
                             f"{', '.join(PERFORMANCE_HINTS)}")
        object.__setattr__(self, "performance_hint", hint)
        prec = str(self.precision).lower()
        if prec not in PRECISIONS:
            raise UsageError(f"OpenVINO precision {self.precision!r} is not one of {', '.join(PRECISIONS)}")
        object.__setattr__(self, "precision", prec)

    def to_dict(self) -> dict:
        return asdict(self)


def _import_ov():
    try:
        import openvino as ov
    except ImportError as e:
        raise MissingDependencyError(f"the openvino backend needs OpenVINO ({e.name or 'openvino'} is not "
                                     f"importable); install it with: {INSTALL}") from None
    return ov


def available_devices(core=None) -> list[str]:
    """OpenVINO's device names here (``CPU``, ``GPU.0`` ...); a plugin that fails to load is left out."""
    core = core or _import_ov().Core()
    return list(core.available_devices)


def device_names(core=None) -> dict[str, str]:
    """Each available device with its full name (``CPU: Intel(R) Xeon(R) ...``)."""
    core = core or _import_ov().Core()
    out = {}
    for dev in available_devices(core):
        try:
            out[dev] = str(core.get_property(dev, "FULL_DEVICE_NAME"))
        except Exception as e:
            out[dev] = f"(name unreadable: {first_line(e)})"
    return out


def _is_cpu(device: str) -> bool:
    return device.split(".")[0] == "CPU"


class OvRunner(Runner):
    backend = "openvino"
    # OpenVINO's worker threads sleep when idle (no busy-wait to turn off), so only threads.
    capabilities = Capabilities(threads=True, spinning=False, profiling=True)
    config_class = OvConfig

    def __init__(self, model, config: OvConfig | None = None) -> None:
        """``model``: an ONNX path, serialized ONNX bytes, or an onnx.ModelProto."""
        super().__init__()
        self.config = config or OvConfig()
        self._model_src = model
        self._core = None
        self._model = None
        self._compiled: dict[tuple, object] = {}
        self._requests: dict[tuple, object] = {}
        self._dynamic = None
        self._precision: dict = {}

    # lifecycle -------------------------------------------------------------
    def _read(self, core):
        src = self._model_src
        if hasattr(src, "SerializeToString"):
            src = src.SerializeToString()
        elif isinstance(src, (str, os.PathLike)):
            p = Path(src)
            if not p.exists():
                raise InputError(f"ONNX file not found: {p}")
            if p.is_dir():
                raise InputError(f"expected an ONNX file, got a directory: {p}")
            src = str(p)
        elif not isinstance(src, (bytes, bytearray)):
            raise InputError(f"the openvino backend runs an ONNX path, bytes or ModelProto, got {type(src).__name__}")
        try:
            return core.read_model(bytes(src) if isinstance(src, bytearray) else src)
        except Exception as e:
            raise EngineError(f"OpenVINO cannot read the model: {first_line(e)}") from None

    def activate(self) -> None:
        self._load()
        # Compile now, so a bad option or an unsupported model fails here and not in the first timed call.
        shapes = self._default_shapes()
        if shapes is not None:
            self._compiled_for(shapes)

    def _load(self) -> None:
        """Read the model and settle the precision request; compiles nothing."""
        ov = _import_ov()
        self._core = ov.Core()
        self._check_device()
        self._model = self._read(self._core)
        self._inputs = [self._spec(p) for p in self._model.inputs]
        self._outputs = [self._spec(p) for p in self._model.outputs]
        self._out_names = [s.name for s in self._outputs]
        self._dynamic = any(not isinstance(d, int) for s in self._inputs for d in s.shape)
        self._precision = self._precision_request()

    def deactivate(self) -> None:
        self._requests.clear()
        self._compiled.clear()
        self._model = None
        self._core = None

    def _check_device(self) -> None:
        dev = self.config.device
        avail = available_devices(self._core)
        names = set(avail) | {d.split(".")[0] for d in avail} | {"AUTO"}
        if dev.split(":")[0] not in names:
            raise EngineError(f"requested OpenVINO device {dev}, but the available devices are: "
                              f"{', '.join(avail) or 'none'}")

    def _spec(self, port) -> IOSpec:
        shape = tuple(d.get_length() if d.is_static else None for d in port.get_partial_shape())
        return IOSpec(port.get_any_name(), shape, np.dtype(port.get_element_type().to_dtype()).name)

    def _precision_request(self) -> dict:
        prec, dev = self.config.precision, self.config.device
        if prec == "auto" and _is_cpu(dev):
            choice = host_precision()
            return {"requested": "auto", "hint": choice.precision, "reason": choice.reason}
        if prec in ("auto", "default"):
            return {"requested": prec, "hint": None, "reason": f"the {dev} plugin's default"}
        return {"requested": prec, "hint": prec, "reason": "requested"}

    def _default_shapes(self) -> tuple | None:
        """The input shapes compiled on activation: the model's own, with a dynamic batch set to
        ``config.batch``; None when other dimensions are dynamic too (then the first feed decides)."""
        if not self.config.static_shapes or not self._dynamic:
            return ()
        out = []
        for s in self._inputs:
            if not s.shape or any(not isinstance(d, int) for d in s.shape[1:]):
                return None
            out.append((s.name, (s.shape[0] if isinstance(s.shape[0], int) else self.config.batch, *s.shape[1:])))
        return tuple(out)

    # compilation -------------------------------------------------------------
    def _properties(self, *, profiling: bool = False) -> dict:
        ov = _import_ov()
        import openvino.properties as props
        import openvino.properties.hint as hints

        cfg = self.config
        out: dict = {hints.performance_mode: getattr(hints.PerformanceMode, cfg.performance_hint)}
        if cfg.num_streams:
            out[props.num_streams] = cfg.num_streams
        if self._precision.get("hint"):
            out[hints.inference_precision] = getattr(ov.Type, self._precision["hint"])
        if _is_cpu(cfg.device):
            if cfg.threads:
                out[props.inference_num_threads] = cfg.threads
            if cfg.cpu_pinning is not None:
                out[hints.enable_cpu_pinning] = cfg.cpu_pinning
        if profiling:
            out[props.enable_profiling] = True
        return out

    def _compile(self, shapes: tuple, *, profiling: bool = False):
        model = self._model
        if shapes:
            model = model.clone()
            try:
                model.reshape({name: list(shape) for name, shape in shapes})
            except Exception as e:
                raise EngineError(f"OpenVINO cannot reshape the model to {dict(shapes)}: {first_line(e)}") from None
        try:
            compiled = self._core.compile_model(model, self.config.device, self._properties(profiling=profiling))
        except Exception as e:
            raise EngineError(f"OpenVINO cannot compile the model for {self.config.device}: {first_line(e)}") from None
        self._check_precision(compiled)
        return compiled

    def _check_precision(self, compiled) -> None:
        actual = _read_property(compiled, "INFERENCE_PRECISION_HINT")
        actual = actual.get_type_name() if hasattr(actual, "get_type_name") else actual
        want = self._precision.get("hint")
        if want and actual is not None and actual != want:
            raise EngineError(f"OpenVINO's {self.config.device} plugin ignored INFERENCE_PRECISION_HINT={want}: the "
                              f"compiled model runs {actual}. This device has no {want} support; "
                              f"use precision f32 or auto")
        self._precision["actual"] = actual

    def _compiled_for(self, shapes: tuple):
        if shapes not in self._compiled:
            self._compiled[shapes] = self._compile(shapes)
            self._requests[shapes] = self._compiled[shapes].create_infer_request()
        return self._compiled[shapes]

    def _shapes_of(self, feed: Mapping[str, np.ndarray]) -> tuple:
        if not self.config.static_shapes or not self._dynamic:
            return ()
        return tuple((s.name, tuple(feed[s.name].shape)) for s in self._inputs)

    # metadata --------------------------------------------------------------
    @property
    def inputs(self) -> list[IOSpec]:
        self._require_active()
        return list(self._inputs)

    @property
    def outputs(self) -> list[IOSpec]:
        self._require_active()
        return list(self._outputs)

    def _require_active(self) -> None:
        if self._model is None:
            raise EngineError("openvino runner is not active")

    @property
    def inference_precision(self) -> str | None:
        """The precision the compiled model runs in (read back from OpenVINO), once compiled."""
        return self._precision.get("actual")

    def describe(self) -> dict:
        ov = _import_ov()
        self._require_active()
        compiled = next(iter(self._compiled.values()), None)
        out = {"backend": self.backend, "version": ov.get_version(), "device": self.config.device,
               "precision_requested": self._precision.get("requested"),
               "precision_hint": self._precision.get("hint"), "precision_reason": self._precision.get("reason"),
               "inference_precision": self.inference_precision, "static_shapes": self.config.static_shapes,
               "compiled_shapes": [{n: list(shape) for n, shape in s} if s else
                                   {i.name: list(i.shape) for i in self._inputs} for s in self._compiled]}
        try:
            out["device_name"] = str(self._core.get_property(self.config.device.split(":")[0], "FULL_DEVICE_NAME"))
        except Exception:
            out["device_name"] = None
        if compiled is not None:
            for key, prop in (("threads", "INFERENCE_NUM_THREADS"), ("num_streams", "NUM_STREAMS"),
                              ("performance_hint", "PERFORMANCE_HINT"), ("cpu_pinning", "ENABLE_CPU_PINNING")):
                v = _read_property(compiled, prop)
                out[key] = v if isinstance(v, (int, bool, str, type(None))) else str(getattr(v, "name", v))
        return out

    # inference -------------------------------------------------------------
    def _infer(self, feed: Mapping[str, np.ndarray]):
        shapes = self._shapes_of(feed)
        self._compiled_for(shapes)
        req = self._requests[shapes]
        try:
            res = req.infer({k: np.ascontiguousarray(v) for k, v in feed.items()}, share_inputs=True)
        except Exception as e:
            raise EngineError(f"OpenVINO inference failed: {first_line(e)}") from None
        return {name: res[i] for i, name in enumerate(self._out_names)}, None  # fresh arrays (share_outputs off)

    def profile(self, feed: Mapping[str, np.ndarray], *, iters: int, warmup: int = 3) -> NodeProfile:
        """Per-node times from OpenVINO's performance counters (``PERF_COUNT``), averaged over ``iters``
        runs, each executed node mapped back to the ONNX nodes it runs (:mod:`se_deploy.runtime.ov_profile`).

        The counters need their own compiled model (profiling is a compile-time property), made
        by a runner of its own with this one's device, threads, hints and precision at the feed's
        shapes; this runner need not be active.
        """
        if not isinstance(iters, int) or iters < 1:
            raise UsageError(f"profile iterations must be >= 1, got {iters!r}")
        if not isinstance(warmup, int) or warmup < 0:
            raise UsageError(f"profile warm-up runs must be >= 0, got {warmup!r}")
        runner = OvRunner(self._model_src, self.config)  # loaded, not activated: only the profiled model compiles
        try:
            runner._load()
            runner.check_feed(feed)
            compiled = runner._compile(runner._shapes_of(feed), profiling=True)
            req = compiled.create_infer_request()
            inputs = {k: np.ascontiguousarray(v) for k, v in feed.items()}
            runs, runs_ms = [], []
            for i in range(warmup + iters):
                t0 = time.perf_counter()
                req.infer(inputs, share_inputs=True)
                ms = (time.perf_counter() - t0) * 1e3
                if i >= warmup:
                    runs.append(counter_rows(req))
                    runs_ms.append(ms)
            ops = runtime_ops(compiled)
            precision = runner.inference_precision
        finally:
            runner.deactivate()
        times = mean_times(runs)
        mapping, unattributed = attribute(times, ops, _onnx_node_names(self._model_src))
        nodes = tuple(NodeTime(name, r["node_type"], r["us"], tuple(mapping.get(name, ())), r["exec_type"])
                      for name, r in sorted(times.items(), key=lambda kv: -kv[1]["us"]))
        notes = ("times from OpenVINO's performance counters (PERF_COUNT), whose bookkeeping adds a little to "
                 "each node; time the model with profiling off",)
        return NodeProfile(nodes, tuple(runs_ms), notes, {
            "device": self.config.device, "inference_precision": precision,
            "threads": self.config.threads, "performance_hint": self.config.performance_hint,
            "unattributed": unattributed, **kernel_summary(times)})


def _read_property(compiled, name: str):
    try:
        return compiled.get_property(name)
    except Exception:  # not every device exposes every property
        return None


def _onnx_node_names(src) -> set[str]:
    """The node names of the ONNX graph (weights are not read), for mapping profile rows back."""
    import onnx

    try:
        if hasattr(src, "graph"):
            model = src
        elif isinstance(src, (bytes, bytearray)):
            model = onnx.load_from_string(bytes(src))
        else:
            model = onnx.load(str(src), load_external_data=False)
    except Exception as e:
        raise BenchmarkError(f"cannot read {src} for profiling: {first_line(e)}") from None
    return {n.name for n in model.graph.node if n.name}


__all__ = ["INSTALL", "OvConfig", "OvRunner", "PERFORMANCE_HINTS", "PRECISIONS", "PrecisionChoice",
           "available_devices", "choose_precision", "device_names", "host_precision"]
