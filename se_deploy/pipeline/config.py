"""The pipeline config: a TOML file whose sections are the stage configs themselves.

``[export]`` is :class:`~se_deploy.export.torch_export.ExportOptions`, ``[quantize]`` a
:class:`~se_deploy.calibration.quantize.QuantConfig` and ``[bench]`` a
:class:`~se_deploy.bench.suite.BenchConfig`, so a file that validates holds values the
stages run with: the rules (names, ranges, cross-field checks) are the stages' own, in one
place. The other sections belong to the pipeline alone.

Files are read strictly (``fuse = 1`` is not ``true``, ``size = 2.5`` is not an integer)
and every error is one ConfigError line naming ``section.key``, the bad value and what is
allowed.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, Field, NonNegativeInt, PositiveInt, PrivateAttr, field_validator, model_validator

from se_deploy.bench.backend_choice import CPU_RUNTIMES
from se_deploy.bench.suite import BenchConfig
from se_deploy.budget.run import BudgetConfig
from se_deploy.calibration.quantize import QuantConfig
from se_deploy.config import BadValue, Config, TOMLDecodeError, InputShape, load_toml, validate
from se_deploy.errors import ConfigError, InputError
from se_deploy.export.torch_export import ExportOptions
from se_deploy.names import Backend, EngineBackend, Precision, PreprocessPreset, QuantTarget

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "default.toml"

#: what the pipeline builds: every precision; int8fp16 (INT8 Q/DQ + FP16) only where the engines run on TensorRT
BUILT_PRECISIONS = (Precision.fp32, Precision.fp16, Precision.int8, Precision.int8fp16)
#: precisions that need calibration data
CALIBRATED_PRECISIONS = (Precision.int8, Precision.int8fp16)


def _run_name(v: str) -> str:
    if not v or not all(c.isalnum() or c in "_-." for c in v):
        raise ValueError("must be a non-empty name of letters, digits, '_', '-', '.' (it names the run folder)")
    return v


class RunSection(Config):
    name: Annotated[str, AfterValidator(_run_name)] = "se_resnet50_cpu"


class ModelSection(Config):
    """Zoo names; they are looked up when the job is built (that imports torch), before any work."""

    se: str = Field("se_resnet50", min_length=1)
    plain: str = Field("auto", min_length=1)  # auto: the zoo twin; ablate: SE removed from the export; none; a name
    input_shape: InputShape = (1, 3, 224, 224)


class CalibrationSection(Config):
    """Where calibration data comes from; how it is used (the method) is ``[quantize]``."""

    source: str = Field("synthetic", min_length=1)  # synthetic, an image folder or a .npz
    size: PositiveInt = 32
    seed: NonNegativeInt = 0
    preprocess: PreprocessPreset = PreprocessPreset.none

    @model_validator(mode="before")
    @classmethod
    def _method_moved(cls, data: Any) -> Any:
        if isinstance(data, dict) and "method" in data:
            raise BadValue("method", data["method"], "has moved: set it as quantize.method")
        return data


class PipelineQuantize(QuantConfig):
    """QuantConfig with the pipeline's default target: the engines default to onnxruntime CPU."""

    target: QuantTarget = QuantTarget.cpu


class EnginesSection(Config):
    """``backend``: auto is TensorRT where installed, otherwise the installed CPU runtime that runs
    the SE model faster in a short probe (see :mod:`se_deploy.bench.backend_choice`).
    ``compare``: CPU runtimes timed side by side with it in the bench stage, on the same ONNX models."""

    backend: EngineBackend = EngineBackend.auto
    precisions: tuple[Precision, ...] = (Precision.fp32, Precision.int8)
    compare: tuple[Backend, ...] = ()

    @field_validator("compare")
    @classmethod
    def _runs_onnx(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for b in v:
            if b not in CPU_RUNTIMES:
                raise ValueError(f"holds {b}, which does not run the ONNX models directly; allowed: "
                                 f"{', '.join(CPU_RUNTIMES)}")
        if len(set(v)) != len(v):
            raise ValueError("lists a backend twice")
        return v

    @field_validator("precisions")
    @classmethod
    def _buildable(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        built = ", ".join(BUILT_PRECISIONS)
        for p in v:
            if p not in BUILT_PRECISIONS:
                raise ValueError(f"holds {p}, which the pipeline does not build yet; allowed: {built}")
        if Precision.fp32 not in v:
            raise ValueError(f"must include fp32, the reference; allowed: {built}")
        if len(set(v)) != len(v):
            raise ValueError("lists a precision twice")
        return v


class AccuracySection(Config):
    enabled: bool = True
    source: str = Field("synthetic", min_length=1)  # held-out samples: a different seed from calibration
    size: PositiveInt = 32
    seed: NonNegativeInt = 1


class PipelineBench(BenchConfig):
    """BenchConfig with the per-op profile on by default (the report shows it)."""

    profile: bool = True


class BudgetSection(BudgetConfig):
    """``[se_budget]``: the optional SE-budget stage (off by default) on the SE model's FP32 export and the
    held-out evaluation set; its per-block table and Pareto plot go into the report."""

    enabled: bool = False
    budget_pct: float = Field(5.0, ge=0)


class ReportSection(Config):
    html: bool = True
    markdown: bool = True
    png: bool = True


class PipelineConfig(Config):
    """A validated pipeline config. Sections are typed; ``source`` says where it came from."""

    error_type: ClassVar[type[Exception]] = ConfigError

    run: RunSection = RunSection()
    model: ModelSection = ModelSection()
    export: ExportOptions = ExportOptions()
    calibration: CalibrationSection = CalibrationSection()
    quantize: PipelineQuantize = PipelineQuantize()
    engines: EnginesSection = EnginesSection()
    accuracy: AccuracySection = AccuracySection()
    bench: PipelineBench = PipelineBench()
    se_budget: BudgetSection = BudgetSection()
    report: ReportSection = ReportSection()

    _source: str = PrivateAttr("default config")

    @classmethod
    def from_dict(cls, raw: Any, source: str = "config") -> PipelineConfig:
        """Validate a parsed TOML/JSON document strictly; ConfigError names the key."""
        cfg = validate(cls, raw, prefix=f"{source}: ", error=ConfigError)
        cfg._source = source
        return cfg

    @property
    def source(self) -> str:
        return self._source

    @property
    def name(self) -> str:
        return self.run.name

    def section_hash(self, *names: str) -> str:
        """A stage's config key: the named sections' values, so a change reruns only what reads them."""
        blob = json.dumps({n: getattr(self, n).to_dict() for n in names}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    # Two configs with the same values are equal wherever they were read from.
    def __eq__(self, other: object) -> bool:
        return isinstance(other, PipelineConfig) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(self.section_hash(*type(self).model_fields))


def load_config(path: str | os.PathLike | None = None) -> PipelineConfig:
    """Read a TOML config (the embedded default when ``path`` is None)."""
    p = Path(path) if path is not None else DEFAULT_CONFIG
    if not p.is_file():
        raise InputError(f"config file not found: {p}")
    try:
        raw = load_toml(p.read_text(encoding="utf-8"))
    except (TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{p}: not valid TOML ({e})") from None
    return PipelineConfig.from_dict(raw, source=str(p) if path is not None else "default config")


__all__ = ["BUILT_PRECISIONS", "CALIBRATED_PRECISIONS", "DEFAULT_CONFIG", "PipelineConfig", "load_config"]
