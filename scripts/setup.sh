#!/usr/bin/env bash
# Creates .venv and installs se-deploy with its test extras and OpenVINO (so its backend tests run).
# The pinned CPU torch goes in first: a bare `torch` requirement would pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q "torch==2.13.0"
python -m pip install -q -e ".[test,slim,openvino]"
