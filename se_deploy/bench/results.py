"""The ``results.json`` schema: what a benchmark run records, versioned.

A results file is one JSON object::
    {
      "schema": "se-deploy/results", "schema_version": 1,
      "created": ISO-8601, "se_deploy_version": str,
      "run": {name, mode, backend, settings{...}},
      "environment": {...}            # from se_deploy.envinfo; free-form but for the keys reports read
      "models": [ModelInfo...],       # SE model, plain twin, and their SE share
      "measurements": [Measurement...],  # one per (model, precision, batch, backend)
      "comparisons": [Comparison...],    # SE tax per (precision, batch, backend)
      "profiles": [Profile...],          # per-op breakdown
      "accuracy": [Accuracy...],         # per (model, precision), when measured
      "warnings": [str...]
    }

Readers accept any file with the same ``schema`` and a ``schema_version`` not newer than
:data:`SCHEMA_VERSION`; a newer file is refused with one line asking for an upgrade.

The records are pydantic models. A file is validated strictly (``"4"`` is not a batch size),
and the first problem becomes one :class:`InputError` line naming its field path. Python
callers construct records in lax mode, so numpy scalars from the harness are accepted.
Unknown keys, in records and in the free-form dicts, are kept, so a round trip loses nothing;
``record.extra`` shows a record's own.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union, get_args

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, ValidationError, WrapValidator
from pydantic_core import PydanticCustomError
from typing_extensions import Required, TypedDict

from se_deploy import __version__
from se_deploy._util import now_iso, write_json_atomic
from se_deploy.errors import InputError
from se_deploy.names import BenchMode

SCHEMA_NAME = "se-deploy/results"
SCHEMA_VERSION = 1
Mode = Literal[BenchMode.values()]
Role = Literal["se", "plain", "other"]
MODES: tuple[str, ...] = get_args(Mode)
ROLES: tuple[str, ...] = get_args(Role)
_KEEP = ConfigDict(extra="allow")


def _number(v: Any) -> Any:
    # int or float, kept as given (a float field would turn 3 into 3.0); bool is not a number here.
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise PydanticCustomError("number_type", "Input should be a number")
    return v


def _in_input_order(v: Any, handler: Any) -> Any:
    # A validated TypedDict lists its declared keys first; keep the given order, so a file is rewritten as it was.
    out = handler(v)
    return {k: out[k] for k in v if k in out} if isinstance(v, dict) and isinstance(out, dict) else out


Num = Annotated[Union[int, float], PlainValidator(_number)]
OptNum = Optional[Num]  # null where a value could not be measured; reports show "-"
_ORDER = WrapValidator(_in_input_order)


class _LatencySummary(TypedDict, total=False):
    """bench.stats.summarize() of one series, in ms."""
    __pydantic_config__ = _KEEP  # type: ignore[misc]
    n: Required[int]
    median: Required[OptNum]
    p90: Required[OptNum]
    min: OptNum
    mean: OptNum
    p95: OptNum
    p99: OptNum
    max: OptNum
    std: OptNum
    cv: OptNum


class _Headline(TypedDict, total=False):
    __pydantic_config__ = _KEEP  # type: ignore[misc]
    metric: Required[str]
    value: Required[OptNum]
    unit: str


class _Tax(TypedDict, total=False):
    """bench.stats.se_tax(): the SE tax in % with its interval."""
    __pydantic_config__ = _KEEP  # type: ignore[misc]
    tax_pct: Required[OptNum]
    tax_pct_lo: Required[OptNum]
    tax_pct_hi: Required[OptNum]
    ratio: OptNum
    ratio_lo: OptNum
    ratio_hi: OptNum
    se_median_ms: OptNum
    plain_median_ms: OptNum
    confidence: OptNum
    n_boot: int
    n_pairs: int
    method: str


class _RunInfo(TypedDict, total=False):
    __pydantic_config__ = _KEEP  # type: ignore[misc]
    name: Optional[str]
    mode: Optional[Mode]
    backend: str
    settings: dict[str, Any]


# The environment is whatever envinfo found; a section it could not probe is the string "unknown".
# Typed here are only the values that reports iterate over.
class _CpuEnv(TypedDict, total=False):
    __pydantic_config__ = _KEEP  # type: ignore[misc]
    flags: list[str]


class _GpuEnv(TypedDict, total=False):
    __pydantic_config__ = _KEEP  # type: ignore[misc]
    gpus: list[dict[str, Any]]


class _Environment(TypedDict, total=False):
    __pydantic_config__ = _KEEP  # type: ignore[misc]
    cpu: Union[Annotated[_CpuEnv, _ORDER], str]
    gpu: Union[Annotated[_GpuEnv, _ORDER], str]
    onnxruntime_providers: Union[list[str], str]


LatencySummary = Annotated[_LatencySummary, _ORDER]
Headline = Annotated[_Headline, _ORDER]
Tax = Annotated[_Tax, _ORDER]
RunInfo = Annotated[_RunInfo, _ORDER]
Environment = Annotated[_Environment, _ORDER]


class _Record(BaseModel):
    model_config = _KEEP

    @property
    def extra(self) -> dict[str, Any]:
        """Keys this se-deploy does not know, kept for the round trip."""
        return self.model_extra or {}

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump()


class ModelInfo(_Record):
    """A benchmarked model. ``se_share`` holds SE params/FLOPs as % of the model's total."""
    name: str = Field(min_length=1)
    role: Role = "other"
    artifact: Optional[str] = None
    sha256: Optional[str] = None
    params: Optional[int] = None
    flops: Optional[int] = None
    se_blocks: Optional[int] = None
    se_share: Optional[dict[str, Any]] = None
    temporary: Optional[str] = None  # why there is no artifact: made for the run and deleted after it


class Measurement(_Record):
    """Latency of one model at one precision and batch size on one backend. Times in ms.

    ``runtime``: what the runner reported about itself (``Runner.describe()``: versions,
    providers, the precision OpenVINO actually computed in) and the options bench gave it.
    """
    model: str
    precision: str
    batch: int = Field(gt=0)
    backend: str
    runtime: Optional[dict[str, Any]] = None
    latency_ms: LatencySummary
    throughput: Num
    headline: Headline
    compute_ms: Optional[LatencySummary] = None
    h2d_ms: Optional[LatencySummary] = None
    d2h_ms: Optional[LatencySummary] = None
    noise_warning: Optional[str] = None
    samples_ms: list[Num] = []


class Comparison(_Record):
    """SE model against its plain twin at one precision, batch and backend (see bench.stats.se_tax).

    ``backend`` is None in files from before backends were timed side by side;
    ``inference_precision`` is what the runtime computed in where it says (OpenVINO: bf16
    on an AMX CPU for an FP32 model), else None.
    """
    se_model: str
    plain_model: str
    precision: str
    batch: int = Field(gt=0)
    tax: Tax
    se_share: Optional[dict[str, Any]] = None
    backend: Optional[str] = None
    inference_precision: Optional[str] = None


class Profile(_Record):
    """Per-op breakdown: ``by_op`` maps op type (or "SE blocks") to {ms, pct, count}."""
    model: str
    precision: str
    batch: int = Field(gt=0)
    by_op: dict[str, Any]
    source: str = "onnxruntime"


class Accuracy(_Record):
    """Accuracy of one model at one precision against its FP32 reference (``metrics`` free-form)."""
    model: str
    precision: str
    metrics: dict[str, Any]
    reference: str = "fp32"
    data: str = ""


def _version() -> str:
    return __version__


class Results(_Record):
    """One benchmark run: what ran, where, and what it measured (see the module docstring)."""
    schema_version: int = Field(default=SCHEMA_VERSION, gt=0)
    created: str = Field(default_factory=now_iso)
    se_deploy_version: str = Field(default_factory=_version)
    run: RunInfo
    environment: Environment = {}
    models: list[ModelInfo] = []
    measurements: list[Measurement] = []
    comparisons: list[Comparison] = []
    profiles: list[Profile] = []
    accuracy: list[Accuracy] = []
    warnings: list[str] = []

    # convenience ----------------------------------------------------------
    @property
    def label(self) -> str:
        """Short name for this run: the run name, else the device/CPU it ran on."""
        return str(self.run.get("name") or device_label(self.environment) or "run")

    def model(self, name: str) -> ModelInfo | None:
        return next((m for m in self.models if m.name == name), None)

    def precisions(self) -> list[str]:
        return list(dict.fromkeys(m.precision for m in self.measurements))

    def batches(self) -> list[int]:
        return sorted({m.batch for m in self.measurements})

    # (de)serialisation -----------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA_NAME, **self.model_dump()}

    @classmethod
    def from_dict(cls, d: Any, *, source: str = "results") -> "Results":
        if not isinstance(d, dict):
            raise InputError(f"{source}: not a se-deploy results object")
        if d.get("schema") != SCHEMA_NAME:
            raise InputError(f"{source}: not a se-deploy results file (schema {d.get('schema')!r}, "
                             f"expected {SCHEMA_NAME!r})")
        ver = d.get("schema_version")
        if isinstance(ver, int) and not isinstance(ver, bool) and ver > SCHEMA_VERSION:
            raise InputError(f"{source}: schema_version {ver} is newer than this se-deploy reads "
                             f"({SCHEMA_VERSION}); upgrade se-deploy")
        body = {"created": "", "se_deploy_version": "?", **{k: v for k, v in d.items() if k != "schema"}}
        try:
            return cls.model_validate(body, strict=True)
        except ValidationError as e:
            raise InputError(f"{source}: {_first_problem(e, body)}") from None


def _first_problem(e: ValidationError, data: Any) -> str:
    """One line for the first problem pydantic found, named by its path in the file."""
    problems: dict[tuple, dict] = {}
    for err in e.errors(include_url=False):
        problems.setdefault(_located(err, data), err)
    # A union reports once per member; keep the member that got furthest (its path extends the others).
    paths = [p for p in problems if not any(len(q) > len(p) and q[:len(p)] == p for q in problems)]
    path, err = paths[0], problems[paths[0]]
    if err["type"] == "missing":
        same = [p for p in paths if problems[p]["type"] == "missing" and p[:-1] == path[:-1]]
        msg = f"{_path(path[:-1]) or 'top level'} lacks required key(s) {sorted(str(p[-1]) for p in same)}"
    else:
        same = [path]
        got = repr(err["input"])
        got = got if len(got) <= 60 else got[:57] + "..."
        msg = f"{_path(path)}: {err['msg'][0].lower()}{err['msg'][1:]} (got {type(err['input']).__name__} {got})"
    more = len(paths) - len(same)
    return (msg + (f"; and {more} more problem(s)" if more else "")).replace("\n", " ")


def _located(err: Any, data: Any) -> tuple:
    """The error's location as keys of the file: pydantic puts union member names in it too."""
    keys, cur, loc = [], data, err["loc"]
    for i, k in enumerate(loc):
        if isinstance(cur, dict) and k in cur or isinstance(cur, list) and isinstance(k, int) and k < len(cur):
            keys.append(k)
            cur = cur[k]
        elif err["type"] == "missing" and i == len(loc) - 1:
            keys.append(k)
    return tuple(keys)


def _path(keys: Any) -> str:
    out = ""
    for k in keys:
        out += f"[{k}]" if isinstance(k, int) else f".{k}" if out else str(k)
    return out


def device_label(env: Any) -> str:
    """A readable device name from an environment dict: Jetson model, else GPU, else CPU model."""
    if not isinstance(env, dict):
        return ""

    def get(*keys: Any) -> Any:
        cur: Any = env
        for k in keys:
            if isinstance(cur, dict):
                cur = cur.get(k)
            elif isinstance(cur, list) and isinstance(k, int) and len(cur) > k:
                cur = cur[k]
            else:
                return None
        return cur

    for v in (get("jetson", "model"), get("gpu", "gpus", 0, "name"), get("cpu", "model")):
        if isinstance(v, str) and v and v != "unknown":
            return v
    return ""


def save_results(results: Results, path: str | os.PathLike) -> Path:
    return write_json_atomic(path, results.to_dict())


def load_results(path: str | os.PathLike) -> Results:
    p = Path(path)
    if not p.exists():
        raise InputError(f"results file not found: {p}")
    if p.is_dir():
        raise InputError(f"expected a results.json file, got a directory: {p}")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise InputError(f"not a readable JSON file: {p} ({type(e).__name__})") from None
    return Results.from_dict(data, source=str(p))


__all__ = ["Accuracy", "Comparison", "Environment", "Headline", "LatencySummary", "MODES", "Measurement",
           "ModelInfo", "Profile", "ROLES", "Results", "RunInfo", "SCHEMA_NAME", "SCHEMA_VERSION", "Tax",
           "device_label", "load_results", "save_results"]
