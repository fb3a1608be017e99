"""``se-deploy pipeline``: export -> fuse -> quantize -> engines -> accuracy -> bench -> [se_budget] -> report."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from se_deploy.commands._options import files


def _run_outputs(values) -> dict:
    """Every file a run writes under its --out directory (a --config among them would be overwritten)."""
    if values["show_config"]:
        return {}  # prints, writes nothing
    from se_deploy._util import sidecar_path
    from se_deploy.pipeline import build_job, load_config

    cfg = load_config(values["config"])
    out_dir = values["out"] or Path("runs") / cfg.name
    _, stages = build_job(cfg, out_dir)
    written = [p for st in stages for o in st.outputs for p in (o, sidecar_path(o))]
    return {f"--out {out_dir}'s": written + [Path(out_dir) / "pipeline.json"]}


def register(command) -> None:
    @command("pipeline", help="Run the whole job for an SE model and its plain twin: export, SE fusion, INT8 "
                              "calibration/quantization, engines (TensorRT where present, else the faster installed "
                              "CPU runtime, onnxruntime or OpenVINO, by a short probe), accuracy, interleaved "
                              "benchmark, the optional SE budget and the report. Stages whose inputs have not "
                              "changed are skipped.")
    @files(inputs=("config",), derived=_run_outputs)
    def pipeline(
        config: Optional[Path] = typer.Option(None, "--config", "-c",
                                              help="Pipeline TOML (default: the embedded se_resnet50 config)."),
        out: Optional[Path] = typer.Option(None, "--out", help="Run directory (default: runs/<run.name>)."),
        force: bool = typer.Option(False, "--force", help="Run every stage even when its inputs are unchanged."),
        wait: bool = typer.Option(False, "--wait", help="When another run holds the --out directory, wait for it "
                                                        "instead of refusing (exit 75)."),
        show_config: bool = typer.Option(False, "--show-config",
                                         help="Print the effective config as TOML (every key, defaults filled in) "
                                              "and exit; it loads back as the same config."),
    ) -> None:
        from rich.markup import escape
        from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        from se_deploy.console import console
        from se_deploy.errors import SeDeployError
        from se_deploy.config import to_toml
        from se_deploy.pipeline import StageStatus, build_job, load_config, run_pipeline

        cfg = load_config(config)
        if show_config:
            header = f"# se-deploy pipeline config: {cfg.source}, every default filled in\n\n"
            typer.echo(header + to_toml(cfg), nl=False)
            return
        out_dir = out or Path("runs") / cfg.name
        _, stages = build_job(cfg, out_dir)  # validates model names before any work starts
        console.print(f"se-deploy pipeline: {cfg.name} ({cfg.source}) -> {out_dir}", markup=False)
        progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                            TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(), console=console,
                            transient=True)

        def on_event(kind, name, result) -> None:
            if kind == "start":
                progress.update(task, description=f"{name}")
                return
            if result.status is StageStatus.ran:
                head, style, detail = f"ran {result.seconds:6.1f}s", "green", result.detail
            elif result.status is StageStatus.skipped:
                head, style, detail = "skipped", "yellow", result.reason
            elif result.status is StageStatus.failed:
                head, style, detail = "failed", "red", ""  # the error line that follows says why
            else:
                head, style, detail = "unchanged", "dim", ""
            text = escape(name + (f": {detail}" if detail else ""))
            progress.console.print(f"[{style}]{head:>12}[/{style}]  {text}",
                                   highlight=False, markup=True, soft_wrap=True)
            progress.advance(task)

        with progress:
            task = progress.add_task("starting", total=len(stages))
            try:
                job, results = run_pipeline(cfg, out_dir, force=force, on_event=on_event, wait=wait,
                                            on_wait=lambda msg: progress.console.print(msg, markup=False))
            except SeDeployError as e:
                raise type(e)(f"pipeline stopped: {e}") from None
        if job.results.exists():
            from se_deploy.report.summary import print_summary
            from se_deploy.bench.results import load_results

            print_summary(load_results(job.results), console)
        where = job.report_html if job.report_html.exists() else job.report_md
        console.print(f"report: {where}", markup=False)
