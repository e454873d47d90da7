"""``pallet volume export|import|rename|clone``: back a volume up as a tar, restore it, move or copy it."""

from __future__ import annotations

import sys

import click


@click.command("export")
@click.argument("name")
@click.option("--output", "-o", metavar="FILE", help="Write to a file instead of standard output.")
@click.pass_obj
def export(engine, name, output):
    """Write the content of volume NAME as a tar archive (owners, modes and xattrs kept)."""
    from pallet.kernel.errors import UsageError
    from pallet.kernel.volume_backup import export_to_file, export_volume
    from pallet.kernel.volumes import VolumeStore

    store = VolumeStore(engine)
    if output:
        export_to_file(store, name, output)
        return
    if sys.stdout.isatty():
        raise UsageError("cowardly refusing to write a tar archive to a terminal: redirect it or use --output")
    export_volume(store, name, sys.stdout.buffer)
    sys.stdout.buffer.flush()


@click.command("import")
@click.argument("name")
@click.argument("source", required=False, default="-")
@click.pass_obj
def import_(engine, name, source):
    """Fill volume NAME (created if missing, else it must be empty) from a tar archive, or standard input."""
    from pallet.kernel.errors import PalletError
    from pallet.kernel.volume_backup import import_volume
    from pallet.kernel.volumes import VolumeStore

    if source == "-":
        import_volume(VolumeStore(engine), name, sys.stdin.buffer)
    else:
        try:
            handle = open(source, "rb")
        except OSError as exc:
            raise PalletError(f"volume import: cannot read {source}: {exc.strerror or exc}") from None
        with handle:
            import_volume(VolumeStore(engine), name, handle)
    click.echo(name)


@click.command("rename")
@click.argument("old")
@click.argument("new")
@click.pass_obj
def rename(engine, old, new):
    """Rename a volume that no container uses."""
    from pallet.kernel.volume_backup import rename_volume
    from pallet.kernel.volumes import VolumeStore

    rename_volume(VolumeStore(engine), old, new)
    click.echo(new)


@click.command("clone")
@click.argument("source")
@click.argument("target")
@click.pass_obj
def clone(engine, source, target):
    """Create volume TARGET as a copy of SOURCE (driver, options, labels and content)."""
    from pallet.kernel.volume_backup import clone_volume
    from pallet.kernel.volumes import VolumeStore

    clone_volume(VolumeStore(engine), source, target)
    click.echo(target)


COMMANDS = (export, import_, rename, clone)
