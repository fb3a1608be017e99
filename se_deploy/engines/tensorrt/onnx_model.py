"""Turning ``--batch min:opt:max`` into the optimization-profile shapes of every graph input (pure Python).

What the ONNX already carries (Q/DQ, FP16) and its inputs come from :mod:`se_deploy.onnx_io`.
"""

from __future__ import annotations

from se_deploy.errors import UsageError
from se_deploy.onnx_io import GraphInput


def profile_shapes(inputs: list[GraphInput], batch: tuple[int, int, int] | None
                   ) -> dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]:
    """min/opt/max shape for each input that needs a profile; ``{}`` for a fully static model.

    Only dim 0 (the batch) may be dynamic. A static model with ``--batch`` is refused, since
    TensorRT cannot change a batch fixed in the ONNX.
    """
    shapes = {}
    for inp in inputs:
        rest = inp.dims[1:]
        if any(not isinstance(d, int) or d <= 0 for d in rest):
            raise UsageError(f"input {inp.name!r} has dynamic dimensions other than the batch {inp.dims}: "
                             "re-export it with fixed spatial sizes")
        if not inp.dims:
            continue
        b0 = inp.dims[0]
        if isinstance(b0, int) and b0 > 0:
            if batch is not None and batch != (b0, b0, b0):
                raise UsageError(f"input {inp.name!r} has a fixed batch of {b0} in the ONNX, so --batch "
                                 f"{':'.join(map(str, batch))} cannot apply: re-export with a dynamic batch")
            continue
        lo, opt, hi = batch or (1, 1, 1)
        shapes[inp.name] = ((lo, *rest), (opt, *rest), (hi, *rest))
    return shapes


def static_shape(inp: GraphInput, batch: int = 1) -> tuple[int, ...]:
    return tuple(d if isinstance(d, int) and d > 0 else batch for d in inp.dims)
