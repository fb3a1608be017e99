"""MobileNet V1 / V2 with optional SE blocks.

SE-MobileNet (V1): SE at the end of each depthwise-separable block, as in the SE paper.
SE-MobileNetV2: SE inside the inverted residual, after the depthwise conv and before the
linear projection, on the expanded channels (reduction 4 by default, as is usual for SE on
expanded channels); the gate is configurable (sigmoid or hard_sigmoid).
"""

from __future__ import annotations

from torch import nn

from se_deploy.models.layers import SqueezeExcite


def _conv_bn(inp, oup, k, stride, groups=1, act=True, act6=False):
    layers = [nn.Conv2d(inp, oup, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(oup)]
    if act:
        layers.append(nn.ReLU6(inplace=True) if act6 else nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class DepthwiseSeparable(nn.Module):
    def __init__(self, inp, oup, stride, *, se=False, reduction=16, se_gate="sigmoid", se_fc="conv"):
        super().__init__()
        self.dw = _conv_bn(inp, inp, 3, stride, groups=inp)
        self.pw = _conv_bn(inp, oup, 1, 1)
        self.se = SqueezeExcite(oup, reduction, gate=se_gate, fc=se_fc) if se else nn.Identity()

    def forward(self, x):
        return self.se(self.pw(self.dw(x)))


class MobileNetV1(nn.Module):
    _CFG = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1), (512, 1), (512, 1),
            (512, 1), (1024, 2), (1024, 1)]

    def __init__(self, *, num_classes=1000, se=False, reduction=16, se_gate="sigmoid", se_fc="conv",
                 width_mult=1.0, in_chans=3):
        super().__init__()
        c = int(32 * width_mult)
        layers = [_conv_bn(in_chans, c, 3, 2)]
        for out, stride in self._CFG:
            o = int(out * width_mult)
            layers.append(DepthwiseSeparable(c, o, stride, se=se, reduction=reduction, se_gate=se_gate, se_fc=se_fc))
            c = o
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x):
        return self.fc(self.pool(self.features(x)).flatten(1))


def _make_divisible(v, divisor=8):
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


class InvertedResidual(nn.Module):
    def __init__(self, inp, oup, stride, expand, *, se=False, reduction=4, se_gate="sigmoid", se_fc="conv"):
        super().__init__()
        hidden = int(round(inp * expand))
        self.use_res = stride == 1 and inp == oup
        layers = []
        if expand != 1:
            layers.append(_conv_bn(inp, hidden, 1, 1, act6=True))
        layers.append(_conv_bn(hidden, hidden, 3, stride, groups=hidden, act6=True))
        if se:
            layers.append(SqueezeExcite(hidden, reduction, gate=se_gate, fc=se_fc, divisor=8))
        layers.append(_conv_bn(hidden, oup, 1, 1, act=False))
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv(x) if self.use_res else self.conv(x)


class MobileNetV2(nn.Module):
    _CFG = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
            (6, 320, 1, 1)]

    def __init__(self, *, num_classes=1000, se=False, reduction=4, se_gate="sigmoid", se_fc="conv",
                 width_mult=1.0, in_chans=3):
        super().__init__()
        c = _make_divisible(32 * width_mult)
        last = _make_divisible(1280 * max(1.0, width_mult))
        layers = [_conv_bn(in_chans, c, 3, 2, act6=True)]
        for t, ch, n, s in self._CFG:
            o = _make_divisible(ch * width_mult)
            for i in range(n):
                layers.append(InvertedResidual(c, o, s if i == 0 else 1, t, se=se, reduction=reduction,
                                               se_gate=se_gate, se_fc=se_fc))
                c = o
        layers.append(_conv_bn(c, last, 1, 1, act6=True))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(last, num_classes))

    def forward(self, x):
        return self.classifier(self.pool(self.features(x)).flatten(1))
