"""se-deploy: SE-network deployment toolkit (PyTorch -> ONNX -> INT8/FP16 engines) with SE-tax benchmarks."""

__version__ = "0.1.0"

__all__ = ["__version__"]
