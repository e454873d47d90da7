"""What the conformance kits share: the driver under test, a throwaway home for it, clean-up.

A kit's fixtures call :func:`driver_name`, :func:`home` and :func:`open_for_kit`; messages name
what the driver did wrong, since a vendor reads them first.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import shutil
import subprocess
import tempfile

import pytest


def driver_name(request, kind: str) -> str:
    """``--pallet-KIND-driver``, or skip the test (the kit was imported but not asked for)."""
    name = request.config.getoption(f"--pallet-{kind}-driver", default=None)
    if not name:
        pytest.skip(f"no --pallet-{kind}-driver given")
    return name


def options(request, kind: str) -> dict[str, str]:
    """``--pallet-KIND-opt KEY=VALUE`` as a dict."""
    found = {}
    for opt in request.config.getoption(f"--pallet-{kind}-opt", default=None) or []:
        key, sep, value = opt.partition("=")
        if not sep:
            raise pytest.UsageError(f"--pallet-{kind}-opt {opt!r}: want KEY=VALUE")
        found[key] = value
    return found


def load_driver_class(kind: str, name: str):
    """A registered driver's class, or ``module:Class`` for one that is not installed."""
    if ":" in name:
        module, _, attr = name.partition(":")
        return getattr(importlib.import_module(module), attr)
    from pallet.kernel.plugins import PluginManager

    return PluginManager().driver(kind, name).cls


def mounts_under(home: str) -> list[str]:
    """Mount points at or below ``home`` in this mount namespace."""
    home = os.path.realpath(home)
    found = []
    with open("/proc/self/mountinfo") as handle:
        for line in handle:
            point = line.split()[4].replace("\\040", " ")
            if point == home or point.startswith(home + "/"):
                found.append(point)
    return found


@contextlib.contextmanager
def home(request, kind: str):
    """A fresh directory under ``--pallet-KIND-home`` (default /tmp), unmounted and removed afterwards."""
    parent = request.config.getoption(f"--pallet-{kind}-home", default=None) or "/tmp"
    os.makedirs(parent, exist_ok=True)
    path = tempfile.mkdtemp(prefix=f"conformance-{kind}-{os.getpid()}-", dir=parent)
    try:
        yield path
    finally:
        for point in reversed(mounts_under(path)):  # only after a failure: the tests themselves check this
            subprocess.run(["umount", "-l", point], capture_output=True, check=False)
        shutil.rmtree(path, ignore_errors=True)


def open_for_kit(kind: str, name: str, home_dir: str, opts: dict, **context):
    """The driver made as the engine makes it (``open_driver``); skip with the probe's reason if unavailable."""
    from pallet.kernel.drivers import DriverContext
    from pallet.kernel.errors import Unavailable
    from pallet.kernel.plugins import open_driver

    cls = load_driver_class(kind, name)
    try:
        return open_driver(cls, kind, name, DriverContext(home_dir, opts, **context))
    except Unavailable as exc:
        pytest.skip(str(exc))


def raises_documented(error: type, call, *args, what: str, **kwargs):
    """Call and check it raised ``error`` (a ``pallet.errors`` class); the message says what it raised instead."""
    try:
        call(*args, **kwargs)
    except error as exc:
        assert str(exc) and "\n" not in str(exc).strip(), f"{what}: the {error.__name__} message must be one line, got {str(exc)!r}"
        return exc
    except Exception as exc:  # noqa: BLE001 - reported: the kit says what was raised instead
        pytest.fail(f"{what}: expected pallet.errors.{error.__name__}, got {type(exc).__module__}.{type(exc).__name__}: {exc}")
    pytest.fail(f"{what}: expected pallet.errors.{error.__name__}, nothing was raised")
