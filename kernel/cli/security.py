"""``pallet security``: print pallet's default seccomp profile; check a container's confinement."""

from __future__ import annotations

import json

import click


@click.group("security")
def security():
    """Security profiles and checks."""


@security.group("seccomp")
def seccomp():
    """Seccomp profiles."""


@seccomp.command("default")
def seccomp_default():
    """Print pallet's default seccomp profile (Docker's JSON format) to start your own from."""
    from plugins.security.seccomp_default import default_profile

    click.echo(json.dumps(default_profile(), indent=2))
