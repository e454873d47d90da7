"""capabilities profile: Docker's 14 default capabilities, --cap-add/--cap-drop, --privileged."""

from __future__ import annotations

from kernel import hookimpl
from kernel.drivers import Availability, SecurityProfile


class CapabilitiesProfile(SecurityProfile):
    description = "Linux capability sets"
    order = 10
    implemented = False

    @classmethod
    def probe(cls, home=None, options=None):
        try:
            with open("/proc/self/status") as handle:
                if "CapBnd:" not in handle.read():
                    return Availability.no("the kernel does not report capability sets")
        except OSError as exc:
            return Availability.no(f"cannot read /proc/self/status: {exc.strerror}")
        return Availability.ok()


@hookimpl
def pallet_register_security_profiles(register):
    register("capabilities", CapabilitiesProfile)
