"""Tiny PyTorch networks with the SE spellings users bring (written after timm, torchvision, senet.pytorch and
VoVNet code), for detection tests on real exporter output. Class names follow the originals, so
``count_se_modules`` counts them."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SELayer(nn.Module):
    """senet.pytorch: AdaptiveAvgPool2d(1).view(b, c) -> Linear(no bias)/ReLU/Linear/Sigmoid -> x * y.expand_as(x)."""

    def __init__(self, c: int, r: int = 4) -> None:
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(nn.Linear(c, c // r, bias=False), nn.ReLU(inplace=True),
                                nn.Linear(c // r, c, bias=False), nn.Sigmoid())

    def forward(self, x):
        b, c, _, _ = x.size()
        y = self.fc(self.avg_pool(x).view(b, c)).view(b, c, 1, 1)
        return x * y.expand_as(x)


class SqueezeExcite(nn.Module):
    """``y.view(y.size(0), -1)``: the legacy exporter reads the batch from the *pooled* tensor."""

    def __init__(self, c: int, r: int = 4) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1, self.fc2 = nn.Linear(c, c // r), nn.Linear(c // r, c)

    def forward(self, x):
        y = self.pool(x)
        y = torch.sigmoid(self.fc2(F.relu(self.fc1(y.view(y.size(0), -1)))))
        return x * y[:, :, None, None]


class SEModule(nn.Module):
    """``x.mean((2, 3))`` (ReduceMean keepdims=0), unsqueezed back for 1x1 conv FCs; ``act`` inside."""

    def __init__(self, c: int, rd: int, act=nn.ReLU, keepdim: bool = False) -> None:
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Conv2d(c, rd, 1), act(), nn.Conv2d(rd, c, 1)
        self.keepdim = keepdim

    def forward(self, x):
        s = x.mean((2, 3), keepdim=True) if self.keepdim else x.mean((2, 3)).unsqueeze(-1).unsqueeze(-1)
        return x * torch.sigmoid(self.fc2(self.act(self.fc1(s))))


class EffectiveSEModule(nn.Module):
    """VoVNetV2 eSE. ``timm=True``: timm's (mean, one 1x1 conv, nn.Hardsigmoid); else the original
    CenterMask/VoVNet code (AdaptiveAvgPool2d, one conv, ``relu6(x + 3) / 6``)."""

    def __init__(self, c: int, timm: bool = True) -> None:
        super().__init__()
        self.fc = nn.Conv2d(c, c, 1)
        self.timm = timm

    def forward(self, x):
        if self.timm:
            return x * F.hardsigmoid(self.fc(x.mean((2, 3), keepdim=True)))
        return x * (F.relu6(self.fc(F.adaptive_avg_pool2d(x, 1)) + 3.0) / 6.0)


class SqueezeExcitation(nn.Module):
    """torchvision.ops.SqueezeExcitation: pool -> fc1 -> act -> fc2 -> scale_activation; ``scale * input``."""

    def __init__(self, c: int, sq: int, scale_activation=nn.Hardsigmoid) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1, self.fc2 = nn.Conv2d(c, sq, 1), nn.Conv2d(sq, c, 1)
        self.activation, self.scale_activation = nn.ReLU(), scale_activation()

    def forward(self, x):
        return self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x))))) * x


class ResidualHost(nn.Module):
    """conv-bn-relu -> conv-bn -> SE -> + identity -> relu."""

    def __init__(self, se: nn.Module, c: int = 16) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, c, 3, padding=1)
        self.body = nn.Sequential(nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(),
                                  nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c))
        self.se = se

    def forward(self, x):
        x = self.stem(x)
        return F.relu(x + self.se(self.body(x)))


class InvertedResidualHost(nn.Module):
    """EfficientNet MBConv / MobileNetV3 block with stride 2 (no residual): pw -> act -> dw -> act -> SE -> pw."""

    def __init__(self, se: nn.Module, act=nn.SiLU, cin: int = 8, exp: int = 16, cout: int = 12) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, cin, 3, padding=1)
        self.expand = nn.Sequential(nn.Conv2d(cin, exp, 1, bias=False), nn.BatchNorm2d(exp), act())
        self.dw = nn.Sequential(nn.Conv2d(exp, exp, 3, stride=2, padding=1, groups=exp, bias=False),
                                nn.BatchNorm2d(exp), act())
        self.se = se
        self.project = nn.Sequential(nn.Conv2d(exp, cout, 1, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        return self.project(self.se(self.dw(self.expand(self.stem(x)))))


#: name -> (factory, expected variant, expected position, expected input activation)
NETWORKS = {
    "senet_expand_as": (lambda: ResidualHost(SELayer(16)), "se", "before_residual_add", None),
    "view_size0": (lambda: ResidualHost(SqueezeExcite(16)), "se", "before_residual_add", None),
    "mean_unsqueeze_conv": (lambda: ResidualHost(SEModule(16, 4)), "se", "before_residual_add", None),
    "ese_timm": (lambda: ResidualHost(EffectiveSEModule(16)), "ese", "before_residual_add", None),
    "ese_vovnet": (lambda: ResidualHost(EffectiveSEModule(16, timm=False)), "ese", "before_residual_add", None),
    "efficientnet_mbconv": (lambda: InvertedResidualHost(SEModule(16, 4, nn.SiLU, keepdim=True)), "se",
                            "before_projection_conv", "silu"),
    "mobilenetv3": (lambda: InvertedResidualHost(SqueezeExcitation(16, 8), act=nn.Hardswish), "se",
                    "before_projection_conv", "hardswish"),
}


def build(name: str) -> nn.Module:
    torch.manual_seed(0)
    model = NETWORKS[name][0]().eval()
    for m in model.modules():  # random BN statistics, so folding mistakes show in the outputs
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return model
