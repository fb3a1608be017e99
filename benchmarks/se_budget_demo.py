"""The SE budget on trained demo models: the full SE tax, se-budget at a fraction of it, and a fresh check.

    python benchmarks/se_budget_demo.py DEMO_DIR [DEMO_DIR ...] [--fraction 0.5] [--threads 1]
        [--min-duration 20] [--budget-min-duration 5] [--out DIR]

Each DEMO_DIR is what ``se-deploy train-demo`` writes (model.onnx, calib.npz, eval.npz). Per demo:

1. the SE tax of model.onnx against its plain twin (ablate-se), interleaved in one process;
2. ``run_budget`` (what ``se-deploy se-budget`` runs) with ``--budget`` = fraction x that tax;
3. a fresh interleaved measurement of the chosen model against the plain twin, and its top-1 on
   eval.npz against the full model's (``calibration.accuracy.evaluate``);
4. Markdown: the per-block table, the estimated Pareto front and the figures above.
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
from pathlib import Path

from se_deploy.bench.harness import run_interleaved
from se_deploy.bench.stats import se_tax
from se_deploy.bench.suite import Candidate, make_feed, make_runner
from se_deploy.budget.run import MODEL_NAME, BudgetConfig, run_budget
from se_deploy.calibration.accuracy import evaluate
from se_deploy.calibration.data_options import DataOptions, load_for_model
from se_deploy.envinfo import capture_environment, environment_rows
from se_deploy.export.passes import ablate_se
from se_deploy.names import BudgetBackend
from se_deploy.onnx_io import load_onnx, save_onnx
from se_deploy.report import budget as budget_report
from se_deploy.report.markdown import md_table
from se_deploy.report.tables import fmt_tax


def tax_of(se: Path, plain: Path, threads: int, seconds: float, backend: str = "onnxruntime") -> dict:
    with contextlib.ExitStack() as stack:
        runners = {k: stack.enter_context(make_runner(Candidate(k, "fp32", str(p), backend=backend), threads))
                   for k, p in (("se", se), ("plain", plain))}
        feeds = {k: make_feed(r, 1) for k, r in runners.items()}
        ms = run_interleaved({k: (lambda r=r, f=feeds[k]: r.infer(f)) for k, r in runners.items()}, warmup_s=2.0,
                             min_iters=200, min_duration_s=seconds)
    return se_tax(ms["se"], ms["plain"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("demos", nargs="+", type=Path)
    ap.add_argument("--fraction", type=float, default=0.5, help="budget = fraction x measured SE tax")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--backend", default="onnxruntime", choices=BudgetBackend.values(),
                    help="the runtime every timing (before, inside se-budget, afresh) runs on")
    ap.add_argument("--min-duration", type=float, default=20.0, help="seconds per SE-tax measurement")
    ap.add_argument("--budget-min-duration", type=float, default=5.0, help="seconds per timing run inside se-budget")
    ap.add_argument("--max-drop", type=float, default=None, help="se-budget --max-drop: the most top-1 a mix may lose")
    ap.add_argument("--out", type=Path, default=None, help="keep the chosen models here (default: temporary)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="se-budget-demo-") as tmp:
        root = args.out or Path(tmp)
        for demo in args.demos:
            name = demo.name
            work = root / name
            work.mkdir(parents=True, exist_ok=True)
            model = demo / "model.onnx"
            plain = work / "plain.onnx"
            save_onnx(ablate_se(load_onnx(model)), plain)
            full = tax_of(model, plain, args.threads, args.min_duration, args.backend)
            budget = round(args.fraction * full["tax_pct"], 1)
            cfg = BudgetConfig(budget_pct=budget, threads=args.threads, min_duration_s=args.budget_min_duration,
                               warmup_s=1.0, backend=args.backend, max_drop=args.max_drop)
            r = run_budget(model, work / "budget", cfg, eval_source=demo / "eval.npz",
                           calib_source=demo / "calib.npz")
            chosen = work / "budget" / MODEL_NAME
            fresh = tax_of(chosen, plain, args.threads, args.min_duration, args.backend)
            ev = load_for_model(demo / "eval.npz", model, DataOptions(), role="evaluation")
            acc = evaluate(model, {"chosen": chosen}, ev)
            c = acc["candidates"]["chosen"]
            print(f"## {name} on {args.backend}: budget {budget:g}% = {args.fraction:g} x the measured SE tax\n")
            print(md_table(["measurement", "value"], [
                ["full SE model vs plain twin (before)", fmt_tax(full)],
                ["budget", f"{budget:g}%" + (f", --max-drop {args.max_drop:g}" if args.max_drop is not None else "")],
                ["chosen mix, measured inside se-budget", fmt_tax(r["chosen"]["tax"])],
                ["chosen mix vs plain twin, fresh run", fmt_tax(fresh)],
                ["meets the budget (fresh point estimate)", str(fresh["tax_pct"] <= budget)],
                ["top-1 full / chosen / drop (pt)",
                 f"{acc['reference']['top1']:.2f} / {c['top1']:.2f} / {c['top1_drop']:+.2f}"],
                ["agreement with the full model / SQNR", f"{c['top1_agreement']:.2f}% / {c['sqnr_db']:.1f} dB"],
                ["fates (kept / folded / removed)", " / ".join(str(r["chosen"]["fates"].count(f))
                                                               for f in ("keep", "fold", "remove"))],
                ["median ms: full / chosen / plain", f"{full['se_median_ms']:.3f} / {fresh['se_median_ms']:.3f} / "
                                                     f"{fresh['plain_median_ms']:.3f}"],
            ]))
            print("Per block:\n")
            print(md_table(*budget_report.block_table(r)))
            print("Pareto front (estimated):\n")
            print(md_table(*budget_report.front_table(r)))
        print("## Environment\n")
        print(md_table(["key", "value"], [list(map(str, row)) for row in environment_rows(capture_environment())]))


if __name__ == "__main__":
    main()
