"""The runtime: one runner interface over onnxruntime, TensorRT and eager PyTorch, at the bottom of se-deploy.

Everything that checks a result (export parity, pass verification, accuracy) and everything
that times one (bench) runs models through :class:`Runner`. This package imports nothing
from export, calibration, engines, bench or report.
"""

from se_deploy.runtime.base import IOSpec, Runner, Timing

__all__ = ["IOSpec", "Runner", "Timing"]
