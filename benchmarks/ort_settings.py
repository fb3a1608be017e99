"""onnxruntime settings and where the SE time goes, per backend runner.

For one SE model this exports an FP32 ONNX once, then

1. times onnxruntime at graph optimisation levels basic / extended / all and eager PyTorch,
   all through ``create_runner``, *interleaved in one process*, and prints each one's
   median, p90 and its ratio to onnxruntime "all" with a paired bootstrap interval;
2. runs onnxruntime's profiler at "extended" and "all" and prints the per-op breakdown
   with the SE nodes (found by ``find_se_blocks``) grouped into one bucket, plus how many
   trace nodes could not be mapped back to the model.

    python benchmarks/ort_settings.py --model se_resnet50 --size 224 --threads 2 --out ort_settings.json

Numbers are only comparable within one run: this machine's speed drifts.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

# PyTorch's OpenMP workers busy-wait between parallel regions by default; interleaved with
# onnxruntime's thread pool on few cores that made eager PyTorch 20-100x slower here. It must
# be set before torch loads libgomp.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="se_resnet50")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--min-iters", type=int, default=40)
    ap.add_argument("--min-duration-s", type=float, default=10.0)
    ap.add_argument("--profile-iters", type=int, default=20)
    ap.add_argument("--spin", action=argparse.BooleanOptionalAction, default=False,
                    help="let onnxruntime's idle threads busy-wait (steals cores from the interleaved neighbours)")
    ap.add_argument("--out", default=None, help="write the full results as JSON here")
    args = ap.parse_args(argv)

    import onnx

    from se_deploy.bench.harness import run_interleaved
    from se_deploy.bench.profile import SE_BUCKET, profile_onnx
    from se_deploy.bench.stats import percentile, ratio_interval
    from se_deploy.runtime.registry import create_runner
    from se_deploy.envinfo import capture_environment, environment_rows
    from se_deploy.export.se_detect import find_se_blocks
    from se_deploy.export.torch_export import export_model
    from se_deploy.models import create_model

    import torch

    torch.manual_seed(0)
    model = create_model(args.model, num_classes=1000)
    shape = (1, 3, args.size, args.size)
    results: dict = {"model": args.model, "input_shape": shape, "threads": args.threads, "ort_spinning": args.spin}
    with tempfile.TemporaryDirectory() as td:
        path = Path(td) / f"{args.model}.onnx"
        export_model(model, path, input_shape=shape, exporter="legacy", fuse=False)
        proto = onnx.load(str(path))
        se_nodes = {n for b in find_se_blocks(proto) for n in b.node_names if n}
        x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        in_name = proto.graph.input[0].name
        feed = {in_name: x}

        runners = {f"ort-{lvl}": create_runner("onnxruntime", str(path), threads=args.threads, graph_optimization=lvl,
                                               allow_spinning=args.spin)
                   for lvl in ("basic", "extended", "all")}
        runners["torch-eager"] = create_runner("torch", model, input_shape=shape, input_name=in_name,
                                               threads=args.threads)
        for r in runners.values():
            r.__enter__()
        try:
            samples = run_interleaved({k: (lambda r=r: r.infer(feed)) for k, r in runners.items()},
                                      warmup_s=2.0, min_iters=args.min_iters, min_duration_s=args.min_duration_s)
        finally:
            for r in runners.values():
                r.__exit__(None, None, None)
        base = samples["ort-all"]
        timing = {}
        for k, s in samples.items():
            point, lo, hi = ratio_interval(s, base)
            timing[k] = {"median_ms": float(np.median(s)), "p90_ms": percentile(s, 90), "n": len(s),
                         "ratio_vs_ort_all": point, "ratio_lo": lo, "ratio_hi": hi}
        results["timing"] = timing

        profiles = {}
        for lvl in ("extended", "all"):
            p = profile_onnx(str(path), feed, iters=args.profile_iters, threads=args.threads,
                             se_node_names=se_nodes, graph_optimization=lvl)
            profiles[lvl] = {k: p[k] for k in ("total_ms", "run_ms", "by_op", "unattributed", "se_blocks")}
        results["profiles"] = profiles
        results["se_blocks"] = len(find_se_blocks(proto))
    results["environment"] = capture_environment()

    print(f"## {args.model} {shape}, FP32, {args.threads} threads, onnxruntime CPU, "
          f"spinning {'on' if args.spin else 'off'}\n")
    print("| runner | median ms | p90 ms | ratio vs ort-all (95% CI) |")
    print("|---|---:|---:|---|")
    for k, t in timing.items():
        print(f"| {k} | {t['median_ms']:.2f} | {t['p90_ms']:.2f} | "
              f"{t['ratio_vs_ort_all']:.3f} ({t['ratio_lo']:.3f}..{t['ratio_hi']:.3f}) |")
    for lvl, p in profiles.items():
        se = p["se_blocks"] or {}
        print(f"\nper-op profile, graph optimisation {lvl}: kernels {p['total_ms']:.2f} ms of "
              f"{p['run_ms']:.2f} ms per run; {len(p['unattributed'])} trace nodes unattributed; "
              f"SE blocks {se.get('pct', 0):.1f}% of kernel time")
        print("| op (SE grouped) | ms | % | nodes |")
        print("|---|---:|---:|---:|")
        for op, v in list(p["by_op"].items())[:8]:
            print(f"| {op} | {v['ms']:.3f} | {v['pct']:.1f} | {v['count']} |")
        if se:
            inside = ", ".join(f"{op} {v['pct']:.1f}%" for op, v in se["by_op"].items())
            print(f"\n{SE_BUCKET} by op: {inside}")
    print("\nenvironment:")
    for k, v in environment_rows(results["environment"]):
        print(f"  {k}: {v}")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
