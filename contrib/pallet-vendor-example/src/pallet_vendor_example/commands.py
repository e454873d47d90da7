"""``pallet copyfs stats``: a vendor's own command, added through ``pallet_register_commands``."""

from __future__ import annotations

import json
import os

import click

from pallet.errors import UsageError


@click.group("copyfs")
def copyfs():
    """The copyfs storage driver (pallet-vendor-example)."""


@copyfs.command("stats")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@click.pass_obj
def stats(engine, as_json):
    """Count the copyfs layers of this root and the bytes their files hold."""
    home = engine.storage_home("copyfs")
    if engine.recorded_storage_driver() not in (None, "copyfs"):
        raise UsageError(f'{engine.root} uses the "{engine.recorded_storage_driver()}" storage driver, not copyfs')
    layers_dir = home / "layers"
    layers = sorted(p.name for p in layers_dir.iterdir()) if layers_dir.is_dir() else []
    total = 0
    for name in layers:
        for base, _dirs, files in os.walk(layers_dir / name):
            total += sum(os.lstat(os.path.join(base, f)).st_size for f in files)
    figures = {"Home": str(home), "Layers": len(layers), "Bytes": total}
    if as_json:
        click.echo(json.dumps(figures))
    else:
        click.echo(f"{len(layers)} layers, {total} bytes in {home}")
