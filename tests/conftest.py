import os
import shutil

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "2")


def _has_tensorrt_gpu() -> bool:
    try:
        import tensorrt  # noqa: F401
    except Exception:
        return False
    return shutil.which("nvidia-smi") is not None or os.path.exists("/dev/nvhost-ctrl")


def pytest_collection_modifyitems(config, items):
    if _has_tensorrt_gpu():
        return
    skip = pytest.mark.skip(reason="needs TensorRT and an NVIDIA GPU (none here)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
