"""Calibration data, INT8 (Q/DQ) and FP16 models, and their accuracy against FP32.

Modules (import the one you need; none of them imports onnxruntime or torch at import time):

* ``preprocess``: ``Preprocess`` presets (imagenet, none) and explicit overrides.
* ``dataset``: ``load_calibration(...) -> CalibrationSet`` from image folders, .npz/.npy, or synthetic.
* ``quantize``: ``quantize_int8(onnx_in, onnx_out, calib, QuantConfig)`` (targets tensorrt and cpu), a short
  orchestrator over ``placement`` (the named Q/DQ placement rules) and ``qdq_lint`` (the Q/DQ linter).
* ``fp16``: ``convert_fp16(onnx_in, onnx_out, Fp16Config)``.
* ``accuracy``: ``evaluate(reference, candidates, data)``: agreement, cosine, SQNR, top-1/top-5.
* ``ranges``: per-tensor ranges from onnxruntime's calibrators (minmax, entropy, percentile).
* ``trt_cache``: TensorRT calibration cache text format, read (as TensorRT 8.x/10.x write it) and write, and
  ``collect_amax``.
* ``train``: ``quick_train`` of a zoo SE model on scikit-learn digits, for accuracy proofs.
"""
