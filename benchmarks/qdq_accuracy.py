"""INT8 accuracy by calibration method, entropy histogram size and SE mode, on the trained demo models.

For each demo model (``se-deploy train-demo --model NAME``: trained on scikit-learn's digits,
3x32x32, 540 held-out images never used for training or calibration), every variant below is
quantized from the same 256 calibration images (training split, fixed seed) and scored on the
held-out images against FP32: top-1, its drop in points, top-1 agreement and output SQNR.
FP16 Q/DQ models run under onnxruntime CPU with graph optimizations off (its CPU FP16 fusions
lose accuracy on their own).

    python benchmarks/qdq_accuracy.py --models se_resnet18,se_mobilenet_v2 --out qdq_accuracy.json
    python benchmarks/qdq_accuracy.py --demo-dir se_resnet18=demo_r18 --variants entropy-128,entropy-2048

The default variant list answers two questions: which entropy histogram size to default to
(ModelOpt uses onnxruntime's 128 bins for 128 levels), and what the SE modes cost in accuracy.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

VARIANTS: dict[str, dict] = {  # name -> QuantConfig kwargs
    "minmax": {},
    "entropy-128": {"method": "entropy", "entropy_bins": 128},
    "entropy-512": {"method": "entropy", "entropy_bins": 512},
    "entropy-2048": {"method": "entropy", "entropy_bins": 2048},
    "percentile-99.99": {"method": "percentile", "percentile": 99.99},
    "percentile-99.999": {"method": "percentile", "percentile": 99.999},
    "se-float": {"se_mode": "float"},
    "se-all": {"se_mode": "all"},
    "fp32-float-layers": {"high_precision": "fp32"},
    "cpu": {"target": "cpu"},
    "cpu se-all": {"target": "cpu", "se_mode": "all"},
}
CALIB_SIZE = 256


def demo(name: str, work: Path, given: dict[str, str], epochs: int) -> Path:
    from se_deploy.calibration.train import write_demo

    if name in given:
        return Path(given[name])
    out = work / f"demo_{name}"
    if not (out / "model.onnx").exists():
        t0 = time.perf_counter()
        d = write_demo(out, name, epochs=epochs)
        print(f"  trained {name}: FP32 held-out top-1 {d.accuracy:.2f}% in {time.perf_counter() - t0:.0f}s",
              flush=True)
    return out


def run_model(name: str, folder: Path, variants: list[str], work: Path) -> dict:
    from se_deploy.calibration.dataset import load_calibration
    from se_deploy.calibration.preprocess import make_preprocess
    from se_deploy.calibration.quantize import QuantConfig, quantize_int8
    from se_deploy.onnx_io import load_onnx, model_input

    inp = model_input(load_onnx(folder / "model.onnx"))
    shape = (1, *inp.dims[1:])
    pre = make_preprocess("none")
    calib = load_calibration(folder / "calib.npz", input_name=inp.name, input_shape=shape, preprocess=pre,
                             calib_size=CALIB_SIZE, seed=0)
    held = load_calibration(folder / "eval.npz", input_name=inp.name, input_shape=shape, preprocess=pre,
                            calib_size=None, seed=0)
    rows = {}
    for v in variants:
        t0 = time.perf_counter()
        side = quantize_int8(folder / "model.onnx", work / f"{name}.{v.replace(' ', '_')}.onnx", calib,
                             QuantConfig(**VARIANTS[v]), eval_set=held)
        acc = side["accuracy"]
        c = acc["candidates"]["int8"]
        rows[v] = {"config": VARIANTS[v], "fp32_top1": acc["reference"]["top1"], "top1": c["top1"],
                   "drop": c["top1_drop"], "agreement": c["top1_agreement"], "sqnr_db": c["sqnr_db"],
                   "lint": len(side["lint"]), "seconds": round(time.perf_counter() - t0, 1)}
        r = rows[v]
        print(f"  {v:<20} top-1 {r['top1']:6.2f}% (FP32 {r['fp32_top1']:.2f}%)  drop {r['drop']:+.2f} pt  "
              f"agree {r['agreement']:6.2f}%  SQNR {r['sqnr_db']:5.1f} dB  findings {r['lint']}  "
              f"{r['seconds']:.0f}s", flush=True)
    return {"calibration_samples": len(calib), "held_out": len(held), "variants": rows}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="se_resnet18,se_mobilenet_v2")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--demo-dir", action="append", default=[], metavar="MODEL=DIR",
                    help="reuse a train-demo folder (model.onnx, calib.npz, eval.npz) instead of training")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--work", default=None)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    variants = [v for v in args.variants.split(",") if v]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        print(f"error: unknown variants {unknown}; choose from {list(VARIANTS)}", file=sys.stderr)
        return 2
    given = dict(d.split("=", 1) for d in args.demo_dir)
    from se_deploy.envinfo import capture_environment

    results = {"benchmark": "qdq_accuracy", "args": vars(args), "environment": capture_environment(tegrastats_s=0),
               "models": {}}
    with tempfile.TemporaryDirectory(prefix="se_deploy_qdq_acc_") as tmp:
        work = Path(args.work) if args.work else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        for name in [m for m in args.models.split(",") if m]:
            print(f"== {name}", flush=True)
            results["models"][name] = run_model(name, demo(name, work, given, args.epochs), variants, work)
    if args.out:
        from se_deploy._util import write_json_atomic

        write_json_atomic(args.out, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
