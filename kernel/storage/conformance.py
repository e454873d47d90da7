"""The storage driver conformance kit, as a pytest plugin (entry point ``pytest11``).

Importing this module must stay cheap: pytest loads it in every test session. It only adds
options; the tests and their fixtures live in ``pallet.kernel.storage.conformance_suite``, which is
collected only when ``--pallet-storage-driver`` is given, so other test sessions see nothing.

    pytest --pallet-storage-driver NAME [--pallet-storage-home DIR] [--pallet-storage-opt K=V ...]

NAME is a registered driver (entry point group ``pallet.storage``) or ``module:Class`` for a
driver class that is not installed yet.
"""

from __future__ import annotations

import os

SUITE_MODULE = "pallet.kernel.storage.conformance_suite"


def pytest_addoption(parser):
    group = parser.getgroup("pallet-storage", "pallet storage driver conformance kit")
    group.addoption("--pallet-storage-driver", metavar="NAME",
                    help="run the pallet storage conformance suite against this driver (or module:Class)")
    group.addoption("--pallet-storage-home", metavar="DIR",
                    help="directory to create each test's driver home in (default: a temp dir in /tmp)")
    group.addoption("--pallet-storage-opt", metavar="KEY=VALUE", action="append", default=[],
                    help="driver option, repeatable (e.g. zfs.fsname=pool/pallet)")


def suite_path() -> str:
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "conformance_suite.py")


def pytest_configure(config):
    if not config.getoption("--pallet-storage-driver", default=None):
        return
    suite = suite_path()
    # Add the suite unless the run already names it (``pallet plugins check`` does).
    if not any(os.path.abspath(str(arg).split("::")[0]) == suite for arg in config.args):
        config.args.append(suite)
