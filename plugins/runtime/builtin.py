"""pallet's built-in runtime: namespaces, pivot_root, cgroups, capabilities and seccomp from Python."""

from __future__ import annotations

from kernel import hookimpl
from kernel.drivers import Availability, Runtime


class PalletRuntime(Runtime):
    description = "built-in Python runtime"
    implemented = False

    @classmethod
    def probe(cls, home=None, options=None):
        import os

        if not os.path.exists("/proc/self/ns/mnt"):
            return Availability.no("mount namespaces are not supported by this kernel")
        return Availability.ok()


@hookimpl
def pallet_register_runtimes(register):
    register("pallet", PalletRuntime)
