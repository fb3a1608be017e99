"""``se-deploy fuse``: apply SE graph passes to an ONNX model, each one proved under onnxruntime."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from se_deploy.calibration.data_options import DataOptions
from se_deploy.commands._options import data_options, files


def register(command) -> None:
    @command("fuse", help="Simplify and fuse SE blocks in an ONNX model. Every pass is verified under "
                          "onnxruntime (random and constant inputs) and rolled back if its output moves.")
    @files(inputs=("model_path", "calib_data"), outputs=("output", "report"), sidecars=("output",))
    @data_options
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
        report: Optional[Path] = typer.Option(None, "--report", help="Write the pass report as JSON here."),
        list_passes: bool = typer.Option(False, "--list-passes", help="List the available passes and exit."),
        explain: bool = typer.Option(False, "--explain", help="Also print near-miss SE candidates and why they failed."),
        data: DataOptions = None,
    ) -> None:
        from se_deploy._util import check_output_path, write_json_atomic
        from se_deploy.calibration.data_options import feed_loader
        from se_deploy.console import line, note, warn
        from se_deploy.errors import UsageError
        from se_deploy.export import passes as P
        from se_deploy.export.fuse import FuseRequest, fuse_file

        if list_passes:
            for p in P.list_passes():
                line(f"{p.name:15s} {p.kind.value:12s} {p.summary}")
            return
        if model_path is None:
            raise UsageError("missing input model: se-deploy fuse IN.onnx -o OUT.onnx")
        if output is None:
            raise UsageError("missing output path: give -o OUT.onnx")
        check_output_path(output)
        if report is not None:
            check_output_path(report)
        feeds = feed_loader(calib_data, data, size=calib_size) if calib_data else None
        request = FuseRequest(passes=passes, fold_gates=fold_gates, ablate=ablate, calib_feeds=feeds,
                              input_shape=data.input_shape, exact_tolerance=exact_tolerance,
                              fold_tolerance=tolerance, min_top1=min_top1, gate_threshold=gate_threshold)

        def show(entry: dict) -> None:
            v = entry.get("verification", {})
            err = v.get("rel_max_abs", v.get("calibration", {}).get("rel_max_abs"))
            err_s = f", error {err:.2g} of output scale" if err is not None else ""
            text = f"{entry['name']}: {entry['status']} ({entry.get('changed', 0)} blocks{err_s})"
            if entry.get("reason"):
                text += f" - {entry['reason']}"
            (warn if entry["status"] == "rolled_back" else line)(text)

        def on_near_miss(miss: dict) -> None:
            matched = miss.get("matched") or []
            note(f"near miss at {miss['scale_node']}: {miss['reason']}"
                 + (f" (recognised: {', '.join(matched)})" if matched else ""))

        rep = fuse_file(model_path, output, request, on_event=show, on_near_miss=on_near_miss if explain else None)
        if report is not None:
            write_json_atomic(report, rep)
        if rep.get("refused"):
            from se_deploy.errors import GraphPassError

            raise GraphPassError(rep["refused"])
        line(f"wrote {output}: SE blocks {rep['se_blocks_before']} -> {rep['se_blocks_after']}, "
             f"nodes {rep['nodes_before']} -> {rep['nodes_after']}")
