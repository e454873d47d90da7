"""``pallet plugins new``: each scaffolded distribution, pip-installed into a fresh venv, passes its kit unchanged."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO

KINDS = ("storage", "volume", "network")


@pytest.fixture(scope="module")
def scaffolded(tmp_path_factory):
    """One distribution per kind written by the CLI, and a throwaway venv they are pip-installed into."""
    base = tmp_path_factory.mktemp("scaffold")
    dists, written = {}, {}
    for kind in KINDS:
        name = f"kit{kind[:3]}"
        target = base / f"pallet-{name}"
        proc = subprocess.run([sys.executable, "-m", "pallet.kernel.cli", "plugins", "new", kind, name, str(target)],
                              capture_output=True, text=True, cwd=str(REPO))
        assert proc.returncode == 0, proc.stderr
        dists[kind] = (name, target)
        written[kind] = sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file())
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    proc = subprocess.run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps",
                           "--no-build-isolation", *(str(target) for _name, target in dists.values())],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return python, dists, written


def venv_env() -> dict:
    # The checkout's pallet comes first, as it does for the rest of the suite.
    return {**os.environ, "PYTHONPATH": str(REPO)}


def test_the_distribution_has_every_piece(scaffolded):
    _python, dists, written = scaffolded
    name, target = dists["storage"]
    assert written["storage"] == ["README.md", "pyproject.toml", f"src/pallet_{name}/__init__.py", f"src/pallet_{name}/driver.py",
                     "tests/test_conformance.py"]
    pyproject = (target / "pyproject.toml").read_text()
    assert f'[project.entry-points."pallet.storage"]\n{name} = "pallet_{name}.driver"' in pyproject
    driver = (target / f"src/pallet_{name}/driver.py").read_text()
    from pallet.kernel.drivers import StorageDriver

    methods = {m for m in vars(StorageDriver) if not m.startswith("_") and callable(getattr(StorageDriver, m))}
    methods -= {"check_id", "refuse_options"}  # helpers the driver calls, not duties
    missing = sorted(m for m in methods if f"def {m}(" not in driver)
    assert not missing, f"the scaffolded driver does not write out {missing}"
    assert f"pallet plugins check storage {name}" in (target / "README.md").read_text()


@pytest.mark.parametrize("kind", KINDS)
def test_a_scaffolded_driver_passes_its_kit_unchanged(scaffolded, kind):
    python, dists, _written = scaffolded
    name, target = dists[kind]
    command = [python, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    if kind == "network":
        # The kit's leak check compares the host's links before and after each test; other tests of this
        # pass add and remove links meanwhile (CI once counted a bridge of tests/network as a leak), so the
        # kit runs in a network namespace of its own, as a vendor's CI would run it alone.
        command = ["unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$@"', "kit", *command]
    proc = subprocess.run(command, capture_output=True, text=True, cwd=str(target), env=venv_env(), timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert " passed" in proc.stdout and "failed" not in proc.stdout and "skipped" not in proc.stdout, proc.stdout


def test_the_installed_driver_is_listed_as_third_party(scaffolded):
    python, dists, _written = scaffolded
    proc = subprocess.run([python, "-m", "pallet.kernel.cli", "--root", "/nonexistent-root-for-ls", "plugins", "ls",
                           "--json"], capture_output=True, text=True, env=venv_env(), cwd=str(REPO))
    assert proc.returncode == 0, proc.stderr
    rows = {(row["Kind"], row["Name"]): row for row in json.loads(proc.stdout)}
    for kind, (name, _target) in dists.items():
        row = rows[(kind, name)]
        assert (row["Origin"], row["Distribution"], row["Status"]) == ("third-party", f"pallet-{name}", "available")


def test_scaffolding_refuses_bad_names_and_full_directories(tmp_path, pallet):
    bad = pallet("plugins", "new", "storage", "My-FS", str(tmp_path / "x"))
    assert bad.returncode == 2 and bad.error_lines == [
        'Error: invalid driver name "My-FS" (want 2 to 20 lowercase letters and digits, starting with a letter)']
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep").write_text("mine")
    full = pallet("plugins", "new", "volume", "myvol", str(tmp_path / "full"))
    assert full.returncode == 1 and full.error_lines == [f"Error: {tmp_path / 'full'} already exists and is not empty"]
    assert os.listdir(tmp_path / "full") == ["keep"]
