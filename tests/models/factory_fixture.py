"""A user-style model factory, loaded by tests as `tests.models.factory_fixture:make`."""

from torch import nn

from se_deploy.models.layers import SqueezeExcite


def make(num_classes: int = 5):
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), SqueezeExcite(16, 4), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(16, num_classes))
