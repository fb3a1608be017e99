"""SE detection on the graphs users actually bring (issue 13): untidy handwritten forms, the SE family
beyond the classic block, and real exporter output of third-party SE modules. Each form is found,
named in the user's graph, and fused exactly."""

from __future__ import annotations

import io
import warnings

import numpy as np
import onnx
import pytest

from se_deploy.export import passes as P
from se_deploy.export.passes import _ir
from se_deploy.export.passes._registry import _PASSES
from se_deploy.export.se_detect import ActKind, Variant, explain_near_misses, find_se_blocks
from se_deploy.models.sources import count_se_modules
from se_deploy.runtime.onnxruntime import run_onnx
from tests.export.se_graphs import SESpec, input_shape, make_se_model, make_shared_bias_model, real_world_specs
from tests.export.third_party_se import NETWORKS, build

REAL_WORLD = real_world_specs()
ROUTING = ("Identity", "Constant", "Cast", "Shape", "Gather", "Unsqueeze", "Concat")


def _rel_err(a, b) -> float:
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(a)), 1e-12))


def _assert_fuse_exact(model, batches=(None,), shape=None):
    """canonicalize (verified by run_passes) and an independent onnxruntime comparison."""
    before = model.SerializeToString()
    out, report = P.run_passes(model, ["canonicalize"], options=P.PassOptions(batch_sizes=(1, 3)))
    [entry] = report["passes"]
    assert entry["status"] in ("applied", "no-op"), entry
    assert model.SerializeToString() == before  # the input proto is never changed
    onnx.checker.check_model(out)
    rng = np.random.default_rng(0)
    for b in batches:
        dims = [b if (i == 0 and b is not None) else d for i, d in enumerate(shape)]
        x = rng.standard_normal(dims).astype(np.float32)
        for ref, got in zip(run_onnx(model, {"input": x}).values(), run_onnx(out, {"input": x}).values()):
            assert _rel_err(ref, got) <= 1e-5
    return out, entry


@pytest.mark.parametrize("form", list(REAL_WORLD))
def test_real_world_forms_are_detected_and_fuse_exactly(form):
    spec = REAL_WORLD[form]
    model, _ = make_se_model(spec)
    blocks = find_se_blocks(model)
    assert len(blocks) == 1, explain_near_misses(model)
    [b] = blocks
    ops = {n.name: n.op_type for n in model.graph.node}
    # named in the user's graph, including the routing/shape nodes normalization folded away
    assert set(b.node_names) <= set(ops) and ops[b.scale_node] == "Mul"
    inside = set(b.node_names)
    reads = {i for n in model.graph.node if n.name in inside for i in n.input}
    left_out = [n.name for n in model.graph.node if n.name not in inside and n.op_type in ROUTING and n.output[0] in reads]
    assert not left_out, left_out
    assert b.variant == spec.variant
    if spec.variant == "ese":
        assert (b.reduced_channels, b.ratio, b.activation.kind) == (b.channels, 1.0, ActKind.none)
    out, _ = _assert_fuse_exact(model, (1, 3) if spec.batch == "N" else (None,), input_shape(spec))
    [after] = find_se_blocks(out)
    assert after.variant == spec.variant and after.shape_ops == 0


@pytest.mark.parametrize("routing", ["shared", "identity"])
def test_shared_and_identity_routed_biases(routing):
    """The legacy exporter's deduplicated zero biases: before normalization the second block was missed."""
    model = make_shared_bias_model(routing)
    blocks = find_se_blocks(model)
    assert len(blocks) == 2 and all(b.has_bias for b in blocks)
    if routing == "identity":
        assert {"Identity_0", "Identity_1"} <= set(blocks[1].excitation_nodes)  # kept float by quantization
    out, _ = _assert_fuse_exact(model, shape=(1, 8, 4, 4))
    assert len(find_se_blocks(out)) == 2


def test_ese_block_reports_its_variant_in_json():
    model, _ = make_se_model(SESpec(variant="ese", gate="hs_div"))
    [b] = find_se_blocks(model)
    d = b.to_dict()
    assert (d["variant"], d["activation"], d["gate"], d["excitation"]) == ("ese", "none", "hardsigmoid", "conv")
    assert d["channels"] == d["reduced_channels"] and isinstance(d["position"], str)
    # the hard-sigmoid arithmetic of the user's graph belongs to the block
    ops = {n.name: n.op_type for n in model.graph.node}
    assert {"Add", "Clip", "Div"} <= {ops[n] for n in b.node_names}


def test_ese_that_maps_c_to_fewer_channels_is_a_near_miss():
    model, _ = make_se_model(SESpec(variant="ese"))
    w = next(i for i in model.graph.initializer if i.name.startswith("w_"))
    arr = onnx.numpy_helper.to_array(w)
    w.CopyFrom(onnx.numpy_helper.from_array(arr[:4], w.name))  # C -> C/2: no longer a channel gate
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert find_se_blocks(model) == []
        misses = explain_near_misses(model)
    assert misses and ("C->C" in misses[0]["reason"] or "channels" in misses[0]["reason"]), misses


@pytest.fixture
def se_only_pass():
    class SEOnly(_ir.SEPass):
        supports = frozenset({Variant.se})

        def build(self, op, m):
            return _ir.canonical_block(op, self.model, m)

    def fn(model, ctx):
        p = SEOnly(model)
        p.apply()
        return {"changed": len(p.changed), "skipped": p.skipped}

    P.register_pass("test-se-only", kind=P.PassKind.exact, summary="test only")(fn)
    yield
    _PASSES.pop("test-se-only")


def test_a_pass_that_does_not_support_a_variant_skips_it_with_the_reason(se_only_pass):
    model, _ = make_se_model(SESpec(variant="ese", fc="gemm", reshape="flatten"))
    out, report = P.run_passes(model, ["test-se-only"])
    [entry] = report["passes"]
    assert entry["status"] == "no-op" and out is model
    assert list(entry["details"]["skipped"].values()) == ["SEOnly does not support ese blocks"]


@pytest.mark.parametrize("names", [["hoist-squeeze"], ["canonicalize", "expand-gate"], ["ablate-se"]])
def test_every_pass_handles_ese(names):
    model, _ = make_se_model(SESpec(variant="ese", gate="hs_mul", fc="gemm", reshape="flatten"))
    out, report = P.run_passes(model, names, verify=names != ["ablate-se"])
    assert all(e["status"] == "applied" for e in report["passes"]), report["passes"]
    assert len(find_se_blocks(out)) == (0 if names == ["ablate-se"] else 1)


# ---------------------------------------------------------------------- real exporter output


_EXPORTS: dict = {}


def _export(name: str, exporter: str) -> onnx.ModelProto:
    import torch

    key = (name, exporter)
    if key not in _EXPORTS:
        model = build(name)
        x = torch.randn(2, 3, 16, 16)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if exporter == "dynamo":
                _EXPORTS[key] = torch.onnx.export(model, (x,), dynamo=True, opset_version=18, verbose=False,
                                                  input_names=["input"]).model_proto
            else:  # the legacy exporter with a symbolic batch: Shape/Gather/Concat chains, Constant nodes
                f = io.BytesIO()
                torch.onnx.export(model, (x,), f, dynamo=False, opset_version=17, input_names=["input"],
                                  dynamic_axes={"input": {0: "N"}})
                _EXPORTS[key] = onnx.load_from_string(f.getvalue())
    return _EXPORTS[key]


@pytest.mark.parametrize("exporter", ["dynamo", "legacy"])
@pytest.mark.parametrize("name", list(NETWORKS))
def test_third_party_se_modules_through_both_exporters(name, exporter):
    model = _export(name, exporter)
    _, variant, position, input_act = NETWORKS[name]
    blocks = find_se_blocks(model)
    assert len(blocks) == count_se_modules(build(name)) == 1, explain_near_misses(model)
    [b] = blocks
    assert (b.variant, b.position, b.input_activation) == (variant, position, input_act)
    assert set(b.node_names) <= {n.name for n in model.graph.node}
    dims = [d.dim_value or None for d in model.graph.input[0].type.tensor_type.shape.dim]
    _assert_fuse_exact(model, (1, 3) if dims[0] is None else (None,), [None] + dims[1:] if dims[0] is None else dims)
