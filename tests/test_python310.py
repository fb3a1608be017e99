"""se-deploy runs on Python 3.10 (JetPack 6's system Python, whose site-packages hold TensorRT's bindings).

vermin reads every module and reports the newest Python feature it uses (tomllib, enum.StrEnum,
hashlib.file_digest, typing.Self, ExceptionGroup, ``except*`` ...). The floor it finds must be the
one ``requires-python`` states, and no module may need more than 3.10.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _vermin(*paths: str) -> subprocess.CompletedProcess:
    # vermin's console entry point (the package has no __main__), run by this interpreter
    return subprocess.run([sys.executable, "-c", "import sys, vermin; sys.exit(vermin.main())", "--target=3.10-", "--no-tips", "--violations",
                           "--eval-annotations", *paths], capture_output=True, text=True, cwd=ROOT)


def test_the_package_needs_nothing_newer_than_python_3_10():
    r = _vermin("se_deploy")
    assert "No module named 'vermin'" not in r.stderr, "vermin is in the test extra: pip install -e '.[test]'"
    assert r.returncode == 0, "features newer than Python 3.10:\n" + r.stdout + r.stderr
    assert re.search(r"Minimum required versions: 3\.10\b", r.stdout), r.stdout


def test_requires_python_says_3_10():
    text = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'^requires-python = ">=3\.10"$', text, re.M)
    assert "tomli>=2; python_version<'3.11'" in text  # the tomllib fallback's dependency


def test_the_check_catches_a_3_11_feature(tmp_path):
    bad = tmp_path / "uses_311.py"
    bad.write_text("import tomllib\nfrom enum import StrEnum\n")
    r = _vermin(str(bad))
    assert r.returncode != 0 and "'tomllib' module requires !2, 3.11" in r.stdout
