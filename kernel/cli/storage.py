"""``pallet storage``: which driver this root uses and why; migration between drivers."""

from __future__ import annotations

import json

import click


@click.group("storage")
def storage():
    """Inspect and migrate storage drivers."""


@storage.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def status(engine, as_json):
    """Show the storage driver for this root, how it was chosen, and its status.

    Unlike ``info``, this fails when no driver can be selected, with the reason.
    """
    from kernel.cli.system import storage_block

    engine.select_storage_driver()
    block = storage_block(engine)
    block["DataPresent"] = engine.storage_data_present()
    if as_json:
        click.echo(json.dumps(block, indent=2))
        return
    click.echo(f"Driver: {block.get('Driver') or '(none)'}")
    for key in ("ChosenBy", "Availability", "Error"):
        if key in block:
            click.echo(f"{key}: {block[key]}")
    for key, value in block.get("Status", []):
        click.echo(f" {key}: {value}")
    click.echo(f"Data present for: {', '.join(block['DataPresent']) or '-'}")
