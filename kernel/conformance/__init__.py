"""Conformance kits: the tests every storage, volume, network and IPAM driver must pass.

Each kit is a pytest module here (``storage``, ``volume``, ``network``, ``ipam``), collected only
when asked for: ``pallet plugins check KIND NAME`` runs one, and the pytest plugin
(``pallet.kernel.conformance.pytest_plugin``, entry point ``pytest11``) adds
``--pallet-KIND-driver NAME`` to any pytest run, so a vendor runs the kit from their own test
suite. ``harness`` holds what the kits share: options, driver homes, opening the driver.
"""

from __future__ import annotations

import os

KINDS = ("storage", "volume", "network", "ipam")


def suite_path(kind: str) -> str:
    """The file of ``kind``'s kit (what pytest collects)."""
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), f"{kind}.py")
