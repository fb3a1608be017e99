"""`se-deploy export`, `se-deploy inspect` and `se-deploy models`."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Optional

import typer

from se_deploy.commands._options import files
from se_deploy.names import QuantTarget


def register(command) -> None:
    @command("export", help="Export a PyTorch model (zoo name, timm:NAME, package.module:factory, or checkpoint) "
                            "to ONNX, simplify it, fuse SE blocks and prove parity against PyTorch.")
    @files(inputs=("model", "weights"), outputs=("output",), sidecars=("output",))
    def export(
        model: str = typer.Argument(..., help="Zoo name (see `se-deploy models`), timm:NAME, "
                                              "package.module:factory, or a checkpoint file with an 'arch' entry."),
        output: Path = typer.Option(..., "-o", "--output", help="Where to write the .onnx (a .onnx.json sidecar "
                                                                "is written beside it)."),
        input_shape: str = typer.Option("1x3x224x224", "--input-shape", help="NxCxHxW."),
        dynamic_batch: bool = typer.Option(False, "--dynamic-batch", help="Make the batch dimension symbolic."),
        opset: int = typer.Option(18, "--opset", help="ONNX opset (13-23; the legacy exporter caps at 20)."),
        exporter: str = typer.Option("dynamo", "--exporter", help="dynamo (torch.export) or legacy (TorchScript)."),
        no_simplify: bool = typer.Option(False, "--no-simplify", help="Skip graph simplification."),
        simplifier: str = typer.Option("onnxsim", "--simplifier", help="onnxsim or onnxslim."),
        no_fuse: bool = typer.Option(False, "--no-fuse", help="Skip the default exact SE passes."),
        weights: Optional[Path] = typer.Option(None, "--weights", help="state_dict (.pt/.pth) or .safetensors "
                                                                       "to load into the model."),
        num_classes: Optional[int] = typer.Option(None, "--num-classes", help="Classifier outputs (zoo models)."),
        reduction: Optional[int] = typer.Option(None, "--reduction", help="SE reduction ratio r (zoo models)."),
        tolerance: float = typer.Option(1e-4, "--tolerance", help="Max abs error relative to the output scale."),
        unsafe_pickle: bool = typer.Option(False, "--unsafe-pickle", help="Allow checkpoints that hold pickled "
                                                                          "objects (runs code from the file)."),
    ) -> None:
        from se_deploy._util import check_output_path, parse_shape
        from se_deploy.console import console, status, warn
        from se_deploy.errors import UsageError

        shape = parse_shape(input_shape)
        if num_classes is not None and num_classes <= 0:
            raise UsageError(f"--num-classes must be > 0, got {num_classes}")
        if reduction is not None and reduction <= 0:
            raise UsageError(f"--reduction must be > 0, got {reduction}")
        check_output_path(output)

        from se_deploy.export.torch_export import ExportConfig, export_model
        from se_deploy.models import load_model

        cfg = ExportConfig(input_shape=shape, dynamic_batch=dynamic_batch, opset=opset, exporter=exporter,
                           simplify=not no_simplify, simplifier=simplifier, fuse=not no_fuse, tolerance=tolerance)
        if cfg.simplify:  # before the model is built: a missing simplifier is one line, not a wasted export
            from se_deploy.export.simplify import require_simplifier

            require_simplifier(cfg.simplifier)
        console.print(f"[bold]se-deploy export[/] {model} -> {output}")
        if unsafe_pickle:
            warn("--unsafe-pickle: unpickling runs code stored in the checkpoint; only use files you trust")
        with status("loading model"), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            loaded = load_model(model, num_classes=num_classes, reduction=reduction, weights=weights,
                                unsafe_pickle=unsafe_pickle)

        def on_step(name: str, secs: float, detail: str) -> None:
            console.print(f"  [green]✓[/] {name:<9} {secs:6.2f}s  {detail}")

        result = export_model(loaded.module, output, cfg, on_step=on_step, source=loaded.source)
        fused = result.info.get("fuse", {}).get("summary", "")
        console.print(f"[bold green]exported[/] {result.path} ({result.path.stat().st_size / 1e6:.1f} MB), "
                      f"sidecar {result.sidecar}" + (f"; {fused}" if fused else ""))
        console.print(f"next: se-deploy inspect {result.path}   |   "
                      f"se-deploy quantize {result.path} --int8 --calib-data DIR -o {result.path.with_suffix('')}.int8.onnx")

    @command("inspect", help="Show an ONNX model's inputs/outputs, opset, op histogram, parameters, "
                             "MACs/FLOPs and its SE blocks; with --qdq tensorrt, lint its Q/DQ placement.")
    @files()
    def inspect(
        model: Path = typer.Argument(..., help="An .onnx file."),
        as_json: bool = typer.Option(False, "--json", help="Print JSON (includes the se_blocks list)."),
        input_shape: Optional[str] = typer.Option(None, "--input-shape",
                                                  help="NxCxHxW for a model with dynamic H/W, so MACs/FLOPs can be "
                                                       "counted (per batch of 1); without it they are reported unknown."),
        qdq: Optional[QuantTarget] = typer.Option(None, "--qdq", help="tensorrt: list every Q/DQ placement TensorRT will not "
                                                              "fuse, with the node and the rule, whoever made the "
                                                              "model; exits 1 when it finds any."),
    ) -> None:
        from rich.table import Table

        from se_deploy._util import parse_shape
        from se_deploy.console import console, raw
        from se_deploy.export.inspect import inspect_model
        from se_deploy.onnx_io import load_onnx, model_input

        if qdq is not None:
            _lint(model, qdq, as_json)
            return
        proto = load_onnx(model)
        shapes = None
        if input_shape:
            shapes = {model_input(proto, purpose="--input-shape").name: parse_shape(input_shape)}
        info = inspect_model(proto, input_shapes=shapes)
        if as_json:
            raw(json.dumps({"path": str(model), **info}, indent=2))
            return
        console.print(f"[bold]{model}[/]  opset {info['opset']}, IR {info['ir_version']}, {info['nodes']} nodes, "
                      f"producer {info['producer'] or 'unknown'}")
        io = Table("", "name", "shape", "dtype", title="inputs / outputs", title_justify="left")
        for kind in ("inputs", "outputs"):
            for t in info[kind]:
                io.add_row(kind[:-1], t["name"], "x".join(str(d) for d in t["shape"]), t["dtype"])
        console.print(io)
        if info["macs"] is None:
            console.print(f"params {info['params'] / 1e6:.3f} M   MACs unknown   FLOPs unknown   "
                          f"({info['macs_note']})")
        else:
            console.print(f"params {info['params'] / 1e6:.3f} M   MACs {info['macs'] / 1e9:.3f} G   "
                          f"FLOPs {info['flops'] / 1e9:.3f} G   ({info['flop_convention']})")
        console.print("ops: " + ", ".join(f"{k} {v}" for k, v in info["op_histogram"].items()))
        share = info["se_share"]
        macs_share = ("MACs unknown" if share["macs_fraction"] is None
                      else f"{share['macs_fraction'] * 100:.3f}% of MACs")
        console.print(f"SE blocks: {share['blocks']}  ({share['params_fraction'] * 100:.2f}% of params, {macs_share})")
        if info["se_blocks"]:
            t = Table("#", "variant", "C", "C/r", "act", "gate", "position", "scale node",
                      title="SE blocks (tensor names: --json)", title_justify="left")
            for i, b in enumerate(info["se_blocks"]):
                t.add_row(str(i), str(b.get("variant")), str(b.get("channels")), str(b.get("reduced_channels")),
                          str(b.get("activation")), str(b.get("gate")), str(b.get("position")),
                          str(b.get("scale_node")))
            console.print(t)

    def _lint(model: Path, target: QuantTarget, as_json: bool) -> None:
        from rich.table import Table

        from se_deploy.calibration.qdq_lint import lint_file
        from se_deploy.console import console, line, raw
        from se_deploy.errors import UsageError

        if target != QuantTarget.tensorrt:
            raise UsageError(f"--qdq {target}: the linter has rules for {QuantTarget.tensorrt} only")
        report = lint_file(model)
        if as_json:
            raw(json.dumps(report, indent=2))
        elif report["qdq_nodes"] == 0:
            line(f"{model}: no Q/DQ nodes, so nothing in it is INT8 (quantize it with se-deploy quantize --int8)")
        elif not report["findings"]:
            line(f"{model}: {report['qdq_nodes']} Q/DQ nodes, no placement findings for TensorRT")
        else:
            t = Table("rule", "node", "op", "why", title=f"{model}: {len(report['findings'])} placements TensorRT "
                      "will not fuse", title_justify="left")
            for f in report["findings"]:
                t.add_row(f["rule"], f["node"], f["op_type"], f["detail"])
            console.print(t)
            line("by rule: " + ", ".join(f"{k} {v}" for k, v in report["summary"].items()))
        if report["findings"] or report["qdq_nodes"] == 0:
            raise typer.Exit(1)

    @command("models", help="List the built-in model zoo (SE models and their plain twins).")
    @files()
    def models(pattern: str = typer.Argument("*", help="Glob filter, e.g. 'se_*'.")) -> None:
        from rich.table import Table

        from se_deploy.console import console
        from se_deploy.models import get_entry, list_models

        t = Table("name", "plain twin", "description")
        for name in list_models(pattern):
            e = get_entry(name)
            t.add_row(name, e.plain_twin or ("-" if not e.se else "?"), e.description)
        console.print(t)
