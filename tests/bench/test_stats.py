import numpy as np
import pytest

from se_deploy.bench.stats import noise_warning, percentile, ratio_interval, se_tax, summarize, throughput
from se_deploy.errors import BenchmarkError, UsageError


def test_summary_of_1_to_100_has_exact_type7_percentiles():
    s = summarize(list(range(1, 101)))
    assert s["n"] == 100
    assert s["min"] == 1 and s["max"] == 100
    assert s["mean"] == pytest.approx(50.5)
    assert s["median"] == pytest.approx(50.5)
    assert s["p90"] == pytest.approx(90.1)
    assert s["p95"] == pytest.approx(95.05)
    assert s["p99"] == pytest.approx(99.01)
    assert s["std"] == pytest.approx(np.sqrt(np.sum((np.arange(1, 101) - 50.5) ** 2) / 99))
    assert s["cv"] == pytest.approx(s["std"] / 50.5)


def test_percentile_interpolates_between_order_statistics_regardless_of_input_order():
    x = [40.0, 10.0, 30.0, 20.0]  # sorted 10 20 30 40; h = 3 * q
    assert percentile(x, 50) == pytest.approx(25.0)
    assert percentile(x, 90) == pytest.approx(37.0)  # h = 2.7 -> 30 + 0.7 * 10
    assert percentile(x, 0) == 10.0 and percentile(x, 100) == 40.0
    with pytest.raises(UsageError):
        percentile(x, 101)


def test_single_sample_and_constant_series():
    s = summarize([5.0])
    assert s["std"] == 0.0 and s["cv"] == 0.0 and s["p99"] == 5.0
    assert noise_warning(summarize([2.0] * 10)) is None


def test_empty_or_nonfinite_series_is_a_benchmark_error():
    with pytest.raises(BenchmarkError):
        summarize([])
    with pytest.raises(BenchmarkError):
        summarize([1.0, float("nan")])


def test_noise_warning_names_the_cv_and_why():
    msg = noise_warning(summarize([1.0, 3.0, 1.0, 3.0]))
    assert msg is not None and "coefficient of variation" in msg and "not meaningful" in msg


def test_throughput_uses_median_latency():
    assert throughput([10.0, 20.0, 30.0], batch=8) == pytest.approx(8 * 1000 / 20.0)


def test_ratio_interval_point_and_degenerate_interval():
    a = [2.0, 4.0, 6.0]
    b = [1.0, 2.0, 3.0]
    point, lo, hi = ratio_interval(a, b, n_boot=200)
    assert point == pytest.approx(2.0)
    # every resample has ratio exactly 2 because the pairs are proportional
    assert lo == pytest.approx(2.0) and hi == pytest.approx(2.0)


def test_ratio_interval_is_deterministic_for_a_seed_and_rejects_unpaired_series():
    rng = np.random.default_rng(1)
    a, b = rng.uniform(1, 2, 40), rng.uniform(1, 2, 40)
    assert ratio_interval(a, b, seed=3) == ratio_interval(a, b, seed=3)
    with pytest.raises(BenchmarkError):
        ratio_interval(a, b[:-1])
    with pytest.raises(UsageError):
        ratio_interval(a, b, confidence=1.5)


def _simulate(rng, n, true_ratio, drift_sd):
    drift = np.exp(rng.normal(0, drift_sd, n))  # shared by both candidates in a round
    a = true_ratio * drift * np.exp(rng.normal(0, 0.1, n))
    b = drift * np.exp(rng.normal(0, 0.1, n))
    return a, b


def test_bootstrap_interval_covers_true_ratio_at_nominal_rate():
    # Both series have the same noise law, so the population medians differ by exactly 1.1x.
    rng = np.random.default_rng(123)
    trials, hits, excludes_one = 300, 0, 0
    for s in range(trials):
        a, b = _simulate(rng, 60, 1.1, 0.0)
        _, lo, hi = ratio_interval(a, b, n_boot=400, seed=s)
        hits += lo <= 1.1 <= hi
        excludes_one += lo > 1.0
    coverage = hits / trials
    assert 0.90 <= coverage <= 0.995, coverage
    # and the interval is tight enough to detect a 10% difference almost always
    assert excludes_one / trials > 0.95


def test_pairing_cancels_shared_drift():
    rng = np.random.default_rng(7)
    a, b = _simulate(rng, 80, 1.1, 0.4)
    _, lo, hi = ratio_interval(a, b, n_boot=500)
    # unpaired resampling of the same data: shuffle b so the drift no longer lines up
    _, ulo, uhi = ratio_interval(a, rng.permutation(b), n_boot=500)
    assert (hi - lo) < (uhi - ulo)


def test_se_tax_reports_percent_and_bounds():
    se = [11.0, 11.0, 11.0, 11.0]
    plain = [10.0, 10.0, 10.0, 10.0]
    t = se_tax(se, plain, n_boot=100)
    assert t["tax_pct"] == pytest.approx(10.0)
    assert t["tax_pct_lo"] == pytest.approx(10.0) and t["tax_pct_hi"] == pytest.approx(10.0)
    assert t["se_median_ms"] == 11.0 and t["plain_median_ms"] == 10.0 and t["n_pairs"] == 4


def test_interval_is_the_paired_percentile_bootstrap_of_whole_rounds():
    # What scipy.stats.bootstrap(paired=True, method="percentile") computes, written out: resample
    # round indices with the seeded generator, take the ratio of medians, read off type-7 quantiles.
    rng = np.random.default_rng(11)
    a, b = rng.lognormal(0.1, 0.3, 57), rng.lognormal(0.0, 0.3, 57)
    idx = np.random.default_rng(5).integers(0, 57, size=(300, 57))
    ratios = np.median(a[idx], axis=1) / np.median(b[idx], axis=1)
    lo, hi = np.quantile(ratios, [0.05, 0.95])
    point, got_lo, got_hi = ratio_interval(a, b, confidence=0.9, n_boot=300, seed=5)
    assert point == np.median(a) / np.median(b)
    assert got_lo == pytest.approx(lo, rel=1e-12) and got_hi == pytest.approx(hi, rel=1e-12)


def test_a_single_round_has_no_interval():
    with pytest.raises(BenchmarkError, match="at least 2 paired rounds"):
        ratio_interval([2.0], [1.0])
