"""The ``results.json`` schema: what a benchmark run records, versioned.

A results file is one JSON object::

    {
      "schema": "se-deploy/results", "schema_version": 1,
      "created": ISO-8601, "se_deploy_version": str,
      "run": {name, mode, backend, settings{...}},
      "environment": {...}            # free-form, from se_deploy.envinfo
      "models": [ModelInfo...],       # SE model, plain twin, and their SE share
      "measurements": [Measurement...],  # one per (model, precision, batch)
      "comparisons": [Comparison...],    # SE tax per (precision, batch)
      "profiles": [Profile...],          # per-op breakdown
      "accuracy": [Accuracy...],         # per (model, precision), when measured
      "warnings": [str...]
    }

Readers accept any file with the same ``schema`` and a ``schema_version`` not newer than
:data:`SCHEMA_VERSION`; a newer file is refused with one line asking for an upgrade.
Unknown keys inside records are kept in ``extra`` so a round trip loses nothing.
"""

from __future__ import annotations

import json
import os
from dataclasses import MISSING as _MISSING
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from se_deploy._util import now_iso, write_json_atomic
from se_deploy.errors import InputError
from se_deploy.names import BenchMode

SCHEMA_NAME = "se-deploy/results"
SCHEMA_VERSION = 1
ROLES = ("se", "plain", "other")


class _Record:
    """Shared dict conversion for the schema's dataclasses."""

    @classmethod
    def _known(cls) -> set[str]:
        return {f.name for f in fields(cls)} - {"extra"}

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        extra = d.pop("extra", None) or {}
        return {**extra, **d}

    @classmethod
    def from_dict(cls, d: Any, where: str):
        if not isinstance(d, dict):
            raise InputError(f"results file: {where} must be an object, got {type(d).__name__}")
        known = cls._known()
        required = {f.name for f in fields(cls) if f.name != "extra" and f.default is _MISSING
                    and f.default_factory is _MISSING}
        missing = sorted(required - set(d))
        if missing:
            raise InputError(f"results file: {where} lacks required key(s) {missing}")
        kwargs = {k: v for k, v in d.items() if k in known}
        extra = {k: v for k, v in d.items() if k not in known}
        obj = cls(**kwargs, extra=extra)  # type: ignore[call-arg]
        obj._check(where)
        return obj

    def _check(self, where: str) -> None:
        return None


def _need(cond: bool, where: str, msg: str) -> None:
    if not cond:
        raise InputError(f"results file: {where} {msg}")


@dataclass
class ModelInfo(_Record):
    """A benchmarked model. ``se_share`` holds SE params/FLOPs as % of the model's total."""

    name: str
    role: str = "other"
    artifact: str | None = None
    sha256: str | None = None
    params: int | None = None
    flops: int | None = None
    se_blocks: int | None = None
    se_share: dict | None = None
    extra: dict = field(default_factory=dict)

    def _check(self, where: str) -> None:
        _need(isinstance(self.name, str) and bool(self.name), where, "name must be a non-empty string")
        _need(self.role in ROLES, where, f"role {self.role!r} is not one of {list(ROLES)}")


@dataclass
class Measurement(_Record):
    """Latency of one model at one precision and batch size. Times in ms."""

    model: str
    precision: str
    batch: int
    backend: str
    latency_ms: dict
    throughput: float
    headline: dict
    compute_ms: dict | None = None
    h2d_ms: dict | None = None
    d2h_ms: dict | None = None
    noise_warning: str | None = None
    samples_ms: list = field(default_factory=list)
    extra: dict = field(default_factory=dict)

    def _check(self, where: str) -> None:
        _need(isinstance(self.batch, int) and self.batch > 0, where, "batch must be a positive integer")
        for k in ("median", "p90", "n"):
            _need(isinstance(self.latency_ms, dict) and k in self.latency_ms, where, f"latency_ms lacks {k!r}")
        _need(isinstance(self.headline, dict) and {"metric", "value"} <= set(self.headline), where,
              "headline must have 'metric' and 'value'")


@dataclass
class Comparison(_Record):
    """SE model against its plain twin at one precision and batch (see bench.stats.se_tax)."""

    se_model: str
    plain_model: str
    precision: str
    batch: int
    tax: dict
    se_share: dict | None = None
    extra: dict = field(default_factory=dict)

    def _check(self, where: str) -> None:
        for k in ("tax_pct", "tax_pct_lo", "tax_pct_hi"):
            _need(isinstance(self.tax, dict) and k in self.tax, where, f"tax lacks {k!r}")


@dataclass
class Profile(_Record):
    """Per-op breakdown: ``by_op`` maps op type (or "SE blocks") to {ms, pct, count}."""

    model: str
    precision: str
    batch: int
    by_op: dict
    source: str = "onnxruntime"
    extra: dict = field(default_factory=dict)


@dataclass
class Accuracy(_Record):
    """Accuracy of one model at one precision against its FP32 reference (``metrics`` free-form)."""

    model: str
    precision: str
    metrics: dict
    reference: str = "fp32"
    data: str = ""
    extra: dict = field(default_factory=dict)


@dataclass
class Results:
    run: dict
    environment: dict = field(default_factory=dict)
    models: list[ModelInfo] = field(default_factory=list)
    measurements: list[Measurement] = field(default_factory=list)
    comparisons: list[Comparison] = field(default_factory=list)
    profiles: list[Profile] = field(default_factory=list)
    accuracy: list[Accuracy] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    created: str = field(default_factory=now_iso)
    se_deploy_version: str = ""
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if not self.se_deploy_version:
            from se_deploy import __version__

            self.se_deploy_version = __version__

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
        return {
            "schema": SCHEMA_NAME,
            "schema_version": self.schema_version,
            "created": self.created,
            "se_deploy_version": self.se_deploy_version,
            "run": self.run,
            "environment": self.environment,
            "models": [m.to_dict() for m in self.models],
            "measurements": [m.to_dict() for m in self.measurements],
            "comparisons": [c.to_dict() for c in self.comparisons],
            "profiles": [p.to_dict() for p in self.profiles],
            "accuracy": [a.to_dict() for a in self.accuracy],
            "warnings": list(self.warnings),
        }

    @classmethod
    def from_dict(cls, d: Any, *, source: str = "results") -> "Results":
        if not isinstance(d, dict):
            raise InputError(f"{source}: not a se-deploy results object")
        if d.get("schema") != SCHEMA_NAME:
            raise InputError(f"{source}: not a se-deploy results file (schema {d.get('schema')!r}, "
                             f"expected {SCHEMA_NAME!r})")
        ver = d.get("schema_version")
        if not isinstance(ver, int) or ver < 1:
            raise InputError(f"{source}: schema_version must be a positive integer, got {ver!r}")
        if ver > SCHEMA_VERSION:
            raise InputError(f"{source}: schema_version {ver} is newer than this se-deploy reads "
                             f"({SCHEMA_VERSION}); upgrade se-deploy")
        run = d.get("run")
        if not isinstance(run, dict):
            raise InputError(f"{source}: 'run' must be an object")
        if run.get("mode") is not None and run["mode"] not in BenchMode.values():
            raise InputError(f"{source}: run.mode {run['mode']!r} is not one of {BenchMode.choices()}")

        def records(key, rcls):
            items = d.get(key, [])
            if not isinstance(items, list):
                raise InputError(f"{source}: {key!r} must be a list")
            return [rcls.from_dict(x, f"{key}[{i}]") for i, x in enumerate(items)]

        env = d.get("environment", {})
        if not isinstance(env, dict):
            raise InputError(f"{source}: 'environment' must be an object")
        return cls(run=run, environment=env, models=records("models", ModelInfo),
                   measurements=records("measurements", Measurement),
                   comparisons=records("comparisons", Comparison), profiles=records("profiles", Profile),
                   accuracy=records("accuracy", Accuracy), warnings=[str(w) for w in d.get("warnings", [])],
                   created=str(d.get("created", "")), se_deploy_version=str(d.get("se_deploy_version", "?")),
                   schema_version=ver)


def device_label(env: dict) -> str:
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


__all__ = ["Accuracy", "Comparison", "Measurement", "ModelInfo", "Profile", "Results", "SCHEMA_NAME",
           "SCHEMA_VERSION", "device_label", "load_results", "save_results"]
