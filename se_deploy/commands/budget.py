"""``se-deploy se-budget``: what each SE block costs and buys, and the best mix of kept, folded and removed
blocks under an SE-tax budget."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from se_deploy.commands._options import data_options, files
from se_deploy.calibration.data_options import DataOptions
from se_deploy.names import BudgetBackend


def _outputs(values) -> dict:
    if values.get("out") is None:
        return {}
    from se_deploy.budget.run import MODEL_NAME, PLOT_NAME

    out = Path(values["out"])
    return {"the chosen model": out / MODEL_NAME, "its sidecar": out / f"{MODEL_NAME}.json",
            "the Pareto plot": out / PLOT_NAME}


def parse_budget(text: str) -> float:
    """``"5%"`` or ``"5"`` -> 5.0 (percent of the plain twin's latency)."""
    from se_deploy.errors import UsageError

    raw = text.strip()
    try:
        value = float(raw[:-1] if raw.endswith("%") else raw)
    except ValueError:
        raise UsageError(f"--budget {text!r} is not a percentage (write it as 5% or 5)") from None
    if not value >= 0 or value != value or value == float("inf"):
        raise UsageError(f"--budget {text!r} must be a finite percentage >= 0 (0% is the plain twin)")
    return value


def register(command) -> None:
    @command("se-budget", help="Measure what each SE block costs in latency and buys in accuracy (removed, or its "
                               "gate folded to its mean), then choose which blocks to keep, fold or remove so the "
                               "SE tax against the plain twin is at most --budget at the smallest accuracy loss. "
                               "The chosen mix is measured again, interleaved, before se_budget.onnx, its sidecar "
                               "and the Pareto plot are written to --out.")
    @files(inputs=("model", "eval_data", "calib_data"), derived=_outputs)
    @data_options
    def se_budget(
        model: Path = typer.Argument(..., metavar="MODEL.onnx", help="An ONNX model with SE blocks."),
        budget: str = typer.Option(..., "--budget", help="Largest SE tax allowed, in % of the plain twin's latency "
                                                         "(e.g. 5%)."),
        out: Path = typer.Option(..., "-o", "--out", help="Output folder for se_budget.onnx (+ .json sidecar) and "
                                                          "se_budget_front.png."),
        eval_data: Optional[Path] = typer.Option(None, "--eval-data", help="Evaluation data: .npz/.npy or image "
                                                 "folder; labels (npz 'labels' key, class folders) give top-1/top-5."),
        calib_data: Optional[Path] = typer.Option(None, "--calib-data", help="Data for the gate means that folds "
                                                  "use (default: the evaluation data)."),
        synthetic: bool = typer.Option(False, "--synthetic", help="Random evaluation data, for smoke runs only "
                                                                  "(accuracy figures then mean nothing)."),
        backend: BudgetBackend = typer.Option(BudgetBackend.onnxruntime, "--backend",
                                              help="CPU runtime to time on (onnxruntime, or openvino where installed)."),
        batch: int = typer.Option(1, "--batch", help="Batch size to time."),
        threads: int = typer.Option(0, "--threads", help="Intra-op threads (0: backend default)."),
        time_top: int = typer.Option(4, "--time-top", help="Blocks to time after the per-op profile ranks them."),
        max_tries: int = typer.Option(3, "--max-tries", help="Mixes to time before giving up."),
        accuracy_checks: int = typer.Option(8, "--accuracy-checks", help="Mixes whose accuracy is measured per try; "
                                                                          "the most accurate is timed."),
        max_drop: Optional[float] = typer.Option(None, "--max-drop", help="Most accuracy a mix may lose: top-1 "
                                                 "points (disagreement points on unlabelled data)."),
        eval_size: Optional[int] = typer.Option(None, "--eval-size", help="Use this many evaluation samples."),
        calib_size: Optional[int] = typer.Option(None, "--calib-size", help="Use this many calibration samples."),
        warmup_s: float = typer.Option(0.5, "--warmup-s", help="Warm-up seconds per timed model."),
        min_iters: int = typer.Option(30, "--min-iters", help="Minimum interleaved rounds per timing run."),
        min_duration_s: float = typer.Option(2.0, "--min-duration-s", help="Minimum seconds per timing run."),
        data: DataOptions = None,
    ) -> None:
        from se_deploy.budget.run import MODEL_NAME, BudgetConfig, run_budget
        from se_deploy.console import line, note, table, console, warn
        from se_deploy.errors import UsageError

        if eval_data is None and not synthetic:
            raise UsageError("se-budget needs --eval-data FILE.npz|DIR (or --synthetic for a smoke run)")
        if eval_data is not None and synthetic:
            raise UsageError("give --eval-data or --synthetic, not both")
        cfg = BudgetConfig(budget_pct=parse_budget(budget), backend=backend, batch=batch, threads=threads,
                           time_top=time_top, max_tries=max_tries, accuracy_checks=accuracy_checks, max_drop=max_drop, eval_size=eval_size,
                           calib_size=calib_size, warmup_s=warmup_s, min_iters=min_iters,
                           min_duration_s=min_duration_s, seed=data.seed)
        r = run_budget(model, out, cfg, eval_source=eval_data, calib_source=calib_data, data=data,
                       synthetic=synthetic, log=note)
        for n in r["notes"]:
            warn(n)
        labelled = r["labelled"]
        what = "top-1 %" if labelled else "agree %"
        rows = []
        for b in r["blocks"]:
            rm, fo = b["remove"]["accuracy"], b["fold"]["accuracy"]
            key = "top1" if labelled else "agreement"
            rows.append([b["block"], b["rank"], f"{b['cost_ms']:.3f}", f"{b['gate']['mean']:.2f}",
                         f"{b['gate']['channel_std_max']:.3f}", f"{100 * b['gate']['saturated']:.0f}",
                         f"{rm[key]:.2f}", f"{fo[key]:.2f}", b["fate"]])
        console.print(table("SE blocks in graph order (rank 1: costliest in the per-op profile; cost: latency the "
                            "block adds)", ["block", "rank", "cost ms", "gate mean", "gate std", "sat %", f"removed {what}",
                             f"folded {what}", "fate"], rows))
        console.print(table("Pareto front (estimated)", ["SE tax %", "disagreement pt",
                            "kept", "folded", "removed"],
                            [[f"{m['est_tax_pct']:.1f}", f"{m['est_loss'][0]:.2f}", m["fates"].count("keep"),
                              m["fates"].count("fold"), m["fates"].count("remove")] for m in r["front"]]))
        full, ch = r["full"], r["chosen"]
        t = ch["tax"]
        top1 = (f", top-1 {ch['accuracy']['top1']:.2f}% (full {full['accuracy']['top1']:.2f}%)"
                if labelled else f", agreement {ch['accuracy']['agreement']:.2f}%")
        line(f"full model SE tax {full['tax']['tax_pct']:+.1f}% [{full['tax']['tax_pct_lo']:+.1f}, "
             f"{full['tax']['tax_pct_hi']:+.1f}]; chosen: {ch['fates'].count('keep')} kept, "
             f"{ch['fates'].count('fold')} folded, {ch['fates'].count('remove')} removed: measured SE tax "
             f"{t['tax_pct']:+.1f}% [{t['tax_pct_lo']:+.1f}, {t['tax_pct_hi']:+.1f}] (budget {r['budget_pct']:g}%), "
             f"loss {ch['loss']:.2f}{top1}")
        line(f"wrote {Path(out) / MODEL_NAME} (+ .json sidecar" + (f", {r['plot']})" if r.get("plot") else ")"))
