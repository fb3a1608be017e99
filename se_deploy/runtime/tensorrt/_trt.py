"""Loading TensorRT lazily, and marking which TensorRT major version a code path serves.

Conventions that every module in this package follows (the static API check in
``tools/trt_api_check.py`` relies on them, see its docstring):

* The ``tensorrt`` module is always bound to the local name ``trt``, obtained from
  :func:`load_tensorrt` inside the function that needs it. Nothing imports TensorRT at
  module import time.
* The parsed major version lives in a variable named ``major`` (from :func:`trt_major`).
  Code that differs per version branches on it with a plain comparison
  (``if major >= 11:`` / ``if major == 10:``), or sits in a function decorated with
  :func:`serves` naming the majors it runs on.
* Every TensorRT object is held in a variable, parameter or ``self`` attribute whose
  TensorRT type is decidable: created by ``trt.<Class>(...)``, returned by a TensorRT
  factory method of a known object (``builder.create_builder_config()``), or annotated
  with the TensorRT class (``config: "trt.IBuilderConfig"``).
* A class that TensorRT calls back (a calibrator) derives from ``trt.<Class>``, or is
  written once in a factory decorated with :func:`trt_bases`, whose first parameter is
  the TensorRT base class and whose decorator names every class it may be.
"""

from __future__ import annotations

import functools
from typing import Callable, TypeVar

from se_deploy._util import lazy_import
from se_deploy.errors import EngineError, InternalError

TENSORRT_INSTALL_HINT = ("on a Jetson it ships with JetPack (`sudo apt install python3-libnvinfer`); on x86 with an "
                         "NVIDIA GPU `pip install tensorrt`; without TensorRT use the printed trtexec command on the "
                         "target device")

#: TensorRT majors se-deploy builds and runs with: 8 (8.6 only: JetPack 6.0), 10 and 11.
SUPPORTED_MAJORS = (8, 10, 11)
#: The oldest TensorRT release supported. JetPack 6.0 (L4T R36.2/R36.3) ships 8.6.2; JetPack 5 ships 8.4/8.5,
#: whose API lacks parts of the name-based I/O, and no 8.5 API manifest is checked.
MIN_VERSION = (8, 6)

F = TypeVar("F", bound=Callable)


def serves(*majors: int, dla: bool = False) -> Callable[[F], F]:
    """Mark a function as running only on the given TensorRT major versions.

    ``dla=True`` marks a function that callers reach only after checking that the device
    has DLA cores (``builder.num_DLA_cores``), so DLA names inside it are guarded.
    The marker changes nothing at run time; the static API check reads it.
    """
    bad = [m for m in majors if m not in SUPPORTED_MAJORS]
    if bad or not majors:
        raise ValueError(f"serves() takes TensorRT majors from {SUPPORTED_MAJORS}, got {majors}")

    def deco(fn: F) -> F:
        fn.__trt_majors__ = tuple(majors)  # type: ignore[attr-defined]
        fn.__trt_dla__ = dla  # type: ignore[attr-defined]
        return fn

    return deco


def trt_bases(*names: str) -> Callable[[F], F]:
    """Declare the TensorRT classes a class factory's first parameter (the base class) may be.

    The factory writes its class once, ``class Calibrator(base): ...``, for several TensorRT
    bases. TensorRT calls a method of such a class only if the base has a method of that
    name, so the static API check verifies every method against each declared base in every
    TensorRT version that serves the factory. At run time the factory refuses any other base,
    so the declaration cannot fall behind the callers.
    """
    if not names or not all(isinstance(n, str) and n.isidentifier() for n in names):
        raise ValueError(f"trt_bases() takes TensorRT class names, got {names}")

    def deco(factory: F) -> F:
        @functools.wraps(factory)
        def checked(base, *args, **kwargs):
            if getattr(base, "__name__", None) not in names:
                raise InternalError(f"{factory.__qualname__} got base class {base!r}, but declares only "
                                    f"{', '.join(names)} (@trt_bases): the API check verified only those")
            return factory(base, *args, **kwargs)

        checked.__trt_bases__ = names  # type: ignore[attr-defined]
        return checked  # type: ignore[return-value]

    return deco


def load_tensorrt(purpose: str = "building or running TensorRT engines"):
    """Import ``tensorrt`` or raise one clear MissingDependencyError."""
    return lazy_import("tensorrt", install_hint=TENSORRT_INSTALL_HINT, purpose=purpose)


def parse_major(version: str) -> int:
    """``"10.3.0.30"`` -> 10."""
    head = str(version).strip().split(".")[0]
    if not head.isdigit():
        raise ValueError(f"not a TensorRT version string: {version!r}")
    return int(head)


def parse_version(version: str) -> tuple[int, ...]:
    """``"10.3.0.30"`` -> (10, 3, 0, 30); ``"8.6"`` -> (8, 6)."""
    parts = str(version).strip().split(".")
    if not parts or not all(p.isdigit() for p in parts):
        raise ValueError(f"not a TensorRT version string: {version!r}")
    return tuple(int(p) for p in parts)


def unsupported_version(version: str) -> str | None:
    """Why TensorRT ``version`` cannot be used (one line), or None when it is supported."""
    parts = parse_version(version)
    if parts[:2] < MIN_VERSION:
        return (f"TensorRT {version} is older than {'.'.join(map(str, MIN_VERSION))}, the oldest se-deploy supports "
                "(JetPack 6.0 brings TensorRT 8.6.2, JetPack 6.1/6.2 bring 10.3, JetPack 7 brings 10.13): "
                "upgrade JetPack (or TensorRT)")
    if parts[0] not in SUPPORTED_MAJORS:
        return (f"TensorRT {version} is not supported: se-deploy builds and runs with TensorRT 8.6, 10.x and 11.x")
    return None


def check_version(trt) -> int:
    """The installed TensorRT's major version; one EngineError line when se-deploy does not support it."""
    why = unsupported_version(str(trt.__version__))
    if why is not None:
        raise EngineError(why)
    return trt_major(trt)


def trt_major(trt) -> int:
    """The installed TensorRT major version, ``int(trt.__version__.split(".")[0])``."""
    return parse_major(trt.__version__)
