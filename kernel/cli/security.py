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


@security.group("userns")
def userns_group():
    """User namespace remapping."""


@userns_group.command("setup")
@click.argument("user", default="pallet")
@click.option("--subuid-file", default="/etc/subuid", show_default=True, help="Subordinate UID file to update.")
@click.option("--subgid-file", default="/etc/subgid", show_default=True, help="Subordinate GID file to update.")
def userns_setup(user, subuid_file, subgid_file):
    """Give USER (default: pallet) 65536 subordinate UIDs and GIDs, for [security] userns_remap."""
    from pathlib import Path

    from plugins.security.userns import add_entry

    for path in (subuid_file, subgid_file):
        granted = add_entry(Path(path), user)
        click.echo(f"{path}: {user}:{granted.start}:{granted.count}")
