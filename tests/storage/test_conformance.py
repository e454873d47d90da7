"""pallet's built-in drivers against the conformance kit, and the kit against a broken driver."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pallet.kernel.conformance.storage import *  # noqa: F401,F403 - the suite's tests and fixtures

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent


# module:Class rather than the registered names: looking names up in-process would fill
# stevedore's process-wide entry-point cache before other tests add plugins to sys.path.
# The registered names go through ``pallet plugins check`` in test_cli_check.py.
@pytest.fixture(params=["pallet.plugins.storage.vfs:VfsDriver", "pallet.plugins.storage.overlay2:Overlay2Driver"],
                ids=["vfs", "overlay2"])
def storage_driver_name(request):  # noqa: F811 - overrides the suite's option-driven fixture
    return request.param


def run_kit(driver: str, *extra: str) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": f"{REPO}:{HERE}", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(REPO),
         "--pallet-storage-driver", driver, *extra],
        capture_output=True, text=True, cwd=str(HERE / "kit_only"), env=env, timeout=240)


def test_broken_driver_fails_the_kit_with_readable_messages():
    proc = run_kit("broken_driver:BrokenDriver")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "failed" in out
    assert "a .wh. whiteout did not hide the file" in out
    assert "writing in the child changed the parent's file" in out
    assert "diff_size() is" in out
    failed = {line.split("::")[1].split()[0] for line in out.splitlines() if line.startswith("FAILED")}
    assert {"test_parent_child_isolation", "test_whiteouts_and_opaque_dirs", "test_diff_size"} <= failed, failed
    assert "test_symlinks" not in failed and "test_create_and_remove" not in failed, failed


def test_kit_passes_for_a_good_driver_given_as_module_class():
    proc = run_kit("pallet.plugins.storage.vfs:VfsDriver", "-k", "create_and_remove or whiteouts")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 passed" in proc.stdout


def test_six_methods_suffice_layers_has_a_fallback():
    proc = run_kit("six_methods_driver:SixMethodsDriver")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert " passed" in proc.stdout and "failed" not in proc.stdout


def test_the_kit_reports_undocumented_errors_and_modes_in_octal():
    proc = run_kit("broken_driver:BrokenDriver", "-k", "documented_errors or permissions")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "create() of a layer that exists: expected pallet.errors.Conflict, got builtins.FileExistsError" in out
    assert "setuid file: mode 0o755, owner 0:0, want mode 0o4755, owner 0:0" in out
