"""``pallet security``: a group the security plugins fill (seccomp default/convert, userns setup, check)."""

from __future__ import annotations

import click

from pallet.kernel.cli.extend import PluginGroup


@click.group("security", cls=PluginGroup, entry_group="security")
def security():
    """Security profiles and checks (subcommands come from the security plugins)."""
