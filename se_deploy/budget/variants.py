"""The per-block model variants of the SE budget: keep, fold or remove each SE block.

Every variant starts from the same normalized copy of the user's model (``export.se_detect.to_ir``),
so the full model, the plain twin and every mix differ only in the edited blocks. The two edits are
the SE passes' own: removal is ``ablate-se``'s per-block step (the scale Mul bypassed, so the block
input flows on unscaled), folding is ``fold-gates``' per-block step (the gate replaced by a constant
per-channel scale, folded into the producing Conv/BatchNormalization where the input feeds nothing
else). Gate statistics come from ``fold-gates``' collector.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import onnx
import onnx_ir as ir

from se_deploy.errors import GraphPassError
from se_deploy.export.ir_helpers import cleanup, strip_rewrite_tags
from se_deploy.export.passes import _ir
from se_deploy.export.passes.ablate import ablate_block
from se_deploy.export.passes.fold_gates import fold_block, gate_statistics
from se_deploy.export.se_detect import SEBlock, find_matches, find_se_blocks, to_ir

#: A gate value this close to 0 or 1 counts as saturated.
SATURATION_MARGIN = 0.05


class Fate(str, enum.Enum):
    """What happens to one SE block in a variant."""

    keep = "keep"
    fold = "fold"  # gate replaced by its per-channel mean: a constant scale
    remove = "remove"  # scale Mul bypassed: the block is gone

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class BlockRef:
    """One SE block: its index in graph order, its name in the user's graph and in the normalized copy,
    and the normalized copy's node names that make it up (for the per-op profile)."""

    index: int
    label: str  # the scale node as the user's graph names it
    scale: str  # the scale node in the normalized copy
    nodes: frozenset[str]
    channels: int
    position: str
    block: SEBlock


class Variants:
    """Builds variants of one model. ``Variants(model)`` finds its SE blocks once."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self.model = model
        base = to_ir(model)
        matches, _ = find_matches(base)
        if not matches:
            raise GraphPassError("no SE blocks found in the model (see 'se-deploy inspect' and 'se-deploy fuse "
                                 "--explain'): there is nothing to budget")
        user = find_se_blocks(model)
        if len(user) != len(matches):  # both come from the same normalized walk; a mismatch is a bug
            raise GraphPassError(f"SE detection found {len(user)} blocks in the user's graph but {len(matches)} in "
                                 "its normalized copy")
        self.blocks = [BlockRef(i, u.scale_node or m.scale.name, m.scale.name,
                                frozenset(n.name for n in [*m.nodes, m.scale]), u.channels, str(u.position), u)
                       for i, (m, u) in enumerate(zip(matches, user))]

    def __len__(self) -> int:
        return len(self.blocks)

    def gate_stats(self, feeds: Sequence[Mapping[str, np.ndarray]]) -> list[dict]:
        """Per block: the per-channel mean gate (for folding) and the statistics that explain a fold.

        ``mean``/``std``: over every sample and channel; ``channel_std_max``: the largest per-channel
        spread over the samples (0 means the gate is constant and folding is exact); ``saturated``:
        the fraction of gate values within :data:`SATURATION_MARGIN` of 0 or 1.
        """
        irm = to_ir(self.model)
        matches, _ = find_matches(irm)
        per = gate_statistics(irm, matches, feeds)
        out = []
        for b, m in zip(self.blocks, matches):
            g = per[m.scale.name].astype(np.float64)
            std = g.std(axis=0)
            out.append({"mean_gate": g.mean(axis=0).astype(np.float32), "mean": float(g.mean()),
                        "std": float(g.std()), "channel_std_mean": float(std.mean()),
                        "channel_std_max": float(std.max()), "samples": int(g.shape[0]),
                        "saturated": float(np.mean((g <= SATURATION_MARGIN) | (g >= 1 - SATURATION_MARGIN))),
                        "saturated_high": float(np.mean(g >= 1 - SATURATION_MARGIN)),
                        "saturated_low": float(np.mean(g <= SATURATION_MARGIN))})
        return out

    def build(self, fates: Sequence[Fate | str], means: Sequence[np.ndarray | None] = ()) -> onnx.ModelProto:
        """The model with block ``i`` kept, folded to ``means[i]`` or removed, as ``fates[i]`` says."""
        if len(fates) != len(self.blocks):
            raise GraphPassError(f"{len(fates)} fates for {len(self.blocks)} SE blocks")
        want = {b.scale: (Fate(f), means[b.index] if b.index < len(means) else None)
                for b, f in zip(self.blocks, fates) if Fate(f) is not Fate.keep}
        irm = to_ir(self.model)
        done = set()
        for m in _ir.each_match(irm, skip=lambda m: None if m.scale.name in want else "kept"):
            fate, mean = want[m.scale.name]
            done.add(m.scale.name)
            if fate is Fate.remove:
                ablate_block(irm, m)
            else:
                if mean is None:
                    raise GraphPassError(f"block {m.scale.name}: folding needs its mean gate")
                fold_block(irm, m, np.asarray(mean).astype(m.fc1.weight.dtype))
        if done != set(want):
            raise GraphPassError(f"SE blocks not found again while editing: {sorted(set(want) - done)}")
        strip_rewrite_tags(irm)
        cleanup(irm)
        proto = ir.to_proto(irm)
        onnx.checker.check_model(proto)
        return proto

    def full(self) -> onnx.ModelProto:
        return self.build([Fate.keep] * len(self.blocks))

    def only(self, index: int, fate: Fate, means: Sequence[np.ndarray | None] = ()) -> onnx.ModelProto:
        fates = [Fate.keep] * len(self.blocks)
        fates[index] = fate
        return self.build(fates, means)


__all__ = ["BlockRef", "Fate", "SATURATION_MARGIN", "Variants"]
