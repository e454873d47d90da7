"""seccomp profile: system call filtering with Docker's JSON profile format, via libseccomp."""

from __future__ import annotations

import ctypes.util

from kernel import hookimpl
from kernel.drivers import Availability, SecurityProfile


class SeccompProfile(SecurityProfile):
    description = "system call filter (Docker JSON profiles)"
    order = 20
    implemented = False

    @classmethod
    def probe(cls, home=None, options=None):
        from kernel import host

        if not host.kernel_features()["seccomp"]:
            return Availability.no("seccomp is not supported by this kernel")
        if ctypes.util.find_library("seccomp") is None:
            return Availability.no("libseccomp is not installed (apt-get install libseccomp2)")
        return Availability.ok()


@hookimpl
def pallet_register_security_profiles(register):
    register("seccomp", SeccompProfile)
