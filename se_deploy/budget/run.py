"""``se-deploy se-budget`` as a library call: what each SE block costs and buys, and the best mix under a budget.

1. Variants: the full model, the plain twin (``ablate-se``) and, per block, the model with only that
   block removed or folded to its mean gate (see :mod:`se_deploy.budget.variants`). Two proofs are
   recorded: every block removed one at a time equals the plain twin, and a fold of a constant gate
   equals the full model.
2. Accuracy value per block and fate on the evaluation data: top-1/top-5 (labelled data), agreement
   with the full model, cosine and SQNR; gate statistics over the calibration data (the evaluation
   data when none is given) explain why a fold is cheap.
3. Latency cost: the per-op profile of the full model ranks the blocks; the top ones are timed,
   interleaved with the full model and the plain twin in one run (paired intervals); the rest keep the
   profile's estimate, scaled to the timed blocks.
4. Selection (:mod:`se_deploy.budget.select`) on those estimates, then the chosen mix is measured
   afresh, interleaved against the plain twin; a miss moves the target down by the miss and tries
   the next mix.
5. The chosen model, its sidecar (every block's fate, figures and the measured tax) and the Pareto
   plot are written together, or not at all.
"""

from __future__ import annotations

import contextlib
import math
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
from pydantic import Field, NonNegativeInt, PositiveInt

from se_deploy._util import sha256_file
from se_deploy.bench.harness import Timing, run_interleaved
from se_deploy.bench.profile import profile_runner
from se_deploy.bench.stats import ratio_interval, se_tax
from se_deploy.bench.suite import Candidate, make_feed, make_runner
from se_deploy.budget.plot import front_png
from se_deploy.budget.select import Mix, Option, achievable, front, ranked
from se_deploy.budget.variants import Fate, Variants
from se_deploy.calibration.accuracy import run_model, topk_accuracy
from se_deploy.calibration.data_options import DataOptions, load_for_model, model_io
from se_deploy.calibration.dataset import CalibrationSet
from se_deploy.errors import BudgetError, GraphPassError, InputError
from se_deploy.export.passes import ablate_se
from se_deploy.files import prepare_directory, staged_artifact
from se_deploy.names import BudgetBackend
from se_deploy.numerics import compare_arrays
from se_deploy.onnx_io import load_onnx, save_onnx
from se_deploy.runtime.registry import capabilities

#: What se-budget writes into its output folder.
MODEL_NAME = "se_budget.onnx"
PLOT_NAME = "se_budget_front.png"
#: Relative output error (of the output's scale) the exact edits must stay within.
EXACT_TOLERANCE = 1e-5
SYNTHETIC_NOTE = ("SYNTHETIC evaluation data (seeded random inputs): accuracy figures only show agreement with the "
                  "full model, not task accuracy; the chosen mix means nothing for a real task")
UNLABELLED_NOTE = "unlabelled evaluation data: only agreement with the full model is shown (no top-1/top-5)"


class BudgetConfig(Timing):
    """How se-budget measures and chooses. ``budget_pct``: the largest SE tax allowed, in % of the plain
    twin's latency; ``time_top``: blocks timed after the profile ranks them; ``max_tries``: mixes measured
    before giving up; ``accuracy_checks``: mixes whose accuracy is measured per try (the most accurate is
    timed); ``max_drop``: the most accuracy a mix may lose (top-1 points, or disagreement points on
    unlabelled data); ``calib_size``/``eval_size``: samples read (None: all)."""

    budget_pct: float = Field(ge=0)
    backend: BudgetBackend = BudgetBackend.onnxruntime
    batch: PositiveInt = 1
    threads: NonNegativeInt = 0
    time_top: NonNegativeInt = 4
    max_tries: PositiveInt = 3
    accuracy_checks: PositiveInt = 8
    max_drop: float | None = Field(None, ge=0)
    profile_iters: PositiveInt = 20
    confidence: float = Field(0.95, gt=0, lt=1)
    n_boot: int = Field(2000, ge=100)
    min_iters: int = Field(30, ge=2)
    warmup_s: float = Field(0.5, ge=0)
    min_duration_s: float = Field(2.0, ge=0)
    eval_size: PositiveInt | None = None
    calib_size: PositiveInt | None = None
    seed: NonNegativeInt = 0


Log = Callable[[str], None]


# --------------------------------------------------------------------------- accuracy


def _labels(data: CalibrationSet, classes: int) -> np.ndarray | None:
    if data.labels is None or classes < 2:
        return None
    labels = np.asarray(data.labels)
    if labels.min() < 0 or labels.max() >= classes:
        raise InputError(f"labels in the evaluation data range from {labels.min()} to {labels.max()}, but the model "
                         f"predicts {classes} classes: the labels do not belong to this model")
    return labels


def _figures(logits: np.ndarray, ref: np.ndarray, labels: np.ndarray | None) -> dict:
    c = compare_arrays(ref, logits)
    d = {"agreement": None if c.top1_agreement is None else 100.0 * c.top1_agreement, "cosine": c.cosine,
         "sqnr_db": c.sqnr_db if math.isfinite(c.sqnr_db) else None, "rel_max_abs": c.rel_max_abs}
    if labels is not None:
        d["top1"] = topk_accuracy(logits, labels, 1)
        d["top5"] = topk_accuracy(logits, labels, 5)
    return d


def _estimate(fig: dict, full: dict) -> tuple[float, float]:
    """A block's loss as the selection adds it up: (disagreement with the full model in points, then the
    top-1 drop clamped at 0, or the cosine distance x100 without labels).

    Disagreement, not the top-1 drop, leads: it bounds the top-1 drop (a prediction that agrees is right
    or wrong with the full model's), and the disagreements of several edits add up to a bound of theirs,
    while top-1 drops do not add up: on an under-trained model one removal can gain points that several
    removals together lose many times over.
    """
    disagree = 100.0 - (fig["agreement"] if fig["agreement"] is not None else 100.0 * fig["cosine"])
    if "top1" in full:
        return disagree, max(0.0, full["top1"] - fig["top1"])
    return disagree, 100.0 * (1.0 - fig["cosine"])


def _measured(fig: dict, full: dict) -> float:
    """The loss of a measured model: top-1 drop in points with labels, else disagreement in points."""
    if "top1" in full:
        return full["top1"] - fig["top1"]
    return 100.0 - (fig["agreement"] if fig["agreement"] is not None else 100.0 * fig["cosine"])


# --------------------------------------------------------------------------- timing


def _time(paths: dict[str, Path], cfg: BudgetConfig) -> dict[str, list[float]]:
    """Latency series (ms) of every model in ``paths``, interleaved in one run."""
    with contextlib.ExitStack() as stack:
        runners = {k: stack.enter_context(make_runner(Candidate(k, "fp32", str(p), backend=cfg.backend),
                                                      cfg.threads)) for k, p in paths.items()}
        feeds = {k: make_feed(r, cfg.batch, cfg.seed) for k, r in runners.items()}
        return run_interleaved({k: (lambda r=r, f=feeds[k]: r.infer(f)) for k, r in runners.items()},
                               warmup_s=cfg.warmup_s, min_iters=cfg.min_iters, min_duration_s=cfg.min_duration_s,
                               max_iters=cfg.max_iters)


def _saving(variant_ms: list[float], full_ms: list[float], cfg: BudgetConfig) -> dict:
    """How much faster than the full model, in % of it, with the paired interval."""
    r, lo, hi = ratio_interval(variant_ms, full_ms, confidence=cfg.confidence, n_boot=cfg.n_boot, seed=cfg.seed)
    return {"saving_pct": (1 - r) * 100, "saving_pct_lo": (1 - hi) * 100, "saving_pct_hi": (1 - lo) * 100,
            "median_ms": float(np.median(variant_ms)), "saving_ms": float(np.median(full_ms) - np.median(variant_ms))}


def _tax(se_ms: list[float], plain_ms: list[float], cfg: BudgetConfig) -> dict:
    return se_tax(se_ms, plain_ms, confidence=cfg.confidence, n_boot=cfg.n_boot, seed=cfg.seed)


def _profile_ms(full_path: Path, v: Variants, cfg: BudgetConfig, feed: dict) -> tuple[list[float], list[float], dict]:
    """Per block: kernel ms of the whole block and of its scale Mul alone, from the per-op profile."""
    runner = make_runner(Candidate("full", "fp32", str(full_path), backend=cfg.backend), cfg.threads)
    names = set().union(*(b.nodes for b in v.blocks))
    prof = profile_runner(runner, feed, iters=cfg.profile_iters, model_path=str(full_path), se_nodes=names)
    block, scale = [0.0] * len(v), [0.0] * len(v)
    mixed = 0
    for row in prof["nodes"]:
        covers = set(row["original"])
        owner = next((b for b in v.blocks if covers and covers <= b.nodes), None)
        if owner is None:
            mixed += bool(covers & names)
            continue
        block[owner.index] += row["ms"]
        if covers == {owner.scale}:
            scale[owner.index] += row["ms"]
    return block, scale, {"total_ms": prof["total_ms"], "run_ms": prof["run_ms"], "mixed_kernels": mixed,
                          "iters": cfg.profile_iters}


# --------------------------------------------------------------------------- the run


def run_budget(model_path: str | Path, out_dir: str | Path, cfg: BudgetConfig, *, eval_source: str | Path | None,
               calib_source: str | Path | None = None, data: DataOptions | None = None, synthetic: bool = False,
               synthetic_source: bool = False, log: Log | None = None) -> dict:
    """Measure every SE block of ``model_path``, choose a mix under ``cfg.budget_pct`` and write
    ``out_dir/se_budget.onnx`` (+ sidecar, + ``se_budget_front.png``); return the sidecar's content.

    ``synthetic``: generate random evaluation data; ``synthetic_source``: ``eval_source`` holds random data
    saved earlier (the pipeline's synthetic eval.npz), so the results are labelled synthetic as well.
    Raises :class:`BudgetError` (nothing written) when no measured mix meets the budget."""
    say = log or (lambda msg: None)
    data = data or DataOptions()
    if not capabilities(cfg.backend).profiling:
        say(f"the {cfg.backend} backend has no per-op profiler: every block is timed")
    model = load_onnx(model_path)
    out = prepare_directory(out_dir)
    v = Variants(model)
    n = len(v)
    say(f"{n} SE blocks found")
    ev = load_for_model(eval_source, model_path, data, role="evaluation", size=cfg.eval_size, synthetic=synthetic)
    calib = (load_for_model(calib_source, model_path, data, role="calibration", size=cfg.calib_size)
             if calib_source is not None else ev)
    notes = list(ev.warnings)
    is_synthetic = ev.is_synthetic or synthetic_source
    if is_synthetic:
        notes.insert(0, SYNTHETIC_NOTE)

    fixed = model_io(model_path, data.input_shape)[1][0]  # a model with a fixed batch takes only that
    batch = fixed if isinstance(fixed, int) and fixed > 0 else min(64, len(calib))
    stats = v.gate_stats(list(calib.batches(batch, drop_last=True)))
    means = [s.pop("mean_gate") for s in stats]

    full = v.full()
    plain = ablate_se(model)
    ref = run_model(full, ev)
    ref = ref.reshape(ref.shape[0], -1)
    labels = _labels(ev, ref.shape[1])
    if labels is None:
        notes.append(UNLABELLED_NOTE)
    full_fig = _figures(ref, ref, labels)

    # proofs: normalization and the removal edit are exact
    orig = run_model(model, ev).reshape(ref.shape)
    norm_err = compare_arrays(orig, ref).rel_max_abs
    all_removed = v.build([Fate.remove] * n)
    removal_err = compare_arrays(run_model(plain, ev).reshape(ref.shape),
                                 run_model(all_removed, ev).reshape(ref.shape)).rel_max_abs
    if not (norm_err <= EXACT_TOLERANCE and removal_err <= EXACT_TOLERANCE):
        raise GraphPassError(f"the budget's variants are not exact (normalized copy error {norm_err:.2g}, every block "
                             f"removed vs the plain twin {removal_err:.2g} of the output scale): nothing written")
    plain_fig = _figures(run_model(plain, ev).reshape(ref.shape), ref, labels)
    plain_fig["loss"] = _measured(plain_fig, full_fig)

    blocks = []
    variant_models: dict[tuple[int, Fate], onnx.ModelProto] = {}
    for b, st, mean in zip(v.blocks, stats, means):
        say(f"block {b.index + 1}/{n} {b.label}: accuracy with it removed and folded")
        row = {"index": b.index, "block": b.label, "channels": b.channels, "position": b.position, "gate": st}
        for fate in (Fate.remove, Fate.fold):
            m = v.only(b.index, fate, means)
            variant_models[(b.index, fate)] = m
            fig = _figures(run_model(m, ev).reshape(ref.shape), ref, labels)
            fig["loss"] = _measured(fig, full_fig)
            fig["estimate"] = list(_estimate(fig, full_fig))
            row[fate.value] = {"accuracy": fig}
        row["fold"]["into_producer"] = (len(variant_models[(b.index, Fate.fold)].graph.node)
                                        == len(variant_models[(b.index, Fate.remove)].graph.node))
        exact = st["channel_std_max"] <= 1e-7
        row["fold"]["exact_claimed"] = exact
        if exact:  # a constant gate folds exactly: prove it
            err = row["fold"]["accuracy"]["rel_max_abs"]
            row["fold"]["exact"] = err <= EXACT_TOLERANCE
            if not row["fold"]["exact"]:
                raise GraphPassError(f"block {b.label}: its gate is constant but folding it changed the output by "
                                     f"{err:.2g} of the output scale: nothing written")
        blocks.append(row)

    with tempfile.TemporaryDirectory(prefix="se-budget-") as tmp:
        tmpd = Path(tmp)

        def path_of(key: str, m: onnx.ModelProto) -> Path:
            p = tmpd / f"{key}.onnx"
            if not p.exists():
                save_onnx(m, p)
            return p

        full_p, plain_p = path_of("full", full), path_of("plain", plain)
        feed_runner = make_runner(Candidate("full", "fp32", str(full_p), backend=cfg.backend), cfg.threads)
        with feed_runner:
            feed = make_feed(feed_runner, cfg.batch, cfg.seed)
        if capabilities(cfg.backend).profiling:
            say("per-op profile of the full model")
            prof_block, prof_scale, prof = _profile_ms(full_p, v, cfg, feed)
            order = sorted(range(n), key=lambda i: -prof_block[i])
            top = order[:cfg.time_top]
        else:
            prof_block, prof_scale, prof = [0.0] * n, [0.0] * n, {}
            order, top = list(range(n)), list(range(n))
        for rank, i in enumerate(order):
            blocks[i].update(profile_ms=prof_block[i], scale_profile_ms=prof_scale[i], rank=rank + 1, timed=i in top)

        say(f"timing the full model, the plain twin and {len(top)} block(s) removed/folded, interleaved")
        paths = {"full": full_p, "plain": plain_p}
        for i in top:
            for fate in (Fate.remove, Fate.fold):
                paths[f"{fate.value}{i}"] = path_of(f"{fate.value}{i}", variant_models[(i, fate)])
        ms = _time(paths, cfg)
        full_tax = _tax(ms["full"], ms["plain"], cfg)
        say(f"full model: SE tax {full_tax['tax_pct']:+.1f}% [{full_tax['tax_pct_lo']:+.1f}, "
            f"{full_tax['tax_pct_hi']:+.1f}]")

        # costs in ms of the full model's latency: measured for the timed blocks, the profile (scaled to
        # the timed blocks' measured/profiled ratio) for the others
        measured = {i: {f: _saving(ms[f"{f.value}{i}"], ms["full"], cfg) for f in (Fate.remove, Fate.fold)}
                    for i in top}
        prof_sum = sum(prof_block[i] for i in top)
        scale = (sum(max(0.0, measured[i][Fate.remove]["saving_ms"]) for i in top) / prof_sum
                 if top and prof_sum > 0 else 1.0)
        scale = scale if scale > 0 else 1.0
        options = []
        for i, row in enumerate(blocks):
            if i in measured:
                for f in (Fate.remove, Fate.fold):
                    row[f.value]["latency"] = measured[i][f]
                w = max(0.0, measured[i][Fate.remove]["saving_ms"])
                fold_res = min(w, max(0.0, measured[i][Fate.remove]["saving_ms"] - measured[i][Fate.fold]["saving_ms"]))
                row["cost_source"] = "timed"
            else:
                w = prof_block[i] * scale
                fold_res = 0.0 if row["fold"]["into_producer"] else min(w, prof_scale[i] * scale)
                row["cost_source"] = "profile"
            row["cost_ms"], row["fold_cost_ms"] = w, fold_res
            options.append({Fate.keep: Option(w, (0.0, 0.0)), Fate.fold: Option(fold_res, tuple(row["fold"]["accuracy"]["estimate"])),
                            Fate.remove: Option(0.0, tuple(row["remove"]["accuracy"]["estimate"]))})

        mixes = front(options, full_tax["tax_pct"])
        result = {
            "artifact": "onnx", "kind": "se-budget", "source_model": str(Path(model_path).resolve()),
            "source_sha256": sha256_file(model_path), "budget_pct": cfg.budget_pct, "backend": str(cfg.backend),
            "batch": cfg.batch, "settings": cfg.to_dict(), "synthetic": is_synthetic,
            "labelled": labels is not None,
            "loss_metric": "top-1 drop (pt)" if labels is not None else "disagreement with the full model (pt)",
            "estimate_metric": "sum of per-block disagreement with the full model (pt)",
            "data": {"evaluation": ev.describe(), "gate_statistics_from": "calibration" if calib is not ev
                     else "evaluation", "samples": int(ref.shape[0])},
            "notes": notes,
            "proofs": {"normalized_vs_original_rel_max_abs": norm_err,
                       "each_block_removed_vs_plain_twin_rel_max_abs": removal_err, "tolerance": EXACT_TOLERANCE},
            "profile": prof, "cost_scale": scale,
            "full": {"accuracy": full_fig, "tax": full_tax},
            "plain": {"accuracy": plain_fig, "loss": plain_fig["loss"]},
            "blocks": blocks, "front": [m.to_dict() for m in _shown(mixes)], "tries": [],
        }

        # rank the mixes by their estimates, measure the accuracy of the best few (cheap), time the most
        # accurate (costly) against the plain twin; a miss lowers the target by the miss
        target, tried, chosen = cfg.budget_pct, set(), None
        checked: dict[tuple, tuple[onnx.ModelProto, dict, float]] = {}
        result["checked"] = []
        for attempt in range(cfg.max_tries):
            cands = [x for x in ranked(mixes, target) if x.fates not in tried][:cfg.accuracy_checks]
            if not cands:
                if attempt == 0:
                    raise BudgetError(f"budget {cfg.budget_pct:g}% cannot be met: "
                                      f"{achievable(mixes, cfg.budget_pct)}; nothing written")
                break
            for c in cands:
                if c.fates not in checked:
                    mm = v.build(c.fates, means)
                    fig = _figures(run_model(mm, ev).reshape(ref.shape), ref, labels)
                    checked[c.fates] = (mm, fig, _measured(fig, full_fig))
                    result["checked"].append({**c.to_dict(), "accuracy": fig, "loss": checked[c.fates][2]})
            ok = [c for c in cands if cfg.max_drop is None or checked[c.fates][2] <= cfg.max_drop]
            if not ok:
                best = min(checked[c.fates][2] for c in cands)
                raise BudgetError(f"no mix within the budget of {cfg.budget_pct:g}% keeps the loss within --max-drop "
                                  f"{cfg.max_drop:g}: the best of {len(cands)} measured loses {best:.2f} "
                                  f"({result['loss_metric']}); nothing written")
            pick = min(ok, key=lambda c: (checked[c.fates][2], 100.0 - (checked[c.fates][1]["agreement"] or 0.0),
                                          c.changed, c.tax_pct))
            tried.add(pick.fates)
            m, fig, loss = checked[pick.fates]
            p = path_of(f"try{attempt}", m)
            say(f"timing mix {attempt + 1}: {_describe(pick)} (estimated SE tax {pick.tax_pct:+.1f}%, measured "
                f"loss {loss:.2f}, best of {len(cands)} checked for accuracy)")
            tms = _time({"mix": p, "plain": plain_p, "full": full_p}, cfg)
            tax = _tax(tms["mix"], tms["plain"], cfg)
            met = tax["tax_pct"] <= cfg.budget_pct
            entry = {**pick.to_dict(), "tax": tax, "full_tax": _tax(tms["full"], tms["plain"], cfg), "accuracy": fig,
                     "loss": loss, "met": met}
            result["tries"].append(entry)
            say(f"  measured SE tax {tax['tax_pct']:+.1f}% [{tax['tax_pct_lo']:+.1f}, {tax['tax_pct_hi']:+.1f}] "
                f"({'meets' if met else 'misses'} the budget)")
            if met:
                chosen = (pick, m, entry)
                break
            # the estimates were this far off: aim lower by as much (never below 0, the plain twin's tax)
            target = max(0.0, target - (max(0.0, tax["tax_pct"] - pick.tax_pct) or 0.25 * max(cfg.budget_pct, 1.0)))
        if chosen is None:
            best = min(result["tries"], key=lambda t: t["tax"]["tax_pct"]) if result["tries"] else None
            got = (f"the lowest measured was {best['tax']['tax_pct']:.1f}% [{best['tax']['tax_pct_lo']:.1f}, "
                   f"{best['tax']['tax_pct_hi']:.1f}] at a loss of {best['loss']:.2f}" if best else "nothing measured")
            raise BudgetError(f"budget {cfg.budget_pct:g}% not met after {len(result['tries'])} timed mix(es): {got}; "
                              f"every block removed (the plain twin) has no SE tax at a loss of {plain_fig['loss']:.2f}; "
                              "nothing written")
        pick, m, entry = chosen
        for row, fate in zip(blocks, pick.fates):
            row["fate"] = fate.value
        result["chosen"] = {**entry, "fates": [f.value for f in pick.fates]}

        with staged_artifact(out / MODEL_NAME) as staged:
            save_onnx(m, staged.path)
            result["onnx_sha256"] = sha256_file(staged.path)
            png = front_png(result)
            if png:
                (staged.staging / PLOT_NAME).write_bytes(png)
                result["plot"] = PLOT_NAME
            staged.write_sidecar(result)
    return result


def _shown(mixes: list[Mix]) -> list[Mix]:
    """The front as shown: each step down in estimated loss once (the search also keeps mixes that only
    change fewer blocks at equal loss, for its tie-break)."""
    out: list[Mix] = []
    for m in mixes:  # lowest tax first
        if out and m.loss[0] >= out[-1].loss[0] - 1e-9:
            continue
        out.append(m)
    return out


def _describe(mix: Mix) -> str:
    counts = {f: sum(x is f for x in mix.fates) for f in Fate}
    return ", ".join(f"{counts[f]} {f.value}" for f in Fate)


__all__ = ["BudgetConfig", "MODEL_NAME", "PLOT_NAME", "SYNTHETIC_NOTE", "UNLABELLED_NOTE", "run_budget"]
