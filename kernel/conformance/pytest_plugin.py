"""The conformance kits as a pytest plugin (entry point ``pytest11``: ``pallet-conformance``).

Importing this module must stay cheap: pytest loads it in every test session. It only adds
options; a kit's tests are collected only when its ``--pallet-KIND-driver`` is given, so other
test sessions see nothing::

    pytest --pallet-storage-driver NAME [--pallet-storage-home DIR] [--pallet-storage-opt K=V ...]
    pytest --pallet-volume-driver NAME  [--pallet-volume-home DIR]  [--pallet-volume-opt K=V ...]
    pytest --pallet-network-driver NAME [--pallet-network-home DIR] [--pallet-network-opt K=V ...]
    pytest --pallet-ipam-driver NAME    [--pallet-ipam-home DIR]    [--pallet-ipam-opt K=V ...]

NAME is a registered driver or ``module:Class`` for a driver class that is not installed yet.
"""

from __future__ import annotations

import os

from pallet.kernel.conformance import KINDS, suite_path

GROUP = "pallet-conformance"


def pytest_addoption(parser):
    group = parser.getgroup(GROUP, "pallet driver conformance kits")
    if any("--pallet-storage-driver" in option.names() for option in group.options):
        return  # registered twice (an old install's entry point beside this one)
    for kind in KINDS:
        group.addoption(f"--pallet-{kind}-driver", metavar="NAME",
                        help=f"run the pallet {kind} conformance kit against this driver (or module:Class)")
        group.addoption(f"--pallet-{kind}-home", metavar="DIR",
                        help=f"directory to make each {kind} test's driver home in (default: a temp dir in /tmp)")
        group.addoption(f"--pallet-{kind}-opt", metavar="KEY=VALUE", action="append", default=[],
                        help=f"{kind} driver option, repeatable")


def pytest_configure(config):
    for kind in KINDS:
        if not config.getoption(f"--pallet-{kind}-driver", default=None):
            continue
        suite = os.path.realpath(suite_path(kind))
        # Add the kit unless the run already names it (``pallet plugins check`` does).
        if not any(os.path.realpath(str(arg).split("::")[0]) == suite for arg in config.args):
            config.args.append(suite)
