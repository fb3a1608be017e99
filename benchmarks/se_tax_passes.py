"""SE tax by graph pass: onnxruntime CPU, FP32.

For each SE model and its plain twin, this exports the SE model with both exporters
(dynamic batch, onnxsim, no SE passes), applies the SE passes one after the other, and
times every variant *interleaved in one process* against the plain twin at each batch
size. The SE tax of a variant is median(variant) / median(plain) - 1, with a paired
bootstrap interval over interleaved rounds. A second phase runs onnxruntime's profiler on
each variant and sums node time by op type, to show where the tax goes.

    python benchmarks/se_tax_passes.py --pairs se_resnet50:resnet50,se_mobilenet_v2:mobilenet_v2 \
        --batches 1,8 --threads 2 --out se_tax_passes.json

Numbers are only comparable within one run: this machine's speed drifts.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch is imported (exports run in this process)

import numpy as np  # noqa: E402


def _export(name: str, path: Path, exporter: str, size: int) -> Path:
    from se_deploy.export.torch_export import export_model
    from se_deploy.models import create_model

    if not path.exists():
        model = create_model(name, num_classes=1000)
        export_model(model, path, input_shape=(1, 3, size, size), dynamic_batch=True, exporter=exporter,
                     simplify=True, fuse=False)
    return path


def build_variants(se_name: str, plain_name: str, work: Path, size: int, fold_fraction: float) -> dict[str, bytes]:
    import onnx

    from se_deploy.export.passes import PassOptions, ablate_se, run_passes

    opts = PassOptions(batch_sizes=(1, 2))
    raw_d = onnx.load(str(_export(se_name, work / f"{se_name}_dynamo.onnx", "dynamo", size)))
    raw_l = onnx.load(str(_export(se_name, work / f"{se_name}_legacy.onnx", "legacy", size)))
    plain = onnx.load(str(_export(plain_name, work / f"{plain_name}_dynamo.onnx", "dynamo", size)))
    canon, rep_c = run_passes(raw_d, ["canonicalize"], options=opts)
    canon_l, rep_cl = run_passes(raw_l, ["canonicalize"], options=opts)
    hoist, rep_h = run_passes(canon, ["hoist-squeeze"], options=opts)
    expand, rep_e = run_passes(canon, ["expand-gate"], options=opts)
    variants = {
        "plain twin": plain,
        "raw dynamo": raw_d,
        "raw legacy": raw_l,
        "canonicalize": canon,
        "canonicalize (from legacy)": canon_l,
        "canonicalize+hoist-squeeze": hoist,
        "canonicalize+expand-gate": expand,
        "ablate-se": ablate_se(raw_d),
    }
    for label, rep in (("canonicalize", rep_c), ("canonicalize (from legacy)", rep_cl),
                       ("canonicalize+hoist-squeeze", rep_h), ("canonicalize+expand-gate", rep_e)):
        for e in rep["passes"]:
            print(f"  [{se_name}] {label}: {e['name']} {e['status']} on {e.get('changed', 0)} blocks, "
                  f"max error {e.get('verification', {}).get('rel_max_abs', float('nan')):.2g} of output scale",
                  flush=True)
    if fold_fraction > 0:
        variants["canonicalize+fold-gates(last stage)"] = _fold_last(canon, fold_fraction)
        variants["canonicalize+fold-gates(last stage)+expand-gate"] = run_passes(
            variants["canonicalize+fold-gates(last stage)"], ["expand-gate"], options=opts)[0]
    return {k: v.SerializeToString() for k, v in variants.items()}


def _fold_last(model, fraction: float):
    """Latency of folding the last ``fraction`` of SE blocks (what fold-gates does when late gates saturate).

    With random weights the gates do not saturate, so this variant measures only the
    latency side: each folded block becomes a constant per-channel scale (0.5 here).
    Whether folding keeps accuracy must be judged on real data with
    ``se-deploy fuse --fold-gates --calib-data ...``.
    """
    import onnx_ir as ir

    from se_deploy.export.ir_helpers import cleanup
    from se_deploy.export.passes.fold_gates import fold_block
    from se_deploy.export.se_detect import find_matches, to_ir

    irm = to_ir(model)
    matches, _ = find_matches(irm)
    for m in matches[len(matches) - int(round(len(matches) * fraction)):]:
        fold_block(irm, m, np.full(m.fc1.weight.shape[1], 0.5, m.fc1.weight.dtype))
    cleanup(irm)
    return ir.to_proto(irm)


def _session(data: bytes, threads: int, profile_prefix: str | None = None):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    # Spinning worker threads fight over a shared 2-core machine; measured slower here.
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if profile_prefix:
        so.enable_profiling = True
        so.profile_file_prefix = profile_prefix
    return ort.InferenceSession(data, sess_options=so, providers=["CPUExecutionProvider"])


def time_variants(variants: dict[str, bytes], batch: int, size: int, threads: int, args) -> dict:
    from se_deploy.bench.harness import run_interleaved
    from se_deploy.bench.stats import se_tax, summarize

    x = np.random.default_rng(0).standard_normal((batch, 3, size, size)).astype(np.float32)
    sessions = {k: _session(v, threads) for k, v in variants.items()}
    calls = {}
    for k, s in sessions.items():
        feed = {s.get_inputs()[0].name: x}
        calls[k] = (lambda s=s, feed=feed: s.run(None, feed))
    ms = run_interleaved(calls, warmup_s=args.warmup, min_iters=args.min_iters, min_duration_s=args.min_duration,
                         max_iters=args.max_iters)
    out = {}
    for k, series in ms.items():
        out[k] = {"summary": summarize(series)}
        if k != "plain twin":
            out[k]["tax"] = se_tax(series, ms["plain twin"])
    return out


def profile_variants(variants: dict[str, bytes], batch: int, size: int, threads: int, iters: int) -> dict:
    """Mean ms per inference by op type, from onnxruntime's profiler (after its own fusions)."""
    x = np.random.default_rng(0).standard_normal((batch, 3, size, size)).astype(np.float32)
    out = {}
    with tempfile.TemporaryDirectory() as td:
        for k, data in variants.items():
            s = _session(data, threads, profile_prefix=os.path.join(td, "p"))
            feed = {s.get_inputs()[0].name: x}
            for _ in range(3):
                s.run(None, feed)
            for _ in range(iters):
                s.run(None, feed)
            path = s.end_profiling()
            events = json.load(open(path))
            by_op: dict[str, float] = collections.defaultdict(float)
            count: dict[str, int] = collections.defaultdict(int)
            for e in events:
                if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
                    op = e.get("args", {}).get("op_name", "?")
                    by_op[op] += e["dur"] / 1e3
                    count[op] += 1
            runs = iters + 3
            out[k] = {op: {"ms": round(v / runs, 3), "nodes": count[op] // runs}
                      for op, v in sorted(by_op.items(), key=lambda kv: -kv[1])}
            os.remove(path)
    return out


def fold_study(model_name: str, work: Path, thresholds=(0.01, 0.02, 0.05, 0.1)) -> dict:
    """fold-gates on a model trained on real data (UCI digits, 32x32): which blocks fold, at what cost.

    Gate statistics come from 128 training images; error and top-1 agreement are measured on
    the 540 held-out images, which neither training nor the statistics saw.
    """
    from se_deploy.calibration.train import export_trained, quick_train
    from se_deploy.runtime.onnxruntime import run_onnx
    from se_deploy.export.passes import PassOptions, fuse_default, run_passes
    import onnx

    trained = quick_train(model_name)
    path = export_trained(trained, work / f"{model_name}_digits.onnx", fuse=False)
    model, _ = fuse_default(onnx.load(str(path)))
    name = model.graph.input[0].name
    calib = [{name: trained.x_train[i:i + 16]} for i in range(0, 128, 16)]
    test = {name: trained.x_test}
    ref = list(run_onnx(model, test).values())[0]
    out = {"model": model_name, "torch_accuracy": trained.accuracy, "thresholds": {}}
    for thr in thresholds:
        opts = PassOptions(gate_std_threshold=thr, fold_tolerance=1e9, fold_min_top1=0.0)
        folded, rep = run_passes(model, ["fold-gates"], options=opts, calib_feeds=calib)
        entry = rep["passes"][0]
        got = list(run_onnx(folded, test).values())[0]
        blocks = entry.get("details", {}).get("blocks", [])
        out["thresholds"][thr] = {
            "folded": [b["scale_node"] for b in blocks if b["folded"]],
            "gate_std_max": {b["scale_node"]: round(b["gate_std_max"], 4) for b in blocks},
            "rel_max_abs_test": float(np.max(np.abs(got - ref)) / np.max(np.abs(ref))),
            "top1_agreement_test": float(np.mean(got.argmax(1) == ref.argmax(1))),
            "accuracy_test": float(np.mean(got.argmax(1) == trained.y_test)),
            "accuracy_ref": float(np.mean(ref.argmax(1) == trained.y_test)),
        }
        t = out["thresholds"][thr]
        print(f"  fold-gates threshold {thr}: folded {len(t['folded'])}/{len(blocks)} blocks, held-out error "
              f"{t['rel_max_abs_test']:.3g} of output scale, top-1 agreement {t['top1_agreement_test']:.3f}, "
              f"accuracy {t['accuracy_ref']:.3f} -> {t['accuracy_test']:.3f}", flush=True)
    return out


def environment(threads: int) -> dict:
    import onnxruntime as ort
    import torch

    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "")
    return {"cpu": cpu, "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"), "python": platform.python_version(), "platform": platform.platform(), "processor": platform.processor(),
            "cpu_count": os.cpu_count(), "onnxruntime": ort.__version__, "torch": torch.__version__,
            "threads": threads, "loadavg": os.getloadavg()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", default="se_resnet50:resnet50,se_mobilenet_v2:mobilenet_v2")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--min-iters", type=int, default=20)
    ap.add_argument("--max-iters", type=int, default=60)
    ap.add_argument("--min-duration", type=float, default=10.0)
    ap.add_argument("--profile-iters", type=int, default=5)
    ap.add_argument("--fold-fraction", type=float, default=0.0,
                    help="also time folding the last fraction of SE blocks (latency only)")
    ap.add_argument("--only", default="",
                    help="comma-separated variant names to time (the plain twin is always kept)")
    ap.add_argument("--fold-study", default="",
                    help="also train this zoo model on UCI digits and report fold-gates per threshold (e.g. se_resnet18)")
    ap.add_argument("--work-dir", default=os.path.join(tempfile.gettempdir(), "se_tax_passes"))
    ap.add_argument("--out", default="se_tax_passes.json")
    args = ap.parse_args(argv)
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    results = {"environment": environment(args.threads), "args": vars(args), "pairs": {}}
    print(json.dumps(results["environment"]), flush=True)
    if args.fold_study:
        results["fold_study"] = fold_study(args.fold_study, work)
        Path(args.out).write_text(json.dumps(results, indent=1, default=float))
    for pair in [p for p in args.pairs.split(",") if p]:
        se_name, plain_name = pair.split(":")
        t0 = time.time()
        variants = build_variants(se_name, plain_name, work, args.size, args.fold_fraction)
        if args.only:
            keep = {"plain twin", *[v.strip() for v in args.only.split(",")]}
            variants = {k: v for k, v in variants.items() if k in keep}
        print(f"{se_name}: variants built in {time.time() - t0:.0f}s", flush=True)
        entry = {}
        for b in [int(v) for v in args.batches.split(",")]:
            t0 = time.time()
            timing = time_variants(variants, b, args.size, args.threads, args)
            prof = profile_variants(variants, b, args.size, args.threads, args.profile_iters) if args.profile_iters else {}
            entry[f"batch{b}"] = {"timing": timing, "profile": prof}
            print(f"\n{se_name} vs {plain_name}, batch {b}, {args.threads} threads ({time.time() - t0:.0f}s)")
            print(f"  {'variant':38s} {'median ms':>10s} {'p90 ms':>9s} {'cv':>6s} {'SE tax':>8s}  95% interval")
            for k, v in timing.items():
                s = v["summary"]
                tax = v.get("tax")
                tx = f"{tax['tax_pct']:+7.1f}%  [{tax['tax_pct_lo']:+.1f}, {tax['tax_pct_hi']:+.1f}]" if tax else "   (ref)"
                print(f"  {k:38s} {s['median']:10.2f} {s['p90']:9.2f} {s['cv']:6.1%} {tx}", flush=True)
            results["pairs"][f"{se_name}:{plain_name}"] = entry
            Path(args.out).write_text(json.dumps(results, indent=1, default=float))
    Path(args.out).write_text(json.dumps(results, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
