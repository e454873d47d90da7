"""Fixtures for the kernel tests: third-party plugin distributions pip-installed into a private target dir."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import REPO


def pip_install_target(source: Path, target: Path) -> None:
    """A real ``pip install`` of ``source`` into ``target``, which tests then put on PYTHONPATH."""
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps",
         "--no-build-isolation", "--target", str(target), str(source)],
        capture_output=True, text=True,
    )
    assert proc.returncode == 0, f"pip install {source} failed:\n{proc.stderr}"


@pytest.fixture(scope="session")
def vendor_site(tmp_path_factory) -> Path:
    """The contrib vendor example package, installed with pip."""
    target = tmp_path_factory.mktemp("vendor-site")
    pip_install_target(REPO / "contrib" / "pallet-vendor-example", target)
    return target


@pytest.fixture(scope="session")
def broken_site(tmp_path_factory) -> Path:
    """A third-party distribution with three bad plugins: one raises at import, two break the hook specs."""
    src = tmp_path_factory.mktemp("broken-src")
    (src / "pyproject.toml").write_text(textwrap.dedent("""
        [build-system]
        requires = ["setuptools"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "pallet-broken-example"
        version = "0.3.0"

        [tool.setuptools]
        packages = ["pallet_broken_example"]

        [project.entry-points."pallet.storage"]
        explodefs = "pallet_broken_example.explode"
        badsig = "pallet_broken_example.badsig"

        [project.entry-points."pallet.network"]
        unknownhook = "pallet_broken_example.unknownhook"
    """))
    pkg = src / "pallet_broken_example"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "explode.py").write_text('raise RuntimeError("vendor module exploded on import")\n')
    (pkg / "badsig.py").write_text(textwrap.dedent("""
        from pallet.kernel import hookimpl

        @hookimpl
        def pallet_register_storage_drivers(register, not_in_spec):
            pass
    """))
    (pkg / "unknownhook.py").write_text(textwrap.dedent("""
        from pallet.kernel import hookimpl

        @hookimpl
        def pallet_register_network_drivers(register):
            pass

        @hookimpl
        def pallet_frobnicate(thing):
            pass
    """))
    target = tmp_path_factory.mktemp("broken-site")
    pip_install_target(src, target)
    return target


@pytest.fixture(scope="session")
def api_site(tmp_path_factory) -> Path:
    """A third-party distribution whose plugins declare the plugin API range they need: one too new, one met."""
    src = tmp_path_factory.mktemp("api-src")
    (src / "pyproject.toml").write_text(textwrap.dedent("""
        [build-system]
        requires = ["setuptools"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "pallet-api-example"
        version = "0.2.0"

        [tool.setuptools]
        packages = ["pallet_api_example"]

        [project.entry-points."pallet.storage"]
        futurefs = "pallet_api_example.future"
        currentfs = "pallet_api_example.current"
        garbledfs = "pallet_api_example.garbled"
    """))
    pkg = src / "pallet_api_example"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    driver = textwrap.dedent("""
        from pallet import hookimpl
        from pallet.plugins.storage.vfs import VfsDriver

        PALLET_PLUGIN_API = {api!r}

        @hookimpl
        def pallet_register_storage_drivers(register):
            register({name!r}, VfsDriver)
    """)
    (pkg / "future.py").write_text(driver.format(api=">=2.0,<3", name="futurefs"))
    (pkg / "current.py").write_text(driver.format(api=">=1.0,<2", name="currentfs"))
    (pkg / "garbled.py").write_text(driver.format(api="version one", name="garbledfs"))
    target = tmp_path_factory.mktemp("api-site")
    pip_install_target(src, target)
    return target
