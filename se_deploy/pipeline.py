"""The one-command job: export -> fuse -> calibrate/quantize -> engines -> accuracy -> bench -> report.

Runs for the SE model and its plain twin. Each stage declares its inputs (files, by
sha256, plus the config it reads) and outputs. After a stage runs, every output's JSON
sidecar gets a ``pipeline`` record with the stage key and the output's own sha256; a
later run skips the stage when the key is unchanged and every output still matches its
recorded hash. Change the config or touch an input and the stage (and everything
downstream, since their input hashes change) runs again.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import time
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from se_deploy._util import read_sidecar, sha256_file, sidecar_path, write_json_atomic
from se_deploy.errors import ConfigError, InputError

DEFAULT_CONFIG = Path(__file__).parent / "configs" / "default.toml"

# --------------------------------------------------------------------------- config


def _choice(*allowed):
    def check(v):
        return v in allowed, "one of " + ", ".join(map(str, allowed))
    return check


def _pos_int(v):
    return isinstance(v, int) and not isinstance(v, bool) and v > 0, "a positive integer"


def _nonneg_int(v):
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0, "an integer >= 0"


def _nonneg_num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0, "a number >= 0"


def _bool(v):
    return isinstance(v, bool), "true or false"


def _name(v):
    ok = isinstance(v, str) and bool(v) and all(c.isalnum() or c in "_-." for c in v)
    return ok, "a non-empty name of letters, digits, '_', '-', '.'"


def _str(v):
    return isinstance(v, str) and bool(v), "a non-empty string"


def _shape(v):
    ok = isinstance(v, list) and len(v) == 4 and all(isinstance(d, int) and not isinstance(d, bool) and d > 0
                                                     for d in v)
    return ok, "a list of 4 positive integers [N, C, H, W]"


def _batches(v):
    ok = isinstance(v, list) and bool(v) and all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in v)
    return ok, "a non-empty list of positive integers"


def _precisions(v):
    ok = isinstance(v, list) and bool(v) and all(p in ("fp32", "int8") for p in v) and "fp32" in v
    return ok, "a list from fp32, int8 that includes fp32 (the reference)"


def _confidence(v):
    return isinstance(v, float) and 0 < v < 1, "a number between 0 and 1"


# section -> key -> (default, validator). The TOML file may omit any key.
SCHEMA: dict[str, dict[str, tuple[Any, Callable]]] = {
    "run": {"name": ("se_resnet50_cpu", _name)},
    "model": {"se": ("se_resnet50", _str), "plain": ("auto", _str), "input_shape": ([1, 3, 224, 224], _shape)},
    "export": {"exporter": ("dynamo", _choice("dynamo", "torchscript")), "simplify": (True, _bool),
               "fuse": (True, _bool)},
    "calibration": {"source": ("synthetic", _str), "size": (32, _pos_int), "seed": (0, _nonneg_int),
                    "method": ("minmax", _choice("minmax", "entropy", "percentile")),
                    "preprocess": ("none", _choice("none", "imagenet"))},
    "quantize": {"target": ("cpu", _choice("cpu", "tensorrt")), "batch_size": (8, _pos_int)},
    "engines": {"backend": ("auto", _choice("auto", "onnxruntime", "tensorrt")),
                "precisions": (["fp32", "int8"], _precisions)},
    "accuracy": {"enabled": (True, _bool), "source": ("synthetic", _str), "size": (32, _pos_int),
                 "seed": (1, _nonneg_int)},
    "bench": {"batches": ([1], _batches), "threads": (0, _nonneg_int), "warmup_s": (1.0, _nonneg_num),
              "min_iters": (30, _pos_int), "min_duration_s": (3.0, _nonneg_num), "max_iters": (0, _nonneg_int),
              "mode": ("singlestream", _choice("singlestream", "offline")), "confidence": (0.95, _confidence),
              "n_boot": (2000, _pos_int), "profile": (True, _bool), "profile_iters": (10, _pos_int)},
    "report": {"html": (True, _bool), "markdown": (True, _bool), "png": (True, _bool)},
}


@dataclass(frozen=True)
class PipelineConfig:
    """A validated pipeline config: ``sections[section][key]`` with every default filled in."""

    sections: dict = field(default_factory=dict)
    source: str = "<default>"

    def __post_init__(self) -> None:
        object.__setattr__(self, "sections", validate(copy.deepcopy(self.sections), self.source))

    def __getitem__(self, section: str) -> dict:
        return self.sections[section]

    @property
    def name(self) -> str:
        return self.sections["run"]["name"]

    def section_hash(self, *names: str) -> str:
        blob = json.dumps({n: self.sections[n] for n in names}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()


def validate(raw: Any, source: str = "config") -> dict:
    """Check ``raw`` against SCHEMA in place; fill defaults. Raises ConfigError naming the key."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: a config is a TOML table of sections")
    for sec in raw:
        if sec not in SCHEMA:
            raise ConfigError(f"{source}: unknown config section [{sec}]; allowed sections: {', '.join(SCHEMA)}")
    for sec, keys in SCHEMA.items():
        vals = raw.setdefault(sec, {})
        if not isinstance(vals, dict):
            raise ConfigError(f"{source}: [{sec}] must be a table")
        for k in vals:
            if k not in keys:
                raise ConfigError(f"{source}: unknown config key '{sec}.{k}'; allowed keys in [{sec}]: "
                                  f"{', '.join(keys)}")
        for k, (default, check) in keys.items():
            if k not in vals:
                vals[k] = json.loads(json.dumps(default))
                continue
            v = vals[k]
            if check in (_nonneg_num, _confidence) and isinstance(v, int) and not isinstance(v, bool):
                vals[k] = v = float(v)
            ok, allowed = check(v)
            if not ok:
                raise ConfigError(f"{source}: config key '{sec}.{k}' has bad value {v!r}; allowed: {allowed}")
    b = raw["bench"]
    if b["max_iters"] and b["max_iters"] < b["min_iters"]:
        raise ConfigError(f"{source}: config key 'bench.max_iters' ({b['max_iters']}) must be 0 (no cap) or >= "
                          f"bench.min_iters ({b['min_iters']})")
    return raw


def load_config(path: str | os.PathLike | None = None) -> PipelineConfig:
    """Read a TOML config (the embedded default when ``path`` is None)."""
    p = Path(path) if path is not None else DEFAULT_CONFIG
    if not p.is_file():
        raise InputError(f"config file not found: {p}")
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{p}: not valid TOML ({e})") from None
    return PipelineConfig(sections=raw, source=str(p) if path is not None else "default config")


# --------------------------------------------------------------------------- stages


@dataclass
class StageResult:
    name: str
    status: str  # "ran" | "skipped (inputs unchanged)" | "skipped: <reason>" | "failed: <reason>"
    seconds: float = 0.0
    outputs: list[str] = field(default_factory=list)
    detail: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


class Skip(Exception):
    """Raised inside a stage body: the stage cannot run here, with the reason (not an error)."""


@dataclass
class Stage:
    name: str
    outputs: list[Path]
    inputs: list[Path]
    config_key: str
    run: Callable[[], str | None]

    def key(self) -> str:
        h = hashlib.sha256()
        h.update(self.name.encode())
        h.update(self.config_key.encode())
        for p in self.inputs:
            h.update(str(p.name).encode())
            h.update(sha256_file(p).encode() if p.exists() else b"missing")
        return h.hexdigest()

    def up_to_date(self, key: str) -> bool:
        for out in self.outputs:
            if not out.exists():
                return False
            rec = (read_sidecar(out) or {}).get("pipeline") or {}
            if rec.get("key") != key or rec.get("sha256") != sha256_file(out):
                return False
        return bool(self.outputs)

    def stamp(self, key: str) -> None:
        for out in self.outputs:
            side = read_sidecar(out) or {}
            side["pipeline"] = {"stage": self.name, "key": key, "sha256": sha256_file(out),
                                "inputs": [str(p) for p in self.inputs]}
            write_json_atomic(sidecar_path(out), side)


def run_stages(stages: list[Stage], *, force: bool = False,
               on_event: Callable[[str, str, StageResult | None], None] | None = None) -> list[StageResult]:
    """Run stages in order; a stage whose key matches its outputs' sidecars is skipped."""
    event = on_event or (lambda *a: None)
    results = []
    for st in stages:
        event("start", st.name, None)
        key = st.key()
        if not force and st.up_to_date(key):
            r = StageResult(st.name, "skipped (inputs unchanged)", outputs=[str(o) for o in st.outputs])
        else:
            t0 = time.perf_counter()
            try:
                detail = st.run() or ""
            except Skip as e:
                r = StageResult(st.name, f"skipped: {e}", time.perf_counter() - t0)
            else:
                st.stamp(key)
                r = StageResult(st.name, "ran", time.perf_counter() - t0, [str(o) for o in st.outputs], detail)
        results.append(r)
        event("end", st.name, r)
    return results


# --------------------------------------------------------------------------- the job

SYNTHETIC_LABEL = ("synthetic calibration data (seeded random inputs, not real images): INT8 ranges and accuracy "
                   "figures only show agreement with FP32, not task accuracy")


@dataclass
class Job:
    """Paths of every artifact the pipeline writes under ``out``."""

    config: PipelineConfig
    out: Path
    se_name: str
    plain_name: str | None  # zoo name of the plain twin; None when it is the SE-ablated graph or absent
    has_plain: bool
    notes: list[str] = field(default_factory=list)

    def onnx(self, role: str, precision: str = "fp32") -> Path:
        return self.out / role / ("model.onnx" if precision == "fp32" else f"model.{precision}.onnx")

    @property
    def roles(self) -> list[str]:
        return ["se", "plain"] if self.has_plain else ["se"]

    def display(self, role: str) -> str:
        if role == "se":
            return self.se_name
        return self.plain_name or f"{self.se_name} (SE removed)"

    calib = property(lambda self: self.out / "calib.npz")
    eval_set = property(lambda self: self.out / "eval.npz")
    engines = property(lambda self: self.out / "engines.json")
    accuracy = property(lambda self: self.out / "accuracy.json")
    results = property(lambda self: self.out / "results.json")
    report_html = property(lambda self: self.out / "report.html")
    report_md = property(lambda self: self.out / "report.md")
    plots = property(lambda self: self.out / "plots")


def _input_shape(cfg: PipelineConfig) -> tuple[int, ...]:
    return tuple(cfg["model"]["input_shape"])


def _resolve_plain(cfg: PipelineConfig) -> tuple[str | None, bool]:
    from se_deploy.models import is_registered, plain_twin

    se, plain = cfg["model"]["se"], cfg["model"]["plain"]
    if not is_registered(se):
        raise ConfigError(f"{cfg.source}: config key 'model.se' has bad value {se!r}; allowed: a zoo model name "
                          f"(see 'se-deploy models')")
    if plain == "none":
        return None, False
    if plain == "auto":
        return plain_twin(se), True  # None: no zoo twin, ablate SE blocks from the export instead
    if plain == "ablate":
        return None, True
    if not is_registered(plain):
        raise ConfigError(f"{cfg.source}: config key 'model.plain' has bad value {plain!r}; allowed: auto, ablate, "
                          f"none, or a zoo model name")
    return plain, True


def _export_stage(job: Job, role: str) -> Stage:
    cfg = job.config
    out = job.onnx(role)

    def run() -> str:
        from se_deploy.export.torch_export import export_model

        out.parent.mkdir(parents=True, exist_ok=True)
        if role == "plain" and job.plain_name is None:
            from se_deploy.export.passes import ablate_se
            from se_deploy.onnx_io import load_onnx, save_onnx

            save_onnx(ablate_se(load_onnx(job.onnx("se"))), out)
            _write_json_sidecar(out, {"kind": "onnx", "precision": "fp32", "derived_from": str(job.onnx("se")),
                                      "transform": "ablate-se (every SE block replaced by its input)"})
            return "SE blocks removed from the SE export"
        e = cfg["export"]
        res = export_model(job.se_name if role == "se" else job.plain_name, out, input_shape=_input_shape(cfg),
                           dynamic_batch=True, exporter=e["exporter"], simplify=e["simplify"], fuse=e["fuse"])
        parity = res.info.get("parity", {})
        worst = parity.get("worst_rel_max_abs")
        return (f"parity vs PyTorch: rel max abs {worst:.2g} ({'passed' if parity.get('passed') else 'FAILED'})"
                if isinstance(worst, float) else "")

    inputs = [job.onnx("se")] if role == "plain" and job.plain_name is None else []
    return Stage(f"export {job.display(role)}", [out], inputs, cfg.section_hash("model", "export"), run)


def _write_json_sidecar(artifact: Path, data: dict) -> None:
    from se_deploy._util import write_sidecar

    write_sidecar(artifact, data)


def _calibration_stage(job: Job) -> Stage:
    cfg = job.config

    def load(section: str, size: int, seed: int, role: str):
        from se_deploy.calibration.dataset import load_calibration
        from se_deploy.calibration.preprocess import make_preprocess
        from se_deploy.onnx_io import model_input
        from se_deploy.onnx_io import load_onnx

        name = model_input(load_onnx(job.onnx("se"), check=False)).name
        src = cfg[section]["source"]
        synthetic = src == "synthetic"
        ds = load_calibration(None if synthetic else src, input_name=name, input_shape=_input_shape(cfg),
                              preprocess=make_preprocess(cfg["calibration"]["preprocess"]), calib_size=size,
                              seed=seed, synthetic=synthetic)
        ds.provenance["role"] = role
        return ds

    def run() -> str:
        c, a = cfg["calibration"], cfg["accuracy"]
        calib = load("calibration", c["size"], c["seed"], "calibration")
        calib.save_npz(job.calib)
        ev = load("accuracy", a["size"], a["seed"], "held-out evaluation")
        ev.save_npz(job.eval_set)
        for path, ds in ((job.calib, calib), (job.eval_set, ev)):
            label = SYNTHETIC_LABEL if ds.is_synthetic else f"{ds.source_kind} data"
            _write_json_sidecar(path, {"kind": "calibration-set", "samples": len(ds), "synthetic": ds.is_synthetic,
                                       "label": label, "provenance": ds.provenance})
        if calib.is_synthetic:
            job.notes.append(SYNTHETIC_LABEL)
            return "SYNTHETIC data (labelled as such in every sidecar and the report)"
        return f"{len(calib)} calibration samples, {len(ev)} held-out"

    return Stage("calibration data", [job.calib, job.eval_set], [job.onnx("se")],
                 cfg.section_hash("calibration", "accuracy", "model"), run)


def _quantize_stage(job: Job, role: str) -> Stage:
    cfg = job.config
    out = job.onnx(role, "int8")

    def run() -> str:
        from se_deploy.calibration.quantize import QuantConfig, quantize_int8

        calib = _load_npz(job.calib)
        q = cfg["quantize"]
        side = quantize_int8(job.onnx(role), out, calib, QuantConfig(target=q["target"],
                             method=cfg["calibration"]["method"], batch_size=q["batch_size"]))
        return f"target {q['target']}, {side.get('status', 'written')}"

    return Stage(f"quantize INT8 {job.display(role)}", [out], [job.onnx(role), job.calib],
                 cfg.section_hash("quantize", "calibration"), run)


def _load_npz(path: Path):
    from se_deploy.calibration.dataset import load_calibration
    from se_deploy.calibration.preprocess import make_preprocess

    import numpy as np

    from se_deploy.calibration.sources import LABEL_KEYS

    with np.load(path) as z:
        name = next(k for k in z.files if k not in LABEL_KEYS)
        shape = z[name].shape
    return load_calibration(path, input_name=name, input_shape=(1, *shape[1:]), preprocess=make_preprocess("none"),
                            calib_size=None, seed=0)


def _precisions(job: Job) -> list[str]:
    return list(job.config["engines"]["precisions"])


def _engine_backend(cfg: PipelineConfig) -> tuple[str, str]:
    want = cfg["engines"]["backend"]
    if want == "onnxruntime":
        return "onnxruntime", "onnxruntime chosen in the config"
    try:
        from se_deploy.engines.tensorrt.builder import installed_tensorrt

        trt = installed_tensorrt()
    except Exception as e:  # a broken GPU stack reads as "not available"
        trt, why = None, f"{type(e).__name__}: {e}"
    else:
        why = "tensorrt is not installed"
    if trt is not None:
        return "tensorrt", f"TensorRT {trt.__version__}"
    if want == "tensorrt":
        from se_deploy.errors import MissingDependencyError

        raise MissingDependencyError(f"engines.backend = 'tensorrt' but {why}; set engines.backend = 'auto' or "
                                     f"'onnxruntime' to run on this machine")
    return "onnxruntime", f"{why}: onnxruntime runs the ONNX models directly"


def _engines_stage(job: Job) -> Stage:
    cfg = job.config
    inputs = [job.onnx(r, p) for r in job.roles for p in _precisions(job)]

    def run() -> str:
        backend, why = _engine_backend(cfg)
        engines = []
        for role in job.roles:
            for prec in _precisions(job):
                src = job.onnx(role, prec)
                if backend == "tensorrt":
                    from se_deploy.engines.tensorrt.builder import build_engine
                    from se_deploy.engines.tensorrt.config import BuildConfig

                    plan = src.with_suffix(".plan")
                    b = cfg["bench"]["batches"]
                    build_engine(BuildConfig(onnx=str(src), output=str(plan), batch=(min(b), max(b), max(b))))
                    artifact = plan
                else:
                    artifact = src
                engines.append({"model": job.display(role), "role": role, "precision": prec, "backend": backend,
                                "artifact": str(artifact.relative_to(job.out)), "sha256": sha256_file(artifact)})
        write_json_atomic(job.engines, {"backend": backend, "reason": why, "engines": engines})
        return f"{backend} ({why})"

    return Stage("build engines", [job.engines], inputs, cfg.section_hash("engines", "bench"), run)


def _accuracy_stage(job: Job) -> Stage:
    cfg = job.config
    inputs = [job.onnx(r, p) for r in job.roles for p in _precisions(job)] + [job.eval_set]

    def run() -> str:
        if not cfg["accuracy"]["enabled"]:
            raise Skip("accuracy.enabled = false")
        if _precisions(job) == ["fp32"]:
            raise Skip("only fp32 built: nothing to compare with the FP32 reference")
        from se_deploy.calibration.accuracy import evaluate

        ev = _load_npz(job.eval_set)
        reports = {}
        for role in job.roles:
            cands = {p: str(job.onnx(role, p)) for p in _precisions(job) if p != "fp32"}
            reports[job.display(role)] = evaluate(str(job.onnx(role)), cands, ev)
        synthetic = (read_sidecar(job.eval_set) or {}).get("synthetic", True)
        write_json_atomic(job.accuracy, {"synthetic": synthetic, "label": SYNTHETIC_LABEL if synthetic else "",
                                         "reports": reports})
        parts = []
        for model, rep in reports.items():
            for prec, e in rep["candidates"].items():
                parts.append(f"{model} {prec}: top-1 agreement {e.get('top1_agreement')}%")
        return "; ".join(parts)

    return Stage("accuracy vs FP32", [job.accuracy], inputs, cfg.section_hash("accuracy"), run)


def _bench_stage(job: Job) -> Stage:
    cfg = job.config

    def run() -> str:
        from se_deploy.bench.suite import BenchConfig, Candidate, benchmark, model_info
        from se_deploy.bench.results import Accuracy, save_results

        man = json.loads(job.engines.read_text())
        b = cfg["bench"]
        bc = BenchConfig(batches=tuple(b["batches"]), threads=b["threads"], warmup_s=b["warmup_s"],
                         min_iters=b["min_iters"], min_duration_s=b["min_duration_s"],
                         max_iters=b["max_iters"] or None, mode=b["mode"], confidence=b["confidence"],
                         n_boot=b["n_boot"], profile=b["profile"] and man["backend"] == "onnxruntime",
                         profile_iters=b["profile_iters"])
        cands = [Candidate(name=e["model"], precision=e["precision"], artifact=str(job.out / e["artifact"]),
                           role=e["role"] if job.has_plain else "other", backend=e["backend"])
                 for e in man["engines"]]
        models = [model_info(job.display(r), r if job.has_plain else "other", str(job.onnx(r))) for r in job.roles]
        res = benchmark(cands, bc, models=models, run_name=cfg.name)
        if job.accuracy.exists():
            acc = json.loads(job.accuracy.read_text())
            for model, rep in acc["reports"].items():
                for prec, e in rep["candidates"].items():
                    res.accuracy.append(Accuracy(model=model, precision=prec, metrics={
                        k: v for k, v in e.items() if k != "model"},
                        data="synthetic held-out inputs" if acc.get("synthetic") else "held-out set"))
        if job.calib.exists() and (read_sidecar(job.calib) or {}).get("synthetic"):
            res.warnings.insert(0, SYNTHETIC_LABEL)
        res.run["pipeline"] = {"config": cfg.sections, "engines": man["reason"]}
        save_results(res, job.results)
        return ", ".join(f"{c.precision} b{c.batch}: SE tax {c.tax['tax_pct']:+.1f}%" for c in res.comparisons)

    inputs = [job.engines, job.accuracy]  # hashed when the stage starts; "missing" when accuracy was skipped
    inputs += [job.onnx(r, p) for r in job.roles for p in _precisions(job)]
    return Stage("benchmark", [job.results], inputs, cfg.section_hash("bench"), run)


def _report_stage(job: Job) -> Stage:
    cfg = job.config

    def run() -> str:
        from se_deploy.report.render import write_report
        from se_deploy.bench.results import load_results

        r = cfg["report"]
        if not (r["html"] or r["markdown"]):
            raise Skip("report.html and report.markdown are both false")
        written = write_report(load_results(job.results), html=job.report_html if r["html"] else None,
                               md=job.report_md if r["markdown"] else None, png_dir=job.plots if r["png"] else None)
        return ", ".join(p.name for p in written.values())

    outs = ([job.report_html] if cfg["report"]["html"] else []) + ([job.report_md] if cfg["report"]["markdown"] else [])
    return Stage("report", outs, [job.results], cfg.section_hash("report"), run)


def build_job(cfg: PipelineConfig, out: str | os.PathLike) -> tuple[Job, list[Stage]]:
    plain_name, has_plain = _resolve_plain(cfg)
    job = Job(cfg, Path(out), cfg["model"]["se"], plain_name, has_plain)
    stages = [_export_stage(job, r) for r in job.roles]
    if "int8" in _precisions(job):
        stages.append(_calibration_stage(job))
        stages += [_quantize_stage(job, r) for r in job.roles]
    stages += [_engines_stage(job), _accuracy_stage(job), _bench_stage(job), _report_stage(job)]
    return job, stages


def run_pipeline(cfg: PipelineConfig, out: str | os.PathLike, *, force: bool = False,
                 on_event: Callable[[str, str, StageResult | None], None] | None = None) -> tuple[Job, list[StageResult]]:
    """Run (or skip) every stage; write ``pipeline.json`` with what happened."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    job, stages = build_job(cfg, out)
    # run_stages hashes each stage's inputs just before it runs, after the stages that make them.
    results = run_stages(stages, force=force, on_event=on_event)
    write_json_atomic(out / "pipeline.json", {"config": cfg.sections, "config_source": cfg.source,
                                              "stages": [r.to_dict() for r in results]})
    return job, results


__all__ = ["DEFAULT_CONFIG", "Job", "build_job", "run_pipeline", "PipelineConfig", "SCHEMA", "Skip", "Stage", "StageResult", "load_config",
           "run_stages", "validate"]
