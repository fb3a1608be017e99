"""Running TensorRT plans: the runner, CUDA memory/streams, I/O data types, the plan sidecar check, and
trtexec as a tool (finding it, running it, reading its exports).

TensorRT itself is imported lazily (``_trt.load_tensorrt``). Building plans lives above
calibration, in :mod:`se_deploy.engines.tensorrt`.
"""
