"""``se-deploy build-engine``: ONNX -> TensorRT plan, or the exact trtexec command for the device."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer


def _note(msg: str) -> None:
    print(msg, file=sys.stderr)


def run_build_engine(*, onnx: Path, output: Path | None, fp16: bool, int8: bool, calib_data: str | None,
                     calibrator: str | None, calib_cache: str | None, calib_batch_size: int, calib_size: int | None,
                     preprocess: str, batch: str | None,
                     workspace: int | None, timing_cache: str | None, opt_level: int | None, dla_core: int | None,
                     gpu_fallback: bool, print_trtexec: bool, trt_version: int | None, cuda_api: str | None) -> None:
    """The command body: validate, then build, or print the trtexec equivalent (stdout) and explain (one line)."""
    from se_deploy.engines.tensorrt import builder as trt_builder
    from se_deploy.runtime.tensorrt._trt import trt_major
    from se_deploy.engines.tensorrt.config import BuildConfig, parse_batch_range
    from se_deploy.runtime.tensorrt.cuda import get_cuda_api
    from se_deploy.errors import EngineError, MissingDependencyError, UsageError

    cfg = BuildConfig(
        onnx=str(onnx), output=str(output or onnx.with_suffix(".plan")), fp16=fp16, int8=int8,
        calib_data=calib_data, calibrator=calibrator.lower() if calibrator else None, calib_cache=calib_cache,
        calib_batch_size=calib_batch_size, calib_size=calib_size, preprocess=preprocess,
        batch=parse_batch_range(batch) if batch is not None else None,
        workspace_mib=workspace, timing_cache=timing_cache, opt_level=opt_level, dla_core=dla_core,
        gpu_fallback=gpu_fallback, trt_version=trt_version, cuda_api=cuda_api)
    trt = trt_builder.installed_tensorrt()
    installed = trt_major(trt) if trt is not None else None
    if print_trtexec:
        major = cfg.trt_version or installed or 10
        prep = trt_builder.prepare_build(cfg, major, log=_note)
        if major == 10:
            here = str(trt.__version__) if trt is not None and installed == major else None
            trt_builder.write_trtexec_calib_cache(prep, trt_version=here, log=_note)
        _note(f"# trtexec equivalent for TensorRT {major}.x: {prep.plan.describe()}")
        print(prep.trtexec.line())
        return
    reason = None
    if trt is None:
        reason = "TensorRT is not installed here"
        if cfg.dla_core is not None:
            reason = "--dla-core needs TensorRT on a device with DLA cores, and TensorRT is not installed here"
    elif cfg.trt_version is not None and cfg.trt_version != installed:
        raise UsageError(f"--trt-version {cfg.trt_version} given, but TensorRT {trt.__version__} is installed "
                         "(use --print-trtexec to get the command for another TensorRT version)")
    else:
        try:
            if get_cuda_api(cfg.cuda_api).device_count() == 0:
                reason = "no NVIDIA GPU is visible to CUDA here"
        except (MissingDependencyError, EngineError) as e:
            reason = str(e)
    if reason is not None:
        major = cfg.trt_version or installed or 10
        prep = trt_builder.prepare_build(cfg, major, log=_note)
        if major == 10:
            trt_builder.write_trtexec_calib_cache(prep, log=_note)
        print(prep.trtexec.line())
        error = MissingDependencyError if trt is None else EngineError
        raise error(f"{reason}, so no engine was built: run the trtexec command printed above on the target "
                    f"device (TensorRT {major}.x), or rerun se-deploy build-engine there")
    meta = trt_builder.build_engine(cfg, log=_note)
    counts = (meta.get("layers") or {}).get("precision_counts", {})
    print(f"wrote {cfg.output} (TensorRT {meta['tensorrt_version']}, {meta['gpu']['name']}, "
          f"layers by precision {counts}) and {cfg.output}.json")


def register(command) -> None:
    @command("build-engine", help="Build a TensorRT engine (.plan + .plan.json sidecar) from an ONNX model. "
                                  "Without TensorRT or a GPU, prints the equivalent trtexec command for the "
                                  "target device and exits non-zero.")
    def build_engine_cmd(
        onnx: Path = typer.Argument(..., help="The ONNX model (FP32, or a prebuilt Q/DQ INT8 / FP16 model)."),
        output: Optional[Path] = typer.Option(None, "-o", "--output",
                                              help="The plan to write (default: beside the ONNX, .plan)."),
        fp16: bool = typer.Option(False, "--fp16", help="FP16 engine (TensorRT 11: converts to an FP16 ONNX first)."),
        int8: bool = typer.Option(False, "--int8", help="INT8 engine: needs --calib-data or a Q/DQ ONNX."),
        calib_data: Optional[str] = typer.Option(None, "--calib-data", help="Calibration data: a directory of "
                                                 "images or a .npz keyed by input name."),
        calibrator: Optional[str] = typer.Option(None, "--calibrator", help="TensorRT 10 only: implicit INT8 "
                                                 "calibration with entropy | minmax instead of Q/DQ."),
        calib_cache: Optional[str] = typer.Option(None, "--calib-cache", help="TensorRT calibrator cache "
                                                  "(default: <plan>.calib.cache); read and written."),
        calib_batch_size: int = typer.Option(1, "--calib-batch-size", help="Samples per calibration batch."),
        calib_size: Optional[int] = typer.Option(None, "--calib-size", help="Use this many calibration samples "
                                                 "(default: all)."),
        preprocess: str = typer.Option("none", "--preprocess", help="Preprocessing preset for an image-folder "
                                       "--calib-data (none | imagenet)."),
        batch: Optional[str] = typer.Option(None, "--batch", help="Dynamic batch profile min:opt:max, e.g. 1:4:8."),
        workspace: Optional[int] = typer.Option(None, "--workspace", help="Builder workspace limit in MiB."),
        timing_cache: Optional[str] = typer.Option(None, "--timing-cache", help="Timing cache file (read and "
                                                   "written)."),
        opt_level: Optional[int] = typer.Option(None, "--opt-level", help="Builder optimization level 0-5."),
        dla_core: Optional[int] = typer.Option(None, "--dla-core", help="Run on this DLA core (Jetson)."),
        gpu_fallback: bool = typer.Option(False, "--gpu-fallback", help="Let layers DLA cannot run fall back to "
                                          "the GPU."),
        print_trtexec: bool = typer.Option(False, "--print-trtexec", help="Print the equivalent trtexec command "
                                           "and exit without building."),
        trt_version: Optional[int] = typer.Option(None, "--trt-version", help="Target TensorRT major (10 or 11); "
                                                  "default: the installed one, else 10."),
        cuda_api: Optional[str] = typer.Option(None, "--cuda-api", help="pycuda | cuda-python (default: whichever "
                                               "is installed)."),
    ) -> None:
        run_build_engine(
            onnx=onnx, output=output, fp16=fp16, int8=int8, calib_data=calib_data, calibrator=calibrator,
            calib_cache=calib_cache, calib_batch_size=calib_batch_size, calib_size=calib_size, preprocess=preprocess,
            batch=batch, workspace=workspace,
            timing_cache=timing_cache, opt_level=opt_level, dla_core=dla_core, gpu_fallback=gpu_fallback,
            print_trtexec=print_trtexec, trt_version=trt_version, cuda_api=cuda_api)
