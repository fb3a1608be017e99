"""Run the default pipeline (se_resnet50 vs resnet50, 224x224, onnxruntime CPU, FP32 + INT8) and print
what BENCHMARKS.md records: wall time per stage, the SE tax with its interval, median and p90
latencies, and the environment.

    python benchmarks/pipeline_default.py [--config PATH] [--out DIR] [--force]

The benchmark stage itself runs SE and plain models interleaved (A B A B ...) in one process
after warm-up; ratios come from a paired bootstrap over those rounds.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from se_deploy.envinfo import capture_environment, environment_rows
from se_deploy.pipeline import load_config, run_pipeline
from se_deploy.report import tables
from se_deploy.report.markdown import md_table
from se_deploy.bench.results import load_results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, default=None, help="pipeline TOML (default: the embedded default)")
    ap.add_argument("--out", type=Path, default=None, help="run directory (default: a temporary one)")
    ap.add_argument("--force", action="store_true", help="rerun every stage")
    args = ap.parse_args()

    cfg = load_config(args.config)
    with tempfile.TemporaryDirectory(prefix="se-deploy-pipeline-") as tmp:
        out = args.out or Path(tmp) / cfg.name
        t0 = time.perf_counter()
        job, stages = run_pipeline(cfg, out, force=args.force)
        wall = time.perf_counter() - t0
        print(f"## pipeline {cfg.name}: {wall:.0f} s wall\n")
        print(md_table(["stage", "status", "seconds"], [[s.name, s.status, f"{s.seconds:.1f}"] for s in stages]))
        r = load_results(job.results)
        h, rows = tables.se_tax_table(r)
        print("### SE tax\n")
        print(md_table(h, rows))
        h, rows = tables.latency_table(r)
        keep = [h.index(k) for k in ("model", "precision", "batch", "median ms", "p90 ms", "CV", "items/s", "n")]
        print("### Latency\n")
        print(md_table([h[i] for i in keep], [[row[i] for i in keep] for row in rows]))
        if r.accuracy:
            print("### INT8 vs FP32 (synthetic held-out inputs: agreement, not task accuracy)\n")
            print(md_table(*tables.accuracy_table(r)))
        print("### Environment\n")
        print(md_table(["", ""], [[k, v] for k, v in environment_rows(capture_environment(tegrastats_s=0))]))


if __name__ == "__main__":
    main()
