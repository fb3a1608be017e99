"""Per-layer precision from the engine-inspector JSON, both schemas (handwritten samples)."""

from __future__ import annotations

import json

import pytest

from se_deploy.engines.tensorrt.inspector import SCHEMA_10, SCHEMA_11, dtype_of, parse_engine_information
from se_deploy.errors import InputError

# Shape of TensorRT 10.x output: "Bindings" names, "Format/Datatype" phrases.
INSPECTOR_10 = {
    "Layers": [
        {"Name": "input_QuantizeLinear", "LayerType": "Reformat",
         "Inputs": [{"Name": "input", "Location": "Device", "Dimensions": [1, 3, 64, 64],
                     "Format/Datatype": "Row major linear FP32"}],
         "Outputs": [{"Name": "input_q", "Location": "Device", "Dimensions": [1, 3, 64, 64],
                      "Format/Datatype": "Four wide channel vectorized row major Int8 format"}]},
        {"Name": "conv1 + relu1", "LayerType": "CaskConvolution",
         "Inputs": [{"Name": "input_q", "Location": "Device", "Dimensions": [1, 3, 64, 64],
                     "Format/Datatype": "Four wide channel vectorized row major Int8 format"}],
         "Outputs": [{"Name": "r1", "Location": "Device", "Dimensions": [1, 64, 32, 32],
                      "Format/Datatype": "Thirty-two wide channel vectorized row major Int8 format"}]},
        {"Name": "se1/fc1", "LayerType": "CaskConvolution",
         "Inputs": [{"Name": "p", "Dimensions": [1, 64, 1, 1], "Format/Datatype": "Channel major FP16 format where "
                                                                                  "channel % 8 == 0"}],
         "Outputs": [{"Name": "s", "Dimensions": [1, 4, 1, 1], "Format/Datatype": "Row major linear FP16 format"}]},
        {"Name": "se1/sigmoid", "LayerType": "PointWiseV2",
         "Inputs": [{"Name": "s", "Dimensions": [1, 4, 1, 1], "Format/Datatype": "Row major linear FP32"}],
         "Outputs": [{"Name": "g", "Dimensions": [1, 4, 1, 1], "Format/Datatype": "Row major linear FP32"}]},
    ],
    "Bindings": ["input", "output"],
}

# Shape of TensorRT 11.x output: "I/O Tensors" objects, separate Format and Datatype keys.
INSPECTOR_11 = {
    "Layers": [
        {"Name": "conv1", "LayerType": "CaskConvolution",
         "Inputs": [{"Name": "input", "Dimensions": [-1, 3, 64, 64], "Format": "LINEAR", "DataType": "FP16"}],
         "Outputs": [{"Name": "c1", "Dimensions": [-1, 64, 32, 32], "Format": "CHW8", "Datatype": "Half"}],
         "TacticName": "sm87_xmma_fprop"},
        {"Name": "fc", "LayerType": "MatrixMultiply",
         "Inputs": [{"Name": "f", "Dimensions": [-1, 512], "Format": "LINEAR", "Datatype": "Int8"}],
         "Outputs": [{"Name": "output", "Dimensions": [-1, 10], "Format": "LINEAR", "Datatype": "Float"}]},
        {"Name": "shape_call", "LayerType": "ShapeHostToDevice",
         "Inputs": [], "Outputs": [{"Name": "sz", "Dimensions": [1], "Format": "LINEAR", "Datatype": "Int64"}]},
    ],
    "I/O Tensors": [
        {"Name": "input", "IOMode": "INPUT", "DataType": "FP16", "Dimensions": [-1, 3, 64, 64]},
        {"Name": "output", "IOMode": "OUTPUT", "Datatype": "Float", "Dimensions": [-1, 10]},
    ],
}


def test_tensorrt10_schema():
    s = parse_engine_information(json.dumps(INSPECTOR_10))
    assert s.schema == SCHEMA_10
    assert s.io_tensors == ("input", "output")
    assert [(layer.name, layer.precision) for layer in s.layers] == [
        ("input_QuantizeLinear", "int8"), ("conv1 + relu1", "int8"), ("se1/fc1", "fp16"), ("se1/sigmoid", "fp32")]
    assert s.counts == {"int8": 2, "fp16": 1, "fp32": 1}
    d = s.to_dict()
    assert d["layer_count"] == 4 and d["layers"][1]["tensor_types"] == ["int8", "int8"]


def test_tensorrt11_schema():
    s = parse_engine_information(INSPECTOR_11)
    assert s.schema == SCHEMA_11
    assert s.io_tensors == ("input", "output")
    assert [(layer.name, layer.layer_type, layer.precision) for layer in s.layers] == [
        ("conv1", "CaskConvolution", "fp16"), ("fc", "MatrixMultiply", "int8"), ("shape_call", "ShapeHostToDevice",
                                                                                 "int64")]
    assert s.to_dict(with_layers=False) == {"schema": SCHEMA_11, "io_tensors": ["input", "output"],
                                            "layer_count": 3, "precision_counts": {"fp16": 1, "int8": 1, "int64": 1}}


def test_names_only_verbosity_gives_unknown_precision():
    s = parse_engine_information({"Layers": ["conv1 + relu1", "fc"], "Bindings": ["input", "output"]})
    assert [layer.precision for layer in s.layers] == ["unknown", "unknown"]


@pytest.mark.parametrize("tensor, expected", [
    ({"Format/Datatype": "Row major linear FP32"}, "fp32"),
    ({"Format/Datatype": "Channel major FP16 format where channel % 2 == 0"}, "fp16"),
    ({"Format/Datatype": "Row major Int8 format"}, "int8"),
    ({"Format/Datatype": "Row major linear BF16"}, "bf16"),
    ({"Datatype": "Half"}, "fp16"),
    ({"DataType": "INT8"}, "int8"),
    ({"Datatype": "Float"}, "fp32"),
    ({"Name": "x"}, None),
])
def test_dtype_of_both_spellings(tensor, expected):
    assert dtype_of(tensor) == expected


@pytest.mark.parametrize("bad, message", [
    ("not json", "not JSON"),
    ({"Bindings": []}, "expected an object with a \"Layers\" list"),
    ({"Layers": []}, "neither \"Bindings\""),
    ({"Layers": [3], "Bindings": []}, "layer 0 is neither an object nor a name"),
])
def test_malformed_inspector_output(bad, message):
    with pytest.raises(InputError, match=message):
        parse_engine_information(bad)
