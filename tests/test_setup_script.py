"""scripts/setup.sh tells a Jetson from any other machine by /etc/nv_tegra_release on aarch64.

``SETUP_DRY_RUN=1`` prints the decision and changes nothing; ``NV_TEGRA_RELEASE`` and ``MACHINE``
stand in for the file and ``uname -m``. The release files are real ones (tests/fixtures/real/README.md).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
JETSON = ROOT / "tests" / "fixtures" / "real" / "jetson"


def _dry_run(release: Path, machine: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "SETUP_DRY_RUN": "1", "NV_TEGRA_RELEASE": str(release), "MACHINE": machine}
    env.pop("PYTHON", None)
    return subprocess.run(["bash", str(ROOT / "scripts" / "setup.sh")], check=False, capture_output=True, text=True, env=env,
                          timeout=60)


@pytest.mark.parametrize("name, release", [
    ("nv_tegra_release_R36.3.0_full_UNATTRIBUTED.txt", "R36 (release), REVISION: 3.0"),
    ("nv_tegra_release_R36.4.3_first_lines_UNATTRIBUTED.txt", "R36 (release), REVISION: 4.3"),
    ("nv_tegra_release_R35.3.1_orin_nano_jetson_stats_issue400.txt", "R35 (release), REVISION: 3.1"),
])
def test_a_jetson_gets_a_venv_that_sees_jetpacks_tensorrt_and_keeps_its_torch(name, release):
    r = _dry_run(JETSON / name, "aarch64")
    assert r.returncode == 0, r.stderr
    assert r.stdout == (f"setup: Jetson ({release}): venv with --system-site-packages from /usr/bin/python3; "
                        "keep an installed torch\n")


def test_other_machines_get_the_plain_venv_and_the_cpu_torch(tmp_path):
    release = JETSON / "nv_tegra_release_R36.4.3_first_lines_UNATTRIBUTED.txt"
    for machine, path in (("x86_64", release), ("aarch64", tmp_path / "absent")):  # x86 with the file; arm without
        r = _dry_run(path, machine)
        assert r.returncode == 0 and r.stdout.startswith(f"setup: not a Jetson ({machine}): plain venv"), r.stdout


def test_the_jetson_path_never_pulls_a_cuda_torch_from_pypi():
    text = (ROOT / "scripts" / "setup.sh").read_text()
    assert "--system-site-packages" in text
    installs = [ln.strip() for ln in text.splitlines() if "pip install" in ln and "torch" in ln
                and not ln.lstrip().startswith(("#", "echo"))]
    assert installs == ['python -m pip install -q torch --index-url https://download.pytorch.org/whl/cpu',
                        'python -m pip install -q "torch==2.13.0"']
