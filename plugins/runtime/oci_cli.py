"""runc and crun as alternate runtimes: the same bundle, executed by their command-line tools."""

from __future__ import annotations

from kernel import hookimpl
from kernel.drivers import Availability, Runtime


class OciCliRuntime(Runtime):
    binary = "runc"
    implemented = False

    @classmethod
    def probe(cls, home=None, options=None):
        from kernel import host

        if host.which(cls.binary) is None:
            return Availability.no(f"{cls.binary} is not installed")
        return Availability.ok()


class RuncRuntime(OciCliRuntime):
    description = "runc, the OCI reference runtime"
    binary = "runc"


class CrunRuntime(OciCliRuntime):
    description = "crun, the C OCI runtime"
    binary = "crun"


@hookimpl
def pallet_register_runtimes(register):
    register("runc", RuncRuntime)
    register("crun", CrunRuntime)
