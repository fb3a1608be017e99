import pytest

from se_deploy.bench.harness import run_interleaved, warm_up
from se_deploy.errors import UsageError


class FakeClock:
    """A clock that advances only when a fake candidate 'runs'."""

    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def _recorder(log, name, clock=None, cost=0.0):
    def fn():
        log.append(name)
        if clock is not None:
            clock.t += cost

    return fn


def test_rounds_rotate_the_starting_candidate():
    log = []
    cands = {n: _recorder(log, n) for n in ("A", "B", "C")}
    out = run_interleaved(cands, warmup_s=0.0, min_iters=4, min_duration_s=0.0, max_iters=4)
    warm = log[:3]
    assert warm == ["A", "B", "C"]  # one warm-up call each (warmup_s=0 still calls once)
    timed = log[3:]
    assert timed == ["A", "B", "C", "B", "C", "A", "C", "A", "B", "A", "B", "C"]
    assert {k: len(v) for k, v in out.items()} == {"A": 4, "B": 4, "C": 4}


def test_two_candidates_alternate_ab_ba():
    log = []
    run_interleaved({"se": _recorder(log, "se"), "plain": _recorder(log, "plain")}, warmup_s=0.0,
                    min_iters=3, min_duration_s=0.0, max_iters=3)
    assert log[2:] == ["se", "plain", "plain", "se", "se", "plain"]


def test_latencies_are_measured_per_call_in_ms():
    clock = FakeClock()
    cands = {"slow": _recorder([], "slow", clock, 0.004), "fast": _recorder([], "fast", clock, 0.001)}
    out = run_interleaved(cands, warmup_s=0.0, min_iters=5, min_duration_s=0.0, clock=clock)
    assert out["slow"] == pytest.approx([4.0] * 5)
    assert out["fast"] == pytest.approx([1.0] * 5)


def test_min_duration_extends_the_run_and_max_iters_caps_it():
    clock = FakeClock()
    cands = {"a": _recorder([], "a", clock, 0.01), "b": _recorder([], "b", clock, 0.01)}
    # each round costs 20 ms of fake time: 1 s needs 50 rounds, more than min_iters
    out = run_interleaved(cands, warmup_s=0.0, min_iters=3, min_duration_s=1.0, clock=clock)
    assert len(out["a"]) == len(out["b"]) == 50
    out = run_interleaved(cands, warmup_s=0.0, min_iters=3, min_duration_s=1.0, max_iters=7, clock=clock)
    assert len(out["a"]) == 7


def test_warm_up_runs_for_the_requested_time():
    clock = FakeClock()
    log = []
    assert warm_up(_recorder(log, "x", clock, 0.1), 0.95, clock=clock) == 10
    assert len(log) == 10


@pytest.mark.parametrize("kw", [dict(min_iters=0), dict(warmup_s=-1), dict(min_duration_s=-0.5),
                                dict(min_iters=10, max_iters=5)])
def test_bad_options_are_usage_errors(kw):
    with pytest.raises(UsageError):
        run_interleaved({"a": lambda: None}, **kw)


def test_no_candidates_is_a_usage_error():
    with pytest.raises(UsageError):
        run_interleaved({})
