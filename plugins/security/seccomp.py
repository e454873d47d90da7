"""seccomp profile: system call filtering with Docker's JSON profile format, enforced by the runtime via libseccomp."""

from __future__ import annotations

import os

from pallet.kernel import hookimpl
from pallet.kernel.drivers import Availability, SecurityProfile
from pallet.kernel.errors import UsageError

UNCONFINED = "unconfined"


def select_profile(option: str | None, host_default: str | None, privileged: bool) -> tuple[str, dict | None]:
    """Which profile a container gets: ``(description, Docker-format dict or None for no filter)``.

    Precedence as Docker's: --privileged runs unfiltered; then --security-opt seccomp=…;
    then the host default from ``[security] seccomp_profile``; then pallet's built-in default.
    """
    from pallet.plugins.security import seccomp_format
    from pallet.plugins.security.seccomp_default import default_profile

    if privileged:
        return "privileged", None
    for chosen in (option, host_default):
        if chosen == UNCONFINED:
            return UNCONFINED, None
        if chosen:
            return chosen, seccomp_format.load(chosen)
    return "pallet-default", default_profile()


class SeccompProfile(SecurityProfile):
    description = "system call filter (Docker JSON profiles)"
    order = 20

    @classmethod
    def probe(cls, home=None, options=None):
        from pallet.kernel import host

        if not host.kernel_features()["seccomp"]:
            return Availability.no("seccomp is not supported by this kernel")
        from pallet.kernel import linux

        try:
            linux.libseccomp()
        except OSError:
            return Availability.no("libseccomp is not installed (apt-get install libseccomp2)")
        return Availability.ok()

    @classmethod
    def opts_out(cls, options):
        return options == {"seccomp": UNCONFINED}

    def validate(self, options):
        for key, value in options.items():
            if key != "seccomp":
                raise UsageError(f'invalid --security-opt "{key}" for the seccomp profile')
            if not value:
                raise UsageError('invalid --security-opt "seccomp=": expected a profile path or "unconfined"')

    def apply(self, spec, ctx):
        from pallet.plugins.security import seccomp_format

        host_default = ctx.settings.get("seccomp_profile")
        if host_default and host_default != UNCONFINED and not os.path.isabs(host_default):
            host_default = str(self.context.config.config_path.parent / host_default)  # relative to pallet.toml
        source, profile = select_profile(ctx.options.get("seccomp"), host_default, ctx.privileged)
        linux = spec.setdefault("linux", {})
        if profile is None:
            linux.pop("seccomp", None)
            return
        # Conditional rules look at the bounding set, which the capabilities profile (order 10) wrote.
        caps = spec.get("process", {}).get("capabilities", {}).get("bounding", [])
        linux["seccomp"] = seccomp_format.to_oci(profile, caps, source=source)


@hookimpl
def pallet_register_security_profiles(register):
    register("seccomp", SeccompProfile)


@hookimpl
def pallet_register_commands(cli):
    from pallet.plugins.security.seccomp_cli import seccomp

    cli.plugin_group("security").add_command(seccomp)
