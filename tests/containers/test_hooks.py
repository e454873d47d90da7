"""Lifecycle hooks and ``pallet_spec_amend`` reach a third-party plugin installed with pip."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest

OBSERVER = '''
"""Test observer: appends each lifecycle event to $PALLET_TEST_EVENTS and amends the spec."""
import os

from pallet.kernel import hookimpl


def _log(line):
    with open(os.environ["PALLET_TEST_EVENTS"], "a") as handle:
        handle.write(line + "\\n")


@hookimpl
def pallet_spec_amend(spec, container):
    spec["process"]["env"].append("AMENDED_BY=observer")


@hookimpl
def pallet_container_created(container):
    _log(f"created {container.name}")


@hookimpl
def pallet_container_started(container):
    _log(f"started {container.name} {container.pid > 0}")


@hookimpl
def pallet_container_stopped(container, exit_code):
    _log(f"stopped {container.name} {exit_code}")


@hookimpl
def pallet_container_removed(container):
    _log(f"removed {container.name}")
'''


@pytest.fixture(scope="module")
def observer_site(tmp_path_factory):
    source = tmp_path_factory.mktemp("observer-src")
    (source / "pallet_observer_test.py").write_text(OBSERVER)
    (source / "pyproject.toml").write_text(textwrap.dedent('''
        [build-system]
        requires = ["setuptools>=68"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "pallet-observer-test"
        version = "0.1"
        [project.entry-points."pallet.security"]
        observer = "pallet_observer_test"
        [tool.setuptools]
        py-modules = ["pallet_observer_test"]
    '''))
    target = tmp_path_factory.mktemp("observer-site")
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps",
                           "--no-build-isolation", "--target", str(target), str(source)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return target


def test_hooks_fire_in_order_for_foreground_and_detached_containers(bb, observer_site, tmp_path):
    events = tmp_path / "events"
    env = {"PYTHONPATH": str(observer_site), "PALLET_TEST_EVENTS": str(events)}
    result = bb("run", "--rm", "--name", "fg", "busybox", "sh", "-c", "echo $AMENDED_BY; exit 3", env=env)
    assert (result.returncode, result.stdout) == (3, "observer\n"), result.stderr
    assert events.read_text().splitlines() == ["created fg", "started fg True", "stopped fg 3", "removed fg"]
    events.unlink()
    bb("run", "-d", "--name", "bg", "busybox", "sleep", "100", env=env, check=True)
    bb("stop", "-t", "0", "bg", env=env, check=True)
    bb("rm", "bg", env=env, check=True)
    deadline = time.monotonic() + 10
    while "removed bg" not in (events.read_text() if events.exists() else "") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert events.read_text().splitlines() == ["created bg", "started bg True", "stopped bg 137", "removed bg"]
