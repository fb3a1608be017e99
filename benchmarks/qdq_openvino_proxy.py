"""INT8 SE tax under OpenVINO's CPU plugin, as a proxy for what a Q/DQ placement costs on TensorRT.

OpenVINO folds Q/DQ into INT8 kernels much as TensorRT does (DQ -> op -> Q becomes an INT8 op;
a float input between INT8 layers stays a float pass), so the INT8 SE tax of one placement
against another, measured here, points the way TensorRT would go. It is a proxy: no TensorRT
runs on this machine.

Each ``--pair LABEL=SE.onnx,PLAIN.onnx`` is an SE model and its plain twin quantized the same
way (same tool, same calibration data). Every distinct model file is compiled once (batch 1,
``--threads`` threads, one stream, latency hint) and timed round-robin in one process: each of
``--rounds`` rounds runs ``--per-round`` inferences of every model, in a shuffled order. The SE
tax of a pair is reported two ways: the median over rounds of (SE round median / plain round
median) - 1, with the interquartile range over rounds; and the ratio of the two models' 10th
percentiles over all inferences - 1 (on a shared, oversubscribed machine the low tail is the
least contaminated by neighbours).

Needs only ``openvino`` and ``numpy``; OpenVINO is not a project dependency, so run it with a
python that has it:

    /path/to/openvino-venv/bin/python benchmarks/qdq_openvino_proxy.py \\
        --pair se-deploy=se_resnet50.sed.onnx,resnet50.sed.onnx \\
        --pair modelopt=se_resnet50.modelopt.onnx,resnet50.modelopt.onnx --rounds 30
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time

import numpy as np


def compile_model(core, path: str, x: np.ndarray, threads: int, precision: str | None):
    model = core.read_model(path)
    model.reshape({model.input(0).get_any_name(): list(x.shape)})
    cfg = {"INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY"}
    if precision:
        cfg["INFERENCE_PRECISION_HINT"] = precision
    compiled = core.compile_model(model, "CPU", cfg)
    req = compiled.create_infer_request()
    import openvino as ov

    req.set_input_tensor(0, ov.Tensor(x))  # bound once: timing measures compute only
    return req


def quartiles(v: list[float]) -> tuple[float, float, float]:
    a = np.asarray(v)
    return float(np.percentile(a, 25)), float(np.median(a)), float(np.percentile(a, 75))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pair", action="append", required=True, metavar="LABEL=SE.onnx,PLAIN.onnx")
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--per-round", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--precision", default=None, help="INFERENCE_PRECISION_HINT for the float remainder (f32, bf16)")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    import openvino as ov

    pairs = {}
    for spec in args.pair:
        label, _, paths = spec.partition("=")
        se, _, plain = paths.partition(",")
        if not (label and se and plain):
            print(f"error: --pair wants LABEL=SE.onnx,PLAIN.onnx, got {spec!r}", file=sys.stderr)
            return 2
        pairs[label] = (se, plain)
    x = np.random.default_rng(0).standard_normal((1, 3, args.size, args.size), dtype=np.float32)
    core = ov.Core()
    paths = list(dict.fromkeys(p for pair in pairs.values() for p in pair))
    reqs = {p: compile_model(core, p, x, args.threads, args.precision) for p in paths}
    for r in reqs.values():
        for _ in range(args.warmup):
            r.infer()
    keys = list(reqs)
    round_med: dict[str, list[float]] = {k: [] for k in keys}
    every: dict[str, list[float]] = {k: [] for k in keys}
    order = random.Random(1)
    t0 = time.perf_counter()
    for _ in range(args.rounds):
        order.shuffle(keys)
        for k in keys:
            ts = []
            for _ in range(args.per_round):
                s = time.perf_counter()
                reqs[k].infer()
                ts.append(time.perf_counter() - s)
            round_med[k].append(statistics.median(ts))
            every[k] += ts
    wall = time.perf_counter() - t0
    print(f"openvino {ov.get_version()}, {args.threads} threads, {args.rounds} rounds x {args.per_round}, "
          f"{wall:.0f}s, load {os.getloadavg()[0]:.1f}")
    print("| placement | SE p10 / median ms | plain p10 / median ms | SE tax, paired rounds (IQR) | SE tax, p10 |")
    print("|---|---:|---:|---|---:|")
    out = {}
    for label, (se_path, plain_path) in pairs.items():
        se, plain = round_med[se_path], round_med[plain_path]
        lo, mid, hi = quartiles([a / b - 1 for a, b in zip(se, plain)])
        p10 = {k: float(np.percentile(every[k], 10)) * 1e3 for k in (se_path, plain_path)}
        med = {k: statistics.median(every[k]) * 1e3 for k in (se_path, plain_path)}
        out[label] = {"se_ms": med[se_path], "plain_ms": med[plain_path], "se_p10_ms": p10[se_path],
                      "plain_p10_ms": p10[plain_path], "tax": mid, "tax_iqr": [lo, hi],
                      "tax_p10": p10[se_path] / p10[plain_path] - 1}
        o = out[label]
        print(f"| {label} | {o['se_p10_ms']:.2f} / {o['se_ms']:.2f} | {o['plain_p10_ms']:.2f} / {o['plain_ms']:.2f} | "
              f"{mid * 100:+.0f}% ({lo * 100:+.0f}..{hi * 100:+.0f}) | {o['tax_p10'] * 100:+.0f}% |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "pairs": out, "wall_s": wall}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
