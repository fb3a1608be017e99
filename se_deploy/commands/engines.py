"""``se-deploy build-engine``: ONNX -> TensorRT plan, or the exact trtexec command for the device."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from se_deploy.commands._options import files


def _default_outputs(values) -> dict:
    """The plan's default name (beside the ONNX) and the calibrator cache's default beside the plan."""
    plan = Path(values["output"] or Path(values["onnx"]).with_suffix(".plan"))
    out = {} if values["output"] is not None else {"the default plan": [plan, Path(str(plan) + ".json")]}
    if values.get("calibrator") and values.get("calib_cache") is None:
        out["the default --calib-cache"] = plan.with_suffix(".calib.cache")
    return out


def register(command) -> None:
    @command("build-engine", help="Build a TensorRT engine (.plan + .plan.json sidecar) from an ONNX model, with "
                                  "TensorRT's Python bindings, or with trtexec where the bindings are missing "
                                  "(--trtexec, PATH, /usr/src/tensorrt/bin). Without either, or without a GPU, "
                                  "prints the equivalent trtexec command for the target device and exits non-zero.")
    @files(inputs=("onnx", "calib_data"), outputs=("output", "calib_cache", "timing_cache"), sidecars=("output",),
           derived=_default_outputs)
    def build_engine_cmd(
        onnx: Path = typer.Argument(..., help="The ONNX model (FP32, or a prebuilt Q/DQ INT8 / FP16 model)."),
        output: Optional[Path] = typer.Option(None, "-o", "--output",
                                              help="The plan to write (default: beside the ONNX, .plan)."),
        fp16: bool = typer.Option(False, "--fp16", help="FP16 engine (TensorRT 11: converts to an FP16 ONNX first)."),
        int8: bool = typer.Option(False, "--int8", help="INT8 engine: needs --calib-data (quantized first, float "
                                                        "layers FP32; FP16 with --fp16) or a Q/DQ ONNX."),
        calib_data: Optional[str] = typer.Option(None, "--calib-data", help="Calibration data: a directory of "
                                                 "images or a .npz keyed by input name."),
        calibrator: Optional[str] = typer.Option(None, "--calibrator", help="TensorRT 8.6/10 only: implicit INT8 "
                                                 "calibration with entropy | minmax instead of Q/DQ (trtexec: "
                                                 "entropy only)."),
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
        print_trtexec: bool = typer.Option(False, "--print-trtexec", help="Build nothing: prepare the files the "
                                           "trtexec command reads (the Q/DQ or FP16 ONNX beside the plan; with "
                                           "--calibrator, the calibration cache, which runs calibration), print "
                                           "the command and exit 0."),
        trt_version: Optional[str] = typer.Option(None, "--trt-version", help="Target TensorRT: 8.6, 10, 11, or "
                                                  "an exact MAJOR.MINOR.PATCH (needed for a --calibrator cache, "
                                                  "e.g. 10.3.0 on JetPack 6.1/6.2); default: the installed one, "
                                                  "else 10.3.0."),
        trtexec: Optional[str] = typer.Option(None, "--trtexec", help="Build with this trtexec executable "
                                              "(default: only where the Python bindings are missing, from PATH "
                                              "or /usr/src/tensorrt/bin)."),
        cuda_api: Optional[str] = typer.Option(None, "--cuda-api", help="pycuda | cuda-python (default: whichever "
                                               "is installed)."),
    ) -> None:
        from se_deploy.console import line, note, raw
        from se_deploy.engines.build import build_or_trtexec
        from se_deploy.engines.tensorrt.config import BuildConfig, parse_batch_range

        cfg = BuildConfig(
            onnx=str(onnx), output=str(output or onnx.with_suffix(".plan")), fp16=fp16, int8=int8,
            calib_data=calib_data, calibrator=calibrator.lower() if calibrator else None, calib_cache=calib_cache,
            calib_batch_size=calib_batch_size, calib_size=calib_size, preprocess=preprocess,
            batch=parse_batch_range(batch) if batch is not None else None,
            workspace_mib=workspace, timing_cache=timing_cache, opt_level=opt_level, dla_core=dla_core,
            gpu_fallback=gpu_fallback, trt_version=trt_version, cuda_api=cuda_api, trtexec=trtexec)
        outcome = build_or_trtexec(cfg, print_only=print_trtexec, log=note)
        if outcome.metadata is None:
            raw(outcome.trtexec)
            if outcome.not_built is not None:
                raise outcome.not_built
            return
        meta = outcome.metadata
        counts = (meta.get("layers") or {}).get("precision_counts", {})
        line(f"wrote {cfg.output} (TensorRT {meta['tensorrt_version']}, {meta['gpu']['name']}, "
             f"layers by precision {counts}) and {cfg.output}.json")
