"""One error hierarchy for se-deploy.

Every user-facing failure raises a subclass of :class:`SeDeployError`. The CLI prints
its message as a single line and exits with its ``exit_code``. Bugs inside se-deploy
raise :class:`InternalError` (deliberately *not* a SeDeployError) so they are never
mistaken for bad input.
"""

from __future__ import annotations


class SeDeployError(Exception):
    """Base for every error caused by user input or environment."""

    exit_code = 1


class UsageError(SeDeployError):
    """Bad option values or incompatible option combinations."""

    exit_code = 2


class InputError(SeDeployError):
    """A file or value given by the user cannot be used (missing, corrupt, wrong format)."""

    exit_code = 2


class ConfigError(UsageError):
    """A pipeline config has an unknown key or a bad value."""


class ModelError(SeDeployError):
    """A model cannot be created or its weights cannot be loaded."""

    exit_code = 3


class ExportError(SeDeployError):
    """PyTorch -> ONNX export failed or did not pass parity."""

    exit_code = 4


class GraphPassError(SeDeployError):
    """A graph pass failed or could not prove its result."""

    exit_code = 5


class CalibrationError(SeDeployError):
    """Calibration data is missing, malformed or insufficient."""

    exit_code = 6


class QuantizationError(SeDeployError):
    """INT8/FP16 conversion failed, or the result missed its accuracy budget."""

    exit_code = 7


class EngineError(SeDeployError):
    """An engine could not be built, loaded or run."""

    exit_code = 8


class MissingDependencyError(SeDeployError):
    """An optional dependency (tensorrt, pycuda, timm, ...) is not installed."""

    exit_code = 9


class BenchmarkError(SeDeployError):
    """A benchmark could not run."""

    exit_code = 10


class BudgetError(SeDeployError):
    """No mix of kept, folded and removed SE blocks meets the SE-tax budget (se-budget)."""

    exit_code = 11


class BusyError(SeDeployError):
    """An output directory is in use by another run: retry later, or wait for it (``--wait``)."""

    exit_code = 75  # EX_TEMPFAIL: a temporary condition, worth retrying


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived. Raised from the signal handler so every ``finally`` and context manager
    unwinds exactly as for Ctrl-C (temporary files removed, locks released)."""


class InternalError(Exception):
    """A bug in se-deploy itself, not a user error."""


def first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message, or its type name: what a one-line error quotes."""
    for line in str(exc).strip().splitlines():
        if line.strip():
            return line.strip()
    return type(exc).__name__
