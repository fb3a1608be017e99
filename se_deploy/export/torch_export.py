"""PyTorch -> ONNX export with checker, simplifier, SE fusion and a numerical parity proof.

Flow: export to a temporary file -> onnx.checker -> simplify -> default SE passes ->
parity (PyTorch vs onnxruntime on random and constant inputs, two batch sizes when the
batch is dynamic) -> atomic rename + ``model.onnx.json`` sidecar. Nothing is written under
the final name unless parity holds.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import logging
import signal
import sys
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from pydantic import Field, NonNegativeInt, model_validator

from se_deploy._util import check_output_path, sha256_file, sidecar_path
from se_deploy.config import BadValue, Config, InputShape
from se_deploy.errors import ExportError, Terminated, first_line
from se_deploy.export.inspect import input_output_specs
from se_deploy.export.passes import fuse_default
from se_deploy.export.se_detect import find_se_blocks
from se_deploy.export.simplify import require_simplifier, simplify
from se_deploy.files import staged_artifact
from se_deploy.models import load_model
from se_deploy.names import Exporter, Simplifier
from se_deploy.numerics import compare_arrays, probe_inputs
from se_deploy.onnx_io import save_onnx
from se_deploy.runtime.onnxruntime import OrtRunner

DEFAULT_OPSET = 18
MIN_OPSET, MAX_OPSET = 13, 23
LEGACY_MAX_OPSET = 20  # the TorchScript exporter writes no newer opset


class ExportOptions(Config):
    """How to export, whatever the model: the part of an export a pipeline config sets."""

    exporter: Exporter = Exporter.dynamo
    opset: int = Field(DEFAULT_OPSET, ge=MIN_OPSET, le=MAX_OPSET)
    simplify: bool = True
    simplifier: Simplifier = Simplifier.onnxsim
    fuse: bool = True
    tolerance: float = Field(1e-4, gt=0)  # max abs error relative to the output scale

    @model_validator(mode="after")
    def _legacy_opset(self):
        # Refused rather than clamped: the sidecar must record the opset the file really has.
        if self.exporter == Exporter.legacy and self.opset > LEGACY_MAX_OPSET:
            raise BadValue("opset", self.opset, f"is newer than the legacy exporter writes (at most "
                                                f"{LEGACY_MAX_OPSET}); lower it or use the dynamo exporter")
        return self


class ExportConfig(ExportOptions):
    """One export: the options plus what depends on the model and its deployment."""

    input_shape: InputShape = (1, 3, 224, 224)
    dynamic_batch: bool = False
    input_name: str = Field("input", min_length=1)
    output_name: str = Field("logits", min_length=1)
    seed: NonNegativeInt = 0

    @property
    def parity_batches(self) -> tuple[int, ...]:
        b = self.input_shape[0]
        return (b, b + 2) if self.dynamic_batch else (b,)


@dataclass
class ExportResult:
    path: Path
    sidecar: Path
    info: dict = field(default_factory=dict)


StepCallback = Callable[[str, float, str], None]


def _quiet():
    """Silence exporter chatter (warnings and log lines) so the CLI output stays readable."""
    stack = contextlib.ExitStack()
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")
    for name in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript", "torch.fx"):
        lg = logging.getLogger(name)
        old = lg.level
        lg.setLevel(logging.ERROR)
        stack.callback(lg.setLevel, old)
    stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
    return stack


@contextlib.contextmanager
def _noticing_signals():
    """Raise Ctrl-C (KeyboardInterrupt) or SIGTERM (Terminated) after the block, whatever it did with them.

    torch.export catches the KeyboardInterrupt raised inside its capture strategies and goes on with the
    next strategy (or fails with an unrelated error), so an interrupted export would finish or blame the
    exporter. The signals are noted here, the previous handlers still run, and the block's outcome is
    replaced by the interruption.
    """
    if threading.current_thread() is not threading.main_thread():  # signal handlers live in the main thread
        yield
        return
    seen: list[int] = []
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

    def note(signum, frame):
        prev = previous[signum]
        if prev == signal.SIG_IGN:
            return
        seen.append(signum)
        if callable(prev):
            prev(signum, frame)
        raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()

    hook = sys.unraisablehook

    def unraisable(info) -> None:
        # a signal that lands in a weakref or GC callback raises there, where Python can only print
        # "Exception ignored" with a traceback; it is noted in ``seen`` and raised after the block
        if seen and info.exc_type is not None and issubclass(info.exc_type, KeyboardInterrupt):
            return
        hook(info)

    for s in previous:
        signal.signal(s, note)
    sys.unraisablehook = unraisable
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)
        sys.unraisablehook = hook
        if seen:
            raise Terminated() if signal.SIGTERM in seen else KeyboardInterrupt()


def _torch_export(module, cfg: ExportConfig, path: Path) -> None:
    import torch

    x = torch.randn(*cfg.input_shape)
    with _quiet(), torch.no_grad():
        if cfg.exporter == Exporter.dynamo:
            dyn = None
            if cfg.dynamic_batch:
                params = list(inspect.signature(module.forward).parameters)
                dyn = {params[0]: {0: torch.export.Dim("batch", min=1, max=4096)}}
            prog = torch.onnx.export(module, (x,), dynamo=True, input_names=[cfg.input_name],
                                     output_names=[cfg.output_name], opset_version=cfg.opset,
                                     dynamic_shapes=dyn, optimize=True, verbose=False)
            prog.save(str(path))
        else:
            axes = {cfg.input_name: {0: "batch"}, cfg.output_name: {0: "batch"}} if cfg.dynamic_batch else None
            torch.onnx.export(module, (x,), str(path), dynamo=False, input_names=[cfg.input_name],
                              output_names=[cfg.output_name], opset_version=cfg.opset,
                              dynamic_axes=axes, do_constant_folding=True)


def written_opset(model) -> int | None:
    """The default-domain opset the model imports: what the file holds, whatever was requested."""
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)


def check_parity(module, onnx_model, cfg: ExportConfig) -> dict:
    """Run PyTorch and onnxruntime on the same probe inputs; return the worst errors per probe."""
    import torch

    results = []
    with OrtRunner(onnx_model) as runner:
        in_name = runner.inputs[0].name
        for label, arr in probe_inputs(cfg.input_shape, cfg.parity_batches, seed=cfg.seed):
            with torch.no_grad():
                ref = module(torch.from_numpy(arr)).detach().numpy()
            got = next(iter(runner.infer({in_name: arr}).values()))
            c = compare_arrays(ref, got)
            results.append({"input": label, "max_abs": c.max_abs, "rel_max_abs": c.rel_max_abs,
                            "top1_agreement": c.top1_agreement})
    worst = max(r["rel_max_abs"] for r in results)
    return {"tolerance": cfg.tolerance, "metric": "max|onnx - torch| / max|torch|", "worst_rel_max_abs": worst,
            "passed": bool(worst <= cfg.tolerance), "probes": results}


def _fuse(model) -> tuple[Any, dict]:
    return fuse_default(model)


def export_model(model_or_spec, output: str | Path, config: ExportConfig | None = None, *,
                 on_step: StepCallback | None = None, source: dict | None = None, **overrides) -> ExportResult:
    """Export a torch module (or a model spec string) to ONNX with a parity proof and a sidecar.

    ``overrides`` are ExportConfig fields (``input_shape=(1,3,64,64), dynamic_batch=True, ...``).
    """
    import onnx

    cfg = config or ExportConfig(**overrides)
    if config is not None and overrides:
        cfg = ExportConfig(**{**config.model_dump(), **overrides})
    out = check_output_path(output)
    if cfg.simplify:
        require_simplifier(cfg.simplifier)
    step = on_step or (lambda name, secs, detail: None)

    if isinstance(model_or_spec, str):
        loaded = load_model(model_or_spec)
        module, source = loaded.module, {**loaded.source, **(source or {})}
    else:
        module, source = model_or_spec.eval(), (source or {"kind": "module", "class": type(model_or_spec).__name__})

    info: dict[str, Any] = {"source": source, "exporter": cfg.exporter, "config": cfg.to_dict()}
    with tempfile.TemporaryDirectory(prefix="se_deploy_export_") as td:
        raw = Path(td) / "raw.onnx"
        t0 = time.perf_counter()
        try:
            with _noticing_signals():
                _torch_export(module, cfg, raw)
        except Exception as e:
            msg = first_line(e)
            hint = " (try --exporter legacy)" if cfg.exporter == Exporter.dynamo else ""
            raise ExportError(f"torch.onnx export ({cfg.exporter}) failed: {msg}{hint}") from None
        model = onnx.load(str(raw))
        opset = written_opset(model)
        if opset != cfg.opset:  # torch falls back to its own opset when it cannot convert the graph
            raise ExportError(f"the {cfg.exporter} exporter wrote opset {opset}, not the requested {cfg.opset} (it "
                              f"could not convert this model); use --opset {opset}"
                              + (" or --exporter legacy" if cfg.exporter == Exporter.dynamo else ""))
        step("export", time.perf_counter() - t0,
             f"{cfg.exporter} exporter, opset {opset}, {len(model.graph.node)} nodes")

        t0 = time.perf_counter()
        try:
            onnx.checker.check_model(model, full_check=True)
        except Exception as e:
            raise ExportError(f"exported graph fails onnx.checker: {first_line(e)}") from None
        step("check", time.perf_counter() - t0, "onnx.checker passed")

    info["raw_nodes"] = len(model.graph.node)
    if cfg.simplify:
        t0 = time.perf_counter()
        model, sinfo = simplify(model, simplifier=cfg.simplifier, dynamic_batch=cfg.dynamic_batch,
                                input_shape=cfg.input_shape)
        info["simplify"] = sinfo
        detail = sinfo.get("error") or f"{sinfo['nodes_before']} -> {sinfo['nodes_after']} nodes"
        step("simplify", time.perf_counter() - t0, f"{cfg.simplifier}: {detail}")
    else:
        info["simplify"] = {"simplifier": None}

    if cfg.fuse:
        t0 = time.perf_counter()
        model, freport = _fuse(model)
        info["fuse"] = freport
        step("fuse", time.perf_counter() - t0, freport.get("summary", "SE passes applied"))
    else:
        info["fuse"] = {"applied": [], "summary": "skipped (--no-fuse)"}

    t0 = time.perf_counter()
    parity = check_parity(module, model, cfg)
    info["parity"] = parity
    step("parity", time.perf_counter() - t0,
         f"worst rel. error {parity['worst_rel_max_abs']:.2e} (tolerance {cfg.tolerance:.0e}) on "
         f"{len(parity['probes'])} inputs")
    if not parity["passed"]:
        raise ExportError(f"parity check failed: max relative error {parity['worst_rel_max_abs']:.3e} exceeds "
                          f"tolerance {cfg.tolerance:.1e}; nothing written to {out}")

    t0 = time.perf_counter()
    with staged_artifact(out) as staged:  # the model and its sidecar appear together, or not at all
        save_onnx(model, staged.path)
        io_specs = input_output_specs(model)
        info.update(inputs=io_specs["inputs"], outputs=io_specs["outputs"], opset=written_opset(model),
                    onnx_sha256=sha256_file(staged.path), size_bytes=staged.path.stat().st_size,
                    dynamic_batch=cfg.dynamic_batch, input_shape=list(cfg.input_shape))
        try:
            info["se_blocks"] = len(find_se_blocks(model))
        except Exception as e:  # detection is informative here; never fail an export that passed parity
            info["se_blocks_error"] = f"{type(e).__name__}: {e}"
        staged.write_sidecar({"artifact": "onnx", **info})
    step("write", time.perf_counter() - t0, f"{out} ({out.stat().st_size / 1e6:.1f} MB)")
    return ExportResult(out, sidecar_path(out), info)
