"""``se-deploy fuse``: apply SE graph passes to an ONNX model, each one proved under onnxruntime."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def _input_shapes(model, text: str | None) -> dict | None:
    if not text:
        return None
    from se_deploy._util import parse_shape

    inits = {i.name for i in model.graph.initializer}
    names = [i.name for i in model.graph.input if i.name not in inits]
    return {names[0]: parse_shape(text)}


def _calibration_feeds(model, path: str, preprocess: str, size: int | None, batch: int, shapes: dict | None) -> list:
    from se_deploy.calibration.dataset import load_calibration
    from se_deploy.calibration.preprocess import make_preprocess
    from se_deploy.errors import UsageError

    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise UsageError(f"--calib-data supports single-input models; this one has {len(inputs)} inputs")
    inp = inputs[0]
    if shapes and inp.name in shapes:
        shape = tuple(shapes[inp.name])
    else:
        shape = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
                      for d in inp.type.tensor_type.shape.dim)
    data = load_calibration(path, input_name=inp.name, input_shape=shape, preprocess=make_preprocess(preprocess),
                            calib_size=size, seed=0, progress=False)
    fixed_batch = shape[0] if shape and isinstance(shape[0], int) else None
    return list(data.batches(fixed_batch or min(batch, len(data))))


def register(command) -> None:
    @command("fuse", help="Simplify and fuse SE blocks in an ONNX model. Every pass is verified under "
                          "onnxruntime (random and constant inputs) and rolled back if its output moves.")
    def fuse(
        model_path: Optional[Path] = typer.Argument(None, help="Input ONNX model.", metavar="IN.onnx"),
        output: Optional[Path] = typer.Option(None, "-o", "--output", help="Where to write the fused model."),
        passes: Optional[str] = typer.Option(None, "--passes",
                                             help="Comma-separated passes to run, in order "
                                                  "(default: the exact default set). See --list-passes."),
        fold_gates: bool = typer.Option(False, "--fold-gates",
                                        help="Also fold SE blocks with near-constant gates (needs --calib-data)."),
        calib_data: Optional[str] = typer.Option(None, "--calib-data",
                                                 help="Calibration data for --fold-gates: .npz/.npy or image folder."),
        preprocess: str = typer.Option("none", "--preprocess", help="Preprocessing preset for an image folder."),
        calib_size: Optional[int] = typer.Option(None, "--calib-size", help="Use this many calibration samples."),
        tolerance: float = typer.Option(1e-2, "--tolerance",
                                        help="fold-gates: largest output error, relative to the output scale."),
        min_top1: float = typer.Option(0.99, "--min-top1", help="fold-gates: smallest top-1 agreement allowed."),
        gate_threshold: float = typer.Option(0.02, "--gate-threshold",
                                             help="fold-gates: fold a block when every channel's gate std is below this."),
        exact_tolerance: float = typer.Option(1e-5, "--exact-tolerance",
                                              help="Exact passes: largest output error relative to the output scale."),
        ablate: bool = typer.Option(False, "--ablate-se",
                                    help="Remove every SE block (the plain twin, for SE-tax benchmarks)."),
        input_shape: Optional[str] = typer.Option(None, "--input-shape",
                                                  help="Input shape for verification when dims are dynamic, e.g. 1x3x224x224."),
        report: Optional[Path] = typer.Option(None, "--report", help="Write the pass report as JSON here."),
        list_passes: bool = typer.Option(False, "--list-passes", help="List the available passes and exit."),
        explain: bool = typer.Option(False, "--explain", help="Also print near-miss SE candidates and why they failed."),
    ) -> None:
        from se_deploy.cli import console, err_console
        from se_deploy.errors import GraphPassError, UsageError
        from se_deploy.export import passes as P

        if list_passes:
            for p in P.list_passes():
                kind = "exact" if p.exact else "approximate"
                console.print(f"{p.name:15s} {kind:12s} {p.summary}")
            return
        if model_path is None:
            raise UsageError("missing input model: se-deploy fuse IN.onnx -o OUT.onnx")
        if output is None:
            raise UsageError("missing output path: give -o OUT.onnx")
        from se_deploy._util import check_output_path, write_json_atomic
        from se_deploy.onnx_io import load_onnx, save_onnx

        check_output_path(output)
        if report is not None:
            check_output_path(report)
        if ablate and (fold_gates or passes):
            raise UsageError("--ablate-se makes the plain twin; it does not combine with --passes or --fold-gates")
        if fold_gates and not calib_data:
            raise UsageError("--fold-gates needs calibration data: give --calib-data FILE.npz (or an image folder)")
        if calib_data and not fold_gates:
            raise UsageError("--calib-data is only used by --fold-gates")
        names = P.parse_pass_list(passes) if passes else list(P.DEFAULT_PASSES)
        if fold_gates and "fold-gates" not in names:
            names.append("fold-gates")
        if "fold-gates" in names and not calib_data:
            raise UsageError("the fold-gates pass needs calibration data: give --calib-data FILE.npz")
        if ablate:
            names = ["ablate-se"]
        options = P.PassOptions(tolerance=exact_tolerance, fold_tolerance=tolerance, fold_min_top1=min_top1,
                                gate_std_threshold=gate_threshold)
        model = load_onnx(model_path)
        shapes = _input_shapes(model, input_shape)
        if shapes:
            options = P.PassOptions(**{**options.__dict__, "input_shapes": shapes})
        feeds = _calibration_feeds(model, calib_data, preprocess, calib_size, 8, shapes) if calib_data else []

        from se_deploy.export.se_detect import explain_near_misses

        if explain:
            for miss in explain_near_misses(model):
                console.print(f"near miss at {miss['scale_node']}: {miss['reason']}")

        def show(entry: dict) -> None:
            v = entry.get("verification", {})
            err = v.get("rel_max_abs", v.get("calibration", {}).get("rel_max_abs"))
            err_s = f", error {err:.2g} of output scale" if err is not None else ""
            line = f"{entry['name']}: {entry['status']} ({entry.get('changed', 0)} blocks{err_s})"
            if entry.get("reason"):
                line += f" - {entry['reason']}"
            (err_console if entry["status"] == "rolled_back" else console).print(line, markup=False)

        fused, rep = P.run_passes(model, names, verify=True, options=options, calib_feeds=feeds, on_event=show)
        rep["input"] = str(model_path)
        rep["output"] = str(output)
        for e in rep["passes"]:
            if e["name"] == "fold-gates" and e["status"] == "rolled_back":
                if report is not None:
                    write_json_atomic(report, rep)
                raise GraphPassError(f"fold-gates refused: {e['reason']}; nothing written")
        save_onnx(fused, output)
        if report is not None:
            write_json_atomic(report, rep)
        console.print(f"wrote {output}: SE blocks {rep['se_blocks_before']} -> {rep['se_blocks_after']}, "
                      f"nodes {rep['nodes_before']} -> {rep['nodes_after']}", markup=False)
