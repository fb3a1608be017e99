"""``auto``: which installed CPU runtime runs an ONNX model, decided by measuring it.

The rule, for an ONNX model on a machine where it is not built into a TensorRT plan:

1. the candidates are the installed runtimes that run an ONNX file directly
   (:data:`CPU_RUNTIMES`: onnxruntime and OpenVINO), each with the settings bench would
   give it (OpenVINO's precision from its chooser, onnxruntime's thread spinning off);
2. with one candidate, it is the choice, without a probe;
3. with several, they are timed interleaved on the model itself, at the batch size that
   will be benchmarked, for a short probe (0.5 s warm-up each, then at least 5 rounds and
   1 s, at most 30 rounds), and the lowest median wins.

The probe's medians, rounds and settings are returned, and bench and the pipeline record
them in the results (``run.backend_choice``), so a report says why a runtime was used.
"""

from __future__ import annotations

import statistics
from contextlib import ExitStack

from se_deploy.bench.harness import run_interleaved
from se_deploy.bench.suite import make_feed, runner_options
from se_deploy.errors import MissingDependencyError
from se_deploy.names import Backend
from se_deploy.runtime.registry import create_runner, list_backends

#: Runtimes that run an ONNX file directly on the host CPU, in the order a tie is broken.
CPU_RUNTIMES = (Backend.onnxruntime, Backend.openvino)
PROBE = {"warmup_s": 0.5, "min_iters": 5, "min_duration_s": 1.0, "max_iters": 30}
RULE = ("the installed CPU runtime (onnxruntime, openvino) with the lowest median latency on this model, "
        "timed interleaved in a short probe with the settings the benchmark uses")


def installed_cpu_runtimes() -> list[str]:
    """The CPU runtimes of :data:`CPU_RUNTIMES` that can run here."""
    up = {b.name for b in list_backends() if b.available}
    return [b.value for b in CPU_RUNTIMES if b.value in up]


def choose_cpu_backend(onnx_path: str, *, batch: int = 1, threads: int = 0, seed: int = 0,
                       candidates: list[str] | None = None, probe: dict | None = None) -> dict:
    """Pick the runtime for ``onnx_path`` by the module's rule; returns the choice and its evidence:
    ``{"choice", "rule", "candidates", "median_ms", "rounds", "batch", "threads", "options"}``."""
    names = installed_cpu_runtimes() if candidates is None else list(candidates)
    if not names:
        raise MissingDependencyError("no CPU runtime is installed to run the ONNX model: pip install onnxruntime "
                                     "(or: pip install 'se-deploy[openvino]')")
    out = {"rule": RULE, "candidates": names, "batch": batch, "threads": threads,
           "options": {n: runner_options(n, threads) for n in names}}
    if len(names) == 1:
        return {**out, "choice": names[0], "median_ms": None, "rounds": 0,
                "note": "only one CPU runtime installed: no probe"}
    limits = {**PROBE, **(probe or {})}
    with ExitStack() as stack:
        runners = {n: stack.enter_context(create_runner(n, onnx_path, **runner_options(n, threads))) for n in names}
        feeds = {n: make_feed(r, batch, seed) for n, r in runners.items()}
        ms = run_interleaved({n: (lambda r=r, f=feeds[n]: r.infer(f)) for n, r in runners.items()}, **limits)
        described = {n: r.describe() for n, r in runners.items()}
    medians = {n: statistics.median(v) for n, v in ms.items()}
    choice = min(names, key=lambda n: (medians[n], names.index(n)))
    return {**out, "choice": choice, "median_ms": medians, "rounds": len(next(iter(ms.values()))), "probe": limits,
            "runtime": {n: {k: v for k, v in d.items() if k in ("version", "providers", "inference_precision",
                                                                  "device", "threads")}
                        for n, d in described.items()}}


__all__ = ["CPU_RUNTIMES", "PROBE", "RULE", "choose_cpu_backend", "installed_cpu_runtimes"]
