"""TensorRT engine builder and runner (TensorRT is imported lazily)."""
