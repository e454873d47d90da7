"""``pallet_authorize_request``: a pip-installed plugin denies privileged creates; the client sees a 403."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from tests.api.conftest import start_server, stop_server

DENIER = '''
"""Test AuthZ plugin: no privileged containers through the API."""
from pallet.kernel import hookimpl


@hookimpl
def pallet_authorize_request(request):
    if request.method == "POST" and request.path == "/containers/create":
        if (request.body.get("HostConfig") or {}).get("Privileged"):
            return "privileged containers are not allowed here"
    return None
'''


@pytest.fixture(scope="module")
def denier_site(tmp_path_factory):
    source = tmp_path_factory.mktemp("denier-src")
    (source / "pallet_denier_test.py").write_text(DENIER)
    (source / "pyproject.toml").write_text(textwrap.dedent('''
        [build-system]
        requires = ["setuptools>=68"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "pallet-denier-test"
        version = "0.1"
        [project.entry-points."pallet.security"]
        denier = "pallet_denier_test"
        [tool.setuptools]
        py-modules = ["pallet_denier_test"]
    '''))
    target = tmp_path_factory.mktemp("denier-site")
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps",
                           "--no-build-isolation", "--target", str(target), str(source)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return target


def test_a_plugin_denies_privileged_creates_with_a_403(bb, denier_site, tmp_path):
    server = start_server(bb, tmp_path / "api.sock", env={"PYTHONPATH": str(denier_site)})
    try:
        result = server.docker("run", "--rm", "--privileged", "busybox", "true")
        assert result.returncode == 125
        assert "authorization denied by plugin: privileged containers are not allowed here" in result.stderr
        status, _h, body = server.request("POST", "/containers/create", {"Image": "busybox", "Cmd": ["true"],
                                                                         "HostConfig": {"Privileged": True}})
        assert (status, body) == (403, {"message": "authorization denied by plugin: privileged containers are "
                                                   "not allowed here"})
        allowed = server.docker("run", "--rm", "busybox", "echo", "allowed")
        assert (allowed.returncode, allowed.stdout) == (0, "allowed\n"), allowed.stderr
    finally:
        stop_server(server)
