"""TensorRT I/O data types as numpy dtypes (pure Python; TensorRT is never imported here).

``trt.nptype`` maps only FLOAT, HALF, INT8, INT32, INT64, BOOL and UINT8, and raises a bare
``TypeError`` for everything else (BF16, FP8, INT4, FP4, E8M0: ``tensorrt/__init__.py`` on every
branch from 8.6 to 11.1). Two of those have an exact numpy type in ``ml_dtypes`` (the package
onnx already depends on): BF16 is ``ml_dtypes.bfloat16`` and TensorRT's FP8 (1 sign, 4
exponent, 3 mantissa bits, bias 7, ``NvInferRuntimeBase.h``) is ``ml_dtypes.float8_e4m3fn``.
INT4 and FP4 pack two values per byte and E8M0 is a block-scale type; numpy cannot hold any
of them element by element, so an engine with such an I/O tensor is refused with one line.
"""

from __future__ import annotations

import numpy as np

from se_deploy.errors import EngineError

#: TensorRT DataType member name -> numpy dtype name (the plain numpy ones).
NUMPY_NAMES = {"FLOAT": "float32", "HALF": "float16", "INT8": "int8", "INT32": "int32", "INT64": "int64",
               "BOOL": "bool", "UINT8": "uint8"}
#: TensorRT DataType member name -> the ml_dtypes type that holds it exactly.
ML_DTYPES = {"BF16": "bfloat16", "FP8": "float8_e4m3fn"}
#: Types no numpy array can hold element by element, and why.
UNSUPPORTED = {"INT4": "two 4-bit integers packed per byte", "FP4": "two 4-bit floats packed per byte",
               "E8M0": "an 8-bit exponent-only block-scale type"}


def type_name(dtype) -> str:
    """``trt.DataType.BF16`` -> ``"BF16"`` (pybind11 enums have ``.name``; ``str()`` gives ``DataType.BF16``)."""
    name = getattr(dtype, "name", None)
    if isinstance(name, str) and name:
        return name
    return str(dtype).rsplit(".", 1)[-1]


def numpy_dtype(trt_type: str, tensor: str) -> np.dtype:
    """The numpy dtype for I/O tensor ``tensor`` of TensorRT type ``trt_type`` (a DataType member name);
    one EngineError line naming the tensor and the type when numpy cannot hold it."""
    if trt_type in NUMPY_NAMES:
        return np.dtype(NUMPY_NAMES[trt_type])
    if trt_type in ML_DTYPES:
        try:
            import ml_dtypes
        except ImportError:
            raise EngineError(f"I/O tensor {tensor!r} is {trt_type}, which numpy holds only through the ml_dtypes "
                              "package: pip install ml_dtypes") from None
        return np.dtype(getattr(ml_dtypes, ML_DTYPES[trt_type]))
    why = UNSUPPORTED.get(trt_type, "a type se-deploy does not know")
    raise EngineError(f"I/O tensor {tensor!r} is {trt_type} ({why}), which numpy cannot hold: rebuild the engine "
                      "with FP32, FP16, BF16 or INT8 inputs and outputs (keep such types inside the network)")


__all__ = ["ML_DTYPES", "NUMPY_NAMES", "UNSUPPORTED", "numpy_dtype", "type_name"]
