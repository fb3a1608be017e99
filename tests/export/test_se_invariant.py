"""Detection must not depend on how tidy the graph is (issue 13).

For every zoo model, the number of SE blocks found is the same for the dynamo export, the legacy
export (dynamic batch: shape chains, Constant nodes, deduplicated initializers), each of them
simplified by onnxsim and not, and a copy of the dynamo export whose every initializer is routed
through an Identity node; and it equals the number of SE modules in the PyTorch model (0 for the plain twins).
"""

from __future__ import annotations

import io
import warnings

import onnx
import pytest

from se_deploy.export.se_detect import explain_near_misses, find_se_blocks
from se_deploy.export.simplify import simplify
from se_deploy.models import create_model, list_models
from se_deploy.models.sources import count_se_modules
from tests.export.se_graphs import route_through_identity

SHAPE = (1, 3, 64, 64)
DEEP = {"se_resnet101", "se_resnet152", "resnet101", "resnet152"}


def _exports(torch_model) -> dict[str, onnx.ModelProto]:
    import torch

    x = torch.randn(*SHAPE)
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out["dynamo"] = torch.onnx.export(torch_model, (x,), dynamo=True, opset_version=18, verbose=False,
                                          input_names=["input"]).model_proto
        f = io.BytesIO()
        torch.onnx.export(torch_model, (x,), f, dynamo=False, opset_version=17, input_names=["input"],
                          dynamic_axes={"input": {0: "N"}})
        out["legacy"] = onnx.load_from_string(f.getvalue())
    for name in ("dynamo", "legacy"):
        simplified, info = simplify(out[name], dynamic_batch=name == "legacy", input_shape=SHAPE)
        assert "error" not in info, info
        out[f"{name}+onnxsim"] = simplified
    out["dynamo+identity"] = route_through_identity(out["dynamo"])  # the tidiest export, made untidy
    return out


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in DEEP else n
                                  for n in list_models("*")])
def test_block_count_does_not_depend_on_the_exporter_or_the_tidiness(name):
    torch_model = create_model(name, num_classes=5).eval()
    expected = count_se_modules(torch_model)
    counts = {}
    for form, model in _exports(torch_model).items():
        before = model.SerializeToString()
        counts[form] = len(find_se_blocks(model))
        assert model.SerializeToString() == before  # detection works on a copy
        if counts[form] != expected:
            counts[form] = (counts[form], explain_near_misses(model)[:2])
    assert counts == {form: expected for form in counts}, counts
