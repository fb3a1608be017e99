"""Engine build: turning an ONNX that calibration/fp16 already prepared into a TensorRT plan.

This is the last build stage and sits above calibration; running a plan is the runtime's job
(:mod:`se_deploy.runtime.tensorrt`).
"""
