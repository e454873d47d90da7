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
    from pallet.kernel.cli.system import storage_block

    from pallet.kernel.storage.migrate import in_progress, kept_drivers

    engine.select_storage_driver()
    block = storage_block(engine)
    block["DataPresent"] = engine.storage_data_present()
    block["KeptOld"] = kept_drivers(engine.root)
    journal = in_progress(engine.root)
    if journal is not None:
        block["Migration"] = {"From": journal.source, "To": journal.target, "Phase": journal.phase,
                              "LayersDone": len(journal.done)}
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
    if block["KeptOld"]:
        click.echo(f"Kept after migration (ignored): {', '.join(block['KeptOld'])}")
    if "Migration" in block:
        m = block["Migration"]
        click.echo(f"Migration: from {m['From']} to {m['To']} unfinished ({m['Phase']}, {m['LayersDone']} layers moved); "
                   f'run "pallet storage migrate --to {m["To"]}" to finish it')


@storage.command("migrate")
@click.option("--to", "target", metavar="DRIVER", help="Storage driver to move every image and stopped container to.")
@click.option("--keep-old", is_flag=True, help="Keep the old driver's data as a backup (ignored by driver selection).")
@click.option("--abort", is_flag=True, help="Give up an unfinished migration and keep the old driver.")
@click.pass_obj
def migrate(engine, target, keep_old, abort):
    """Move every image layer and stopped container to another storage driver.

    Each layer is verified after the move (image layers against their diff ids, every layer
    against the old driver's copy, file by file). The root switches to the new driver only
    when everything is in place; the old data is deleted after that, unless --keep-old.
    Interrupted (even by kill -9)? Run the same command again to resume.
    """
    from pallet.kernel.errors import UsageError
    from pallet.kernel.storage import migrate as migration

    if abort:
        if target or keep_old:
            raise UsageError("--abort takes no other option")
        source = migration.abort(engine, say=click.echo)
        click.echo(f"Migration aborted; {engine.root} keeps using {source}")
        return
    if not target:
        raise UsageError('missing option "--to DRIVER"')
    report = migration.migrate(engine, target, keep_old, say=click.echo)
    rate = report.bytes / report.seconds / 1e6 if report.seconds else 0.0
    verb = "Resumed and finished" if report.resumed else "Finished"
    click.echo(f"{verb} migrating {engine.root} from {report.source} to {report.target}: {report.layers} layers "
               f"({report.containers} containers, {report.bytes / 1e6:.1f} MB) in {report.seconds:.1f}s "
               f"({rate:.1f} MB/s)")
    click.echo(f"The data of {report.source} was " + ("kept as a backup" if report.kept_old else "deleted"))
    for note in report.notes:
        click.echo(f"Note: {note}")
