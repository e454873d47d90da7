"""userns profile: user namespace remapping from /etc/subuid and /etc/subgid."""

from __future__ import annotations

import os

from kernel import hookimpl
from kernel.drivers import Availability, SecurityProfile


class UsernsProfile(SecurityProfile):
    description = "user namespace ID remapping"
    order = 5
    default_enabled = False
    implemented = False

    @classmethod
    def probe(cls, home=None, options=None):
        if not os.path.exists("/proc/self/ns/user"):
            return Availability.no("user namespaces are not supported by this kernel")
        try:
            with open("/proc/sys/user/max_user_namespaces") as handle:
                if int(handle.read()) == 0:
                    return Availability.no("user namespaces are disabled (user.max_user_namespaces = 0)")
        except OSError:
            pass
        return Availability.ok()


@hookimpl
def pallet_register_security_profiles(register):
    register("userns", UsernsProfile)
