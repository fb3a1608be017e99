import pytest
import torch

from se_deploy.errors import ModelError
from se_deploy.models import count_se_modules, create_model, get_entry, list_models, plain_twin
from se_deploy.models.layers import SqueezeExcite

# Parameter counts (millions) from the SE paper's tables (Hu et al., Table 2/3) and the
# torchvision reference for the depths the paper does not list.
PAPER_PARAMS_M = {
    "resnet50": 25.6, "se_resnet50": 28.1,
    "resnet101": 44.6, "se_resnet101": 49.4,
    "resnet152": 60.3, "se_resnet152": 66.8,
    "resnext50_32x4d": 25.0, "se_resnext50_32x4d": 27.6,
    "mobilenet_v1": 4.2, "se_mobilenet_v1": 4.7,
    "resnet18": 11.7, "resnet34": 21.8,
}

EXPECTED_SE_MODULES = {"se_resnet18": 8, "se_resnet34": 16, "se_resnet50": 16, "se_resnet101": 33,
                       "se_resnet152": 50, "se_resnext50_32x4d": 16, "se_mobilenet_v1": 13, "se_mobilenet_v2": 17}


@pytest.mark.parametrize("name", sorted(PAPER_PARAMS_M))
def test_param_counts_match_paper_within_2_percent(name):
    m = create_model(name)
    n = sum(p.numel() for p in m.parameters()) / 1e6
    assert abs(n - PAPER_PARAMS_M[name]) / PAPER_PARAMS_M[name] <= 0.02, (name, n)


@pytest.mark.parametrize("name", list_models())
def test_every_zoo_model_runs_and_twin_has_no_se(name):
    m = create_model(name, num_classes=7)
    with torch.no_grad():
        y = m(torch.randn(2, 3, 64, 64))
    assert y.shape == (2, 7)
    entry = get_entry(name)
    if entry.se:
        assert count_se_modules(m) == EXPECTED_SE_MODULES[name]
        twin = create_model(plain_twin(name), num_classes=7)
        assert count_se_modules(twin) == 0
        # the twin is the same network minus exactly the SE parameters
        se_params = sum(p.numel() for mod in m.modules() if isinstance(mod, SqueezeExcite) for p in mod.parameters())
        assert sum(p.numel() for p in m.parameters()) - se_params == sum(p.numel() for p in twin.parameters())
    else:
        assert count_se_modules(m) == 0 and plain_twin(name) is None


def test_reduction_and_gate_are_configurable():
    m = create_model("se_resnet18", reduction=4, num_classes=3)
    se = [mod for mod in m.modules() if isinstance(mod, SqueezeExcite)]
    assert [s.rd_channels for s in se][:2] == [16, 16]  # 64 / 4
    m2 = create_model("se_mobilenet_v2", se_gate="hard_sigmoid", num_classes=3)
    assert all(isinstance(s.gate, torch.nn.Hardsigmoid) for s in m2.modules() if isinstance(s, SqueezeExcite))


def test_se_layer_math():
    torch.manual_seed(0)
    for fc in ("conv", "linear"):
        se = SqueezeExcite(32, 8, fc=fc).eval()
        x = torch.randn(2, 32, 5, 5)
        s = x.mean((2, 3))
        w1 = se.fc1.weight.reshape(4, 32)
        w2 = se.fc2.weight.reshape(32, 4)
        g = torch.sigmoid(torch.relu(s @ w1.T + se.fc1.bias) @ w2.T + se.fc2.bias)
        torch.testing.assert_close(se(x), x * g[:, :, None, None])


def test_unknown_model_suggests_close_names():
    with pytest.raises(ModelError, match="did you mean se_resnet50"):
        create_model("se_resnet5")


def test_list_models_filters():
    assert list_models("se_resnet*") == ["se_resnet101", "se_resnet152", "se_resnet18", "se_resnet34", "se_resnet50"]
    assert "resnet50" in list_models(se=False) and "resnet50" not in list_models(se=True)
