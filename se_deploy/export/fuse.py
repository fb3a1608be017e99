"""``se-deploy fuse`` as a library call: read an ONNX, run the requested SE passes with their proofs,
and write the result only when every pass that must hold did.

Calibration data (for the data-driven fold-gates pass) comes in through a loader the caller
passes, so this module stays below calibration in the layer order.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from se_deploy._util import parse_shape, sha256_file
from se_deploy.errors import UsageError
from se_deploy.export import passes as P
from se_deploy.export.se_detect import explain_near_misses
from se_deploy.files import staged_artifact
from se_deploy.onnx_io import load_onnx, model_input, save_onnx

FeedLoader = Callable[[object, tuple], Sequence[Mapping[str, np.ndarray]]]


@dataclass(frozen=True)
class FuseRequest:
    """Which passes to run and how strictly. ``passes``: comma-separated names (None: the default set);
    ``input_shape``: ``NxCxHxW`` for verifying a model with dynamic dimensions; ``calib_feeds``:
    ``(model, input shape) -> [{input: batch}]``, required by fold-gates."""

    passes: str | None = None
    fold_gates: bool = False
    ablate: bool = False
    calib_feeds: FeedLoader | None = None
    input_shape: str | None = None
    exact_tolerance: float = 1e-5
    fold_tolerance: float = 1e-2
    min_top1: float = 0.99
    gate_threshold: float = 0.02

    def pass_names(self) -> list[str]:
        if self.ablate and (self.fold_gates or self.passes):
            raise UsageError("--ablate-se makes the plain twin; it does not combine with --passes or --fold-gates")
        if self.fold_gates and self.calib_feeds is None:
            raise UsageError("--fold-gates needs calibration data: give --calib-data FILE.npz (or an image folder)")
        if self.calib_feeds is not None and not self.fold_gates and "fold-gates" not in (self.passes or ""):
            raise UsageError("--calib-data is only used by --fold-gates")
        if self.ablate:
            return ["ablate-se"]
        names = P.parse_pass_list(self.passes) if self.passes else list(P.DEFAULT_PASSES)
        if self.fold_gates and "fold-gates" not in names:
            names.append("fold-gates")
        if "fold-gates" in names and self.calib_feeds is None:
            raise UsageError("the fold-gates pass needs calibration data: give --calib-data FILE.npz")
        return names

    def options(self) -> P.PassOptions:
        return P.PassOptions(tolerance=self.exact_tolerance, fold_tolerance=self.fold_tolerance,
                             fold_min_top1=self.min_top1, gate_std_threshold=self.gate_threshold)


def fuse_file(model_path: str | Path, output: str | Path, request: FuseRequest, *,
              on_event: Callable[[dict], None] | None = None,
              on_near_miss: Callable[[dict], None] | None = None) -> dict:
    """Run ``request`` on ``model_path`` and write ``output`` with its sidecar (the source and the pass
    report); return the pass report.

    When a data-driven pass (fold-gates) is refused, nothing is written and the report says why
    under ``refused``.
    """
    names = request.pass_names()
    model = load_onnx(model_path)
    options = request.options()
    shape = None
    if request.input_shape:
        shape = parse_shape(request.input_shape)
        options = replace(options, input_shapes={model_input(model, purpose="--input-shape").name: shape})
    feeds = []
    if "fold-gates" in names:
        inp = model_input(model, purpose="--calib-data")
        feeds = list(request.calib_feeds(model, shape or inp.dims))
    if on_near_miss is not None:
        for miss in explain_near_misses(model):
            on_near_miss(miss)
    fused, rep = P.run_passes(model, names, verify=True, options=options, calib_feeds=feeds, on_event=on_event)
    rep["input"] = str(model_path)
    rep["output"] = str(output)
    for e in rep["passes"]:
        if e["name"] == "fold-gates" and e["status"] == "rolled_back":
            rep["refused"] = f"fold-gates refused: {e['reason']}; nothing written"
            return rep
    with staged_artifact(output) as staged:  # the model and its sidecar appear together, or not at all
        save_onnx(fused, staged.path)
        staged.write_sidecar({"artifact": "onnx", "kind": "fused", "source_model": str(Path(model_path).resolve()),
                              "source_sha256": sha256_file(model_path), "onnx_sha256": sha256_file(staged.path),
                              "passes": rep})
    return rep


__all__ = ["FuseRequest", "fuse_file"]
