"""PyTorch -> ONNX export, simplification, SE detection and SE graph passes."""
