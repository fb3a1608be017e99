"""The selection on synthetic cost/value tables: exact against brute force, ties, infeasible budgets."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from se_deploy.budget.select import Option, achievable, choose, front
from se_deploy.budget.variants import Fate

K, F, R = Fate.keep, Fate.fold, Fate.remove


def table(rows):
    """rows: (cost kept, cost folded, loss folded, loss removed) per block; removed costs 0, kept loses 0."""
    return [{K: Option(c, (0.0, 0.0)), F: Option(cf, (lf, lf)), R: Option(0.0, (lr, lr))} for c, cf, lf, lr in rows]


def brute(options, full_tax, budget):
    total = sum(o[K].cost for o in options)
    best = None
    for fates in itertools.product((K, F, R), repeat=len(options)):
        cost = sum(o[f].cost for o, f in zip(options, fates))
        loss = sum(o[f].loss[0] for o, f in zip(options, fates))
        if full_tax * cost / total <= budget + 1e-9 and (best is None or loss < best - 1e-9):
            best = loss
    return best


def test_the_cheapest_loss_under_the_budget_wins():
    # block 0: costly and worthless (remove it); block 1: costly and valuable, but its gate folds cheaply
    opts = table([(4.0, 3.0, 0.5, 0.0), (4.0, 0.5, 0.1, 5.0), (2.0, 1.0, 0.2, 0.3)])
    mixes = front(opts, full_tax_pct=30.0)
    pick = choose(mixes, 10.0)
    assert pick.fates == (R, F, K)
    assert pick.tax_pct == pytest.approx(30.0 * 2.5 / 10.0)
    assert pick.loss[0] == pytest.approx(0.1)


def test_everything_kept_and_everything_removed_are_the_ends_of_the_front():
    opts = table([(1.0, 0.5, 0.1, 0.4), (2.0, 1.0, 0.2, 0.3)])
    mixes = front(opts, full_tax_pct=20.0)
    assert mixes[-1].fates == (K, K) and mixes[-1].tax_pct == pytest.approx(20.0)
    assert mixes[0].tax_pct == 0.0 and F not in mixes[0].fates[:0]
    assert choose(mixes, 20.0).fates == (K, K)  # no loss needed when the budget covers the full tax


@pytest.mark.parametrize("seed", range(25))
def test_front_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 6))
    rows = []
    for _ in range(n):
        c = float(rng.uniform(0.1, 3))
        rows.append((c, float(rng.uniform(0, c)), float(rng.choice([0.0, 0.25, 0.5, 1.0])),
                     float(rng.choice([0.0, 0.25, 0.5, 2.0]))))
    opts = table(rows)
    mixes = front(opts, full_tax_pct=25.0)
    # the front is Pareto: lower tax always costs accuracy
    for a, b in zip(mixes, mixes[1:]):
        assert a.tax_pct <= b.tax_pct and a.loss[0] >= b.loss[0] - 1e-9
    for budget in (0.0, 3.0, 8.0, 15.0, 25.0):
        pick = choose(mixes, budget)
        assert pick is not None and pick.tax_pct <= budget + 1e-9
        assert pick.loss[0] == pytest.approx(brute(opts, 25.0, budget))


def test_ties_fewer_changed_blocks_then_lower_tax_then_graph_order():
    # two identical blocks, removing either loses nothing: one removal meets 50%, so keep the other
    opts = table([(1.0, 1.0, 0.0, 0.0), (1.0, 1.0, 0.0, 0.0)])
    pick = choose(front(opts, 20.0), 10.0)
    assert pick.changed == 1 and pick.fates == (R, K)  # the first block in graph order goes
    # equal loss, equal count: the lower tax wins
    opts = table([(1.0, 0.9, 0.0, 0.0), (3.0, 2.9, 0.0, 0.0)])
    pick = choose(front(opts, 40.0), 35.0)
    assert pick.fates == (K, R)
    # equal top-1 drop: the tie-break loss (disagreement) decides
    opts = [{K: Option(1.0, (0.0, 0.0)), R: Option(0.0, (0.5, 3.0))},
            {K: Option(1.0, (0.0, 0.0)), R: Option(0.0, (0.5, 1.0))}]
    assert choose(front(opts, 10.0), 5.0).fates == (K, R)


def test_an_infeasible_budget_says_what_is_achievable():
    opts = table([(1.0, 0.5, 0.4, 1.5), (1.0, 0.5, 0.3, 2.0)])
    mixes = front(opts, 20.0)
    assert choose(mixes, -1.0) is None
    assert achievable(mixes, -1.0) == "the lowest SE tax reachable is 0.0% (2 of 2 blocks changed), above the budget of -1%"
    # within a loss of 0.5 pt only one fold fits (the second block's, 0.3 pt): 15% is the floor
    assert choose(mixes, 5.0, max_loss=0.5) is None
    line = achievable(mixes, 5.0, max_loss=0.5)
    assert line == "within a loss of 0.5 pt the lowest SE tax is 15.0%; a tax of 5% needs a loss of 1.80 pt"
    assert choose(mixes, 10.0, max_loss=0.5) is None
    assert choose(mixes, 10.0, max_loss=0.8).fates == (F, F)


def test_a_block_without_a_fold_option_is_kept_or_removed():
    opts = [{K: Option(2.0, (0.0, 0.0)), R: Option(0.0, (1.0, 1.0))}, *table([(2.0, 0.0, 0.1, 3.0)])]
    mixes = front(opts, 40.0)
    assert all(m.fates[0] in (K, R) for m in mixes)
    assert choose(mixes, 20.0).fates == (K, F)
