"""The se-deploy command line: a thin typer app.

Commands live in ``se_deploy/commands/<name>.py``; each module exposes ``register(command)``
and never imports this file. This file only wires them together and turns errors into one line and an exit code:
a :class:`SeDeployError` prints ``error: <message>`` and exits with its code; Ctrl-C exits
130 ("interrupted") and SIGTERM 143 ("terminated"), both after the same cleanup (temporary files
removed, locks released); an unexpected exception is an internal bug and says how to get the traceback.
"""

from __future__ import annotations

import functools
import os
import signal
import sys
from typing import Callable

import typer

from se_deploy import __version__
from se_deploy.console import console, error
from se_deploy.errors import SeDeployError, Terminated, first_line

app = typer.Typer(
    name="se-deploy",
    help="Deploy Squeeze-and-Excitation CNNs: export to ONNX, fuse SE blocks, quantize to INT8/FP16, "
    "build TensorRT engines and measure the SE latency tax against the plain backbone.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def fail(message: str, code: int) -> "typer.Exit":
    error(message)
    return typer.Exit(code)


def handle_errors(fn: Callable) -> Callable:
    """Wrap a command so user errors become one line plus a non-zero exit code."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except BrokenPipeError:
            # the reader of our output went away (`se-deploy inspect --json | head`): nothing left to say to it,
            # and nothing to report; stdout is pointed at devnull so the interpreter's final flush stays quiet
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise typer.Exit(141) from None
        except SeDeployError as e:
            raise fail(str(e), e.exit_code) from None
        except KeyboardInterrupt as e:
            raise fail(*_interruption(e)) from None
        except Exception as e:  # an internal bug: say so, without a traceback unless asked
            if os.environ.get("SE_DEPLOY_DEBUG"):
                raise
            raise fail(f"internal error: {type(e).__name__}: {_short(e)} (set SE_DEPLOY_DEBUG=1 for the traceback)",
                       70) from None

    return wrapper


def _short(e: BaseException, limit: int = 300) -> str:
    """The first line of ``e``, cut to ``limit`` characters: the error stays one line even when a library
    puts a whole model into its message."""
    text = first_line(e)
    return text if len(text) <= limit else text[:limit] + "..."


def _interruption(e: KeyboardInterrupt) -> tuple[str, int]:
    return ("terminated", 128 + signal.SIGTERM) if isinstance(e, Terminated) else ("interrupted", 130)


def _on_sigterm(signum, frame) -> None:
    raise Terminated()


def command(name: str | None = None, **kwargs) -> Callable:
    """``@command("export")``: register a typer command wrapped by :func:`handle_errors`."""

    def deco(fn: Callable) -> Callable:
        app.command(name, **kwargs)(handle_errors(fn))
        return fn

    return deco


def _version_callback(value: bool) -> None:
    if value:
        console.print(f"se-deploy {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version_callback, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """se-deploy: SE-network deployment toolkit."""


def _register_commands() -> None:
    # Each command module imports its heavy dependencies inside the command body,
    # so `se-deploy --help` stays fast and works without torch/tensorrt.
    from se_deploy.commands import bench, budget, doctor, engines, export, fuse, pipeline, quantize

    for mod in (export, fuse, quantize, engines, doctor, bench, pipeline, budget):
        mod.register(command)


_register_commands()


def main() -> None:
    # SIGTERM unwinds like Ctrl-C (every finally and context manager runs), instead of killing the process
    # with temporary files and directories left behind.
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        app()
    except KeyboardInterrupt as e:  # pragma: no cover - outside a command body
        message, code = _interruption(e)
        error(message)
        sys.exit(code)
