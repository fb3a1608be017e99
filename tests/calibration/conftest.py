"""Fixtures for the calibration tests: a tiny SE-ResNet-style ONNX and a quick-trained se_resnet18."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest


def _tiny_se_net():
    import torch
    from torch import nn

    class SE(nn.Module):
        def __init__(self, c: int, r: int = 4) -> None:
            super().__init__()
            self.fc1, self.fc2 = nn.Conv2d(c, c // r, 1), nn.Conv2d(c // r, c, 1)

        def forward(self, x):
            g = torch.relu(self.fc1(x.mean((2, 3), keepdim=True)))
            return x * torch.sigmoid(self.fc2(g))

    class Block(nn.Module):
        def __init__(self, c: int) -> None:
            super().__init__()
            self.c1, self.b1 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
            self.c2, self.b2 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
            self.se = SE(c)

        def forward(self, x):
            return torch.relu(x + self.se(self.b2(self.c2(torch.relu(self.b1(self.c1(x)))))))

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Conv2d(3, 16, 3, padding=1)
            self.blocks = nn.Sequential(Block(16), Block(16))
            self.fc = nn.Linear(16, 10)

        def forward(self, x):
            x = self.blocks(torch.relu(self.stem(x)))
            return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))

    torch.manual_seed(0)
    net = Net()
    with torch.no_grad():  # non-trivial BatchNorm statistics so folding matters
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    return net.eval()


@pytest.fixture(scope="session")
def tiny_se_onnx(tmp_path_factory) -> Path:
    """A 2-block SE-ResNet-style model (input 'input', N x 3 x 16 x 16, dynamic batch; 2 SE blocks)."""
    import torch

    path = tmp_path_factory.mktemp("tiny") / "tiny_se.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(_tiny_se_net(), (torch.randn(1, 3, 16, 16),), str(path), input_names=["input"],
                          output_names=["logits"], dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
                          opset_version=17, dynamo=False)
    return path


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """se_resnet18 quick-trained on digits (3 epochs, seed 0), exported to ONNX; shared by the accuracy tests."""
    from se_deploy.calibration.train import export_trained, quick_train

    t = quick_train("se_resnet18", seed=0)
    d = tmp_path_factory.mktemp("trained")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = export_trained(t, d / "model.onnx")
    return {"trained": t, "onnx": path, "dir": d, "calib": t.calibration_set(size=256), "eval": t.eval_set()}


def write_images(root: Path, n_per_class: int = 3, classes=("cat", "dog"), size=(20, 12), seed: int = 0) -> list[Path]:
    """Small PNG/JPEG images in a class-folder layout."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    out = []
    for ci, cls in enumerate(classes):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            arr = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
            ext = ".png" if i % 2 == 0 else ".jpg"
            p = root / cls / f"img{i}{ext}"
            Image.fromarray(arr).save(p)
            out.append(p)
    return out
