"""``se-deploy bench --backend trtexec``: time TensorRT plans with NVIDIA's trtexec and record what it measured.

trtexec is NVIDIA's own timing tool and the reference a TensorRT number is compared with. Each
run loads one plan (``--loadEngine``), times it after its own warm-up, and writes its per-iteration
times (``--exportTimes``), its per-layer profile (``--exportProfile``, in a separate profiling run
so the timed run is not slowed by the profiler) and the engine's layers (``--exportLayerInfo``).
Those JSON files, not the log text, become results.json.

trtexec 11 changed its defaults (no data transfers, spin-wait and CUDA graphs on; 10.x and 8.6
default the other way), so every run names the mode explicitly: host<->device copies included,
no CUDA graph, no spin-wait, the same as the Python TensorRT runner's default. The settings go into
``run.settings.trtexec``.

Each trtexec run is its own process, so the SE plan and its plain twin cannot be interleaved call
by call as the in-process harness does. They alternate run by run instead (A B, B A, A B ...), and
the SE tax pairs the iterations of the two runs of the same round by position.
"""

from __future__ import annotations

import math
import shlex
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from se_deploy._util import read_sidecar
from se_deploy.bench.results import Measurement, ModelInfo, Profile, Results
from se_deploy.bench.stats import noise_warning, summarize, throughput
from se_deploy.bench.suite import BenchConfig, Candidate, se_tax_comparisons
from se_deploy.envinfo import TegrastatsSampler, capture_environment
from se_deploy.errors import InputError, UsageError
from se_deploy.names import BenchMode
from se_deploy.onnx_io import graph_inputs, load_onnx
from se_deploy.runtime.tensorrt.trtexec_tool import (TrtexecVersion, find_trtexec, parse_device_info, probe_version,
                                                     read_export_layer_info, read_export_profile, read_export_times,
                                                     run_trtexec)

#: Alternating runs per candidate and batch size (the timing budget is split between them).
ROUNDS = 3
#: Longest a single timing run may take before it counts as hung.
RUN_TIMEOUT_S = 1800


def mode_flags(major: int) -> list[str]:
    """Flags that fix the timing mode whatever the version's defaults: copies in, no CUDA graph, no spin-wait."""
    if major >= 11:
        return ["--includeDataTransfers", "--noCudaGraph", "--noSpinWait"]
    return []  # 8.6 and 10.x default to exactly that


def shapes_flag(meta: dict | None, batch: int, plan: str) -> list[str]:
    """``--shapes=input:BxCxHxW`` from the plan sidecar's profile; [] for a plan with static shapes, whose
    batch (read from the ONNX the sidecar names) must be ``batch``."""
    if meta is None:
        raise InputError(f"{plan} has no sidecar ({plan}.json), so its input shapes are unknown: build it with "
                         "se-deploy build-engine")
    profile = meta.get("profile")
    if not profile:
        built_from = (meta.get("onnx") or {}).get("built_from") or (meta.get("onnx") or {}).get("path")
        try:
            dims = [i.dims for i in graph_inputs(load_onnx(built_from, check=False))]
        except Exception:  # a moved or deleted ONNX: the batch cannot be checked, so it is not assumed
            raise InputError(f"{plan} has static shapes and the ONNX its sidecar names ({built_from}) cannot be "
                             "read, so its batch size is unknown") from None
        fixed = {d[0] for d in dims if d and isinstance(d[0], int)}
        if fixed != {batch}:
            raise UsageError(f"{plan} has static input shapes with batch {sorted(fixed)}: use --batch "
                             f"{','.join(map(str, sorted(fixed)))}")
        return []
    parts = []
    for name, mmm in profile.items():
        lo, hi = mmm["min"], mmm["max"]
        if not lo[0] <= batch <= hi[0]:
            raise UsageError(f"batch {batch} is outside the profile of {plan} (input {name!r} takes batch "
                             f"{lo[0]}..{hi[0]})")
        parts.append(f"{name}:{'x'.join(str(int(d)) for d in (batch, *mmm['opt'][1:]))}")
    return [f"--shapes={','.join(parts)}"]


def _by_layer_type(layers: list, info: dict | None) -> dict[str, dict]:
    """The profile's per-layer average times grouped by TensorRT layer type (from the detailed layer info;
    ``unknown`` where the plan was built without detailed profiling verbosity)."""
    types = {}
    for layer in (info or {}).get("Layers", []):
        if isinstance(layer, dict) and "Name" in layer:
            types[str(layer["Name"])] = str(layer.get("LayerType", "unknown"))
    total = sum(lt.average_ms for lt in layers)
    acc: dict[str, dict] = {}
    for lt in layers:
        a = acc.setdefault(types.get(lt.name, "unknown"), {"ms": 0.0, "pct": 0.0, "count": 0})
        a["ms"] += lt.average_ms
        a["count"] += 1
    for a in acc.values():
        a["pct"] = 100.0 * a["ms"] / total if total > 0 else 0.0
    return dict(sorted(acc.items(), key=lambda kv: -kv[1]["ms"]))


@dataclass
class _Series:
    rounds: list[dict[str, list[float]]]

    def joined(self, key: str) -> list[float]:
        return [x for r in self.rounds for x in r[key]]


def _round_budget(config: BenchConfig) -> tuple[float, float, int]:
    """(warm-up ms, duration s, iterations) for one of the ROUNDS runs of a candidate."""
    if config.max_iters is not None:  # trtexec runs until both limits are met: a cap means iterations only
        return config.warmup_s * 1e3, 0.0, max(1, math.ceil(config.max_iters / ROUNDS))
    return (config.warmup_s * 1e3, config.min_duration_s / ROUNDS, max(1, math.ceil(config.min_iters / ROUNDS)))


def bench_trtexec(candidates: Sequence[Candidate], config: BenchConfig, *, trtexec: str | None = None,
                  models: Sequence[ModelInfo] = (), run_name: str = "", environment: dict | None = None,
                  on_progress: Callable[[str], None] | None = None) -> Results:
    """Time every plan at every batch size with trtexec, alternating run by run; return the full Results."""
    say = on_progress or (lambda msg: None)
    exe = find_trtexec(trtexec)
    if exe is None:
        raise UsageError("--backend trtexec: trtexec not found (not on PATH nor in /usr/src/tensorrt/bin); pass "
                         "--trtexec PATH")
    if not candidates:
        raise UsageError("nothing to benchmark")
    version: TrtexecVersion = probe_version(exe)
    metas = {c.key: read_sidecar(c.artifact) for c in candidates}
    warmup_ms, duration_s, iterations = _round_budget(config)
    settings = {"path": exe, "version": str(version), "rounds": ROUNDS, "warmup_ms": warmup_ms,
                "duration_s": duration_s, "iterations": iterations, "data_transfers": True, "cuda_graph": False,
                "spin_wait": False, "mode_flags": mode_flags(version.major)}
    warnings = ["trtexec runs each plan in its own process: the SE plan and its plain twin alternate run by run, "
                "not call by call, and the SE tax pairs iterations of the same round by position"]
    env = environment if environment is not None else capture_environment(tegrastats_s=0)
    series: dict[tuple[str, int], _Series] = {}
    measurements, profiles, device = [], [], {}
    keys = [c.key for c in candidates]
    with tempfile.TemporaryDirectory(prefix="se-deploy-trtexec-") as tmp, TegrastatsSampler() as power:
        work = Path(tmp)
        for batch in config.batches:
            shapes = {c.key: shapes_flag(metas[c.key], batch, c.artifact) for c in candidates}
            runs: dict[str, list[dict[str, list[float]]]] = {k: [] for k in keys}
            for r in range(ROUNDS):
                order = candidates[r % len(candidates):] + candidates[:r % len(candidates)]
                for c in order:
                    n = len(runs[c.key])
                    times = work / f"times-{keys.index(c.key)}-{batch}-{n}.json"
                    argv = [exe, f"--loadEngine={c.artifact}", *shapes[c.key], f"--warmUp={warmup_ms:g}",
                            f"--duration={duration_s:g}", f"--iterations={iterations}", *mode_flags(version.major),
                            f"--exportTimes={times}"]
                    say(f"trtexec {c.key} batch {batch}, run {r + 1}/{ROUNDS}")
                    out = run_trtexec(argv, timeout=RUN_TIMEOUT_S, what=f"trtexec timing {c.key}")
                    device = device or parse_device_info(out)
                    runs[c.key].append(read_export_times(times))
            for c in candidates:
                s = _Series(runs[c.key])
                series[(c.key, batch)] = s
                ms = s.joined("latencyMs")
                summ = summarize(ms)
                warn = noise_warning(summ)
                if warn:
                    warnings.append(f"{c.key} batch {batch}: {warn}")
                headline = ({"metric": "p90_ms", "value": summ["p90"], "unit": "ms"}
                            if config.mode == BenchMode.singlestream
                            else {"metric": "throughput", "value": throughput(ms, batch), "unit": "items/s"})
                measurements.append(Measurement(
                    model=c.name, precision=c.precision, batch=batch, backend="trtexec", latency_ms=summ,
                    throughput=throughput(ms, batch), headline=headline, compute_ms=summarize(s.joined("computeMs")),
                    h2d_ms=summarize(s.joined("h2dMs")), d2h_ms=summarize(s.joined("d2hMs")), noise_warning=warn,
                    samples_ms=[round(x, 6) for x in ms], timed_by="trtexec --exportTimes"))
            if config.profile and batch == config.batches[0]:
                for c in candidates:
                    i = keys.index(c.key)
                    prof, info = work / f"profile-{i}.json", work / f"layers-{i}.json"
                    argv = [exe, f"--loadEngine={c.artifact}", *shapes[c.key], f"--warmUp={warmup_ms:g}",
                            f"--iterations={max(config.profile_iters, 1)}", "--duration=0",
                            *mode_flags(version.major), "--separateProfileRun", f"--exportProfile={prof}",
                            f"--exportLayerInfo={info}"]
                    say(f"trtexec per-layer profile of {c.key} at batch {batch}")
                    run_trtexec(argv, timeout=RUN_TIMEOUT_S, what=f"trtexec profile {c.key}")
                    count, layers = read_export_profile(prof)
                    layer_info = read_export_layer_info(info)
                    profiles.append(Profile(
                        model=c.name, precision=c.precision, batch=batch, by_op=_by_layer_type(layers, layer_info),
                        source="trtexec", iterations=count,
                        layers=[{"name": lt.name, "ms": lt.average_ms, "median_ms": lt.median_ms,
                                 "pct": lt.percentage} for lt in sorted(layers, key=lambda x: -x.average_ms)[:30]]))
        if power.available and isinstance(env, dict) and isinstance(env.get("jetson", {}), dict):
            env.setdefault("jetson", {})["tegrastats_during_run"] = power.summary()
    comparisons = se_tax_comparisons(candidates, config, models, _paired_by_round(series),
                                     pairing="iterations of the same round, by position")
    if isinstance(env, dict):
        env["trtexec"] = {"path": exe, "version": str(version), **device}
    settings_all = {**config.settings(), "trtexec": settings,
                    "commands_example": shlex.join([exe, "--loadEngine=PLAN", "--warmUp=...", "--duration=...",
                                                    "--iterations=...", *mode_flags(version.major),
                                                    "--exportTimes=FILE"])}
    return Results(run={"name": run_name, "mode": config.mode, "backend": "trtexec", "settings": settings_all},
                   environment=env, models=list(models), measurements=measurements, comparisons=comparisons,
                   profiles=profiles, warnings=warnings)


def _paired_by_round(series: dict) -> Callable[[str, str, int], tuple[list[float], list[float]]]:
    """Pairs of the SE and plain runs of the same round, by position (each round's shorter run sets the count)."""
    def paired(se: str, plain: str, batch: int) -> tuple[list[float], list[float]]:
        xs, ys = [], []
        for ra, rb in zip(series[(se, batch)].rounds, series[(plain, batch)].rounds):
            n = min(len(ra["latencyMs"]), len(rb["latencyMs"]))
            xs += ra["latencyMs"][:n]
            ys += rb["latencyMs"][:n]
        return xs, ys

    return paired


__all__ = ["ROUNDS", "bench_trtexec", "mode_flags", "shapes_flag"]
