"""INT8 / FP16 latency and accuracy: onnxruntime CPU, batch 1, interleaved.

Latency: for each SE model (and its plain twin) at 224x224, every precision variant is
timed interleaved in one process (se_deploy.bench.harness.run_interleaved), and each ratio
against FP32 comes with a paired bootstrap interval:

* fp32
* int8-cpu (SE mode cheap: excitation float)    * int8-cpu quantize-all (SE mode all)
* int8-trt form (SE mode cheap, FP16 float layers), run by onnxruntime (it is TensorRT's form,
  timed here only for what it costs on CPU)
* int8-trt form quantize-all
* fp16 (onnxruntime CPU has few FP16 kernels: this shows the cost of running an FP16 graph on CPU)
* plain twin fp32 and int8-cpu, for the SE tax at each precision

Latency models have random weights and synthetic calibration data: timing does not depend
on the weights. Accuracy comes from the quick-trained se_resnet18 (scikit-learn digits,
540 held-out images, 256 calibration images from the training split) for every variant.

    python benchmarks/precision.py --models se_resnet50,se_mobilenet_v2 --threads 1 --out precision.json

Numbers are comparable only within one run: this machine's speed drifts.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402

VARIANTS = {  # name -> (kind, QuantConfig kwargs)
    "int8-cpu": ("int8", {"target": "cpu"}),
    "int8-cpu quantize-all": ("int8", {"target": "cpu", "se_mode": "all"}),
    "int8-trt form": ("int8", {"target": "tensorrt"}),
    "int8-trt form quantize-all": ("int8", {"target": "tensorrt", "se_mode": "all"}),
    "fp16": ("fp16", {}),
}


def build(model_onnx: Path, work: Path, calib, variants: list[str], eval_set=None) -> dict[str, Path]:
    from se_deploy.calibration.fp16 import Fp16Config, convert_fp16
    from se_deploy.calibration.quantize import QuantConfig, quantize_int8

    out = {"fp32": model_onnx}
    for name in variants:
        kind, kw = VARIANTS[name]
        path = work / f"{model_onnx.stem}.{name.replace(' ', '_')}.onnx"
        t0 = time.perf_counter()
        if kind == "int8":
            quantize_int8(model_onnx, path, calib, QuantConfig(**kw), eval_set=eval_set)
        else:
            convert_fp16(model_onnx, path, Fp16Config(), eval_set=eval_set)
        print(f"  built {path.name} in {time.perf_counter() - t0:.1f}s", flush=True)
        out[name] = path
    return out


def export(name: str, path: Path, size: int) -> Path:
    from se_deploy.export.torch_export import export_model
    from se_deploy.models import create_model

    if not path.exists():
        torch_model = create_model(name, num_classes=1000)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            export_model(torch_model, path, input_shape=(1, 3, size, size), dynamic_batch=False)
    return path


def time_models(models: dict[str, Path], x: np.ndarray, threads: int, min_s: float, max_iters: int) -> dict:
    from se_deploy.bench.harness import run_interleaved
    from se_deploy.runtime.onnxruntime import OrtConfig, OrtRunner

    runners = {k: OrtRunner(str(p), OrtConfig(threads=threads)) for k, p in models.items()}
    for r in runners.values():
        r.__enter__()
    try:
        name = runners["fp32"].inputs[0].name
        sessions = {k: (r.session, [o.name for o in r.session.get_outputs()]) for k, r in runners.items()}
        fns = {k: (lambda s=s, o=o: s.run(o, {name: x})) for k, (s, o) in sessions.items()}
        return run_interleaved(fns, warmup_s=2.0, min_iters=20, min_duration_s=min_s, max_iters=max_iters)
    finally:
        for r in runners.values():
            r.__exit__(None, None, None)


def latency(args, work: Path) -> dict:
    from se_deploy.bench.stats import ratio_interval, se_tax, summarize
    from se_deploy.calibration.dataset import CalibrationSet
    from se_deploy.models import plain_twin

    results = {}
    x = np.random.default_rng(0).standard_normal((1, 3, args.size, args.size)).astype(np.float32)
    calib = CalibrationSet(np.random.default_rng(1).standard_normal((args.calib, 3, args.size, args.size))
                           .astype(np.float32), "input", "synthetic", {"role": "calibration (synthetic)"})
    for se_name in args.models:
        t0 = time.perf_counter()
        print(f"== {se_name}", flush=True)
        se_onnx = export(se_name, work / f"{se_name}.onnx", args.size)
        models = build(se_onnx, work, calib, args.variants)
        twin = plain_twin(se_name)
        if twin:
            plain_onnx = export(twin, work / f"{twin}.onnx", args.size)
            plain = build(plain_onnx, work, calib, ["int8-cpu"])
            models["plain fp32"], models["plain int8-cpu"] = plain["fp32"], plain["int8-cpu"]
        samples = time_models(models, x, args.threads, args.min_seconds, args.max_iters)
        summ = {k: summarize(v) for k, v in samples.items()}
        ratios = {}
        for k in samples:
            if k != "fp32":
                p, lo, hi = ratio_interval(samples["fp32"], samples[k])
                ratios[k] = {"speedup_vs_fp32": p, "lo": lo, "hi": hi}
        taxes = {}
        if twin:
            taxes["fp32"] = se_tax(samples["fp32"], samples["plain fp32"])
            taxes["int8-cpu"] = se_tax(samples["int8-cpu"], samples["plain int8-cpu"])
            taxes["int8-cpu quantize-all"] = se_tax(samples["int8-cpu quantize-all"], samples["plain int8-cpu"])
        results[se_name] = {"plain_twin": twin, "summary": summ, "speedup": ratios, "se_tax": taxes,
                            "seconds": round(time.perf_counter() - t0, 1)}
        for k, s in summ.items():
            r = ratios.get(k)
            rs = f"  x{r['speedup_vs_fp32']:.2f} [{r['lo']:.2f}, {r['hi']:.2f}]" if r else ""
            print(f"  {k:<28} median {s['median']:8.2f} ms  p90 {s['p90']:8.2f}  cv {s['cv']:.2f}{rs}", flush=True)
        for k, t in taxes.items():
            print(f"  SE tax {k:<22} {t['tax_pct']:+.1f}% [{t['tax_pct_lo']:+.1f}, {t['tax_pct_hi']:+.1f}]", flush=True)
    return results


def accuracy(args, work: Path) -> dict:
    from se_deploy.calibration.accuracy import evaluate
    from se_deploy.calibration.train import export_trained, quick_train

    t = quick_train("se_resnet18", seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        onnx_path = export_trained(t, work / "digits_se_resnet18.onnx")
    calib, held = t.calibration_set(size=256), t.eval_set()
    models = build(onnx_path, work, calib, list(VARIANTS), eval_set=held)
    report = evaluate(onnx_path, {k: v for k, v in models.items() if k != "fp32"}, held)
    print(f"== accuracy: se_resnet18 on digits, {report['samples']} held-out images; FP32 top-1 "
          f"{report['reference']['top1']:.2f}% (trained in {t.seconds:.0f}s)", flush=True)
    for k, e in report["candidates"].items():
        print(f"  {k:<28} top-1 {e['top1']:6.2f}%  drop {e['top1_drop']:+.2f} pt  agree {e['top1_agreement']:.2f}%  "
              f"SQNR {e['sqnr_db']:.1f} dB", flush=True)
    return {"train": t.describe(), "report": report}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="se_resnet50,se_mobilenet_v2")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--calib", type=int, default=16, help="synthetic calibration samples for latency models")
    ap.add_argument("--min-seconds", type=float, default=20.0)
    ap.add_argument("--max-iters", type=int, default=150)
    ap.add_argument("--skip-accuracy", action="store_true")
    ap.add_argument("--skip-latency", action="store_true")
    ap.add_argument("--work", default=None, help="folder for exported models (default: a temp folder)")
    ap.add_argument("--out", default=None, help="write the results as JSON")
    args = ap.parse_args(argv)
    args.models = [m for m in args.models.split(",") if m]
    args.variants = [v for v in args.variants.split(",") if v]
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        print(f"error: unknown variants {unknown}; choose from {list(VARIANTS)}", file=sys.stderr)
        return 2
    missing = [v for v in ("int8-cpu", "int8-cpu quantize-all") if v not in args.variants]
    if missing and not args.skip_latency:
        print(f"error: latency needs the variants {missing} for the SE tax", file=sys.stderr)
        return 2

    from se_deploy.envinfo import capture_environment

    env = capture_environment(tegrastats_s=0)
    results = {"benchmark": "precision", "args": vars(args), "environment": env}
    print(json.dumps({k: env.get(k) for k in ("cpu", "packages", "python") if k in env}, default=str)[:800], flush=True)
    with tempfile.TemporaryDirectory(prefix="se_deploy_precision_") as tmp:
        work = Path(args.work) if args.work else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        if not args.skip_accuracy:
            results["accuracy"] = accuracy(args, work)
        if not args.skip_latency:
            results["latency"] = latency(args, work)
    if args.out:
        from se_deploy._util import write_json_atomic

        write_json_atomic(args.out, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
