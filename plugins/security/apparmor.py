"""apparmor profile: generates and loads pallet-default, confines containers via attr/exec."""

from __future__ import annotations

import os

from kernel import hookimpl
from kernel.drivers import Availability, SecurityProfile


class AppArmorProfile(SecurityProfile):
    description = "AppArmor confinement"
    order = 30
    implemented = False

    @classmethod
    def probe(cls, home=None, options=None):
        from kernel import host

        if not os.path.isdir("/sys/module/apparmor") and not os.path.isdir("/sys/kernel/security/apparmor"):
            return Availability.no("AppArmor is not enabled in this kernel")
        if host.which("apparmor_parser") is None:
            return Availability.no("apparmor_parser is not installed")
        return Availability.ok()


@hookimpl
def pallet_register_security_profiles(register):
    register("apparmor", AppArmorProfile)
