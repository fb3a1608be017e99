"""TensorRT engines for TensorRT 10.x and 11.x; TensorRT itself is imported lazily.

* ``config``      BuildConfig (validated options) and the precision matrix per TensorRT major
* ``onnx_model``  what the ONNX already carries (Q/DQ, FP16), its inputs, the batch profile
* ``builder``     ONNX -> plan with the TensorRT Python API (+ Q/DQ / FP16 preparation)
* ``runner``      TrtRunner: named I/O tensors, execute_async_v3, optional CUDA graphs
* ``cuda``        CUDA memory/streams/events/graphs over cuda-python or pycuda
* ``calibrator``  TensorRT 10 INT8 calibrators with a cache in TensorRT's format
* ``inspector``   per-layer precision from the engine inspector JSON (10.x and 11.x schemas)
* ``plan_meta``   the model.plan.json sidecar and the TensorRT/GPU mismatch refusal
* ``trtexec``     the equivalent trtexec command for 10.x and 11.x
* ``_api_check``  static check of every TensorRT name against the API manifests
"""
