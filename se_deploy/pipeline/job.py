"""The one-command job: export -> fuse -> calibrate/quantize -> engines -> accuracy -> bench -> report.

Runs for the SE model and its plain twin. :func:`build_job` turns a PipelineConfig into
the list of stages (see :mod:`se_deploy.pipeline.stages` for when a stage reruns); each
stage hands its config section to the stage library as is, so what the config validated
is what runs.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from se_deploy._util import read_sidecar, sha256_file, sidecar_path, write_json_atomic
from se_deploy.bench.backend_choice import CPU_RUNTIMES, choose_cpu_backend
from se_deploy.bench.results import Accuracy, load_results, save_results
from se_deploy.bench.suite import BenchConfig, Candidate, benchmark, model_info
from se_deploy.budget.run import MODEL_NAME as BUDGET_MODEL
from se_deploy.budget.run import run_budget
from se_deploy.calibration.accuracy import evaluate
from se_deploy.calibration.dataset import load_calibration
from se_deploy.calibration.fp16 import Fp16Config, convert_fp16
from se_deploy.calibration.preprocess import make_preprocess
from se_deploy.calibration.quantize import quantize_int8
from se_deploy.calibration.sources import LABEL_KEYS
from se_deploy.engines.build import build_or_trtexec, tensorrt_quant_config
from se_deploy.engines.tensorrt.builder import installed_tensorrt
from se_deploy.engines.tensorrt.config import BuildConfig
from se_deploy.errors import ConfigError, InternalError, MissingDependencyError
from se_deploy.export.passes import ablate_se
from se_deploy.export.torch_export import export_model
from se_deploy.files import locked_directory, refuse_clobbering, staged_artifact
from se_deploy.models import is_registered, plain_twin
from se_deploy.names import EngineBackend, Precision, QuantTarget
from se_deploy.onnx_io import load_onnx, model_input, save_onnx
from se_deploy.pipeline.config import CALIBRATED_PRECISIONS, PipelineConfig
from se_deploy.pipeline.stages import Skip, Stage, StageResult, StageStatus, run_stages
from se_deploy.report.render import write_report
from se_deploy.runtime.registry import capabilities

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

    def onnx(self, role: str, precision: str = Precision.fp32) -> Path:
        return self.out / role / ("model.onnx" if precision == Precision.fp32 else f"model.{precision}.onnx")

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
    budget = property(lambda self: self.out / "se_budget" / BUDGET_MODEL)


def _input_shape(cfg: PipelineConfig) -> tuple[int, ...]:
    return tuple(cfg.model.input_shape)


def _resolve_plain(cfg: PipelineConfig) -> tuple[str | None, bool]:
    se, plain = cfg.model.se, cfg.model.plain
    if not is_registered(se):
        raise ConfigError(f"{cfg.source}: model.se: {se!r} is not a zoo model name (see 'se-deploy models')")
    if plain == "none":
        return None, False
    if plain == "auto":
        return plain_twin(se), True  # None: no zoo twin, ablate SE blocks from the export instead
    if plain == "ablate":
        return None, True
    if not is_registered(plain):
        raise ConfigError(f"{cfg.source}: model.plain: {plain!r} is not one of auto, ablate, none, or a zoo model "
                          f"name (see 'se-deploy models')")
    return plain, True


def _export_stage(job: Job, role: str) -> Stage:
    cfg = job.config
    out = job.onnx(role)

    def run() -> str:
        out.parent.mkdir(parents=True, exist_ok=True)
        if role == "plain" and job.plain_name is None:
            with staged_artifact(out) as staged:
                save_onnx(ablate_se(load_onnx(job.onnx("se"))), staged.path)
                staged.write_sidecar({"kind": "onnx", "precision": "fp32", "derived_from": str(job.onnx("se")),
                                      "transform": "ablate-se (every SE block replaced by its input)"})
            return "SE blocks removed from the SE export"
        res = export_model(job.se_name if role == "se" else job.plain_name, out, input_shape=_input_shape(cfg),
                           dynamic_batch=True, **cfg.export.model_dump())
        parity = res.info.get("parity", {})
        worst = parity.get("worst_rel_max_abs")
        return (f"parity vs PyTorch: rel max abs {worst:.2g} ({'passed' if parity.get('passed') else 'FAILED'})"
                if isinstance(worst, float) else "")

    inputs = [job.onnx("se")] if role == "plain" and job.plain_name is None else []
    return Stage(f"export {job.display(role)}", [out], inputs, cfg.section_hash("model", "export"), run)


def _calibration_stage(job: Job) -> Stage:
    cfg = job.config

    def load(section: str, size: int, seed: int, role: str):
        name = model_input(load_onnx(job.onnx("se"), check=False)).name
        src = getattr(cfg, section).source
        synthetic = src == "synthetic"
        ds = load_calibration(None if synthetic else src, input_name=name, input_shape=_input_shape(cfg),
                              preprocess=make_preprocess(cfg.calibration.preprocess), calib_size=size,
                              seed=seed, synthetic=synthetic)
        ds.provenance["role"] = role
        return ds

    def run() -> str:
        c, a = cfg.calibration, cfg.accuracy
        calib = load("calibration", c.size, c.seed, "calibration")
        ev = load("accuracy", a.size, a.seed, "held-out evaluation")
        for path, ds in ((job.calib, calib), (job.eval_set, ev)):
            label = SYNTHETIC_LABEL if ds.is_synthetic else f"{ds.source_kind} data"
            with staged_artifact(path) as staged:
                ds.save_npz(staged.path)
                staged.write_sidecar({"kind": "calibration-set", "samples": len(ds), "synthetic": ds.is_synthetic,
                                      "label": label, "provenance": ds.provenance})
        if calib.is_synthetic:
            job.notes.append(SYNTHETIC_LABEL)
            return "SYNTHETIC data (labelled as such in every sidecar and the report)"
        return f"{len(calib)} calibration samples, {len(ev)} held-out"

    return Stage("calibration data", [job.calib, job.eval_set], [job.onnx("se")],
                 cfg.section_hash("calibration", "accuracy", "model"), run)


def _quantize_stage(job: Job, role: str) -> Stage:
    cfg = job.config
    out = job.onnx(role, Precision.int8)

    def run() -> str:
        side = quantize_int8(job.onnx(role), out, _load_npz(job.calib), cfg.quantize)
        return f"target {cfg.quantize.target}, {cfg.quantize.method}, {side.get('status', 'written')}"

    return Stage(f"quantize INT8 {job.display(role)}", [out], [job.onnx(role), job.calib],
                 cfg.section_hash("quantize", "calibration"), run)


def _fp16_stage(job: Job, role: str) -> Stage:
    """The FP16 ONNX, checked against FP32 on the held-out inputs (calibration's converter does the proof)."""
    out = job.onnx(role, Precision.fp16)

    def run() -> str:
        side = convert_fp16(job.onnx(role), out, Fp16Config(), eval_set=_load_npz(job.eval_set))
        return f"cosine vs FP32 {side['numerics'].get('cosine', float('nan')):.6f} ({side['status']})"

    return Stage(f"convert FP16 {job.display(role)}", [out], [job.onnx(role), job.eval_set],
                 job.config.section_hash("model"), run)


def _needs_calibration(job: Job) -> bool:
    """Calibration data for INT8, and the held-out set that checks every precision against FP32."""
    return any(p != Precision.fp32 for p in _precisions(job))


def _load_npz(path: Path):
    import numpy as np

    with np.load(path) as z:
        name = next(k for k in z.files if k not in LABEL_KEYS)
        shape = z[name].shape
    return load_calibration(path, input_name=name, input_shape=(1, *shape[1:]), preprocess=make_preprocess("none"),
                            calib_size=None, seed=0)


def _precisions(job: Job) -> list[str]:
    return list(job.config.engines.precisions)


def _engine_backend(cfg: PipelineConfig, choose: Callable[[], dict]) -> tuple[str, str, dict | None]:
    """(backend that builds and runs the engines, why, the probe behind an auto choice).
    ``choose`` runs the CPU-runtime probe (only called for auto without TensorRT).
    A backend added to EngineBackend needs a branch here."""
    want = cfg.engines.backend
    if want in CPU_RUNTIMES:
        return str(want), f"{want} chosen in the config", None
    if want not in (EngineBackend.auto, EngineBackend.tensorrt):
        raise InternalError(f"engines.backend {want!r} validated but the pipeline has no engine step for it")
    try:
        trt = installed_tensorrt()
    except Exception as e:  # a broken GPU stack reads as "not available"
        trt, why = None, f"{type(e).__name__}: {e}"
    else:
        why = "tensorrt is not installed"
    if trt is not None:
        return "tensorrt", f"TensorRT {trt.__version__}", None
    if want == EngineBackend.tensorrt:
        raise MissingDependencyError(f"engines.backend = 'tensorrt' but {why}; set engines.backend = 'auto', "
                                     f"'onnxruntime' or 'openvino' to run on this machine")
    choice = choose()
    if choice.get("median_ms"):
        probe = ", ".join(f"{b} {ms:.3g} ms" for b, ms in choice["median_ms"].items())
        how = f"faster in a short interleaved probe on the SE model ({probe}, median of {choice['rounds']} rounds)"
    else:
        how = "the only CPU runtime installed"
    return choice["choice"], f"{why}: {choice['choice']} runs the ONNX models directly, {how}", choice


def _tensorrt_engine(job: Job, role: str, prec: str) -> tuple[Path, Path]:
    """Build the TensorRT plan of ``prec`` for ``role``; (plan, the ONNX whose precision the plan carries).

    FP16 builds from the checked FP16 ONNX. INT8 and the mixed INT8+FP16 build from a Q/DQ model written
    for TensorRT (symmetric s8) with the [quantize] settings, its unquantized layers in FP32 (int8) or FP16
    (int8fp16): the [quantize] target serves the onnxruntime engines and may be the CPU form.
    """
    cfg = job.config
    plan = job.out / role / f"engine.{prec}.plan"
    b = cfg.bench.batches
    batch = (min(b), max(b), max(b))
    if prec == Precision.fp32:
        bc = BuildConfig(onnx=str(job.onnx(role)), output=str(plan), batch=batch)
    elif prec == Precision.fp16:
        bc = BuildConfig(onnx=str(job.onnx(role, Precision.fp16)), output=str(plan), fp16=True, batch=batch)
    else:
        mixed = prec == Precision.int8fp16
        high = Precision.fp16 if mixed else Precision.fp32
        qdq = job.onnx(role, Precision.int8)  # written by the quantize stage when int8 is one of the precisions
        if (Precision.int8 not in _precisions(job) or cfg.quantize.target != QuantTarget.tensorrt
                or cfg.quantize.resolved_high_precision != high):
            qdq = job.out / role / f"model.{prec}.tensorrt.onnx"
            quantize_int8(job.onnx(role), qdq, _load_npz(job.calib), tensorrt_quant_config(high, cfg.quantize))
        bc = BuildConfig(onnx=str(qdq), output=str(plan), int8=True, fp16=mixed, batch=batch)
    outcome = build_or_trtexec(bc, log=lambda msg: None)
    if outcome.not_built is not None:
        raise outcome.not_built
    built_from = Path((outcome.metadata or {}).get("onnx", {}).get("built_from") or bc.onnx)
    return plan, built_from


def _engines_stage(job: Job) -> Stage:
    cfg = job.config
    inputs = [job.onnx(r, p) for r in job.roles for p in _precisions(job) if p != Precision.int8fp16]
    inputs += [job.calib] if any(p in CALIBRATED_PRECISIONS for p in _precisions(job)) else []

    def run() -> str:
        backend, why, choice = _engine_backend(cfg, lambda: choose_cpu_backend(
            str(job.onnx("se")), batch=cfg.bench.batches[0], threads=cfg.bench.threads, seed=cfg.bench.seed))
        backends = list(dict.fromkeys([backend, *cfg.engines.compare]))
        engines = []
        for backend, role in ((b, r) for b in backends for r in job.roles):
            for prec in _precisions(job):
                entry = {"model": job.display(role), "role": role, "precision": prec, "backend": backend}
                if backend == "tensorrt":
                    artifact, onnx = _tensorrt_engine(job, role, prec)
                elif prec == Precision.int8fp16:
                    # a CPU runtime has no such build: the row says so instead of timing another precision
                    engines.append({**entry, "skipped": "int8fp16 (INT8 Q/DQ with FP16 layers) is built for "
                                    f"TensorRT only; the engines run on {backend} here"})
                    continue
                else:
                    artifact = onnx = job.onnx(role, prec)
                engines.append({**entry, "artifact": str(artifact.relative_to(job.out)), "sha256": sha256_file(artifact),
                                "onnx": str(onnx.relative_to(job.out)) if onnx.is_relative_to(job.out) else str(onnx)})
        write_json_atomic(job.engines, {"backend": backends[0], "backends": backends, "reason": why,
                                        "choice": choice, "engines": engines})
        skipped = sorted({e["precision"] for e in engines if e.get("skipped")})
        return f"{', '.join(backends)} ({why})" + (f"; not built: {', '.join(skipped)}" if skipped else "")

    return Stage("build engines", [job.engines], inputs, cfg.section_hash("engines", "bench", "quantize"), run)


def _accuracy_stage(job: Job) -> Stage:
    cfg = job.config
    inputs = [job.onnx(r, p) for r in job.roles for p in _precisions(job)] + [job.eval_set]

    def run() -> str:
        if not cfg.accuracy.enabled:
            raise Skip("accuracy.enabled = false")
        if _precisions(job) == [Precision.fp32]:
            raise Skip("only fp32 built: nothing to compare with the FP32 reference")

        ev = _load_npz(job.eval_set)
        built = json.loads(job.engines.read_text())["engines"]
        reports = {}
        for role in job.roles:
            # the ONNX each engine's precision comes from (for TensorRT, the Q/DQ or FP16 model it was built from)
            cands = {e["precision"]: str(job.out / e["onnx"]) for e in built
                     if e["role"] == role and e["precision"] != Precision.fp32 and not e.get("skipped")}
            if cands:
                reports[job.display(role)] = evaluate(str(job.onnx(role)), cands, ev)
        synthetic = (read_sidecar(job.eval_set) or {}).get("synthetic", True)
        write_json_atomic(job.accuracy, {"synthetic": synthetic, "label": SYNTHETIC_LABEL if synthetic else "",
                                         "reports": reports})
        parts = []
        for model, rep in reports.items():
            for prec, e in rep["candidates"].items():
                parts.append(f"{model} {prec}: top-1 agreement {e.get('top1_agreement')}%")
        return "; ".join(parts)

    inputs = [job.engines] + [p for p in inputs if p.name != f"model.{Precision.int8fp16}.onnx"]
    return Stage("accuracy vs FP32", [job.accuracy], inputs, cfg.section_hash("accuracy"), run)


def _bench_stage(job: Job) -> Stage:
    cfg = job.config

    def run() -> str:
        man = json.loads(job.engines.read_text())
        # the per-op profile needs a backend with a per-node profiler; on TensorRT engines it is left out
        profiled = any(capabilities(e["backend"]).profiling for e in man["engines"])
        bc = BenchConfig(**{**cfg.bench.model_dump(), "profile": cfg.bench.profile and profiled})
        cands = [Candidate(name=e["model"], precision=e["precision"], artifact=str(job.out / e["artifact"]),
                           role=e["role"] if job.has_plain else "other", backend=e["backend"])
                 for e in man["engines"] if not e.get("skipped")]
        models = [model_info(job.display(r), r if job.has_plain else "other", str(job.onnx(r))) for r in job.roles]
        res = benchmark(cands, bc, models=models, run_name=cfg.name,
                        run_extra={"backend_choice": man["choice"]} if man.get("choice") else None)
        if job.accuracy.exists():
            acc = json.loads(job.accuracy.read_text())
            for model, rep in acc["reports"].items():
                for prec, e in rep["candidates"].items():
                    res.accuracy.append(Accuracy(model=model, precision=prec, metrics={
                        k: v for k, v in e.items() if k != "model"},
                        data="synthetic held-out inputs" if acc.get("synthetic") else "held-out set"))
        if job.calib.exists() and (read_sidecar(job.calib) or {}).get("synthetic"):
            res.warnings.insert(0, SYNTHETIC_LABEL)
        res.run["pipeline"] = {"config": cfg.to_dict(), "engines": man["reason"],
                               "precision_backends": {p: sorted({e["backend"] for e in man["engines"]
                                                                   if e["precision"] == p and not e.get("skipped")})
                                                      for p in dict.fromkeys(e["precision"] for e in man["engines"])}}
        res.warnings += [f"{e['model']} {e['precision']}: not built ({e['skipped']})" for e in man["engines"]
                         if e.get("skipped")]
        save_results(res, job.results)
        return ", ".join(f"{c.precision} b{c.batch} {c.backend}: SE tax {c.tax['tax_pct']:+.1f}%" for c in res.comparisons)

    inputs = [job.engines, job.accuracy]  # hashed when the stage starts; "missing" when accuracy was skipped
    inputs += [job.onnx(r, p) for r in job.roles for p in _precisions(job) if p != Precision.int8fp16]
    return Stage("benchmark", [job.results], inputs, cfg.section_hash("bench"), run)


def _budget_stage(job: Job) -> Stage:
    cfg = job.config

    def run() -> str:
        if not job.eval_set.exists():
            raise Skip("the SE budget needs the held-out evaluation set, which the calibration stage writes when "
                       "engines.precisions holds a precision besides fp32 (fp16, int8 or int8fp16)")
        r = run_budget(job.onnx("se"), job.budget.parent, cfg.se_budget, eval_source=job.eval_set,
                       synthetic_source=(read_sidecar(job.eval_set) or {}).get("synthetic", False))
        ch = r["chosen"]
        return (f"{ch['fates'].count('keep')} kept, {ch['fates'].count('fold')} folded, "
                f"{ch['fates'].count('remove')} removed: SE tax {ch['tax']['tax_pct']:+.1f}% "
                f"(budget {r['budget_pct']:g}%), loss {ch['loss']:.2f}")

    return Stage("SE budget", [job.budget], [job.onnx("se"), job.eval_set], cfg.section_hash("se_budget"), run)


def _report_stage(job: Job) -> Stage:
    cfg = job.config

    def run() -> str:
        r = cfg.report
        if not (r.html or r.markdown):
            raise Skip("report.html and report.markdown are both false")
        results = load_results(job.results)
        if cfg.se_budget.enabled and job.budget.exists():
            setattr(results, "se_budget", read_sidecar(job.budget))  # a results key the report shows
        written = write_report(results, html=job.report_html if r.html else None,
                               md=job.report_md if r.markdown else None, png_dir=job.plots if r.png else None)
        return ", ".join(p.name for p in written.values())

    outs = ([job.report_html] if cfg.report.html else []) + ([job.report_md] if cfg.report.markdown else [])
    inputs = [job.results] + ([job.budget] if cfg.se_budget.enabled else [])
    return Stage("report", outs, inputs, cfg.section_hash("report"), run)


def _check_sources(cfg: PipelineConfig) -> None:
    """A data path that does not exist fails before the exports run, not after them."""
    for section in ("calibration", "accuracy"):
        src = getattr(cfg, section).source
        if src != "synthetic" and not Path(src).exists():
            raise ConfigError(f"{cfg.source}: {section}.source: {src!r} does not exist (give an image folder, a .npz "
                              "file, or 'synthetic')")


def build_job(cfg: PipelineConfig, out: str | os.PathLike) -> tuple[Job, list[Stage]]:
    _check_sources(cfg)
    plain_name, has_plain = _resolve_plain(cfg)
    job = Job(cfg, Path(out), cfg.model.se, plain_name, has_plain)
    stages = [_export_stage(job, r) for r in job.roles]
    if _needs_calibration(job):
        stages.append(_calibration_stage(job))
    if Precision.int8 in _precisions(job):
        stages += [_quantize_stage(job, r) for r in job.roles]
    if Precision.fp16 in _precisions(job):
        stages += [_fp16_stage(job, r) for r in job.roles]
    stages += [_engines_stage(job), _accuracy_stage(job), _bench_stage(job)]
    stages += [_budget_stage(job)] if cfg.se_budget.enabled else []
    stages.append(_report_stage(job))
    # data read from inside the run directory must not be one of the files the run writes
    sources = {f"{s}.source": getattr(cfg, s).source for s in ("calibration", "accuracy")
               if getattr(cfg, s).source != "synthetic"}
    refuse_clobbering(sources, {"the run's file": [p for st in stages for o in st.outputs
                                                   for p in (o, sidecar_path(o))]})
    return job, stages


def run_pipeline(cfg: PipelineConfig, out: str | os.PathLike, *, force: bool = False,
                 on_event: Callable[[str, str, StageResult | None], None] | None = None, wait: bool = False,
                 on_wait: Callable[[str], None] | None = None) -> tuple[Job, list[StageResult]]:
    """Run (or skip) every stage; write ``pipeline.json`` with what happened, then re-raise a stage's error.

    The run holds ``out`` exclusively (:func:`se_deploy.files.locked_directory`): a second run on the same
    directory raises BusyError naming this one, or with ``wait`` waits for it."""
    out = Path(out)
    job, stages = build_job(cfg, out)
    with locked_directory(out, wait=wait, what="run directory", on_wait=on_wait):
        # run_stages hashes each stage's inputs just before it runs, after the stages that make them.
        results = run_stages(stages, force=force, on_event=on_event)
        write_json_atomic(out / "pipeline.json", {"config": cfg.to_dict(), "config_source": cfg.source,
                                                  "stages": [r.to_dict() for r in results]})
    failed = next((r for r in results if r.status is StageStatus.failed), None)
    if failed is not None and failed.error is not None:
        raise failed.error
    return job, results


__all__ = ["Job", "SYNTHETIC_LABEL", "build_job", "run_pipeline"]
