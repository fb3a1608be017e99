"""`se-deploy quantize`, `se-deploy compare`, `se-deploy calibrate` and `se-deploy train-demo`."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

# Options shared by every command that reads calibration or evaluation data.
_PRESET_HELP = "Preprocessing preset for image folders: imagenet (resize 256, crop 224, mean/std) or none. " \
               "Default: imagenet for folders, none for .npz/.npy."


def _preprocess(preset: Optional[str], source: Optional[Path], resize, crop, mean, std, bgr, scale):
    from se_deploy.calibration.preprocess import make_preprocess, parse_floats

    if preset is None:
        preset = "imagenet" if source is not None and source.is_dir() else "none"
    return make_preprocess(preset, resize=resize, crop=crop, scale=scale, mean=parse_floats(mean, "--mean"),
                           std=parse_floats(std, "--std"), channel_order="BGR" if bgr else None)


def _model_io(model_path: Path, input_shape: Optional[str]):
    from se_deploy._util import parse_shape
    from se_deploy.calibration.quantize import model_input
    from se_deploy.onnx_io import load_onnx

    name, shape = model_input(load_onnx(model_path))
    if input_shape:
        given = parse_shape(input_shape)
        if len(given) != len(shape):
            from se_deploy.errors import UsageError

            raise UsageError(f"--input-shape {input_shape} has rank {len(given)}, the model input has rank {len(shape)}")
        shape = tuple(g if not isinstance(s, int) or s <= 0 else s for g, s in zip(given, shape))
    return name, shape


def _print_warnings(console, warnings) -> None:
    for w in dict.fromkeys(warnings):
        console.print(f"warning: {w}", markup=False)


def register(command) -> None:
    @command("quantize", help="Make an INT8 (Q/DQ) or FP16 ONNX model, check it against FP32 on held-out data, "
                              "and write a sidecar with the accuracy figures.")
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
        seed: int = typer.Option(0, "--seed", help="Seed for subset choice and the held-out split."),
        strict: bool = typer.Option(False, "--strict", help="Fail on a corrupt image instead of skipping it."),
        preset: Optional[str] = typer.Option(None, "--preprocess", help=_PRESET_HELP),
        resize: Optional[int] = typer.Option(None, "--resize", help="Resize the shorter side to N pixels."),
        crop: Optional[int] = typer.Option(None, "--crop", help="Centre crop N x N."),
        mean: Optional[str] = typer.Option(None, "--mean", help="Per-channel mean, e.g. 0.485,0.456,0.406."),
        std: Optional[str] = typer.Option(None, "--std", help="Per-channel std, e.g. 0.229,0.224,0.225."),
        bgr: bool = typer.Option(False, "--bgr", help="Feed channels as BGR."),
        scale: Optional[bool] = typer.Option(None, "--scale/--no-scale", help="Divide pixels by 255."),
        input_shape: Optional[str] = typer.Option(None, "--input-shape", help="NxCxHxW for models with dynamic "
                                                                              "C/H/W."),
        target: str = typer.Option("tensorrt", "--target", help="tensorrt (symmetric s8) or cpu (u8s8, "
                                                                "onnxruntime x86)."),
        method: str = typer.Option("minmax", "--method", help="minmax, entropy or percentile."),
        percentile: float = typer.Option(99.999, "--percentile", help="Percentile for --method percentile."),
        quantize_se: bool = typer.Option(False, "--quantize-se", help="Quantize SE excitation paths too "
                                                                      "(default keeps them float)."),
        exclude: List[str] = typer.Option([], "--exclude", help="Node name or op type to keep float (repeatable)."),
        batch_size: int = typer.Option(8, "--batch-size", help="Calibration batch for dynamic-batch models."),
        eval_data: Optional[Path] = typer.Option(None, "--eval-data", help="Held-out data for the accuracy check "
                                                                           "(labels from a class-folder layout or "
                                                                           "an npz 'labels' key)."),
        holdout: float = typer.Option(0.2, "--holdout", help="Without --eval-data: fraction of the data held out "
                                                             "from calibration for the accuracy check."),
        max_drop: Optional[float] = typer.Option(None, "--max-drop", help="Fail (exit 7, model kept and marked "
                                                                          "rejected) when INT8 top-1 drops more "
                                                                          "points than this."),
        write_trt_cache: Optional[Path] = typer.Option(None, "--write-trt-cache", help="Also write a TensorRT "
                                                                                       "calibration cache for the "
                                                                                       "FP32 model."),
        trt_version: str = typer.Option("10.3.0", "--trt-version", help="TensorRT version in the cache header."),
        save_calib: Optional[Path] = typer.Option(None, "--save-calib", help="Save the preprocessed calibration "
                                                                             "samples as calib.npz."),
        fp16_io: bool = typer.Option(False, "--fp16-io", help="FP16 graph inputs/outputs (default float32)."),
        fp16_block: List[str] = typer.Option([], "--fp16-block", help="Extra op type kept FP32 (repeatable)."),
        fp16_keep_se: bool = typer.Option(False, "--fp16-keep-se", help="Keep SE excitation paths FP32."),
    ) -> None:
        import logging

        from rich.console import Console

        from se_deploy._util import check_output_path, read_sidecar, write_sidecar
        from se_deploy.calibration.accuracy import render_table
        from se_deploy.errors import UsageError

        console = Console(highlight=False)
        err = Console(stderr=True, highlight=False)
        logging.getLogger("se_deploy.calibration").setLevel(logging.ERROR)  # warnings are printed below
        if int8 == fp16:
            raise UsageError("choose exactly one of --int8 or --fp16")
        check_output_path(output)
        name, shape = _model_io(model, input_shape)
        if fp16:
            if calib_data is not None or synthetic or write_trt_cache is not None:
                raise UsageError("--fp16 needs no calibration data; drop --calib-data/--synthetic/--write-trt-cache")
            from se_deploy.calibration.fp16 import Fp16Config, convert_fp16, default_op_block_list

            eval_set = None
            if eval_data is not None:
                eval_set = _load(eval_data, False, None, seed, strict, name, shape,
                                 _preprocess(preset, eval_data, resize, crop, mean, std, bgr, scale), "evaluation")
            block = tuple(dict.fromkeys([*default_op_block_list(), *fp16_block]))
            cfg = Fp16Config(keep_io_types=not fp16_io, op_block_list=block, keep_se_float=fp16_keep_se)
            with console.status("converting to FP16"):
                side = convert_fp16(model, output, cfg, eval_set=eval_set)
            num = side["numerics"]
            console.print(f"[bold green]FP16[/] {output}: cosine {num['cosine']:.6f}, SQNR {num['sqnr_db']:.1f} dB, "
                          f"max abs {num['max_abs']:.3g} vs FP32 on {num['inputs']}")
            return

        from se_deploy.calibration.quantize import QuantConfig, quantize_int8

        if calib_data is None and not synthetic:
            raise UsageError("--int8 needs --calib-data DIR|FILE.npz (or --synthetic for a smoke run)")
        cfg = QuantConfig(target=target, method=method, percentile=percentile, se_aware=not quantize_se,
                          exclude=tuple(exclude), batch_size=batch_size, max_drop=max_drop)
        pre = _preprocess(preset, calib_data, resize, crop, mean, std, bgr, scale)
        data = _load(calib_data, synthetic, calib_size, seed, strict, name, shape, pre, "calibration")
        if eval_data is not None:
            calib, held = data, _load(eval_data, False, None, seed, strict, name, shape,
                                      _preprocess(preset, eval_data, resize, crop, mean, std, bgr, scale),
                                      "held-out evaluation")
        elif len(data) >= 20 and not data.is_synthetic:
            calib, held = data.split(holdout, seed)
        else:
            calib, held = data, None
        if save_calib is not None:
            calib.save_npz(save_calib)
            console.print(f"saved {len(calib)} calibration samples to {save_calib} (key {name!r})")
        with console.status(f"calibrating on {len(calib)} samples and quantizing ({target}, {method})"):
            side = quantize_int8(model, output, calib, cfg, eval_set=held)
        _print_warnings(err, side["warnings"])
        acc = side["accuracy"]
        console.print(render_table(acc, title=f"INT8 ({target}) vs FP32"))
        console.print(f"[bold green]INT8[/] {output}: {side['se_blocks']} SE blocks "
                      f"({'excitation kept float' if cfg.se_aware else 'quantized too'}), "
                      f"{len(side['excluded_nodes'])} nodes kept float, {side['calibration']['samples']} "
                      f"calibration samples ({side['calibration']['source_kind']})")
        if write_trt_cache is not None:
            from se_deploy.calibration.trt_cache import collect_amax, write_calibration_cache

            with console.status("collecting tensor ranges for the TensorRT calibration cache"):
                amax = collect_amax(model, calib, method=method, percentile=percentile, batch_size=batch_size)
            write_calibration_cache(write_trt_cache, amax, trt_version=trt_version)
            meta = read_sidecar(output) or {}
            meta["trt_calibration_cache"] = {"path": str(write_trt_cache), "tensors": len(amax),
                                             "trt_version": trt_version, "method": method,
                                             "algorithm": "EntropyCalibration2", "onnx": str(model)}
            meta.pop("se_deploy_version", None)
            meta.pop("created", None)
            write_sidecar(output, meta)
            console.print(f"TensorRT calibration cache: {write_trt_cache} ({len(amax)} tensors, names from {model})")

    @command("compare", help="Compare FP16/INT8 models with the FP32 reference on held-out data: top-1 agreement, "
                             "cosine, SQNR, max abs error, and top-1/top-5 accuracy when labels are given.")
    def compare(
        reference: Path = typer.Argument(..., help="FP32 reference .onnx."),
        candidates: List[Path] = typer.Argument(..., help="Converted .onnx models."),
        data: Optional[Path] = typer.Option(None, "--data", help="Image folder (class-folder layout gives labels), "
                                                                 ".npz (optional 'labels') or .npy."),
        synthetic: bool = typer.Option(False, "--synthetic", help="Random inputs (agreement only; SYNTHETIC)."),
        size: Optional[int] = typer.Option(None, "--size", help="Use N samples (deterministic by --seed)."),
        seed: int = typer.Option(0, "--seed"),
        strict: bool = typer.Option(False, "--strict", help="Fail on a corrupt image instead of skipping it."),
        preset: Optional[str] = typer.Option(None, "--preprocess", help=_PRESET_HELP),
        resize: Optional[int] = typer.Option(None, "--resize"),
        crop: Optional[int] = typer.Option(None, "--crop"),
        mean: Optional[str] = typer.Option(None, "--mean"),
        std: Optional[str] = typer.Option(None, "--std"),
        bgr: bool = typer.Option(False, "--bgr"),
        scale: Optional[bool] = typer.Option(None, "--scale/--no-scale"),
        input_shape: Optional[str] = typer.Option(None, "--input-shape"),
        max_drop: Optional[float] = typer.Option(None, "--max-drop", help="Exit 7 when a candidate's top-1 drops "
                                                                          "more points than this."),
        json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the report as JSON."),
    ) -> None:
        from rich.console import Console

        from se_deploy._util import write_json_atomic
        from se_deploy.calibration.accuracy import evaluate, render_table
        from se_deploy.errors import QuantizationError, UsageError

        console = Console(highlight=False)
        if data is None and not synthetic:
            raise UsageError("compare needs --data DIR|FILE.npz (or --synthetic)")
        for c in candidates:
            if not c.exists():
                raise UsageError(f"candidate model not found: {c}")
        name, shape = _model_io(reference, input_shape)
        ds = _load(data, synthetic, size, seed, strict, name, shape,
                   _preprocess(preset, data, resize, crop, mean, std, bgr, scale), "held-out evaluation")
        labels = {}
        for c in candidates:
            key = c.name.removesuffix(".onnx")
            labels[key if key not in labels else str(c)] = c
        report = evaluate(reference, labels, ds)
        console.print(render_table(report))
        if ds.is_synthetic:
            console.print("warning: SYNTHETIC inputs: agreement only, not accuracy", markup=False)
        if json_out is not None:
            write_json_atomic(json_out, report)
        if max_drop is not None:
            if "top1" not in report["reference"]:
                raise UsageError("--max-drop needs labelled data (class-folder layout or an npz 'labels' key)")
            over = {k: v["top1_drop"] for k, v in report["candidates"].items() if v["top1_drop"] > max_drop}
            if over:
                worst = max(over, key=over.get)
                raise QuantizationError(f"{worst} top-1 dropped {over[worst]:.2f} points, over the --max-drop "
                                        f"budget of {max_drop:g}")

    @command("calibrate", help="Preprocess calibration data once and save it as calib.npz keyed by the model's "
                               "input name (the layout ModelOpt and Polygraphy read).")
    def calibrate(
        model: Path = typer.Argument(..., help=".onnx model (gives the input name and shape)."),
        data: Path = typer.Option(..., "--calib-data", help="Image folder, .npz or .npy."),
        output: Path = typer.Option(..., "-o", "--output", help="Output .npz."),
        calib_size: Optional[int] = typer.Option(None, "--calib-size"),
        seed: int = typer.Option(0, "--seed"),
        strict: bool = typer.Option(False, "--strict"),
        preset: Optional[str] = typer.Option(None, "--preprocess", help=_PRESET_HELP),
        resize: Optional[int] = typer.Option(None, "--resize"),
        crop: Optional[int] = typer.Option(None, "--crop"),
        mean: Optional[str] = typer.Option(None, "--mean"),
        std: Optional[str] = typer.Option(None, "--std"),
        bgr: bool = typer.Option(False, "--bgr"),
        scale: Optional[bool] = typer.Option(None, "--scale/--no-scale"),
        input_shape: Optional[str] = typer.Option(None, "--input-shape"),
    ) -> None:
        from rich.console import Console

        from se_deploy._util import check_output_path, write_json_atomic

        console = Console(highlight=False)
        err = Console(stderr=True, highlight=False)
        check_output_path(output)
        name, shape = _model_io(model, input_shape)
        ds = _load(data, False, calib_size, seed, strict, name, shape,
                   _preprocess(preset, data, resize, crop, mean, std, bgr, scale), "calibration")
        ds.save_npz(output)
        write_json_atomic(Path(str(output) + ".json"), {"kind": "calibration-data", "input_name": name,
                                                         **ds.describe()})
        _print_warnings(err, ds.warnings)
        console.print(f"saved {len(ds)} samples {tuple(ds.arrays.shape)} to {output} (key {name!r}"
                      f"{', with labels' if ds.labels is not None else ''}; skipped {ds.provenance.get('skipped', 0)})")

    @command("train-demo", help="Train a small SE model on scikit-learn's digits (no download) and write "
                                "model.onnx, calib.npz and eval.npz for trying quantize/compare.")
    def train_demo(
        output_dir: Path = typer.Option(..., "-o", "--output-dir", help="Folder for model.onnx, calib.npz, eval.npz."),
        model_name: str = typer.Option("se_resnet18", "--model", help="Zoo model name."),
        epochs: int = typer.Option(3, "--epochs"),
        seed: int = typer.Option(0, "--seed"),
        image_size: int = typer.Option(32, "--image-size"),
    ) -> None:
        from rich.console import Console

        from se_deploy.calibration.train import export_trained, quick_train
        from se_deploy.errors import UsageError

        console = Console(highlight=False)
        if output_dir.exists() and not output_dir.is_dir():
            raise UsageError(f"output path is not a folder: {output_dir}")
        if not output_dir.parent.is_dir():
            raise UsageError(f"parent folder does not exist: {output_dir.parent}")
        output_dir.mkdir(exist_ok=True)
        with console.status(f"training {model_name} on digits for {epochs} epochs"):
            trained = quick_train(model_name, seed=seed, epochs=epochs, image_size=image_size)
        console.print(f"trained {model_name}: held-out top-1 {trained.accuracy:.2f}% on {len(trained.y_test)} "
                      f"images in {trained.seconds:.0f}s")
        with console.status("exporting"):
            onnx_path = export_trained(trained, output_dir / "model.onnx")
        trained.calibration_set().save_npz(output_dir / "calib.npz")
        trained.eval_set().save_npz(output_dir / "eval.npz")
        d = output_dir
        console.print(f"wrote {onnx_path}, {d / 'calib.npz'} ({len(trained.y_train)} training images), "
                      f"{d / 'eval.npz'} ({len(trained.y_test)} held-out images with labels)")
        console.print(f"next: se-deploy quantize {onnx_path} --int8 --target cpu --calib-data {d / 'calib.npz'} "
                      f"--eval-data {d / 'eval.npz'} --max-drop 1.0 -o {d / 'model.int8.onnx'}")


def _load(source, synthetic, size, seed, strict, name, shape, preprocess, role):
    from se_deploy.calibration.dataset import load_calibration

    ds = load_calibration(source, input_name=name, input_shape=shape, preprocess=preprocess, calib_size=size,
                          seed=seed, strict=strict, synthetic=synthetic)
    ds.provenance["role"] = role
    return ds
