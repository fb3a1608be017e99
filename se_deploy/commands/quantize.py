"""`se-deploy quantize`, `se-deploy compare`, `se-deploy calibrate` and `se-deploy train-demo`."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from se_deploy.calibration.data_options import DataOptions
from se_deploy.calibration.ranges import DEFAULT_ENTROPY_BINS
from se_deploy.commands._options import data_options, files
from se_deploy.names import HighPrecision, SeMode


def _rejected_copy(values) -> dict:
    """quantize --keep-rejected: a rejected model goes beside the output under its own name."""
    if not values.get("keep_rejected") or values.get("output") is None:
        return {}
    from se_deploy._util import sidecar_path
    from se_deploy.files import rejected_path

    kept = rejected_path(values["output"])
    return {"the rejected copy": [kept, sidecar_path(kept)]}


def _demo_files(values) -> dict:
    from se_deploy.calibration.train import DEMO_FILES

    d = Path(values["output_dir"])
    return {f"--output-dir's {name}": [d / name, d / (name + ".json")] for name in DEMO_FILES}


def register(command) -> None:
    @command("quantize", help="Make an INT8 (Q/DQ) or FP16 ONNX model, check it against FP32 on held-out data, "
                              "and write a sidecar with the accuracy figures.")
    @files(inputs=("model", "calib_data", "eval_data"), outputs=("output", "write_trt_cache", "save_calib"),
           sidecars=("output",), derived=_rejected_copy)
    @data_options
    def quantize(
        model: Path = typer.Argument(..., help="FP32 .onnx model."),
        output: Path = typer.Option(..., "-o", "--output", help="Where to write the converted .onnx."),
        int8: bool = typer.Option(False, "--int8", help="INT8 with Q/DQ nodes (needs calibration data)."),
        fp16: bool = typer.Option(False, "--fp16", help="FP16 graph with sensitive ops kept in FP32."),
        calib_data: Optional[Path] = typer.Option(None, "--calib-data", help="Image folder, .npz (keyed by the "
                                                                             "input name) or .npy."),
        synthetic: bool = typer.Option(False, "--synthetic", help="Random calibration data for smoke runs "
                                                                  "(reported as SYNTHETIC)."),
        calib_size: Optional[int] = typer.Option(None, "--calib-size", help="Use N samples (deterministic by --seed)."),
        target: str = typer.Option("tensorrt", "--target", help="tensorrt (symmetric s8, placed as TensorRT "
                                                                "fuses it) or cpu (u8s8, onnxruntime x86)."),
        method: str = typer.Option("minmax", "--method", help="minmax, entropy or percentile."),
        percentile: float = typer.Option(99.999, "--percentile", help="Percentile for --method percentile."),
        entropy_bins: int = typer.Option(DEFAULT_ENTROPY_BINS, "--entropy-bins",
                                         help="Histogram bins for --method entropy (at least 128)."),
        se_mode: Optional[SeMode] = typer.Option(None, "--se-mode", help="cheap (default: the squeeze and the scale "
                                                                      "read INT8, the excitation stays in the high-"
                                                                      "precision type), float (whole SE block float) "
                                                                      "or all (excitation INT8 too)."),
        quantize_se: bool = typer.Option(False, "--quantize-se", help="Same as --se-mode all."),
        high_precision: Optional[HighPrecision] = typer.Option(None, "--high-precision", help="Type of the layers left "
                                                                                    "unquantized: fp16 (default for "
                                                                                    "tensorrt; I/O stays FP32) or "
                                                                                    "fp32 (default for cpu)."),
        from_trt_cache: Optional[Path] = typer.Option(None, "--from-trt-cache", help="Take activation scales from "
                                                                                     "a TensorRT calibration cache "
                                                                                     "(8.x/10.x); --calib-data then "
                                                                                     "only fills tensors it lacks."),
        exclude: List[str] = typer.Option([], "--exclude", help="Node name or op type to keep float (repeatable)."),
        batch_size: int = typer.Option(8, "--batch-size", help="Calibration batch for dynamic-batch models."),
        eval_data: Optional[Path] = typer.Option(None, "--eval-data", help="Held-out data for the accuracy check "
                                                                           "(labels from a class-folder layout or "
                                                                           "an npz 'labels' key)."),
        holdout: float = typer.Option(0.2, "--holdout", help="Without --eval-data: fraction of the data held out "
                                                             "from calibration for the accuracy check."),
        max_drop: Optional[float] = typer.Option(None, "--max-drop", help="Fail (exit 7, nothing written to -o) "
                                                                          "when INT8 top-1 drops more points "
                                                                          "than this."),
        keep_rejected: bool = typer.Option(False, "--keep-rejected", help="Keep a model that fails its accuracy "
                                                                          "check as OUT.rejected.onnx (never "
                                                                          "under -o)."),
        write_trt_cache: Optional[Path] = typer.Option(None, "--write-trt-cache", help="Also write a TensorRT "
                                                                                       "calibration cache for the "
                                                                                       "FP32 model."),
        trt_version: str = typer.Option("10.3.0", "--trt-version", help="TensorRT version in the cache header."),
        save_calib: Optional[Path] = typer.Option(None, "--save-calib", help="Save the preprocessed calibration "
                                                                             "samples as calib.npz."),
        fp16_io: bool = typer.Option(False, "--fp16-io", help="FP16 graph inputs/outputs (default float32)."),
        fp16_block: List[str] = typer.Option([], "--fp16-block", help="Extra op type kept FP32 (repeatable)."),
        fp16_keep_se: bool = typer.Option(False, "--fp16-keep-se", help="Keep SE excitation paths FP32."),
        data: DataOptions = None,
    ) -> None:
        import logging

        from se_deploy.calibration.data_options import load_for_model, model_io
        from se_deploy.console import accuracy_table, console, line, status, warn_all
        from se_deploy.errors import UsageError
        from se_deploy._util import check_output_path

        logging.getLogger("se_deploy.calibration").setLevel(logging.ERROR)  # warnings are printed below
        if int8 == fp16:
            raise UsageError("choose exactly one of --int8 or --fp16")
        check_output_path(output)
        model_io(model, data.input_shape)  # a bad model or shape fails before any data is read
        if fp16:
            if calib_data is not None or synthetic or write_trt_cache is not None or from_trt_cache is not None:
                raise UsageError("--fp16 needs no calibration data; drop --calib-data/--synthetic/--write-trt-cache/"
                                 "--from-trt-cache")
            from se_deploy.calibration.fp16 import Fp16Config, convert_fp16, default_op_block_list

            eval_set = None if eval_data is None else load_for_model(eval_data, model, data, role="evaluation")
            block = tuple(dict.fromkeys([*default_op_block_list(), *fp16_block]))
            cfg = Fp16Config(keep_io_types=not fp16_io, op_block_list=block, keep_se_float=fp16_keep_se)
            with status("converting to FP16"):
                side = convert_fp16(model, output, cfg, eval_set=eval_set, keep_rejected=keep_rejected)
            num = side["numerics"]
            line(f"FP16 {output}: cosine {num['cosine']:.6f}, SQNR {num['sqnr_db']:.1f} dB, "
                 f"max abs {num['max_abs']:.3g} vs FP32 on {num['inputs']}")
            return

        from se_deploy.calibration.jobs import quantize_with_holdout, write_trt_cache_for
        from se_deploy.calibration.quantize import QuantConfig

        if calib_data is None and not synthetic and from_trt_cache is None:
            raise UsageError("--int8 needs --calib-data DIR|FILE.npz or --from-trt-cache FILE (or --synthetic for a "
                             "smoke run)")
        if write_trt_cache is not None and calib_data is None and not synthetic:
            raise UsageError("--write-trt-cache needs --calib-data (the ranges are collected on the FP32 model)")
        if quantize_se and se_mode not in (None, "all"):
            raise UsageError(f"--quantize-se means --se-mode all; it contradicts --se-mode {se_mode}")
        cfg = QuantConfig(target=target, method=method, percentile=percentile, entropy_bins=entropy_bins,
                          se_mode="all" if quantize_se else se_mode, high_precision=high_precision,
                          exclude=tuple(exclude), batch_size=batch_size, max_drop=max_drop)
        samples = None
        if calib_data is not None or synthetic:
            samples = load_for_model(calib_data, model, data, role="calibration", size=calib_size,
                                     synthetic=synthetic)
        held = None if eval_data is None else load_for_model(eval_data, model, data, role="held-out evaluation")
        what = f"importing {from_trt_cache}" if from_trt_cache is not None else "calibrating"
        with status(f"{what} and quantizing ({target}, {method})"):
            side, calib = quantize_with_holdout(model, output, samples, cfg, eval_set=held, holdout=holdout,
                                                seed=data.seed, save_calib=save_calib, keep_rejected=keep_rejected,
                                                trt_cache=from_trt_cache)
        if save_calib is not None and calib is not None:
            line(f"saved {len(calib)} calibration samples to {save_calib} (key {calib.input_name!r})")
        warn_all(side["warnings"])
        console.print(accuracy_table(side["accuracy"], title=f"INT8 ({target}) vs FP32"))
        if from_trt_cache is not None:
            r = side["ranges"]
            line(f"TensorRT {r['trt_version']} {r['algorithm']} cache: {r['imported']} of {r['entries']} scales "
                 f"imported, {len(r['not_in_model'])} for tensors the ONNX does not have (TensorRT-internal), "
                 f"{len(r['unusable'])} unusable, {len(r['missing'])} quantized tensors calibrated from data")
        source = (f"{side['calibration']['samples']} calibration samples ({side['calibration']['source_kind']})"
                  if side["calibration"] else "scales from the TensorRT cache")
        line(f"INT8 {output}: {side['se_blocks']} SE blocks (SE mode {side['se_mode']}), float layers in "
             f"{side['high_precision']}, {len(side['lint'])} placement findings, {source}")
        if write_trt_cache is not None:
            with status("collecting tensor ranges for the TensorRT calibration cache"):
                n = write_trt_cache_for(model, output, calib, cfg, write_trt_cache, trt_version=trt_version)
            line(f"TensorRT calibration cache: {write_trt_cache} ({n} tensors, names from {model})")

    @command("compare", help="Compare FP16/INT8 models with the FP32 reference on held-out data: top-1 agreement, "
                             "cosine, SQNR, max abs error, and top-1/top-5 accuracy when labels are given.")
    @files(inputs=("reference", "candidates", "source"), outputs=("json_out",))
    @data_options
    def compare(
        reference: Path = typer.Argument(..., help="FP32 reference .onnx."),
        candidates: List[Path] = typer.Argument(..., help="Converted .onnx models."),
        source: Optional[Path] = typer.Option(None, "--data", help="Image folder (class-folder layout gives labels), "
                                                                   ".npz (optional 'labels') or .npy."),
        synthetic: bool = typer.Option(False, "--synthetic", help="Random inputs (agreement only; SYNTHETIC)."),
        size: Optional[int] = typer.Option(None, "--size", help="Use N samples (deterministic by --seed)."),
        max_drop: Optional[float] = typer.Option(None, "--max-drop", help="Exit 7 when a candidate's top-1 drops "
                                                                          "more points than this."),
        json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the report as JSON."),
        data: DataOptions = None,
    ) -> None:
        from se_deploy._util import write_json_atomic
        from se_deploy.calibration.accuracy import check_max_drop, evaluate
        from se_deploy.calibration.data_options import load_for_model
        from se_deploy.console import accuracy_table, console, warn, warn_all
        from se_deploy.errors import UsageError

        if source is None and not synthetic:
            raise UsageError("compare needs --data DIR|FILE.npz (or --synthetic)")
        for c in candidates:
            if not c.exists():
                raise UsageError(f"candidate model not found: {c}")
        ds = load_for_model(source, reference, data, role="held-out evaluation", size=size, synthetic=synthetic)
        if not ds.is_synthetic:  # synthetic data gets its own warning below
            warn_all(ds.warnings)
        named: dict[str, Path] = {}
        for c in candidates:
            key = c.name.removesuffix(".onnx")
            named[key if key not in named else str(c)] = c
        report = evaluate(reference, named, ds)
        console.print(accuracy_table(report))
        if ds.is_synthetic:
            warn("SYNTHETIC inputs: agreement only, not accuracy")
        if json_out is not None:
            write_json_atomic(json_out, report)
        if max_drop is not None:
            check_max_drop(report, max_drop)

    @command("calibrate", help="Preprocess calibration data once and save it as calib.npz holding one array keyed "
                               "by the model's input name (the layout ModelOpt and Polygraphy read); labels go to "
                               "calib.labels.npz beside it.")
    @files(inputs=("model", "source"), outputs=("output",), sidecars=("output",))
    @data_options
    def calibrate(
        model: Path = typer.Argument(..., help=".onnx model (gives the input name and shape)."),
        source: Path = typer.Option(..., "--calib-data", help="Image folder, .npz or .npy."),
        output: Path = typer.Option(..., "-o", "--output", help="Output .npz."),
        calib_size: Optional[int] = typer.Option(None, "--calib-size", help="Use N samples (deterministic by --seed)."),
        data: DataOptions = None,
    ) -> None:
        from se_deploy._util import check_output_path
        from se_deploy.calibration.data_options import load_for_model
        from se_deploy.console import line, warn_all

        check_output_path(output)
        ds = load_for_model(source, model, data, role="calibration", size=calib_size)
        ds.save_with_sidecar(output)
        warn_all(ds.warnings)
        from se_deploy.calibration.sources import labels_path

        labels = f", labels in {labels_path(output).name}" if ds.labels is not None else ""
        line(f"saved {len(ds)} samples {tuple(ds.arrays.shape)} to {output} (key {ds.input_name!r} only, as "
             f"ModelOpt's --calibration_data_path reads it{labels}; skipped {ds.provenance.get('skipped', 0)})")

    @command("train-demo", help="Train a small SE model on scikit-learn's digits (no download) and write "
                                "model.onnx, calib.npz and eval.npz for trying quantize/compare.")
    @files(derived=_demo_files)
    def train_demo(
        output_dir: Path = typer.Option(..., "-o", "--output-dir", help="Folder for model.onnx, calib.npz, eval.npz."),
        model_name: str = typer.Option("se_resnet18", "--model", help="Zoo model name."),
        epochs: int = typer.Option(3, "--epochs"),
        seed: int = typer.Option(0, "--seed"),
        image_size: int = typer.Option(32, "--image-size"),
    ) -> None:
        from se_deploy.calibration.train import write_demo
        from se_deploy.console import line, status

        with status(f"training {model_name} on digits for {epochs} epochs and exporting"):
            demo = write_demo(output_dir, model_name, seed=seed, epochs=epochs, image_size=image_size)
        line(f"trained {model_name}: held-out top-1 {demo.accuracy:.2f}% on {demo.eval_samples} images in "
             f"{demo.seconds:.0f}s")
        line(f"wrote {demo.model}, {demo.calib} ({demo.calib_samples} training images), {demo.eval} "
             f"({demo.eval_samples} held-out images with labels)")
        line(f"next: se-deploy quantize {demo.model} --int8 --target cpu --calib-data {demo.calib} "
             f"--eval-data {demo.eval} --max-drop 1.0 -o {output_dir / 'model.int8.onnx'}")
