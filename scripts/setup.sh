#!/usr/bin/env bash
# Creates .venv and installs se-deploy with its test extras, and OpenVINO off a Jetson (so its backend
# tests run).
#
# x86 (and any non-Jetson): the pinned CPU torch goes in first, because a bare `torch` requirement
# would pull a multi-GB CUDA build.
# Jetson (/etc/nv_tegra_release on aarch64): JetPack puts TensorRT's Python bindings (and NVIDIA's
# torch wheel, when installed) in the system Python's site-packages, which a plain venv cannot see,
# so the venv is created with --system-site-packages from the system python3, and a torch that is
# already there is kept instead of installing the CPU pin.
#
# SETUP_DRY_RUN=1 prints what would be done and changes nothing (NV_TEGRA_RELEASE and MACHINE override
# /etc/nv_tegra_release and `uname -m` for it).
set -euo pipefail
cd "$(dirname "$0")/.."

RELEASE=${NV_TEGRA_RELEASE:-/etc/nv_tegra_release}
MACHINE=${MACHINE:-$(uname -m)}
JETSON=0
if [ -f "$RELEASE" ] && [ "$MACHINE" = "aarch64" ]; then
    JETSON=1
fi

if [ "${SETUP_DRY_RUN:-0}" = 1 ]; then
    if [ "$JETSON" = 1 ]; then
        echo "setup: Jetson ($(head -n1 "$RELEASE" | sed 's/^# //; s/, GCID.*//')): venv with --system-site-packages from ${PYTHON:-/usr/bin/python3}; keep an installed torch"
    else
        echo "setup: not a Jetson ($MACHINE): plain venv from ${PYTHON:-python3}; CPU torch==2.13.0"
    fi
    exit 0
fi

if [ "$JETSON" = 1 ]; then
    PY=${PYTHON:-/usr/bin/python3}
    echo "setup: Jetson: $(tr -d '\0' < /proc/device-tree/model 2>/dev/null || echo 'model unknown'); $(head -n1 "$RELEASE" | sed 's/^# //; s/, GCID.*//')"
    if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
        echo "setup: $PY is Python $("$PY" -c 'import platform; print(platform.python_version())'); se-deploy needs 3.10 or newer (JetPack 6 or 7; JetPack 5 ships 3.8)" >&2
        exit 1
    fi
    if [ ! -x .venv/bin/python ] && ! "$PY" -c 'import ensurepip' 2>/dev/null; then
        echo "setup: $PY cannot create a venv (no ensurepip): sudo apt install python3-venv, then run this again" >&2
        exit 1
    fi
    if [ -x .venv/bin/python ] && ! grep -q "include-system-site-packages = true" .venv/pyvenv.cfg 2>/dev/null; then
        echo "setup: warning: .venv exists without --system-site-packages, so it cannot see JetPack's TensorRT;"
        echo "setup:          remove it (rm -rf .venv) and run this script again"
    fi
    [ -x .venv/bin/python ] || "$PY" -m venv --system-site-packages .venv
else
    PY=${PYTHON:-python3}
    [ -x .venv/bin/python ] || "$PY" -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip

if [ "$JETSON" = 1 ]; then
    if python -c "import torch" 2>/dev/null; then
        echo "setup: keeping the installed torch $(python -c 'import torch; print(torch.__version__, "(CUDA", torch.version.cuda, ")")')"
    else
        # from PyTorch's CPU index: a plain `pip install torch` may pull a multi-GB CUDA (SBSA) build that
        # does not run on a Jetson's integrated GPU
        echo "setup: no torch found: installing the CPU torch from download.pytorch.org/whl/cpu (export works; for CUDA"
        echo "setup: install NVIDIA's PyTorch wheel for your JetPack, see docs.nvidia.com/deeplearning/frameworks/install-pytorch-jetson-platform)"
        python -m pip install -q torch --index-url https://download.pytorch.org/whl/cpu
    fi
else
    python -m pip install -q "torch==2.13.0"
fi
if [ "$JETSON" = 1 ]; then
    python -m pip install -q -e ".[test,slim]"
else
    python -m pip install -q -e ".[test,slim,openvino]"
fi

if [ "$JETSON" = 1 ]; then
    # NVIDIA's Jetson torch wheels are built against NumPy 1.x; a NumPy 2 pulled in above breaks their import.
    # such a torch still imports under NumPy 2 (with a warning); torch.from_numpy is what fails
    if ! python -c "import numpy, torch; torch.from_numpy(numpy.zeros(1))" 2>/tmp/se-deploy-setup-torch.err; then
        if grep -q -i "numpy" /tmp/se-deploy-setup-torch.err; then
            echo "setup: the installed torch needs NumPy 1.x: installing numpy<2"
            python -m pip install -q "numpy<2"
        fi
    fi
    echo "setup: Python $(python -c 'import platform; print(platform.python_version())')"
    python - <<'PY'
import shutil
try:
    import tensorrt
    print(f"setup: TensorRT {tensorrt.__version__} (Python bindings from {tensorrt.__file__.rsplit('/', 2)[0]})")
except Exception as e:
    print(f"setup: TensorRT Python bindings not importable ({type(e).__name__}): sudo apt install python3-libnvinfer")
try:
    import torch
    print(f"setup: torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}")
except Exception as e:
    print(f"setup: torch not importable ({type(e).__name__}: {e})")
import importlib.util
found = [m for m in ("cuda.bindings", "cuda.cudart", "pycuda") if importlib.util.find_spec(m.split(".")[0])
         and importlib.util.find_spec(m)]
print(f"setup: CUDA binding for the TensorRT runner: {found[0] if found else 'none'}"
      + ("" if found else " (pip install 'cuda-python==12.*' on JetPack 6, 'cuda-python==13.*' on JetPack 7;"
                          " trtexec builds and times without one)"))
exe = shutil.which("trtexec") or ("/usr/src/tensorrt/bin/trtexec" if __import__("os").path.isfile(
    "/usr/src/tensorrt/bin/trtexec") else None)
print(f"setup: trtexec: {exe or 'not found (sudo apt install libnvinfer-bin)'}")
PY
    # the L4T release -> JetPack -> TensorRT it expects, and whatever is missing, in one place
    python -m se_deploy doctor || true
fi
