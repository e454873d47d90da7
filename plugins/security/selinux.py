"""selinux profile: process label (spec selinuxLabel, written to attr/exec by the runtime), mount label, MCS pairs."""

from __future__ import annotations

import os

from pallet.kernel import hookimpl
from pallet.kernel.drivers import Availability, SecurityProfile
from pallet.kernel.errors import UsageError


def container_labels(option: dict[str, str], level: str, contexts) -> tuple[str, str] | None:
    """``(process label, mount label)`` for a container, or None with ``label=disable``.

    ``level`` is the allocated MCS level, used unless the user gave ``level:``.
    """
    from pallet.plugins.security.selinux_labels import Label

    if option.get("disable"):
        return None
    process, file = contexts
    level = option.get("level", level)
    proc = Label(option.get("user", process.user), option.get("role", process.role),
                 option.get("type", process.type), level)
    mount = Label(file.user, file.role, option.get("filetype", file.type), level)
    return str(proc), str(mount)


class SELinuxProfile(SecurityProfile):
    description = "SELinux labels"
    order = 40

    @classmethod
    def probe(cls, home=None, options=None):
        from pallet.kernel import host

        if "selinuxfs" not in host.filesystems():
            return Availability.no("SELinux is not enabled in this kernel (no selinuxfs)")
        if not os.path.exists("/sys/fs/selinux/enforce"):
            return Availability.no("SELinux is compiled into this kernel but not enabled (no policy loaded)")
        return Availability.ok()

    @classmethod
    def opts_out(cls, options):
        from pallet.plugins.security.selinux_labels import parse_option

        values = [v for k, v in options.items() if k in ("label", "selinux")]
        return len(values) == len(options) == 1 and parse_option(values[0]) == {"disable": "true"}

    def validate(self, options):
        from pallet.plugins.security.selinux_labels import parse_option

        for key, value in options.items():
            if key not in ("label", "selinux"):
                raise UsageError(f'invalid --security-opt "{key}" for the selinux profile')
            parse_option(value)

    def apply(self, spec, ctx):
        from pallet.plugins.security import selinux_labels as sl

        option = sl.parse_option(ctx.options.get("label") or ctx.options.get("selinux") or "")
        process = spec.setdefault("process", {})
        linux = spec.setdefault("linux", {})
        if ctx.privileged and not option:
            option = {"disable": "true"}  # Docker runs privileged containers unlabeled
        level = option.get("level")
        if not level and not option.get("disable"):
            containers = self.context.root / "containers"
            alive = {p.name for p in containers.glob("*")} if containers.is_dir() else set()
            level = sl.McsAllocator(self.home).allocate(ctx.container_id or "unnamed", alive)
        labels = container_labels(option, level or "", sl.policy_contexts())
        if labels is None:
            process.pop("selinuxLabel", None)
            linux.pop("mountLabel", None)
            return
        process["selinuxLabel"], linux["mountLabel"] = labels
        mount_label = sl.Label.parse(labels[1])
        for source, mode in ctx.relabel:
            sl.relabel(source, sl.relabel_target(source, mount_label, shared=(mode == "z")))


@hookimpl
def pallet_register_security_profiles(register):
    register("selinux", SELinuxProfile)
