"""FP16 ONNX graphs with onnxconverter-common's float16 converter, checked against FP32.

TensorRT 11 has no FP16 builder flag: an FP16 engine comes from an FP16 graph, so the
precision is decided here. Graph inputs and outputs stay float32 by default (Cast nodes
at the edges) so existing pre- and post-processing keep working.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from se_deploy._util import check_output_path, sha256_file
from se_deploy.calibration.accuracy import run_model
from se_deploy.calibration.dataset import CalibrationSet
from se_deploy.calibration.placement import name_nodes
from se_deploy.errors import QuantizationError, UsageError, first_line
from se_deploy.export.se_detect import find_se_blocks
from se_deploy.files import refuse_clobbering, rejected_path, staged_artifact
from se_deploy.numerics import compare_arrays, probe_inputs
from se_deploy.onnx_io import load_onnx, model_input, save_onnx

# Ops kept in float32 on top of onnxconverter-common's own list (which covers ops without
# FP16 kernels or with unsafe FP16 numerics: TopK, Resize, Range, CumSum, Min, Max, NMS, ...).
# Softmax and the normalisations accumulate over many values; in FP16 they lose digits.
EXTRA_FP16_BLOCK_LIST = ("Softmax", "LogSoftmax", "LayerNormalization", "InstanceNormalization", "ReduceSum",
                         "ReduceSumSquare", "ReduceL2", "ReduceLogSumExp")


def default_op_block_list() -> tuple[str, ...]:
    from onnxconverter_common import float16

    return tuple(dict.fromkeys([*float16.DEFAULT_OP_BLOCK_LIST, *EXTRA_FP16_BLOCK_LIST]))


@dataclass(frozen=True)
class Fp16Config:
    """How to build the FP16 graph.

    ``keep_io_types``: graph inputs/outputs stay float32 (``--fp16-io`` makes them float16).
    ``op_block_list``: op types kept float32; None means :func:`default_op_block_list`.
    ``keep_se_float``: keep each SE block's squeeze, excitation and gate in float32.
    ``min_cosine``: the FP16 output must reach this cosine similarity with FP32 on the check inputs.
    """

    keep_io_types: bool = True
    op_block_list: tuple[str, ...] | None = None
    node_block_list: tuple[str, ...] = ()
    keep_se_float: bool = False
    min_cosine: float = 0.999

    def __post_init__(self) -> None:
        if not 0.0 < self.min_cosine <= 1.0:
            raise UsageError(f"min cosine must be in (0, 1], got {self.min_cosine}")
        if self.op_block_list is not None:
            object.__setattr__(self, "op_block_list", tuple(self.op_block_list))
        object.__setattr__(self, "node_block_list", tuple(self.node_block_list))

    def resolved_op_block_list(self) -> tuple[str, ...]:
        return default_op_block_list() if self.op_block_list is None else self.op_block_list

    def to_dict(self) -> dict:
        d = asdict(self)
        d["op_block_list"] = list(self.resolved_op_block_list())
        d["node_block_list"] = list(self.node_block_list)
        return d


def _check_inputs(model, eval_set):
    """Real held-out samples when given; otherwise deterministic probes (random normal and constant)."""
    inp = model_input(model)
    name, shape = inp.name, inp.dims
    if eval_set is not None:
        return name, eval_set.arrays[:64], f"{min(len(eval_set), 64)} {eval_set.provenance.get('role', 'evaluation')} samples"
    dims = [d if isinstance(d, int) and d > 0 else None for d in shape]
    if any(d is None for d in dims[1:]):
        raise UsageError(f"input {name!r} has dynamic C/H/W {tuple(shape)}; give evaluation data to check FP16")
    probes = probe_inputs((2, *dims[1:]), seed=0)
    return name, np.concatenate([p for _, p in probes]), "probe inputs (random normal and constant)"


def convert_fp16(onnx_in: str | Path, onnx_out: str | Path, config: Fp16Config, *, eval_set=None,
                 keep_rejected: bool = False) -> dict:
    """Write an FP16 model to ``onnx_out`` (+ sidecar) and return the sidecar dict.

    The converted model is run next to the FP32 one; if its cosine similarity falls below
    ``config.min_cosine``, nothing is written under ``onnx_out`` and QuantizationError is raised (with
    ``keep_rejected`` the model goes to ``*.rejected.onnx``, marked rejected in its sidecar).
    """
    onnx_in, onnx_out = Path(onnx_in), Path(onnx_out)
    check_output_path(onnx_out)
    refuse_clobbering({"the input model": onnx_in}, {"the FP16 output": onnx_out})
    with staged_artifact(onnx_out) as staged:
        return _convert_staged(onnx_in, staged, config, eval_set=eval_set, keep_rejected=keep_rejected)


def _convert_staged(onnx_in: Path, staged, config: Fp16Config, *, eval_set, keep_rejected: bool) -> dict:
    from onnxconverter_common import float16

    onnx_out = staged.final
    t0 = time.perf_counter()
    model = load_onnx(onnx_in)
    name_nodes(model)
    node_block = list(config.node_block_list)
    se_kept: list[str] = []
    if config.keep_se_float:
        for b in find_se_blocks(model):
            se_kept.extend(n for n in b.excitation_nodes if n)
        node_block.extend(se_kept)
    known = {n.name for n in model.graph.node}
    unknown = [n for n in config.node_block_list if n not in known]
    if unknown:
        raise UsageError(f"FP16 node block list names nodes not in the model: {unknown[:3]}")
    fp32_bytes = model.SerializeToString()
    try:
        with warnings.catch_warnings():  # onnxconverter-common warns once per value it clamps to the FP16 range
            warnings.simplefilter("ignore", UserWarning)
            converted = float16.convert_float_to_float16(model, keep_io_types=config.keep_io_types,
                                                         op_block_list=list(config.resolved_op_block_list()),
                                                         node_block_list=node_block or None)
    except Exception as e:
        first = first_line(e)
        raise QuantizationError(f"FP16 conversion failed: {first}") from None
    save_onnx(converted, staged.path)  # under onnx_out only once the check below passed

    name, x, what = _check_inputs(model, eval_set)
    check = CalibrationSet(x, name, "npz", {"role": what})
    ref = run_model(fp32_bytes, check)  # batches as the model's (static or dynamic) batch allows
    cmp = compare_arrays(ref, run_model(staged.path, check)[: len(ref)])
    status = "accepted" if cmp.cosine >= config.min_cosine else "rejected"
    counts: dict[str, int] = {}
    for n in converted.graph.node:
        counts[n.op_type] = counts.get(n.op_type, 0) + 1
    side = {
        "kind": "fp16",
        "status": status,
        "source_model": str(Path(onnx_in).resolve()),
        "source_sha256": sha256_file(onnx_in),
        "config": config.to_dict(),
        "se_nodes_kept_float": se_kept,
        "io_types": "float32" if config.keep_io_types else "float16",
        "cast_nodes": counts.get("Cast", 0),
        "numerics": {"inputs": what, **cmp.to_dict(), "min_cosine": config.min_cosine},
        "seconds": round(time.perf_counter() - t0, 2),
    }
    staged.write_sidecar(side)
    if status == "rejected":
        kept = staged.keep_rejected() if keep_rejected else None
        raise QuantizationError(f"FP16 output cosine {cmp.cosine:.6f} is below {config.min_cosine}; nothing written "
                                f"to {onnx_out} " + (f"(the rejected model is kept as {kept}); " if kept else
                                                     f"(--keep-rejected keeps it as {rejected_path(onnx_out)}); ")
                                + "block more ops with --fp16-block")
    return side




# --------------------------------------------------------------------------- INT8 Q/DQ models: FP16 float layers


def raise_opset(model, opset: int):
    """``model`` converted to at least ``opset`` of the default domain (onnx's version converter)."""
    import onnx
    from onnx import version_converter

    current = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if current is None or current >= opset:
        return model
    try:
        converted = version_converter.convert_version(model, opset)
    except Exception as e:
        raise QuantizationError(f"cannot raise the model from opset {current} to {opset} (needed for FP16 Q/DQ "
                                f"scales): {first_line(e)}; use --high-precision fp32") from None
    del converted.graph.value_info[:]
    return onnx.shape_inference.infer_shapes(converted)


FP16_MAX = 65504.0
FP16_TINY = 2.0 ** -24  # the smallest FP16 subnormal
#: a Q/DQ scale that moved more than FP16 rounding (2^-11 relative for normal numbers) when written in FP16
SCALE_ROUNDING = 1e-3


def _qdq_scales(model) -> dict[str, np.ndarray]:
    from onnx import numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    names = {n.input[1] for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")}
    return {k: numpy_helper.to_array(inits[k]).astype(np.float64) for k in names if k in inits}


def qdq_to_high_precision(model) -> tuple[Any, dict]:
    """A Q/DQ model with every float layer in FP16, graph inputs and outputs FP32 behind one Cast each,
    and FP16 Q/DQ scales (opset >= 19; :func:`raise_opset` first). Returns (model, scale report).

    What TensorRT 11 (always strongly typed) and 10 with ``--stronglyTyped`` build as INT8 with FP16
    in between, as NVIDIA ModelOpt's default ``high_precision_dtype`` writes it. onnxconverter-common
    does the conversion; ops it keeps FP32 (no FP16 kernels) get Casts. The report counts scales
    that moved more than FP16 rounding (below FP16's normal range, ~6.1e-5): their tensors barely
    vary, but the numerics check is what says whether it matters.
    """
    from onnxconverter_common import float16

    before = _qdq_scales(model)
    try:
        with warnings.catch_warnings():  # one UserWarning per clamped value; the report below counts them
            warnings.simplefilter("ignore", UserWarning)
            converted = float16.convert_float_to_float16(model, min_positive_val=FP16_TINY, max_finite_val=FP16_MAX,
                                                         keep_io_types=True,
                                                         op_block_list=list(float16.DEFAULT_OP_BLOCK_LIST))
    except Exception as e:
        raise QuantizationError(f"writing the float layers in FP16 failed: {first_line(e)}; use --high-precision "
                                "fp32") from None
    after = _qdq_scales(converted)
    moved = {}
    for k, b in before.items():
        a = after.get(k)
        if a is None or a.shape != b.shape:
            continue
        rel = np.abs(a - b) / np.maximum(np.abs(b), 1e-45)
        if np.any(rel > SCALE_ROUNDING):
            moved[k] = float(np.max(rel))
    report = {"scales": len(before), "moved_beyond_fp16_rounding": len(moved),
              "worst": max(moved.items(), key=lambda kv: kv[1]) if moved else None}
    return converted, report


__all__ = ["EXTRA_FP16_BLOCK_LIST", "FP16_MAX", "FP16_TINY", "Fp16Config", "convert_fp16", "default_op_block_list",
           "qdq_to_high_precision", "raise_opset"]
