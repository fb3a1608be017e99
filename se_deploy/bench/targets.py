"""Turn what the user named (zoo model, ONNX file, TensorRT plan) into bench candidates.

Also finds the plain twin for ``--baseline auto``: the zoo's twin for a zoo name, the
SE-ablated graph (every SE block removed) for any ONNX model.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from se_deploy._util import read_sidecar
from se_deploy.bench.backend_choice import CPU_RUNTIMES, choose_cpu_backend
from se_deploy.bench.results import ModelInfo, Results
from se_deploy.bench.suite import BenchConfig, Candidate, benchmark, model_info
from se_deploy.bench.trtexec_bench import bench_trtexec
from se_deploy.errors import InputError, UsageError
from se_deploy.export.passes import ablate_se
from se_deploy.export.se_detect import find_se_blocks
from se_deploy.export.torch_export import export_model
from se_deploy.models import is_registered, plain_twin
from se_deploy.names import Backend, BenchBackend
from se_deploy.onnx_io import load_onnx, save_onnx

PLAN_SUFFIXES = (".plan", ".engine", ".trt")
AUTO = BenchBackend.auto.value


@dataclass
class Prepared:
    candidates: list[Candidate] = field(default_factory=list)
    models: list[ModelInfo] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    run: dict = field(default_factory=dict)  # recorded in results.run (how --backend auto chose)


def onnx_precision(path: str | os.PathLike) -> str:
    """The precision an ONNX model runs in: its sidecar's record, else read from the graph."""
    side = read_sidecar(path) or {}
    prec = side.get("precision")
    if isinstance(prec, str) and prec:
        return prec.lower()

    m = load_onnx(path, check=False)
    ops = {n.op_type for n in m.graph.node}
    if {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "ConvInteger"} & ops:
        return "int8"
    if any(i.type.tensor_type.elem_type == 10 for i in m.graph.input) or \
            any(t.data_type == 10 for t in m.graph.initializer):
        return "fp16"
    return "fp32"


def _default_backend(target: str) -> str:
    return "tensorrt" if target.lower().endswith(PLAN_SUFFIXES) else "onnxruntime"


def _is_zoo(name: str) -> bool:
    return is_registered(name)


def _export(name: str, workdir: Path, input_shape: tuple[int, ...], say) -> Path:
    out = workdir / f"{name}.onnx"
    say(f"exporting {name} to ONNX at {'x'.join(map(str, input_shape))}")
    export_model(name, out, input_shape=input_shape, dynamic_batch=True)
    return out


def _requested(backend: str | Sequence[str] | None, target: str) -> list[str]:
    names = [backend] if isinstance(backend, str) else list(backend or [])
    names = list(dict.fromkeys(str(b) for b in names)) or [_default_backend(target)]
    for b in names:
        if b not in BenchBackend.values():
            raise UsageError(f"backend {b!r} is not one of {BenchBackend.choices()}")
    if BenchBackend.trtexec in names and len(names) > 1:
        raise UsageError("--backend trtexec times a plan in trtexec's own runs; it cannot be timed side by side "
                         "with another backend")
    return names


def _check(kind: str, backend: str, path: Path) -> None:
    if kind == "plan" and backend not in (Backend.tensorrt, BenchBackend.trtexec):
        raise UsageError(f"{path.name} is a TensorRT plan; bench it with --backend tensorrt or trtexec")
    if kind != "plan" and backend == BenchBackend.trtexec:
        raise UsageError("--backend trtexec times TensorRT plans: build one first (se-deploy build-engine)")
    if kind == "onnx" and backend not in CPU_RUNTIMES:
        raise UsageError(f"an ONNX file runs on --backend {' or '.join(CPU_RUNTIMES)}, not {backend} (tensorrt "
                         f"runs a plan built with se-deploy build-engine; torch runs zoo models)")
    if kind == "zoo" and backend == Backend.tensorrt:
        raise UsageError("bench a zoo model on TensorRT by building a plan first (se-deploy build-engine)")


def prepare(target: str, *, backend: str | Sequence[str] | None, baseline: str, input_shape: tuple[int, ...],
            workdir: Path, say=lambda msg: None, batch: int = 1, threads: int = 0) -> Prepared:
    """Candidates for ``target`` (and its plain twin per ``baseline``: auto | none | PATH) on each backend.

    ``backend``: one name or several (timed side by side in one run); None: tensorrt for a
    plan, else onnxruntime; ``auto``: tensorrt for a plan, else the faster installed CPU
    runtime by a short probe at ``batch`` with ``threads`` (see :mod:`se_deploy.bench.backend_choice`).
    """
    requested = _requested(backend, target)
    p = Prepared()
    path = Path(target)
    if path.exists():
        if path.is_dir():
            raise InputError(f"expected a model file or zoo name, got a directory: {path}")
        kind = "plan" if path.suffix.lower() in PLAN_SUFFIXES else "onnx"
        name = path.stem
    elif _is_zoo(target):
        kind, name = "zoo", target
    else:
        raise InputError(f"{target!r} is neither a file nor a zoo model name (see 'se-deploy models')")
    if kind == "plan":
        requested = list(dict.fromkeys(Backend.tensorrt.value if b == AUTO else b for b in requested))
    for b in requested:
        if b != AUTO:
            _check(kind, b, path)
    needs_onnx = any(b != Backend.torch for b in requested)

    # the model under test
    if kind == "zoo" and needs_onnx:
        main = str(_export(target, workdir, input_shape, say))
    else:
        main = target if kind == "zoo" else str(path)
    if AUTO in requested:
        say("choosing the CPU runtime (--backend auto): a short interleaved probe")
        choice = choose_cpu_backend(main, batch=batch, threads=threads)
        p.run["backend_choice"] = choice
        say(f"--backend auto: {choice['choice']}")
        requested = list(dict.fromkeys(choice["choice"] if b == AUTO else b for b in requested))
    precision = onnx_precision(main) if main.endswith(".onnx") else "fp32" if kind == "zoo" else "engine"
    artifact = {b: (target if kind == "zoo" and b == Backend.torch else main) for b in requested}

    def add(artifacts: dict[str, str], cname: str, role: str, precision: str) -> None:
        for b in requested:
            opts: dict = {"input_shape": input_shape} if b == Backend.torch else {}
            p.candidates.append(Candidate(name=cname, precision=precision, artifact=artifacts[b], role=role,
                                          backend=b, options=opts))
        onnx_path = next((a for a in artifacts.values() if a.endswith(".onnx")), None)
        info = model_info(cname, role, onnx_path)
        if onnx_path is not None and Path(onnx_path).parent == workdir:  # deleted when the run ends
            how = "the SE-ablated twin" if role == "plain" and kind == "onnx" else "exported from the zoo"
            info = info.model_copy(update={"artifact": None, "temporary": f"{how}, made for this run and deleted "
                                                                            "after it"})
        p.models.append(info)

    has_baseline = baseline.lower() != "none"
    add(artifact, name, "se" if has_baseline else "other", precision)

    if not has_baseline:
        return p
    if baseline.lower() != "auto":
        bpath = Path(baseline)
        if not bpath.is_file():
            raise InputError(f"baseline file not found: {bpath}")
        bprec = onnx_precision(bpath) if bpath.suffix == ".onnx" else precision
        add({b: str(bpath) for b in requested}, bpath.stem if bpath.stem != name else f"{bpath.stem}-baseline",
            "plain", bprec)
        return p
    if kind == "zoo":
        twin = plain_twin(target)
        if twin is None:
            p.warnings.append(f"no plain twin registered for {target}; SE tax not measured")
            _demote(p)
            return p
        twin_onnx = str(_export(twin, workdir, input_shape, say)) if needs_onnx else None
        add({b: twin if b == Backend.torch else twin_onnx for b in requested}, twin, "plain", precision)
        return p
    if kind == "plan":
        p.warnings.append("--baseline auto cannot remove SE blocks from a TensorRT plan; pass --baseline PLAN "
                          "built from the plain twin")
        _demote(p)
        return p
    # any ONNX model: remove its SE blocks

    model = load_onnx(main, check=False)
    if not find_se_blocks(model):
        p.warnings.append(f"no SE blocks found in {path.name}; nothing to compare against")
        _demote(p)
        return p
    say(f"removing SE blocks from {path.name} for the plain baseline")
    out = workdir / f"{name}.plain.onnx"
    save_onnx(ablate_se(model), out)
    add({b: str(out) for b in requested}, f"{name} (SE removed)", "plain", precision)
    return p


def _demote(p: Prepared) -> None:
    p.candidates[:] = [Candidate(name=c.name, precision=c.precision, artifact=c.artifact, role="other",
                                 backend=c.backend, options=c.options) for c in p.candidates]
    for m in p.models:
        m.role = "other"


def measure(prep: Prepared, config: BenchConfig, *, trtexec: str | None = None,
            on_progress=None) -> Results:
    """Time the prepared candidates: in trtexec's own runs for ``--backend trtexec`` (``trtexec``: its
    executable), else interleaved through the runners. Warnings from preparing come first in the results."""
    if any(c.backend == BenchBackend.trtexec for c in prep.candidates):
        results = bench_trtexec(prep.candidates, config, trtexec=trtexec, models=prep.models,
                                on_progress=on_progress)
    else:
        results = benchmark(prep.candidates, config, models=prep.models, run_name="", run_extra=prep.run,
                            on_progress=on_progress)
    results.warnings[:0] = prep.warnings
    return results

