"""Seeded fuzz: hundreds of random SE-like and near-SE graphs (classic and effective SE, constants as
initializers, Identity-routed, Constant nodes or fp16 behind a Cast).

Every pass must either be exact (checked here under onnxruntime, with the pass's own
verification switched off so a rollback cannot hide a wrong rewrite) or leave the graph
untouched. Near-SE graphs (shared intermediate values, non-constant weights, a gate with
two consumers, a wrong reduction axis, ...) must not match at all.
"""

from __future__ import annotations

import random

import numpy as np
import pytest

from se_deploy.runtime.onnxruntime import run_onnx
from se_deploy.export import passes as P
from se_deploy.export.se_detect import find_se_blocks
from tests.export.se_graphs import (ACTS, CONSUMERS, DEFECTS, FCS, GATES, NON_MATCH_DEFECTS, PRODUCERS, RESHAPES,
                                    SQUEEZES, WEIGHTS, SESpec, input_shape, make_se_model, valid)

N_GRAPHS = 320


def random_specs(n: int, seed: int = 1234) -> list[SESpec]:
    rng = random.Random(seed)
    out = []
    while len(out) < n:
        r = rng.choice([1, 2, 4])
        reshape = rng.choice(RESHAPES)
        s = SESpec(
            c=r * rng.randint(1, 5), r=r, hw=rng.randint(1, 6),
            batch="N" if reshape.startswith("reshape_dynamic") or rng.random() < 0.2 else 1,
            squeeze=rng.choice(SQUEEZES), fc=rng.choice(FCS), bias=rng.random() < 0.8, act=rng.choice(ACTS),
            gate=rng.choice(GATES), reshape=reshape, mul_order=rng.choice(["xg", "gx"]),
            producer=rng.choice(PRODUCERS), consumer=rng.choice(CONSUMERS),
            defect=rng.choice(DEFECTS) if rng.random() < 0.4 else None,
            opset=rng.choice([13, 17, 18]), seed=rng.randint(0, 10_000),
            weights=rng.choice(WEIGHTS) if rng.random() < 0.4 else "init",
            variant="ese" if rng.random() < 0.2 else "se")
        if s.squeeze == "avgpool" and s.batch == "N":
            s = SESpec(**{**s.__dict__, "squeeze": "gap"})
        if s.act == "hardswish" and s.opset < 14:
            s = SESpec(**{**s.__dict__, "opset": 17})
        if s.squeeze.startswith("reducemean") and s.opset == 13 and s.defect == "wrong_axis":
            s = SESpec(**{**s.__dict__, "opset": 17})
        if valid(s):
            out.append(s)
    return out


def _feeds(spec: SESpec, extra: dict) -> list[dict]:
    feeds = []
    for b in ((1, 3) if spec.batch == "N" else (None,)):
        shape = input_shape(spec, b)
        feeds.append({"input": np.random.default_rng(spec.seed).standard_normal(shape).astype(np.float32), **extra})
        feeds.append({"input": np.full(shape, 0.5, np.float32), **extra})
    return feeds


def _assert_exact_or_untouched(original, out, entry, feeds):
    if entry["changed"] == 0:
        assert out is original
        return
    for feed in feeds:
        for a, b in zip(run_onnx(original, feed).values(), run_onnx(out, feed).values()):
            assert a.shape == b.shape
            err = float(np.max(np.abs(a - b))) / max(float(np.max(np.abs(a))), 1e-6)
            assert err <= 1e-5, (entry["name"], err)


SPECS = random_specs(N_GRAPHS)


def test_fuzz_covers_matches_and_near_misses():
    defects = {s.defect for s in SPECS}
    assert len(SPECS) >= 300
    assert {s.weights for s in SPECS} == set(WEIGHTS) and sum(s.variant == "ese" for s in SPECS) >= 30
    assert set(NON_MATCH_DEFECTS) <= defects
    assert sum(s.defect in NON_MATCH_DEFECTS for s in SPECS) >= 60


@pytest.mark.parametrize("chunk", range(8))
def test_passes_are_exact_or_leave_the_graph_untouched(chunk):
    for spec in SPECS[chunk::8]:
        model, extra = make_se_model(spec)
        expected = 0 if spec.defect in NON_MATCH_DEFECTS else 1
        blocks = find_se_blocks(model)
        assert len(blocks) == expected, spec
        feeds = _feeds(spec, extra)
        for names in (["canonicalize"], ["hoist-squeeze"], ["canonicalize", "expand-gate"]):
            out, report = P.run_passes(model, names, verify=False)
            entry = {"name": "+".join(names), "changed": sum(e["changed"] for e in report["passes"])}
            if expected == 0:
                assert entry["changed"] == 0 and out is model, spec
            _assert_exact_or_untouched(model, out, entry, feeds)
            assert len(find_se_blocks(out)) == expected
        plain = P.ablate_se(model)
        assert find_se_blocks(plain) == []
        if expected == 0:
            assert plain is model
        else:
            assert len(plain.graph.node) < len(model.graph.node)
