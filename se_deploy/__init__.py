"""se-deploy: SE-network deployment toolkit (PyTorch -> ONNX -> INT8/FP16 engines) with SE-tax benchmarks."""

import os as _os

__version__ = "0.1.0"

# onnxruntime's telemetry prints "Failed to persist telemetry device ID" on import wherever HOME is not
# writable (CI, containers), and se-deploy sends no telemetry of its own: off unless the user set it.
_os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

__all__ = ["__version__"]
