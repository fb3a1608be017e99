"""Benchmark a set of candidates (models x precisions) and assemble a :class:`Results`.

At each batch size every candidate runs interleaved with every other in one process
(see :mod:`se_deploy.bench.harness`), so the SE model, its plain twin, FP32 and INT8 all
see the same machine state. The SE tax is then computed per precision and batch from
the paired series. bench/ talks only to the runner interface (``se_deploy.engines``).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
from pydantic import Field, NonNegativeInt, PositiveInt

from se_deploy._util import sha256_file
from se_deploy.bench.harness import Timing, run_interleaved
from se_deploy.bench.profile import profile_runner
from se_deploy.bench.results import Comparison, Measurement, ModelInfo, Profile, Results
from se_deploy.bench.stats import noise_warning, se_tax, summarize, throughput
from se_deploy.envinfo import TegrastatsSampler, available_memory_bytes
from se_deploy.envinfo import capture_environment as capture
from se_deploy.errors import BenchmarkError, UsageError
from se_deploy.export.inspect import inspect_model
from se_deploy.names import Backend, BenchMode
from se_deploy.onnx_io import load_onnx
from se_deploy.runtime.registry import capabilities, create_runner


class BenchConfig(Timing):
    """What to time and how (the limits come from :class:`Timing`, with their cross-field rule).

    The same type is the pipeline's ``[bench]`` section, so a value the pipeline accepts is
    one the benchmark runs with.
    """

    batches: tuple[PositiveInt, ...] = Field((1,), min_length=1)
    threads: NonNegativeInt = 0  # 0: the backend decides
    min_iters: int = Field(30, ge=2)  # percentiles need samples
    mode: BenchMode = BenchMode.singlestream
    confidence: float = Field(0.95, gt=0, lt=1)
    n_boot: int = Field(2000, ge=100)
    profile: bool = False
    profile_iters: PositiveInt = 10
    seed: NonNegativeInt = 0

    def settings(self) -> dict:
        return {"batches": list(self.batches), "threads": self.threads, "warmup_s": self.warmup_s,
                "min_iters": self.min_iters, "min_duration_s": self.min_duration_s, "max_iters": self.max_iters,
                "confidence": self.confidence, "n_boot": self.n_boot, "profile": self.profile}


@dataclass(frozen=True)
class Candidate:
    """One thing to time: ``artifact`` is an ONNX/plan path (or a zoo name for the torch backend)."""
    name: str
    precision: str
    artifact: str
    role: str = "other"
    backend: str = "onnxruntime"
    options: dict = field(default_factory=dict)

    @property
    def key(self) -> str:
        """Unique per candidate: the same model and precision may run on several backends in one run."""
        return f"{self.name}/{self.precision}/{self.backend}"


def runner_options(backend: str, threads: int = 0, options: dict | None = None) -> dict:
    """The options bench passes to ``backend``: the thread count where it honours one, and busy-waiting
    off where its idle threads would otherwise spin (they steal cores from the candidate that runs next
    in the interleaved loop)."""
    caps = capabilities(backend)
    opts = dict(options or {})
    if caps.threads and threads:
        opts.setdefault("threads", threads)
    if caps.spinning:
        opts.setdefault("allow_spinning", False)
    return opts


def make_runner(c: Candidate, threads: int = 0):
    """A (not yet activated) runner for ``c`` from the runtime registry."""
    if c.backend not in Backend.values():
        raise UsageError(f"backend {c.backend!r} is not one of {Backend.choices()}")
    return create_runner(c.backend, c.artifact, **runner_options(c.backend, threads, c.options))


def model_info(name: str, role: str, onnx_path: str | None) -> ModelInfo:
    """Params, FLOPs and the SE share (from export.inspect) of an ONNX model."""
    info = ModelInfo(name=name, role=role, artifact=str(onnx_path) if onnx_path else None)
    if not onnx_path or not str(onnx_path).endswith(".onnx"):
        return info

    facts = inspect_model(load_onnx(onnx_path, check=False))
    share = facts.get("se_share", {})
    return ModelInfo(name=name, role=role, artifact=str(onnx_path), sha256=sha256_file(onnx_path),
                     params=facts.get("params"), flops=facts.get("flops"), se_blocks=share.get("blocks"),
                     se_share={"params_pct": 100.0 * share.get("params_fraction", 0.0),
                               "flops_pct": _pct(share.get("macs_fraction")),  # None: dynamic H/W, MACs unknown
                               "params": share.get("params"), "macs": share.get("macs"),
                               "flop_convention": facts.get("flop_convention")})


def _pct(fraction: float | None) -> float | None:
    return None if fraction is None else 100.0 * fraction


def make_feed(runner, batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Random inputs shaped for ``runner`` with the batch dimension set to ``batch``."""
    rng = np.random.default_rng(seed)
    feed = {}
    for spec in runner.inputs:
        if not spec.shape:
            raise BenchmarkError(f"input {spec.name!r} is a scalar; cannot set a batch size")
        b0 = spec.shape[0]
        if isinstance(b0, int) and b0 > 0 and b0 != batch:
            raise UsageError(f"input {spec.name!r} has a fixed batch size of {b0}, so batch {batch} cannot run; "
                             f"export with a dynamic batch dimension or use --batch {b0}")
        rest = spec.shape[1:]
        if any(not (isinstance(d, int) and d > 0) for d in rest):
            raise UsageError(f"input {spec.name!r} has dynamic non-batch dimensions {tuple(spec.shape)}; "
                             f"export with a fixed input shape")
        shape = (batch, *rest)
        dtype = np.dtype(spec.dtype)
        _check_fits(spec.name, shape, dtype)
        if dtype.kind == "f":
            feed[spec.name] = rng.standard_normal(shape).astype(dtype)
        else:
            feed[spec.name] = np.zeros(shape, dtype=dtype)
    return feed


def _check_fits(name: str, shape: tuple, dtype: np.dtype) -> None:
    """Refuse, before allocating, an input that alone would not fit in the memory available now."""
    need = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
    have = available_memory_bytes()
    if have is not None and need > have:
        raise UsageError(f"batch {shape[0]} needs {need / 1e9:.1f} GB for input {name!r} {tuple(shape)} alone, "
                         f"more than the {have / 1e9:.1f} GB of memory available; use a smaller --batch")


def _split_summary(timings, attr: str) -> dict | None:
    vals = [getattr(t, attr) for t in timings]
    if not vals or any(v is None for v in vals):
        return None
    return summarize(vals)


def _profile(c: Candidate, feed: dict, config: BenchConfig, batch: int, warnings: list[str]) -> Profile | None:
    if not capabilities(c.backend).profiling:
        warnings.append(f"per-op profile of {c.key} skipped: the {c.backend} backend has no per-node profiler")
        return None
    runner = make_runner(c, config.threads)
    res = profile_runner(runner, feed, iters=config.profile_iters, model_path=c.artifact)
    extra = {k: v for k, v in res.items() if k not in ("by_op", "nodes")}  # per-node detail is too long to keep
    return Profile(model=c.name, precision=c.precision, batch=batch, by_op=res["by_op"], source=c.backend,
                   extra=extra)


def capture_environment(warnings: list[str]) -> dict:
    # tegrastats is sampled during the timed run instead (see benchmark), not here
    return capture(tegrastats_s=0)


def se_tax_comparisons(candidates: Sequence[Candidate], config: BenchConfig, models: Sequence[ModelInfo],
                       paired: Callable[[str, str, int], tuple[list[float], list[float]]], *,
                       inference_precision: dict[str, str | None] | None = None, **extra) -> list[Comparison]:
    """The SE tax per precision, backend and batch, for each with one SE and one plain candidate.

    ``paired(se_key, plain_key, batch)`` gives the two latency series, paired by position;
    ``inference_precision``: candidate key -> the precision the runtime ran in (where it chooses one);
    ``extra`` goes into each Comparison (how the pairs were formed, where that is not call by call).
    """
    out = []
    info = {m.name: m for m in models}
    for prec, backend in dict.fromkeys((c.precision, c.backend) for c in candidates):
        group = [c for c in candidates if (c.precision, c.backend) == (prec, backend)]
        se = [c for c in group if c.role == "se"]
        plain = [c for c in group if c.role == "plain"]
        if len(se) != 1 or len(plain) != 1:
            continue
        for batch in config.batches:
            xs, ys = paired(se[0].key, plain[0].key, batch)
            tax = se_tax(xs, ys, confidence=config.confidence, n_boot=config.n_boot, seed=config.seed)
            share = info[se[0].name].se_share if se[0].name in info else None
            out.append(Comparison(se_model=se[0].name, plain_model=plain[0].name, precision=prec, batch=batch,
                                  tax=tax, se_share=share, backend=backend,
                                  inference_precision=(inference_precision or {}).get(se[0].key), **extra))
    return out


def benchmark(candidates: Sequence[Candidate], config: BenchConfig, *, models: Sequence[ModelInfo] = (),
              run_name: str = "", environment: dict | None = None, run_extra: dict | None = None,
              on_progress: Callable[[str], None] | None = None) -> Results:
    """Time every candidate at every batch size, interleaved; return the full Results.

    ``run_extra`` is recorded in ``results.run`` (for example how ``--backend auto`` chose).
    """
    if not candidates:
        raise UsageError("nothing to benchmark")
    keys = [c.key for c in candidates]
    if len(set(keys)) != len(keys):
        raise UsageError(f"duplicate candidates (name/precision/backend): {keys}")
    say = on_progress or (lambda msg: None)
    warnings: list[str] = []
    env = environment if environment is not None else capture_environment(warnings)
    measurements: list[Measurement] = []
    profiles: list[Profile] = []
    series: dict[tuple[str, int], list[float]] = {}

    with contextlib.ExitStack() as stack:
        power = stack.enter_context(TegrastatsSampler())  # Jetson board power during the run; no-op elsewhere
        runners, runtime = {}, {}
        for c in candidates:
            say(f"loading {c.key}")
            runners[c.key] = stack.enter_context(make_runner(c, config.threads))
            # what the runner says about itself (versions, providers, OpenVINO's inference precision),
            # and the options bench gave it (thread spinning off where the backend spins)
            runtime[c.key] = {**runners[c.key].describe(), "options": runner_options(c.backend, config.threads,
                                                                                     c.options)}
        for batch in config.batches:
            feeds = {c.key: make_feed(runners[c.key], batch, config.seed) for c in candidates}
            timings: dict[str, list] = {c.key: [] for c in candidates}

            def call(key: str) -> Callable[[], object]:
                r, feed, sink = runners[key], feeds[key], timings[key]

                def fn() -> None:
                    sink.append(r.infer(feed).timing)

                return fn

            say(f"timing batch {batch}: {', '.join(keys)} interleaved")
            samples = run_interleaved({k: call(k) for k in keys}, warmup_s=config.warmup_s,
                                      min_iters=config.min_iters, min_duration_s=config.min_duration_s,
                                      max_iters=config.max_iters)
            for c in candidates:
                ms = samples[c.key]
                series[(c.key, batch)] = ms
                timed = timings[c.key][-len(ms):]  # the last calls are the timed ones; earlier ones warmed up
                summ = summarize(ms)
                tput = throughput(ms, batch)
                headline = ({"metric": "p90_ms", "value": summ["p90"], "unit": "ms"}
                            if config.mode == BenchMode.singlestream
                            else {"metric": "throughput", "value": tput, "unit": "items/s"})
                separable = bool(timed) and all(t.h2d_ms is not None for t in timed)
                warn = noise_warning(summ)
                if warn:
                    warnings.append(f"{c.key} batch {batch}: {warn}")
                measurements.append(Measurement(
                    model=c.name, precision=c.precision, batch=batch, backend=c.backend, runtime=runtime[c.key],
                    latency_ms=summ,
                    throughput=tput, headline=headline,
                    compute_ms=_split_summary(timed, "compute_ms") if separable else None,
                    h2d_ms=_split_summary(timed, "h2d_ms") if separable else None,
                    d2h_ms=_split_summary(timed, "d2h_ms") if separable else None,
                    noise_warning=warn, samples_ms=[round(x, 6) for x in ms]))
            if config.profile and batch == config.batches[0]:
                for c in candidates:
                    say(f"profiling {c.key} at batch {batch}")
                    p = _profile(c, feeds[c.key], config, batch, warnings)
                    if p is not None:
                        profiles.append(p)
        if power.available and isinstance(env, dict):
            env.setdefault("jetson", {})
            if isinstance(env["jetson"], dict):
                env["jetson"]["tegrastats_during_run"] = power.summary()

    comparisons = se_tax_comparisons(
        candidates, config, models, lambda se, plain, batch: (series[(se, batch)], series[(plain, batch)]),
        inference_precision={k: r.get("inference_precision") for k, r in runtime.items()})
    backends = list(dict.fromkeys(c.backend for c in candidates))
    return Results(run={"name": run_name, "mode": config.mode, "backend": ",".join(backends),
                        "settings": config.settings(), **(run_extra or {})},
                   environment=env, models=list(models), measurements=measurements, comparisons=comparisons,
                   profiles=profiles, warnings=warnings)


__all__ = ["BenchConfig", "Candidate", "benchmark", "make_feed", "make_runner", "se_tax_comparisons"]
