"""The one reusable Squeeze-and-Excitation layer used by every zoo model."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

GATES: dict[str, Callable[[], nn.Module]] = {"sigmoid": nn.Sigmoid, "hard_sigmoid": nn.Hardsigmoid}
ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": lambda: nn.ReLU(inplace=True),
    "relu6": lambda: nn.ReLU6(inplace=True),
    "silu": lambda: nn.SiLU(inplace=True),
    "hard_swish": lambda: nn.Hardswish(inplace=True),
}


def reduced_channels(channels: int, reduction: int, min_channels: int = 1, divisor: int = 1) -> int:
    rd = max(min_channels, channels // reduction)
    if divisor > 1:
        rd = max(divisor, int(rd + divisor / 2) // divisor * divisor)
    return rd


class SqueezeExcite(nn.Module):
    """Squeeze (global average pool) -> FC -> act -> FC -> gate -> channel-wise scale.

    ``fc="linear"`` reproduces the paper's fully connected form (a flatten/view appears in
    the exported graph); ``fc="conv"`` uses 1x1 convolutions on the pooled map. Both have
    the same parameters and math.
    """

    def __init__(self, channels: int, reduction: int = 16, *, act: str = "relu", gate: str = "sigmoid",
                 fc: str = "conv", min_channels: int = 1, divisor: int = 1) -> None:
        super().__init__()
        if reduction < 1:
            raise ValueError(f"SE reduction must be >= 1, got {reduction}")
        if gate not in GATES:
            raise ValueError(f"SE gate {gate!r} is not one of {sorted(GATES)}")
        if act not in ACTIVATIONS:
            raise ValueError(f"SE activation {act!r} is not one of {sorted(ACTIVATIONS)}")
        if fc not in ("conv", "linear"):
            raise ValueError(f"SE fc must be 'conv' or 'linear', got {fc!r}")
        self.channels = channels
        self.rd_channels = reduced_channels(channels, reduction, min_channels, divisor)
        self.fc_kind = fc
        if fc == "conv":
            self.fc1 = nn.Conv2d(channels, self.rd_channels, 1)
            self.fc2 = nn.Conv2d(self.rd_channels, channels, 1)
        else:
            self.fc1 = nn.Linear(channels, self.rd_channels)
            self.fc2 = nn.Linear(self.rd_channels, channels)
        self.act = ACTIVATIONS[act]()
        self.gate = GATES[gate]()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fc_kind == "conv":
            s = x.mean((2, 3), keepdim=True)
            s = self.gate(self.fc2(self.act(self.fc1(s))))
            return x * s
        b, c = x.shape[0], x.shape[1]
        s = x.mean((2, 3)).view(b, c)
        s = self.gate(self.fc2(self.act(self.fc1(s)))).view(b, c, 1, 1)
        return x * s
