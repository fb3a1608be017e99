import os
import shutil

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "2")


def _tensorrt_gpu() -> tuple[bool, str]:
    """Whether the gpu tests can run, and what was checked: TensorRT's import, then CUDA's own device
    count (cuda-python or pycuda; on a Jetson nvidia-smi says almost nothing, on JetPack 5 it is absent)."""
    from se_deploy.envinfo import _cuda_probe

    checked = []
    try:
        import tensorrt

        checked.append(f"import tensorrt: {tensorrt.__version__}")
    except Exception as e:
        checked.append(f"import tensorrt: {type(e).__name__}")
        ok_trt = False
    else:
        ok_trt = True
    try:
        cuda = _cuda_probe()
    except Exception as e:  # a broken binding must not stop the collection
        cuda = {"binding": None, "device_count": 0, "error": f"{type(e).__name__}: {e}"}
    count = cuda.get("device_count")
    checked.append(f"CUDA devices via {cuda.get('binding') or 'no cuda-python/pycuda'}: "
                   f"{cuda.get('error') or count}")
    checked.append(f"/etc/nv_tegra_release: {'present' if os.path.exists('/etc/nv_tegra_release') else 'absent'}")
    checked.append(f"nvidia-smi: {shutil.which('nvidia-smi') or 'absent'}")
    return ok_trt and isinstance(count, int) and count > 0, "; ".join(checked)


def pytest_collection_modifyitems(config, items):
    if not any("gpu" in item.keywords for item in items):
        return
    ok, checked = _tensorrt_gpu()
    if ok:
        return
    skip = pytest.mark.skip(reason=f"needs TensorRT and a CUDA GPU ({checked})")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
