"""Eager PyTorch runner: the reference every exported or built engine is compared with."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from se_deploy._util import parse_shape
from se_deploy.errors import EngineError, UsageError, first_line
from se_deploy.models import create_model
from se_deploy.runtime.base import Capabilities, CopySplit, IOSpec, Runner

_DTYPES = ("float32", "float16", "bfloat16")


@dataclass(frozen=True)
class TorchConfig:
    """How to run an eager PyTorch model.

    ``input_shape``: the full input shape, batch first. With ``dynamic_batch`` the batch
    dimension accepts any size. ``threads``: intra-op threads for this runner (0 keeps
    PyTorch's setting); restored when the runner is released.
    """

    input_shape: tuple[int, ...] = (1, 3, 224, 224)
    input_name: str = "input"
    output_name: str = "output"
    dynamic_batch: bool = True
    device: str = "cpu"
    dtype: str = "float32"
    threads: int = 0

    def __post_init__(self) -> None:
        shape = tuple(self.input_shape)
        if len(shape) < 2 or any(not isinstance(d, int) or isinstance(d, bool) or d <= 0 for d in shape):
            raise UsageError(f"input shape must be positive integers, batch first, e.g. (1, 3, 224, 224); got {shape}")
        object.__setattr__(self, "input_shape", shape)
        if self.dtype not in _DTYPES:
            raise UsageError(f"torch dtype {self.dtype!r} is not one of {', '.join(_DTYPES)}")
        if self.threads < 0:
            raise UsageError(f"threads must be >= 0, got {self.threads}")
        if not self.device or not (self.device == "cpu" or self.device.startswith("cuda")):
            raise UsageError(f"torch device {self.device!r} is not 'cpu' or 'cuda[:N]'")
        if not self.input_name or not self.output_name:
            raise UsageError("input and output names must not be empty")


class TorchRunner(Runner):
    """Runs an ``nn.Module`` (or a zoo model by name) under ``torch.inference_mode``.

    Inputs and outputs use float32 numpy arrays like the other runners, whatever
    ``dtype`` the model computes in, so results compare directly.
    """

    backend = "torch"
    capabilities = Capabilities(threads=True)
    config_class = TorchConfig
    #: Options that build the zoo model rather than configure the run.
    MODEL_OPTIONS = ("num_classes", "reduction", "se_gate", "se_fc")

    @classmethod
    def from_options(cls, artifact, options):
        options = dict(options)
        model_kwargs = {k: options.pop(k) for k in list(options) if k in cls.MODEL_OPTIONS}
        if isinstance(options.get("input_shape"), str):
            options["input_shape"] = parse_shape(options["input_shape"])
        runner = super().from_options(artifact, options)
        runner._model_kwargs = model_kwargs
        return runner

    def __init__(self, model, config: TorchConfig | None = None, **model_kwargs) -> None:
        super().__init__()
        self.config = config or TorchConfig()
        self._source = model
        self._model_kwargs = model_kwargs
        self._model = None
        self._outputs: list[IOSpec] | None = None
        self._saved_threads: int | None = None

    # lifecycle -------------------------------------------------------------
    def activate(self) -> None:
        import torch

        cfg = self.config
        model = self._source
        if isinstance(model, str):
            model = create_model(model, **self._model_kwargs)
        elif not isinstance(model, torch.nn.Module):
            raise UsageError(f"the torch backend runs an nn.Module or a zoo model name, got {type(model).__name__}")
        if cfg.device.startswith("cuda") and not torch.cuda.is_available():
            raise EngineError(f"torch device {cfg.device!r} requested, but this PyTorch build sees no CUDA GPU")
        self._dtype = getattr(torch, cfg.dtype)
        self._model = model.eval().to(device=cfg.device, dtype=self._dtype)
        if cfg.threads:
            self._saved_threads = torch.get_num_threads()
            torch.set_num_threads(cfg.threads)
        # One forward on zeros validates the model and fixes the output metadata.
        probe = np.zeros(cfg.input_shape, dtype=np.float32)
        try:
            out, _ = self._forward(probe)
        except Exception as e:  # the base class releases the runner (thread count included)
            raise EngineError(f"the model does not run on input shape {cfg.input_shape}: {first_line(e)}") from None
        batch = "batch" if cfg.dynamic_batch else cfg.input_shape[0]
        self._outputs = [IOSpec(cfg.output_name, (batch, *out.shape[1:]), "float32")]

    def deactivate(self) -> None:
        if self._saved_threads is not None:
            import torch

            torch.set_num_threads(self._saved_threads)
            self._saved_threads = None
        self._model = None

    # metadata --------------------------------------------------------------
    @property
    def inputs(self) -> list[IOSpec]:
        shape = self.config.input_shape
        batch = "batch" if self.config.dynamic_batch else shape[0]
        return [IOSpec(self.config.input_name, (batch, *shape[1:]), "float32")]

    @property
    def outputs(self) -> list[IOSpec]:
        if self._outputs is None:
            raise EngineError("torch runner is not active")
        return list(self._outputs)

    def describe(self) -> dict:
        import torch

        # OMP_WAIT_POLICY matters when this runner is timed interleaved with onnxruntime: with
        # libgomp's default busy-waiting, both thread pools fight for the same cores.
        return {"backend": self.backend, "version": torch.__version__, "device": self.config.device,
                "dtype": self.config.dtype, "threads": torch.get_num_threads(),
                "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default")}

    # inference -------------------------------------------------------------
    def _forward(self, x: np.ndarray) -> tuple[np.ndarray, CopySplit | None]:
        import torch

        on_gpu = self.config.device.startswith("cuda")
        t0 = time.perf_counter()
        xt = torch.from_numpy(np.ascontiguousarray(x)).to(device=self.config.device, dtype=self._dtype)
        if on_gpu:
            torch.cuda.synchronize()
        t1 = time.perf_counter()
        with torch.inference_mode():
            y = self._model(xt)
        if isinstance(y, (tuple, list)):
            y = y[0]
        if on_gpu:
            torch.cuda.synchronize()
        t2 = time.perf_counter()
        out = y.detach().to(device="cpu", dtype=torch.float32).numpy()
        t3 = time.perf_counter()
        split = CopySplit(h2d_ms=(t1 - t0) * 1e3, compute_ms=(t2 - t1) * 1e3, d2h_ms=(t3 - t2) * 1e3) if on_gpu else None
        return out, split

    def _infer(self, feed: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], CopySplit | None]:
        if self._model is None:
            raise EngineError("torch runner is not active")
        try:
            out, split = self._forward(feed[self.config.input_name])
        except Exception as e:
            raise EngineError(f"PyTorch inference failed: {first_line(e)}") from None
        return {self.config.output_name: out}, split


__all__ = ["TorchConfig", "TorchRunner"]
