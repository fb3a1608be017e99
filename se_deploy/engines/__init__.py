"""Engines: one runner interface over onnxruntime, TensorRT and eager PyTorch."""

from se_deploy.engines.base import IOSpec, Runner, Timing

__all__ = ["IOSpec", "Runner", "Timing"]
