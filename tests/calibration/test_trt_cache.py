"""TensorRT calibration cache: the text format, and ranges whose names match the ONNX."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import onnx
import pytest

from se_deploy.calibration import trt_cache as tc
from se_deploy.calibration.dataset import CalibrationSet
from se_deploy.errors import InputError, UsageError


def test_format_header_and_big_endian_hex_of_amax_over_127(tmp_path):
    p = tc.write_calibration_cache(tmp_path / "m.cache", {"input": 127.0, "/conv/Conv_output_0": 2.54, "zero": 0.0},
                                   trt_version="10.3.0")
    lines = p.read_text().splitlines()
    assert lines[0] == "TRT-100300-EntropyCalibration2"
    assert lines[1] == "input: 3f800000"  # 127 / 127 = 1.0f
    # 2.54 / 127 = 0.02 as float32, big-endian bytes
    assert lines[2] == "/conv/Conv_output_0: " + struct.pack(">f", np.float32(2.54 / 127)).hex()
    assert lines[2].endswith("3ca3d70a")
    assert lines[3] == "zero: 00000000"
    header, scales = tc.read_calibration_cache(p)
    assert header == "TRT-100300-EntropyCalibration2"
    assert scales["input"] == 1.0 and scales["/conv/Conv_output_0"] == pytest.approx(0.02, rel=1e-6)
    assert list(scales) == ["input", "/conv/Conv_output_0", "zero"]


def test_scale_values_minmax_header_and_trt8_version(tmp_path):
    p = tc.write_calibration_cache(tmp_path / "m.cache", {"t:with:colons": 0.5}, algorithm="MinMaxCalibration",
                                   trt_version="8.6.1", values="scale")
    assert p.read_text() == "TRT-8601-MinMaxCalibration\nt:with:colons: 3f000000\n"
    assert tc.read_calibration_cache(p)[1] == {"t:with:colons": 0.5}
    assert tc.parse_header("TRT-8601-MinMaxCalibration") == ("8601", "MinMaxCalibration")


@pytest.mark.parametrize("version, digits", [("10.3.0", "100300"), ("10.13", "101300"), ("8.5.2", "8502"),
                                             ("100300", "100300")])
def test_version_digits(version, digits):
    assert tc.trt_version_digits(version) == digits


@pytest.mark.parametrize("text, msg", [("", "first line"), ("TRT-1003-Entropy Calibration2\n", "first line"),
                                       ("TRT-100300-EntropyCalibration2\ninput 3f800000\n", ":2: expected"),
                                       ("TRT-100300-EntropyCalibration2\ninput: 3f8000001\n", ":2: expected"),
                                       ("TRT-100300-EntropyCalibration2\ninput: 3f80000zz\n", ":2: expected"),
                                       ("TRT-100300-EntropyCalibration2\ninput: 13f800000\n", ":2: expected"),
                                       ("TRT-100300-EntropyCalibration2\n: 3f800000\n", ":2: expected"),
                                       ("TRT-100300-EntropyCalibration2\na: 0\na: 1\n", ":3: tensor 'a' appears twice")])
def test_malformed_cache_is_one_line_error(tmp_path, text, msg):
    p = tmp_path / "bad.cache"
    p.write_text(text)
    with pytest.raises(InputError, match=msg):
        tc.read_calibration_cache(p)


REAL = Path(__file__).resolve().parents[1] / "fixtures" / "real" / "calibration_cache"


def test_what_tensorrt_writes_is_read(tmp_path):
    """TensorRT drops leading zeros and its tensor names hold spaces, brackets and colons."""
    p = tmp_path / "trt.cache"
    p.write_text("TRT-8602-EntropyCalibration2\n366: 0\n(Unnamed Layer* 82) [Shuffle]_output: 3c56713e\n"
                 "input_1:0: 3c010a14\nsmall: 3f8000\n")
    header, scales = tc.read_calibration_cache(p)
    assert tc.parse_header(header) == ("8602", "EntropyCalibration2")
    assert scales == {"366": 0.0, "(Unnamed Layer* 82) [Shuffle]_output": tc.hex_to_scale("3c56713e"),
                      "input_1:0": tc.hex_to_scale("3c010a14"), "small": tc.hex_to_scale("003f8000")}
    assert scales["input_1:0"] == pytest.approx(0.00787, rel=1e-3)


@pytest.mark.parametrize("path", sorted(REAL.glob("*.cache")), ids=lambda q: q.name.split("_")[2])
def test_real_tensorrt_caches_are_read(path):
    """Caches TensorRT 8.6 to 10.13 wrote (sources in tests/fixtures/real/README.md): every line is read."""
    lines = path.read_text().splitlines()
    header, scales = tc.read_calibration_cache(path)
    assert header == lines[0] and tc.parse_header(header)[1] in tc.ALGORITHMS
    assert len(scales) == len(lines) - 1
    for line in lines[1:]:
        name, _, hexbits = line.rpartition(": ")
        assert struct.pack(">f", scales[name]).hex() == hexbits.zfill(8)  # bit for bit, NaN/inf included


def test_write_refuses_bad_values(tmp_path):
    with pytest.raises(Exception, match="invalid range"):
        tc.write_calibration_cache(tmp_path / "x.cache", {"a": float("nan")})
    with pytest.raises(UsageError, match="algorithm"):
        tc.write_calibration_cache(tmp_path / "x.cache", {"a": 1.0}, algorithm="Best")
    assert not (tmp_path / "x.cache").exists()


def test_collect_amax_names_match_the_onnx_and_minmax_is_exact(tiny_se_onnx, tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((20, 3, 16, 16)).astype(np.float32)
    x[-1, 0, 0, 0] = 9.0  # the largest value sits in the last chunk of batches
    calib = CalibrationSet(x, "input", "npz", {})
    amax = tc.collect_amax(tiny_se_onnx, calib, method="minmax", batch_size=1)  # 20 batches: 3 chunks merged
    model = onnx.load(str(tiny_se_onnx))
    tensors = {o for n in model.graph.node for o in n.output} | {"input"}
    assert "input" in amax and set(amax) <= tensors
    assert "logits" in amax and len(amax) >= 20
    assert amax["input"] == pytest.approx(9.0, rel=1e-6)
    entropy = tc.collect_amax(tiny_se_onnx, calib, method="entropy")
    assert set(entropy) == set(amax)
    assert all(entropy[k] <= amax[k] * 1.0001 for k in amax)  # entropy clips, never widens
    path = tc.write_calibration_cache(tmp_path / "tiny.cache", entropy)
    _, scales = tc.read_calibration_cache(path)
    for k, v in entropy.items():
        assert scales[k] == pytest.approx(np.float32(v / 127.0), rel=1e-6)


FIXTURES = Path(__file__).parent / "fixtures" / "trt_caches"


@pytest.mark.parametrize("name, version, algorithm, lines", [
    ("calib_cache_TRT-8600-EntropyCalibration2_cuDLA-samples_excerpt.cache", (8, 6, 0), "EntropyCalibration2", 10),
    ("calib_cache_TRT-100900-EntropyCalibration2_DEIMKit_excerpt.cache", (10, 9, 0), "EntropyCalibration2", 9),
    ("calib_cache_TRT-101000-EntropyCalibration2_radioml-transformer_excerpt.cache", (10, 10, 0),
     "EntropyCalibration2", 8),
    ("calib_cache_TRT-101200-EntropyCalibration2_secondkeeper_excerpt.cache", (10, 12, 0), "EntropyCalibration2", 7),
    ("calib_cache_TRT-101303-MinMaxCalibration_MPNet_excerpt.cache", (10, 13, 3), "MinMaxCalibration", 39)])
def test_reads_caches_tensorrt_wrote(name, version, algorithm, lines):
    """Real caches from TensorRT 8.6 and 10.9-10.13 (fixtures/trt_caches/SOURCES.md) read whole."""
    cache = tc.load_calibration_cache(FIXTURES / name)
    assert cache.version == version and cache.algorithm == algorithm and len(cache.scales) == lines
    assert cache.header == (FIXTURES / name).read_text().splitlines()[0]
    text = (FIXTURES / name).read_text().splitlines()[1:]
    for line in text:  # every value is the float32 whose big-endian bits the (unpadded) hex spells
        tensor, _, hexv = line.rpartition(": ")
        want = struct.unpack(">f", int(hexv, 16).to_bytes(4, "big"))[0]
        got = cache.scales[tensor]
        assert got == want or (np.isnan(got) and np.isnan(want))


def test_unpadded_zero_inf_and_internal_tensors_from_real_caches():
    deim = tc.load_calibration_cache(FIXTURES / "calib_cache_TRT-100900-EntropyCalibration2_DEIMKit_excerpt.cache")
    assert deim.scales["ONNXTRT_Broadcast_1855_output: 0".rpartition(": ")[0]] == 0.0  # written as `: 0`
    assert deim.scales["images"] == pytest.approx(struct.unpack(">f", bytes.fromhex("3c021406"))[0])
    mpnet = tc.load_calibration_cache(FIXTURES / "calib_cache_TRT-101303-MinMaxCalibration_MPNet_excerpt.cache")
    assert mpnet.scales["/encoder/Log_output_0"] == float("inf") and mpnet.scales["/Sub_output_0"] == 0.0
    assert mpnet.scales["/Cast_output_0"] == pytest.approx(1 / 127, rel=1e-6)  # 3c010204
    got = tc.match_cache(mpnet, {"/encoder/Log_output_0", "/Sub_output_0", "/Cast_output_0", "other"})
    assert set(got.amax) == {"/Sub_output_0", "/Cast_output_0"} and got.zero == ("/Sub_output_0",)
    assert got.amax["/Cast_output_0"] == pytest.approx(1.0, rel=1e-6)
    assert list(got.unusable) == ["/encoder/Log_output_0"] and "inf" in got.unusable["/encoder/Log_output_0"]
    assert "ONNXTRT_Broadcast_645_output" in got.not_in_model and len(got.not_in_model) == 36


def test_names_with_spaces_brackets_and_colons_split_on_the_last_separator(tmp_path):
    p = tmp_path / "names.cache"
    p.write_text("TRT-8401-EntropyCalibration2\n(Unnamed Layer* 82) [Shuffle]_output: 3c56713e\ninput_1:0: 3caa54fc\n"
                 "block: out: 3c010204\n366: 0\n\n")
    cache = tc.load_calibration_cache(p)
    assert cache.version == (8, 4, 1)
    assert list(cache.scales) == ["(Unnamed Layer* 82) [Shuffle]_output", "input_1:0", "block: out", "366"]
    assert cache.scales["366"] == 0.0 and cache.scales["block: out"] == pytest.approx(1 / 127, rel=1e-6)
    # what se-deploy writes reads back the same, including those names
    out = tc.write_calibration_cache(tmp_path / "back.cache", cache.scales, values="scale", trt_version="8.4.1")
    assert tc.load_calibration_cache(out).scales == cache.scales
    assert "366: 00000000" in out.read_text()  # written padded: ModelOpt's reader needs 8 digits


@pytest.mark.parametrize("digits, version", [("8401", (8, 4, 1)), ("8602", (8, 6, 2)), ("100300", (10, 3, 0)),
                                             ("101303", (10, 13, 3)), ("110100", (11, 1, 0))])
def test_header_digits_decode_both_encodings(digits, version):
    assert tc.version_of_digits(digits) == version
    assert tc.trt_version_digits(".".join(map(str, version))) == digits
