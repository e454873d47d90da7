"""landlock profile: restrict a container's filesystem access to declared paths (Linux Landlock LSM)."""

from __future__ import annotations

from kernel import hookimpl
from kernel.drivers import Availability, SecurityProfile


class LandlockProfile(SecurityProfile):
    description = "Landlock filesystem sandbox (--security-opt landlock=PATH)"
    order = 45
    default_enabled = False
    implemented = False

    @classmethod
    def probe(cls, home=None, options=None):
        from kernel import host

        abi = host.landlock_abi()
        if abi <= 0:
            return Availability.no("Landlock is not enabled in this kernel")
        return Availability.ok(f"ABI {abi}")


@hookimpl
def pallet_register_security_profiles(register):
    register("landlock", LandlockProfile)
