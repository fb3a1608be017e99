"""Building TensorRT engines for TensorRT 8.6, 10.x and 11.x; TensorRT itself is imported lazily.

* ``config``      BuildConfig (validated options) and the precision matrix per TensorRT major
* ``onnx_model``  what the ONNX already carries (Q/DQ, FP16), its inputs, the batch profile
* ``builder``     ONNX -> plan with the TensorRT Python API
* ``calibrator``  TensorRT 8.6/10 INT8 calibrators with a cache in TensorRT's format
* ``inspector``   per-layer precision from the engine inspector JSON (10.x and 11.x schemas)
* ``trtexec``     the equivalent trtexec command for 8.6, 10.x and 11.x

``tools/trt_api_check.py`` checks every TensorRT name used here and in
:mod:`se_deploy.runtime.tensorrt` against the API manifests.
"""
