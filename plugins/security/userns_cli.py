"""``pallet security userns setup``: grant the remap user subordinate IDs for ``[security] userns_remap``."""

from __future__ import annotations

from pathlib import Path

import click

from pallet.plugins.security.subids import DEFAULT_REMAP_USER, add_entry


@click.group("userns")
def userns():
    """User namespace remapping."""


@userns.command("setup")
@click.argument("user", default=DEFAULT_REMAP_USER)
@click.option("--subuid-file", default="/etc/subuid", show_default=True, help="Subordinate UID file to update.")
@click.option("--subgid-file", default="/etc/subgid", show_default=True, help="Subordinate GID file to update.")
def userns_setup(user, subuid_file, subgid_file):
    """Give USER (default: pallet) 65536 subordinate UIDs and GIDs, for [security] userns_remap."""
    for path in (subuid_file, subgid_file):
        granted = add_entry(Path(path), user)
        click.echo(f"{path}: {user}:{granted.start}:{granted.count}")
