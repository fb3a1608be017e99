"""Running TensorRT plans: the runner, CUDA memory/streams, and the plan sidecar check.

TensorRT itself is imported lazily (``_trt.load_tensorrt``). Building plans lives above
calibration, in :mod:`se_deploy.engines.tensorrt`.
"""
