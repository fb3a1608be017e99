"""The model.plan.json sidecar and refusing a plan built for another TensorRT or GPU."""

from __future__ import annotations

import json

import pytest

from se_deploy.runtime.tensorrt.plan_meta import (DeviceInfo, check_plan_compatible, plan_metadata, plan_mismatches,
                                                  read_plan_metadata, write_plan_metadata)
from se_deploy.errors import EngineError

ORIN = DeviceInfo("10.3.0.30", "Orin", "8.7")


def _meta() -> dict:
    return plan_metadata(device=ORIN, precision={"requested": ["int8"], "strongly_typed": True},
                         layers={"schema": "10.x (Bindings)", "precision_counts": {"int8": 10, "fp32": 2}},
                         profile={"input": ((1, 3, 64, 64), (4, 3, 64, 64), (8, 3, 64, 64))},
                         onnx_path="m.onnx", onnx_sha256="ab" * 32, built_onnx_path="m.int8.onnx",
                         build_seconds=12.3456, options={"workspace_mib": 512}, trtexec="trtexec --onnx=m.int8.onnx")


def test_sidecar_round_trip(tmp_path):
    plan = tmp_path / "m.plan"
    plan.write_bytes(b"plan")
    write_plan_metadata(plan, _meta())
    raw = json.loads((tmp_path / "m.plan.json").read_text())
    assert raw["tensorrt_version"] == "10.3.0.30"
    assert raw["gpu"] == {"name": "Orin", "compute_capability": "8.7"}
    assert raw["profile"] == {"input": {"min": [1, 3, 64, 64], "opt": [4, 3, 64, 64], "max": [8, 3, 64, 64]}}
    assert raw["onnx"]["sha256"] == "ab" * 32 and raw["build_seconds"] == 12.346
    assert raw["precision"]["requested"] == ["int8"] and "se_deploy_version" in raw
    assert read_plan_metadata(plan)["layers"]["precision_counts"] == {"int8": 10, "fp32": 2}
    assert plan.read_bytes() == b"plan"  # metadata never goes into the plan


def test_same_device_is_compatible(tmp_path):
    assert plan_mismatches(_meta(), ORIN) == []
    check_plan_compatible(tmp_path / "m.plan", _meta(), ORIN)
    check_plan_compatible(tmp_path / "m.plan", None, ORIN)  # a trtexec-built plan has no sidecar


@pytest.mark.parametrize("here, reason", [
    (DeviceInfo("10.7.0.23", "Orin", "8.7"), "built with TensorRT 10.3.0.30, this device has TensorRT 10.7.0.23"),
    (DeviceInfo("10.3.0.30", "Thor", "11.0"), "built for compute capability 8.7, this GPU is 11.0"),
    (DeviceInfo("10.3.0.30", "NVIDIA A100", "8.7"), "built on Orin, this GPU is NVIDIA A100"),
])
def test_mismatch_is_refused_with_one_line(tmp_path, here, reason):
    assert plan_mismatches(_meta(), here) == [reason]
    with pytest.raises(EngineError) as e:
        check_plan_compatible(tmp_path / "m.plan", _meta(), here)
    msg = str(e.value)
    assert "\n" not in msg and reason in msg and msg.endswith("rebuild it on this device with se-deploy build-engine")


def test_sidecar_without_version_is_refused():
    assert plan_mismatches({"gpu": {"name": "Orin", "compute_capability": "8.7"}}, ORIN) == [
        "the sidecar records no TensorRT version"]


def test_a_trtexec_built_plan_matches_the_python_version_string():
    """trtexec's banner gives three numbers (10.3.0), the Python module four (10.3.0.30): the same release."""
    from se_deploy.runtime.tensorrt.plan_meta import same_tensorrt

    meta = {**_meta(), "tensorrt_version": "10.3.0"}
    assert plan_mismatches(meta, ORIN) == []
    assert same_tensorrt("8.6.2", "8.6.2.3") and not same_tensorrt("10.3.0", "10.3.1.0")
    assert not same_tensorrt("10.3", "10.3.0.30")  # major.minor alone does not name a release
    assert plan_mismatches({**meta, "tensorrt_version": "10.13.3"}, ORIN) == [
        "built with TensorRT 10.13.3, this device has TensorRT 10.3.0.30"]
