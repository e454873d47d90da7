"""``pallet security seccomp``: print pallet's default profile, or what a profile becomes on this host."""

from __future__ import annotations

import json

import click


@click.group("seccomp")
def seccomp():
    """Seccomp profiles."""


@seccomp.command("default")
def seccomp_default():
    """Print pallet's default seccomp profile (Docker's JSON format) to start your own from."""
    from pallet.plugins.security.seccomp_default import default_profile

    click.echo(json.dumps(default_profile(), indent=2))


@seccomp.command("convert")
@click.argument("profile", required=False)
@click.option("--cap-add", multiple=True, help="Capabilities beyond Docker's defaults the container would hold.")
@click.option("--cap-drop", multiple=True, help="Default capabilities the container would not hold.")
def seccomp_convert(profile, cap_add, cap_drop):
    """Print the OCI linux.seccomp that PROFILE (default: pallet's) becomes on this host.

    Conditional rules are resolved for this architecture, kernel and capability set, so
    this shows exactly what a container would be given; a malformed profile is reported.
    """
    from pallet.plugins.security import seccomp_format
    from pallet.plugins.security.capabilities import host_capabilities, resolve_capabilities
    from pallet.plugins.security.seccomp_default import default_profile

    caps = resolve_capabilities(cap_add, cap_drop, False, host_capabilities())
    data = seccomp_format.load(profile) if profile else default_profile()
    click.echo(json.dumps(seccomp_format.to_oci(data, caps, source=profile or "pallet-default"), indent=2))
