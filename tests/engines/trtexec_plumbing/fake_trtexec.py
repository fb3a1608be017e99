"""A stand-in for the trtexec EXECUTABLE, for testing process plumbing only (arguments, exit codes, files).

It runs no TensorRT and measures nothing: it records its argv, prints a banner and a device block in
trtexec's log format (with an obviously fake GPU), and writes the files it is asked for by copying
real trtexec exports from tests/fixtures/real/trtexec/. Tests that use it check how se-deploy drives
a trtexec process and reads back its files; they say nothing about TensorRT.

Environment: FAKE_TRTEXEC_DIGITS (banner version, default 100300), FAKE_TRTEXEC_LOG (append argv as
JSON lines), FAKE_TRTEXEC_FAIL (exit 1 with an [E] line).
"""

import json
import os
import shutil
import sys
from pathlib import Path

REAL = Path(__file__).resolve().parents[2] / "fixtures" / "real" / "trtexec"
STAMP = "[01/01/2026-00:00:00]"


def main(argv):
    digits = int(os.environ.get("FAKE_TRTEXEC_DIGITS", "100300"))
    if os.environ.get("FAKE_TRTEXEC_LOG"):
        with open(os.environ["FAKE_TRTEXEC_LOG"], "a") as f:
            f.write(json.dumps(argv) + "\n")
    cmd = " ".join(["trtexec", *argv])
    print(f"&&&& RUNNING TensorRT.trtexec [TensorRT v{digits}] # {cmd}")
    if argv == ["--help"]:
        print("=== Model Options ===")
        return 0
    opts = dict(a.split("=", 1) if "=" in a else (a, "") for a in argv)
    major = digits // 10000 if digits >= 10000 else digits // 1000
    version = f"{major}.{digits // 100 % 100}.{digits % 100}" if digits >= 10000 else \
        f"{major}.{digits // 100 % 10}.{digits % 100}"
    print(f"{STAMP} [I] === Device Information ===")
    print(f"{STAMP} [I] Selected Device: Fake GPU (process plumbing test)")
    print(f"{STAMP} [I] Compute Capability: 0.0")
    print(f"{STAMP} [I] TensorRT version: {version}")
    print(f"{STAMP} [W] a warning line")
    if os.environ.get("FAKE_TRTEXEC_FAIL"):
        print(f"{STAMP} [E] Error[4]: fake failure for the plumbing test")
        print(f"&&&& FAILED TensorRT.trtexec [TensorRT v{digits}] # {cmd}")
        return 1
    if "--saveEngine" in opts:
        Path(opts["--saveEngine"]).write_bytes(b"fake plan bytes (not a TensorRT plan)")
    if "--exportLayerInfo" in opts:
        info = "exportLayerInfo_10.x_detailed_rtx3060_alexnet_fuzzylabs.json" if "--loadEngine" in opts else \
            "exportLayerInfo_10.16.1_detailed_mnist.json"
        shutil.copy(REAL / info, opts["--exportLayerInfo"])
    if "--exportTimes" in opts:
        shutil.copy(REAL / "exportTimes_10.x_rtx3060_alexnet_fuzzylabs_first20_verbatim.json", opts["--exportTimes"])
    if "--exportProfile" in opts:
        shutil.copy(REAL / "exportProfile_10.x_rtx3060_alexnet_fuzzylabs.json", opts["--exportProfile"])
    print(f"&&&& PASSED TensorRT.trtexec [TensorRT v{digits}] # {cmd}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
