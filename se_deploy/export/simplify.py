"""Graph simplification with onnxsim (default) or onnxslim."""

from __future__ import annotations

from se_deploy._util import lazy_import
from se_deploy.errors import MissingDependencyError, UsageError, first_line
from se_deploy.names import Simplifier


def require_simplifier(simplifier: str) -> None:
    """Fail now, in one line, when the chosen simplifier is unknown or not installed (before an export runs)."""
    if simplifier not in Simplifier.values():
        raise UsageError(f"simplifier {simplifier!r} is not one of {Simplifier.choices()}")
    lazy_import(str(simplifier), install_hint=f"pip install {simplifier}  (or choose --simplifier "
                f"{'onnxslim' if simplifier == Simplifier.onnxsim else 'onnxsim'}, or --no-simplify)",
                purpose="graph simplification")


def simplify(model, *, simplifier: str = Simplifier.onnxsim, dynamic_batch: bool = False,
             input_shape: tuple[int, ...] | None = None):
    """Return ``(model, info)``. On failure the input model is returned unchanged and ``info['error']`` says why;
    the caller's parity check then runs on whatever graph is kept."""
    if simplifier not in Simplifier.values():
        raise UsageError(f"simplifier {simplifier!r} is not one of {Simplifier.choices()}")
    info: dict = {"simplifier": str(simplifier), "nodes_before": len(model.graph.node)}
    try:
        if simplifier == Simplifier.onnxsim:
            onnxsim = lazy_import("onnxsim", install_hint="pip install onnxsim", purpose="graph simplification")
            kwargs = {}
            if dynamic_batch and input_shape is not None:
                # onnxsim checks its result on random inputs; give it a concrete shape for the symbolic batch.
                kwargs["test_input_shapes"] = {model.graph.input[0].name: list(input_shape)}
            out, ok = onnxsim.simplify(model, **kwargs)
            if not ok:
                info["error"] = "onnxsim could not validate the simplified model; kept the original"
                return model, info
            info["version"] = str(getattr(onnxsim, "__version__", "unknown"))
        else:
            onnxslim = lazy_import("onnxslim", install_hint="pip install onnxslim", purpose="graph simplification")
            out = onnxslim.slim(model)
            info["version"] = str(getattr(onnxslim, "__version__", "unknown"))
    except MissingDependencyError:
        raise
    except Exception as e:  # simplifiers raise many kinds of errors on exotic graphs
        info["error"] = f"{type(e).__name__}: {first_line(e)}"
        return model, info
    info["nodes_after"] = len(out.graph.node)
    return out, info
