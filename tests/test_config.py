"""The typed-config base: one-line errors, frozen values, strict files, TOML out and back."""

import re
from pathlib import Path

import pytest

import se_deploy
from se_deploy.bench.harness import Timing, run_interleaved
from se_deploy.bench.suite import BenchConfig
from se_deploy.calibration.quantize import QuantConfig
from se_deploy.config import Config, format_validation_error, load_toml, to_toml, validate
from se_deploy.errors import UsageError
from se_deploy.export.torch_export import ExportConfig

STAGE_CONFIGS = [
    ExportConfig(input_shape=(2, 3, 64, 64), dynamic_batch=True, exporter="legacy", opset=17, simplifier="onnxslim"),
    QuantConfig(target="cpu", method="percentile", exclude=("Gemm", "conv1"), max_drop=0.5),
    QuantConfig(),  # None values (quantize_se_scale, max_drop) are left out of the TOML
    BenchConfig(batches=(1, 8), mode="offline", max_iters=50, profile=True),
    BenchConfig(),
]


@pytest.mark.parametrize("cfg", STAGE_CONFIGS, ids=lambda c: type(c).__name__)
def test_stage_configs_round_trip_through_toml(cfg):
    text = to_toml(cfg)
    assert "null" not in text and "None" not in text
    back = type(cfg)(**load_toml(text))
    assert back == cfg
    assert validate(type(cfg), load_toml(text)) == cfg  # the strict file path reads it too


def test_configs_are_frozen_and_store_names_as_plain_strings():
    cfg = QuantConfig(target="cpu")
    with pytest.raises(Exception):
        cfg.target = "tensorrt"
    assert type(cfg.target) is str and cfg.to_dict()["exclude"] == []


@pytest.mark.parametrize("make, msg", [
    (lambda: ExportConfig(exporter="torchscript"), "exporter: 'torchscript' is not one of dynamo, legacy"),
    (lambda: ExportConfig(bogus=1), "unknown key 'bogus'; allowed keys: exporter, opset"),
    (lambda: BenchConfig(batches=(0,)), "batches[0]: 0 must be > 0"),
    (lambda: BenchConfig(mode="fast", n_boot=5), "mode: 'fast' is not one of singlestream, offline (and 1 more "
                                                 "problem)"),
    (lambda: BenchConfig(confidence=1.0), "confidence: 1.0 must be < 1.0"),
])
def test_keyword_construction_raises_one_usage_line(make, msg):
    with pytest.raises(UsageError) as e:
        make()
    assert str(e.value).startswith(msg) and "\n" not in str(e.value)
    assert type(e.value) is UsageError


def test_files_are_read_strictly_and_keyword_calls_are_not():
    """A TOML ``fuse = 1`` is a typo for true; a Python caller passing 1 gets True as before."""
    with pytest.raises(UsageError, match="^fuse: 1 must be true or false$"):
        validate(ExportConfig, {"fuse": 1})
    with pytest.raises(UsageError, match="^opset: 17.5 must be an integer$"):
        validate(ExportConfig, {"opset": 17.5})
    assert validate(BenchConfig, {"warmup_s": 2, "batches": [1, 2]}).batches == (1, 2)  # int for a float is fine
    assert ExportConfig(fuse=1).fuse is True


def test_format_validation_error_without_a_model_still_names_the_key():
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as e:
        BenchConfig.model_validate({"threads": -2})
    assert format_validation_error(e.value, "x: ") == "x: threads: -2 must be >= 0"
    assert issubclass(BenchConfig, Config)


# --------------------------------------------------------------------------- one rule, one place

MAX_VS_MIN = re.compile(r"max_iters\s*<\s*(self\.)?min_iters|min_iters\s*>\s*(self\.)?max_iters")


def test_max_iters_rule_is_written_once():
    hits = [p for p in Path(se_deploy.__file__).parent.rglob("*.py") if MAX_VS_MIN.search(p.read_text())]
    assert [p.name for p in hits] == ["harness.py"]


@pytest.mark.parametrize("check", [
    lambda: Timing(min_iters=10, max_iters=5),
    lambda: BenchConfig(min_iters=10, max_iters=5),
    lambda: run_interleaved({"a": lambda: None}, min_iters=10, max_iters=5),
])
def test_every_entry_point_gets_the_same_max_iters_rule(check):
    with pytest.raises(UsageError, match=r"max_iters: 5 must be >= min_iters \(10\); leave it out for no cap$"):
        check()


def test_bench_config_is_the_harness_limits_plus_what_to_time():
    cfg = BenchConfig(min_iters=4, max_iters=0, warmup_s=0.5)
    assert isinstance(cfg, Timing) and cfg.max_iters is None  # 0: no cap, as pipeline configs spell it
    with pytest.raises(UsageError, match="^min_iters: 1 must be >= 2$"):
        BenchConfig(min_iters=1)  # percentiles need samples; the bare harness allows 1
    assert Timing(min_iters=1).min_iters == 1
