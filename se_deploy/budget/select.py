"""Choosing keep/fold/remove per SE block: the SE tax under a budget at the smallest accuracy loss.

The inputs are estimates, one :class:`Option` per block and fate: ``cost`` is the latency the block
still costs with that fate (the same unit for every block; ``remove`` costs 0) and ``loss`` what it
costs in accuracy, a tuple compared in order (top-1 drop in points, then disagreement with the
full model in points), with the number of changed blocks appended so that, at equal loss, fewer
edits win. Both are assumed to add up over blocks; the caller measures the chosen mix, because
they need not.

The SE tax of a mix is estimated as ``full_tax * remaining_cost / total_cost``: every block kept is
the full model's measured tax, every block removed is the plain twin (0 by construction).

The search is exact: a Pareto sweep over the blocks (a multiple-choice knapsack). A partial mix is
dropped only when another costs no more and loses no more, which stays true whatever the remaining
blocks add, because both sums (and lexicographic order on the loss tuples) are preserved by
adding the same thing to both sides. The surviving mixes of the last block are the Pareto front.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cmp_to_key
from typing import Mapping, Sequence

from se_deploy.budget.variants import Fate

#: Loss tuples are compared with this slack, so float noise does not break a tie.
EPS = 1e-9


@dataclass(frozen=True)
class Option:
    cost: float
    loss: tuple[float, ...]


@dataclass(frozen=True)
class Mix:
    """One combination of fates: its estimated remaining SE cost, loss and SE tax."""

    fates: tuple[Fate, ...]
    cost: float
    loss: tuple[float, ...]
    tax_pct: float

    @property
    def changed(self) -> int:
        return sum(f is not Fate.keep for f in self.fates)

    def to_dict(self) -> dict:
        return {"fates": [f.value for f in self.fates], "est_tax_pct": self.tax_pct, "est_loss": list(self.loss),
                "changed": self.changed}


def _le(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    """a <= b lexicographically, with EPS slack per component."""
    for x, y in zip(a, b):
        if x < y - EPS:
            return True
        if x > y + EPS:
            return False
    return True


def _key(loss: tuple[float, ...], changed: int) -> tuple:
    return (*loss, changed)


def front(options: Sequence[Mapping[Fate, Option]], full_tax_pct: float) -> list[Mix]:
    """Every Pareto-optimal mix (no other has lower-or-equal tax and lower-or-equal loss), lowest tax first.

    ``options[i]`` maps each fate allowed for block ``i`` to its estimate. Among equal mixes the one
    met first survives: fates in the order keep, fold, remove, blocks in graph order.
    """
    if not options:
        return []
    total = sum(max(o.cost for o in opts.values()) for opts in options)
    states: list[tuple[float, tuple, tuple[Fate, ...]]] = [(0.0, (0.0,) * (_width(options) + 1), ())]
    for opts in options:
        grown = []
        for cost, key, fates in states:
            for fate in (Fate.keep, Fate.fold, Fate.remove):
                if fate in opts:
                    o = opts[fate]
                    k = tuple(a + b for a, b in zip(key, _key(o.loss, int(fate is not Fate.keep))))
                    grown.append((cost + o.cost, k, fates + (fate,)))
        states = _pareto(grown)
    return [Mix(f, c, k[:-1], full_tax_pct * c / total if total > 0 else 0.0) for c, k, f in states]


def _width(options: Sequence[Mapping[Fate, Option]]) -> int:
    return max(len(o.loss) for opts in options for o in opts.values())


def _pareto(states: list) -> list:
    """Keep the states no other dominates, sorted by cost (a stable sort keeps the first of equals)."""
    states = sorted(states, key=lambda s: s[0])
    kept: list = []
    for s in states:
        if any(k[0] <= s[0] + EPS and _le(k[1], s[1]) for k in kept):
            continue
        kept.append(s)
    return kept


def _cmp(a: Mix, b: Mix) -> int:
    ka, kb = _key(a.loss, a.changed), _key(b.loss, b.changed)
    if not _le(ka, kb):
        return 1
    if not _le(kb, ka):
        return -1
    return -1 if a.tax_pct < b.tax_pct - EPS else 1 if b.tax_pct < a.tax_pct - EPS else 0


def ranked(mixes: Sequence[Mix], budget_pct: float, *, max_loss: float | None = None) -> list[Mix]:
    """The mixes whose estimated tax is within ``budget_pct``, best first: smallest loss, then fewer changed
    blocks, then lower tax (a stable sort keeps front order among equals). ``max_loss`` also bounds the
    first loss component."""
    ok = [m for m in mixes if m.tax_pct <= budget_pct + EPS and (max_loss is None or m.loss[0] <= max_loss + EPS)]
    return sorted(ok, key=cmp_to_key(_cmp))


def choose(mixes: Sequence[Mix], budget_pct: float, *, max_loss: float | None = None) -> Mix | None:
    """The first of :func:`ranked`; None when no mix is within the budget."""
    r = ranked(mixes, budget_pct, max_loss=max_loss)
    return r[0] if r else None


def achievable(mixes: Sequence[Mix], budget_pct: float, *, max_loss: float | None = None) -> str:
    """One line on what can be reached when :func:`choose` found nothing."""
    lowest = min(mixes, key=lambda m: m.tax_pct)
    if max_loss is None:
        return (f"the lowest SE tax reachable is {lowest.tax_pct:.1f}% ({lowest.changed} of {len(lowest.fates)} "
                f"blocks changed), above the budget of {budget_pct:g}%")
    within = [m for m in mixes if m.loss[0] <= max_loss + EPS]
    meets = [m for m in mixes if m.tax_pct <= budget_pct + EPS]
    parts = []
    if within:
        parts.append(f"within a loss of {max_loss:g} pt the lowest SE tax is {min(m.tax_pct for m in within):.1f}%")
    if meets:
        parts.append(f"a tax of {budget_pct:g}% needs a loss of {min(m.loss[0] for m in meets):.2f} pt")
    else:
        parts.append(f"the lowest SE tax reachable is {lowest.tax_pct:.1f}%")
    return "; ".join(parts)


__all__ = ["EPS", "Mix", "Option", "achievable", "choose", "front", "ranked"]
