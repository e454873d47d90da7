"""selinux profile: process labels via attr/exec, mount labels via context=, MCS categories."""

from __future__ import annotations

import os

from kernel import hookimpl
from kernel.drivers import Availability, SecurityProfile


class SELinuxProfile(SecurityProfile):
    description = "SELinux labels"
    order = 40
    implemented = False

    @classmethod
    def probe(cls, home=None, options=None):
        from kernel import host

        if "selinuxfs" not in host.filesystems():
            return Availability.no("SELinux is not enabled in this kernel (no selinuxfs)")
        if not os.path.exists("/sys/fs/selinux/enforce"):
            return Availability.no("SELinux is compiled into this kernel but not enabled (no policy loaded)")
        return Availability.ok()


@hookimpl
def pallet_register_security_profiles(register):
    register("selinux", SELinuxProfile)
