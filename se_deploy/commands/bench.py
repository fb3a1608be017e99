"""``se-deploy bench`` and ``se-deploy report {render,merge}``."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import List, Optional

import typer

from se_deploy.commands._options import files
from se_deploy.names import BenchBackend, BenchMode


class ReportAction(str, enum.Enum):
    render = "render"
    merge = "merge"


def _plot_files(values) -> dict:
    if values.get("png_dir") is None:
        return {}
    from se_deploy.report.plots import PLOT_FILES

    return {"--png-dir's plot": [Path(values["png_dir"]) / f"{stem}.png" for stem in PLOT_FILES]}


def register(command) -> None:
    @command("bench", help="Time a model or engine (zoo name, .onnx, or TensorRT plan) after warm-up, against its "
                           "plain twin interleaved (A B A B ...), and write results.json with the SE tax and "
                           "its bootstrap interval.")
    @files(inputs=("target", "baseline"), outputs=("output", "html"))
    def bench(
        target: str = typer.Argument(..., metavar="MODEL_OR_ENGINE", help="Zoo name, ONNX file or TensorRT plan."),
        backend: Optional[List[BenchBackend]] = typer.Option(
            None, "--backend", help="Runtime (default: tensorrt for plans, else onnxruntime). Repeat it to time "
                                    "backends side by side (--backend onnxruntime --backend openvino). auto: "
                                    "tensorrt for plans, else the installed CPU runtime that is faster on this "
                                    "model in a short interleaved probe (recorded in the results). trtexec times "
                                    "TensorRT plans with NVIDIA's trtexec, on its own."),
        trtexec: Optional[str] = typer.Option(None, "--trtexec", help="The trtexec executable for --backend trtexec "
                                              "(default: PATH, then /usr/src/tensorrt/bin/trtexec)."),
        batch: str = typer.Option("1", "--batch", help="Comma-separated batch sizes, e.g. 1,8,32."),
        threads: int = typer.Option(0, "--threads", help="Intra-op threads (0: backend default)."),
        warmup_s: float = typer.Option(1.0, "--warmup-s", help="Warm-up seconds per candidate."),
        min_iters: int = typer.Option(30, "--min-iters", help="Minimum timed rounds per batch size."),
        min_duration_s: float = typer.Option(3.0, "--min-duration-s", help="Minimum timed seconds per batch size."),
        max_iters: Optional[int] = typer.Option(None, "--max-iters", help="Cap on timed rounds per batch size."),
        mode: BenchMode = typer.Option(BenchMode.singlestream, "--mode",
                                  help="singlestream: p90 latency headline (MLPerf); offline: throughput headline."),
        baseline: str = typer.Option("auto", "--baseline",
                                     help="auto: plain zoo twin or SE-ablated graph; none; or a PATH to the plain "
                                          "model/engine."),
        input_shape: str = typer.Option("1x3x224x224", "--input-shape", help="Export shape for zoo models."),
        profile: bool = typer.Option(False, "--profile", help="Add a per-op breakdown (the onnxruntime profiler, "
                                                              "OpenVINO's performance counters)."),
        confidence: float = typer.Option(0.95, "--confidence", help="Confidence of the SE-tax interval."),
        output: Path = typer.Option(Path("results.json"), "-o", "--output", help="Where to write results.json."),
        html: Optional[Path] = typer.Option(None, "--html", help="Also render the HTML report here."),
        lock_clocks: bool = typer.Option(False, "--lock-clocks", help="Jetson: lock the clocks at their maximum "
                                         "(jetson_clocks, needs root or passwordless sudo) for the run, and restore "
                                         "them after; recorded in the results."),
    ) -> None:
        import tempfile

        from se_deploy._util import check_output_path, parse_int_list, parse_shape
        from se_deploy.bench.results import save_results
        from se_deploy.bench.suite import BenchConfig
        from se_deploy.bench.targets import measure, prepare
        from se_deploy.console import console, line, note
        from se_deploy.envinfo import locked_clocks
        from se_deploy.errors import UsageError
        from se_deploy.report.render import write_report
        from se_deploy.report.summary import print_summary

        check_output_path(output)
        if html is not None:
            check_output_path(html)
        cfg = BenchConfig(batches=tuple(parse_int_list(batch, "batch")), threads=threads, warmup_s=warmup_s,
                          min_iters=min_iters, min_duration_s=min_duration_s, max_iters=max_iters, mode=mode.value,
                          confidence=confidence, profile=profile)
        shape = parse_shape(input_shape)
        backends = [b.value for b in backend or []]
        if trtexec is not None and BenchBackend.trtexec not in backends:
            raise UsageError("--trtexec names the executable for --backend trtexec; add --backend trtexec")
        with tempfile.TemporaryDirectory(prefix="se-deploy-bench-") as tmp, \
                locked_clocks(lock_clocks, log=note) as clock_lock:
            prep = prepare(target, backend=backends, baseline=baseline, input_shape=shape, workdir=Path(tmp),
                           say=note, batch=cfg.batches[0], threads=threads)
            results = measure(prep, cfg, trtexec=trtexec, on_progress=note)
        if lock_clocks and isinstance(results.environment.get("jetson"), dict):
            results.environment["jetson"]["clock_lock"] = clock_lock
        save_results(results, output)
        print_summary(results, console)
        line(f"results: {output}")
        if html is not None:
            write_report(results, html=html)
            line(f"report: {html}")

    @command("report", help="Reports: 'report render RESULTS.json -o report.html|.md' renders one run; "
                            "'report merge A.json B.json ... -o fleet.html|.md' puts runs side by side.")
    @files(inputs=("files",), outputs=("output",), derived=_plot_files)
    def report(
        action: ReportAction = typer.Argument(..., help="render: one results file; merge: two or more."),
        files: List[Path] = typer.Argument(..., metavar="RESULTS.json...", help="results.json files."),
        output: Path = typer.Option(..., "-o", "--output", help="Output .html or .md."),
        png_dir: Optional[Path] = typer.Option(None, "--png-dir", help="Also write the plots as PNG files here."),
    ) -> None:
        from se_deploy._util import check_output_path, write_text_atomic
        from se_deploy.console import line
        from se_deploy.errors import UsageError
        from se_deploy.bench.results import load_results

        suffix = output.suffix.lower()
        if suffix not in (".html", ".htm", ".md"):
            raise UsageError(f"output must end in .html or .md, got {output.name!r}")
        check_output_path(output)
        if action is ReportAction.render:
            if len(files) != 1:
                raise UsageError(f"render takes one results file, got {len(files)}; use 'report merge' for several")
            from se_deploy.report.render import write_report

            r = load_results(files[0])
            kind = "md" if suffix == ".md" else "html"
            written = write_report(r, **{kind: output}, png_dir=png_dir)
        else:
            from se_deploy.report.merge import render_fleet_html, render_fleet_markdown

            runs = [load_results(f) for f in files]
            render = render_fleet_markdown if suffix == ".md" else render_fleet_html
            written = {"report": write_text_atomic(output, render(runs))}
        for path in written.values():
            line(f"wrote {path}")
