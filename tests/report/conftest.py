import numpy as np
import pytest

from se_deploy.bench.stats import se_tax, summarize, throughput
from se_deploy.bench.results import Accuracy, Comparison, Measurement, ModelInfo, Profile, Results

EVIL = '<script>alert("x")</script>&|pipe'


def build_results(se_name="se_net", plain_name="plain_net", cpu="Test CPU", factor=1.1, seed=0,
                  precisions=("fp32", "int8"), batches=(1, 4)) -> Results:
    rng = np.random.default_rng(seed)
    meas, comps = [], []
    for prec in precisions:
        for b in batches:
            base = (2.0 if prec == "fp32" else 1.0) * b
            drift = np.exp(rng.normal(0, 0.05, 40))
            plain = base * drift * np.exp(rng.normal(0, 0.02, 40))
            se = factor * base * drift * np.exp(rng.normal(0, 0.02, 40))
            for name, ms in ((se_name, se), (plain_name, plain)):
                s = summarize(ms)
                meas.append(Measurement(model=name, precision=prec, batch=b, backend="onnxruntime", latency_ms=s,
                                        throughput=throughput(ms, b), headline={"metric": "p90_ms", "value": s["p90"]},
                                        samples_ms=[float(x) for x in ms]))
            comps.append(Comparison(se_model=se_name, plain_model=plain_name, precision=prec, batch=b,
                                    tax=se_tax(se, plain, n_boot=200), se_share={"params_pct": 9.5, "flops_pct": 0.3}))
    return Results(
        run={"name": "", "mode": "singlestream", "backend": "onnxruntime", "settings": {"min_iters": 40}},
        environment={"cpu": {"model": cpu, "logical_cpus": 2, "flags": ["avx2"]}, "memory_gb": 8.0,
                     "os": {"system": "Linux"}, "gpu": {"gpus": []}, "jetson": {"model": "unknown"}},
        models=[ModelInfo(name=se_name, role="se", params=1000, flops=10**6, se_blocks=4,
                          se_share={"params_pct": 9.5, "flops_pct": 0.3}),
                ModelInfo(name=plain_name, role="plain", params=905, flops=997000, se_blocks=0)],
        measurements=meas, comparisons=comps,
        profiles=[Profile(model=se_name, precision="fp32", batch=1,
                          by_op={"Conv": {"ms": 1.5, "pct": 75.0, "count": 10},
                                 "SE blocks": {"ms": 0.4, "pct": 20.0, "count": 4},
                                 "Relu": {"ms": 0.1, "pct": 5.0, "count": 9}})],
        accuracy=[Accuracy(model=se_name, precision="int8", metrics={"top1_agreement": 0.98, "sqnr_db": 31.2},
                           data="synthetic (not a real dataset)")],
        warnings=["noisy run: example"])


@pytest.fixture
def results() -> Results:
    return build_results()


@pytest.fixture
def evil_results() -> Results:
    return build_results(se_name=EVIL, plain_name="plain" + EVIL, cpu=EVIL)
