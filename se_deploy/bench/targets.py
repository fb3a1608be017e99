"""Turn what the user named (zoo model, ONNX file, TensorRT plan) into bench candidates.

Also finds the plain twin for ``--baseline auto``: the zoo's twin for a zoo name, the
SE-ablated graph (every SE block removed) for any ONNX model.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from se_deploy._util import read_sidecar
from se_deploy.bench.results import ModelInfo
from se_deploy.bench.suite import Candidate, model_info
from se_deploy.errors import InputError, UsageError
from se_deploy.export.passes import ablate_se
from se_deploy.export.se_detect import find_se_blocks
from se_deploy.export.torch_export import export_model
from se_deploy.models import is_registered, plain_twin
from se_deploy.names import Backend, BenchBackend
from se_deploy.onnx_io import load_onnx, save_onnx

PLAN_SUFFIXES = (".plan", ".engine", ".trt")


@dataclass
class Prepared:
    candidates: list[Candidate] = field(default_factory=list)
    models: list[ModelInfo] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


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


def prepare(target: str, *, backend: str | None, baseline: str, input_shape: tuple[int, ...], workdir: Path,
            say=lambda msg: None) -> Prepared:
    """Candidates for ``target`` (and its plain twin per ``baseline``: auto | none | PATH)."""
    backend = backend or _default_backend(target)
    if backend not in BenchBackend.values():
        raise UsageError(f"backend {backend!r} is not one of {BenchBackend.choices()}")
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
    if kind == "plan" and backend not in (Backend.tensorrt, BenchBackend.trtexec):
        raise UsageError(f"{path.name} is a TensorRT plan; bench it with --backend tensorrt or trtexec")
    if kind != "plan" and backend == BenchBackend.trtexec:
        raise UsageError("--backend trtexec times TensorRT plans: build one first (se-deploy build-engine)")
    if kind == "onnx" and backend != Backend.onnxruntime:
        raise UsageError(f"an ONNX file runs on --backend onnxruntime; build a TensorRT plan first for {backend}")

    def add(artifact: str, cname: str, role: str, precision: str) -> None:
        opts: dict = {}
        if backend == "torch":
            opts["input_shape"] = input_shape
        p.candidates.append(Candidate(name=cname, precision=precision, artifact=artifact, role=role,
                                      backend=backend, options=opts))
        onnx_path = artifact if artifact.endswith(".onnx") else None
        info = model_info(cname, role, onnx_path)
        if onnx_path is not None and Path(onnx_path).parent == workdir:  # deleted when the run ends
            how = "the SE-ablated twin" if role == "plain" and kind == "onnx" else "exported from the zoo"
            info = info.model_copy(update={"artifact": None, "temporary": f"{how}, made for this run and deleted "
                                                                            "after it"})
        p.models.append(info)

    # the model under test
    if kind == "zoo" and backend == "torch":
        main = target
    elif kind == "zoo":
        main = str(_export(target, workdir, input_shape, say))
        if backend == "tensorrt":
            raise UsageError("bench a zoo model on TensorRT by building a plan first (se-deploy build-engine)")
    else:
        main = str(path)
    precision = onnx_precision(main) if main.endswith(".onnx") else "fp32" if kind == "zoo" else "engine"
    has_baseline = baseline.lower() != "none"
    add(main, name, "se" if has_baseline else "other", precision)

    if not has_baseline:
        return p
    if baseline.lower() != "auto":
        bpath = Path(baseline)
        if not bpath.is_file():
            raise InputError(f"baseline file not found: {bpath}")
        bprec = onnx_precision(bpath) if bpath.suffix == ".onnx" else precision
        add(str(bpath), bpath.stem if bpath.stem != name else f"{bpath.stem}-baseline", "plain", bprec)
        return p
    if kind == "zoo":
        twin = plain_twin(target)
        if twin is None:
            p.warnings.append(f"no plain twin registered for {target}; SE tax not measured")
            _demote(p)
            return p
        art = twin if backend == "torch" else str(_export(twin, workdir, input_shape, say))
        add(art, twin, "plain", precision)
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
    add(str(out), f"{name} (SE removed)", "plain", precision)
    return p


def _demote(p: Prepared) -> None:
    c = p.candidates[0]
    p.candidates[0] = Candidate(name=c.name, precision=c.precision, artifact=c.artifact, role="other",
                                backend=c.backend, options=c.options)
    m = p.models[0]
    m.role = "other"
