"""The built distribution has one import namespace: ``pallet`` (issue 10, item 6). In a checkout,
``pallet/kernel`` and ``pallet/plugins`` are symlinks; a wheel must hold real copies under
``pallet/`` and no top-level ``kernel`` or ``plugins``."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile

from tests.conftest import REPO


def test_the_wheel_has_only_the_pallet_top_level(tmp_path):
    # Built from a copy (symlinks kept): pip builds in the source tree and would leave build/ there.
    source = tmp_path / "src"
    shutil.copytree(REPO, source, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", "build", "*.egg-info", "__pycache__", ".hypothesis", ".pytest_cache", "tests", "bench"))
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                            "-w", str(tmp_path / "dist"), str(source)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "dist").glob("pallet-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names}
    assert {top for top in tops if not top.endswith((".dist-info", ".data"))} == {"pallet"}
    assert "pallet/kernel/engine.py" in names   # real files, not the symlinks
    assert any(name.startswith("pallet/plugins/storage/") and name.endswith(".py") for name in names)
