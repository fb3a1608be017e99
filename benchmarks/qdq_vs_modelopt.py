"""se-deploy's TensorRT Q/DQ against NVIDIA ModelOpt's, edge by edge, with the linter's findings for both.

For each model, the same FP32 export and the same calibration data (written by se-deploy's
``CalibrationSet.save_npz``, the file ``se-deploy calibrate`` writes, and handed to ModelOpt's
``--calibration_data_path`` as it is) go through:

* ModelOpt with its defaults: ``python -m modelopt.onnx.quantization --quantize_mode int8
  --calibration_data_path calib.npz --calibration_eps cpu`` (entropy calibration, FP16 high
  precision);
* se-deploy: ``quantize_int8(..., QuantConfig(target="tensorrt"))`` (its defaults).

It then prints, per model, the Q/DQ and Cast counts, every layer input on which the two
placements differ (with the se-deploy rule that decided it), and the Q/DQ linter's findings
(``se-deploy inspect --qdq tensorrt``) for both outputs. With ``--demo MODEL=DIR`` (a
``se-deploy train-demo`` folder) it also scores both quantized models on the held-out
images, under onnxruntime CPU with graph optimizations off.

ModelOpt pulls onnxruntime-gpu and an older onnx, so it lives in its own venv, never in the
project's. The script creates one (``torch==2.13.0`` first, then ``nvidia-modelopt[onnx]``)
under ``--venv`` (default ~/.cache/se-deploy/modelopt-venv) unless ``--modelopt-python``
points at an existing one.

    python benchmarks/qdq_vs_modelopt.py --models se_resnet50,se_mobilenet_v2,se_resnext50_32x4d
    python benchmarks/qdq_vs_modelopt.py --modelopt-python /path/venv/bin/python --exports DIR \\
        --demo se_resnet18=demo_r18 --demo se_mobilenet_v2=demo_mbv2 --out qdq_vs_modelopt.json

Zoo weights are random (no downloads here) and the latency-size models calibrate on random
normal data: placement does not depend on either; accuracy comes only from the trained demos.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

MODELOPT_PINS = ("torch==2.13.0", "nvidia-modelopt[onnx]")
DEFAULT_VENV = Path.home() / ".cache" / "se-deploy" / "modelopt-venv"


def modelopt_python(args) -> Path:
    """The venv python that runs ModelOpt: the given one, or a venv made on first use."""
    if args.modelopt_python:
        return Path(args.modelopt_python)
    venv = Path(args.venv)
    py = venv / "bin" / "python"
    if not py.exists():
        print(f"creating the ModelOpt venv {venv} (torch first, then nvidia-modelopt[onnx])", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        for pin in MODELOPT_PINS:
            subprocess.run([str(py), "-m", "pip", "install", "--quiet", pin], check=True)
    ver = subprocess.run([str(py), "-c", "import modelopt; print(modelopt.__version__)"], capture_output=True,
                         text=True, check=True).stdout.strip()
    print(f"ModelOpt {ver} ({py})", flush=True)
    return py


def export(name: str, folder: Path, size: int) -> Path:
    from se_deploy.export.torch_export import export_model
    from se_deploy.models import create_model

    path = folder / f"{name}.onnx"
    if not path.exists():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            export_model(create_model(name, num_classes=1000), path, input_shape=(1, 3, size, size),
                         dynamic_batch=False)
    return path


def run_modelopt(py: Path, onnx_path: Path, calib_npz: Path, out: Path) -> float:
    cmd = [str(py), "-m", "modelopt.onnx.quantization", f"--onnx_path={onnx_path}", "--quantize_mode=int8",
           f"--calibration_data_path={calib_npz}", "--calibration_eps", "cpu", f"--output_path={out}"]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=out.parent, env={**os.environ, "PYTHONPATH": ""})
    (out.parent / f"{out.stem}.log").write_text(" ".join(cmd) + "\n" + r.stdout + r.stderr)
    if r.returncode != 0 or not out.exists():
        tail = (r.stderr or r.stdout).strip().splitlines()[-3:]
        raise SystemExit(f"ModelOpt failed on {onnx_path.name} (rc {r.returncode}): {' | '.join(tail)}")
    return time.perf_counter() - t0


def counts(model) -> dict:
    ops = [n.op_type for n in model.graph.node]
    inits = {i.name for i in model.graph.initializer}
    q_act = sum(1 for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] not in inits)
    return {"Q": ops.count("QuantizeLinear"), "DQ": ops.count("DequantizeLinear"), "activation Q": q_act,
            "Cast": ops.count("Cast"), "nodes": len(ops)}


def compare(mo_path: Path, sd_path: Path, sd_side: dict) -> dict:
    import onnx

    from se_deploy.calibration.qdq_lint import int8_inputs, lint, summary

    mo, sd = onnx.load(str(mo_path)), onnx.load(str(sd_path))
    a, b = int8_inputs(mo), int8_inputs(sd)
    decisions = {d["node"]: d for d in sd_side["placement"]["decisions"]}
    floats = {(e["node"], e["input_index"]): e for e in sd_side["placement"]["float_inputs"]}
    keys = sorted(set(a) & set(b))
    diff = []
    for k in keys:
        if a[k]["int8"] != b[k]["int8"]:
            d = floats.get(k) or decisions.get(k[0]) or {}
            diff.append({"node": k[0], "input": k[1], "op": a[k]["op"], "kind": a[k]["kind"],
                         "source": a[k]["source"], "modelopt": a[k]["int8"], "se_deploy": b[k]["int8"],
                         "se_deploy_rule": d.get("rule", "-")})
    lm, ls = lint(mo), lint(sd)
    return {"modelopt": counts(mo), "se_deploy": counts(sd), "edges": len(keys), "same": len(keys) - len(diff),
            "only_in_one": len(set(a) ^ set(b)), "differ": diff,
            "lint": {"modelopt": summary(lm), "se_deploy": summary(ls)},
            "findings": {"modelopt": [f.line() for f in lm], "se_deploy": [f.line() for f in ls]}}


def print_compare(name: str, c: dict) -> None:
    print(f"\n## {name}", flush=True)
    for tool in ("modelopt", "se_deploy"):
        k = c[tool]
        print(f"  {tool:<10} Q {k['Q']:4d} (activation {k['activation Q']:4d})  DQ {k['DQ']:4d}  Cast {k['Cast']:3d}  "
              f"lint {c['lint'][tool] or 'none'}")
    print(f"  layer inputs compared: {c['edges']}, same placement: {c['same']}, differ: {len(c['differ'])}"
          f"{', present in one graph only: ' + str(c['only_in_one']) if c['only_in_one'] else ''}")
    groups: dict[tuple, list] = {}
    for d in c["differ"]:
        groups.setdefault((d["op"], d["input"], d["kind"], d["modelopt"], d["se_deploy"], d["se_deploy_rule"]),
                          []).append(d["node"])
    if groups:
        print(f"  {'op':<18} {'input':<11} {'ModelOpt':<9} {'se-deploy':<9} {'se-deploy rule':<16} count  e.g.")
        for (op, i, kind, m, s, rule), nodes in sorted(groups.items(), key=lambda kv: -len(kv[1])):
            print(f"  {op:<18} {i} {kind:<9} {'INT8' if m else 'float':<9} {'INT8' if s else 'float':<9} "
                  f"{rule:<16} {len(nodes):5d}  {nodes[0]}")
    for tool in ("modelopt", "se_deploy"):
        for line in c["findings"][tool][:6]:
            print(f"  lint {tool}: {line}")
        if len(c["findings"][tool]) > 6:
            print(f"  lint {tool}: ... {len(c['findings'][tool]) - 6} more")


def accuracy(py: Path, name: str, folder: Path, work: Path) -> dict:
    from se_deploy.calibration.accuracy import evaluate
    from se_deploy.calibration.dataset import load_calibration
    from se_deploy.calibration.preprocess import make_preprocess
    from se_deploy.calibration.quantize import QuantConfig, quantize_int8
    from se_deploy.onnx_io import load_onnx, model_input

    model = folder / "model.onnx"
    inp = model_input(load_onnx(model))
    shape, pre = (1, *inp.dims[1:]), make_preprocess("none")
    calib = load_calibration(folder / "calib.npz", input_name=inp.name, input_shape=shape, preprocess=pre,
                             calib_size=256, seed=0)
    held = load_calibration(folder / "eval.npz", input_name=inp.name, input_shape=shape, preprocess=pre,
                            calib_size=None, seed=0)
    calib_npz = calib.save_npz(work / f"{name}.calib.npz")
    mo = work / f"{name}.demo.modelopt.onnx"
    run_modelopt(py, model, calib_npz, mo)
    sd = work / f"{name}.demo.se_deploy.onnx"
    side = quantize_int8(model, sd, calib, QuantConfig(target="tensorrt"))
    report = evaluate(model, {"modelopt": mo, "se_deploy": sd}, held)
    print(f"\n## accuracy: {name} on digits ({report['samples']} held-out images, 256 calibration images); "
          f"FP32 top-1 {report['reference']['top1']:.2f}%")
    for k, e in report["candidates"].items():
        print(f"  {k:<10} top-1 {e['top1']:6.2f}%  drop {e['top1_drop']:+.2f} pt  agree {e['top1_agreement']:.2f}%  "
              f"SQNR {e['sqnr_db']:.1f} dB")
    return {"report": report, "compare": compare(mo, sd, side)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="se_resnet50,se_mobilenet_v2,se_resnext50_32x4d")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--calib", type=int, default=32, help="random-normal calibration samples for the zoo models")
    ap.add_argument("--exports", default=None, help="folder with MODEL.onnx exports to reuse (made when missing)")
    ap.add_argument("--demo", action="append", default=[], metavar="MODEL=DIR",
                    help="a train-demo folder to compare accuracy on (repeatable)")
    ap.add_argument("--venv", default=str(DEFAULT_VENV), help="where to create the ModelOpt venv")
    ap.add_argument("--modelopt-python", default=None, help="python of an existing venv with nvidia-modelopt[onnx]")
    ap.add_argument("--work", default=None)
    ap.add_argument("--out", default=None, help="write the results as JSON")
    args = ap.parse_args(argv)

    from se_deploy.calibration.dataset import CalibrationSet
    from se_deploy.calibration.quantize import QuantConfig, quantize_int8

    py = modelopt_python(args)
    results: dict = {"benchmark": "qdq_vs_modelopt", "args": vars(args), "models": {}, "accuracy": {}}
    with tempfile.TemporaryDirectory(prefix="se_deploy_modelopt_") as tmp:
        work = Path(args.work) if args.work else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        exports = Path(args.exports) if args.exports else work
        exports.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(0)
        for name in [m for m in args.models.split(",") if m]:
            onnx_path = export(name, exports, args.size)
            x = rng.standard_normal((args.calib, 3, args.size, args.size)).astype(np.float32)
            calib = CalibrationSet(x, "input", "synthetic", {"role": "calibration (random normal)"})
            calib_npz = calib.save_npz(work / f"{name}.calib.npz")  # se-deploy's writer, read by ModelOpt as is
            mo, sd = work / f"{name}.modelopt.onnx", work / f"{name}.se_deploy.onnx"
            t_mo = run_modelopt(py, onnx_path, calib_npz, mo)
            t0 = time.perf_counter()
            side = quantize_int8(onnx_path, sd, calib, QuantConfig(target="tensorrt"))
            t_sd = time.perf_counter() - t0
            c = compare(mo, sd, side)
            c["seconds"] = {"modelopt": round(t_mo, 1), "se_deploy": round(t_sd, 1)}
            print_compare(name, c)
            results["models"][name] = c
        for spec in args.demo:
            name, folder = spec.split("=", 1)
            results["accuracy"][name] = accuracy(py, name, Path(folder), work)
            print_compare(f"{name} (trained demo)", results["accuracy"][name]["compare"])
    if args.out:
        from se_deploy._util import write_json_atomic

        write_json_atomic(args.out, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
