"""``pallet volume``: create, list, inspect, remove and prune named volumes, as ``docker volume`` does."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import click

from pallet.kernel.cli.output import emit, format_option, inspect_format_option, json_option, print_inspected, render_template


@click.group("volume")
def volume():
    """Manage volumes."""


def _pairs(values, what):
    from pallet.kernel.config import parse_key_values

    return parse_key_values(values, what)


def inspect_data(store, record) -> dict:
    """Docker's ``volume inspect`` shape."""
    created = datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
    return {
        "CreatedAt": created,
        "Driver": record.driver,
        "Labels": record.labels or None,
        "Mountpoint": str(store.mountpoint(record)),
        "Name": record.name,
        "Options": record.options or None,
        "Scope": "local",
    }


@volume.command("create")
@click.argument("name", required=False)
@click.option("--driver", "-d", default="local", show_default=True, help="Volume driver name.")
@click.option("--opt", "-o", "opts", multiple=True, metavar="KEY=VALUE", help="Driver specific option (repeatable).")
@click.option("--label", "labels", multiple=True, metavar="KEY=VALUE", help="Set metadata on the volume.")
@click.option("--name", "name_opt", metavar="NAME", help="Volume name (same as the argument).")
@click.pass_obj
def create(engine, name, driver, opts, labels, name_opt):
    """Create a volume (anonymous, with a random name, when NAME is omitted)."""
    from pallet.kernel.errors import UsageError
    from pallet.kernel.volumes import VolumeStore

    if name and name_opt and name != name_opt:
        raise UsageError('conflicting options: either specify --name or provide positional arg, not both')
    label_map = {}
    for label in labels:  # Docker allows a label without a value
        key, _, value = label.partition("=")
        label_map[key] = value
    record = VolumeStore(engine).create(name or name_opt, driver, _pairs(opts, "--opt"), label_map)
    click.echo(record.name)


def _matches(store, record, filters: dict[str, list[str]]) -> bool:
    for key, values in filters.items():
        if key == "name" and not any(v in record.name for v in values):
            return False
        if key == "driver" and record.driver not in values:
            return False
        if key == "label":
            for value in values:
                label, sep, wanted = value.partition("=")
                if label not in record.labels or (sep and record.labels[label] != wanted):
                    return False
        if key == "dangling":
            dangling = not store.in_use_by(record.name)
            if any((v.lower() in ("true", "1")) != dangling for v in values):
                return False
    return True


def _parse_filters(filters) -> dict[str, list[str]]:
    from pallet.kernel.errors import UsageError

    parsed: dict[str, list[str]] = {}
    for item in filters:
        key, sep, value = item.partition("=")
        if not sep or key not in ("name", "driver", "label", "dangling"):
            raise UsageError(f'invalid filter "{item}" (known: dangling=true|false, driver=, label=, name=)')
        parsed.setdefault(key, []).append(value)
    return parsed


@volume.command("ls")
@click.option("--quiet", "-q", is_flag=True, help="Only display volume names.")
@click.option("--filter", "-f", "filters", multiple=True, metavar="KEY=VALUE",
              help="Filter: dangling=true|false, driver=NAME, label=KEY[=VALUE], name=PART.")
@format_option
@json_option
@click.pass_obj
def ls(engine, quiet, filters, fmt, as_json):
    """List volumes."""
    from pallet.kernel.volumes import VolumeStore

    store = VolumeStore(engine)
    wanted = _parse_filters(filters)
    rows = []
    for record in store.all():
        if _matches(store, record, wanted):
            rows.append({"Driver": record.driver, "Name": record.name, "Scope": "local",
                         "Mountpoint": str(store.mountpoint(record)),
                         "Labels": ",".join(f"{k}={v}" for k, v in sorted(record.labels.items()))})
    emit(rows, [("DRIVER", "Driver"), ("VOLUME NAME", "Name")], fmt=fmt, as_json=as_json,
         quiet_field="Name", quiet=quiet)


@volume.command("inspect")
@click.argument("names", nargs=-1, required=True)
@inspect_format_option
@click.pass_obj
@click.pass_context
def inspect(ctx, engine, names, fmt):
    """Display detailed information on one or more volumes."""
    from pallet.kernel.volumes import VolumeStore

    store = VolumeStore(engine)
    print_inspected(ctx, names, lambda name: inspect_data(store, store.get(name)), fmt)


CLUSTER_ONLY = "can only update cluster volumes"


@volume.command("update")
@click.argument("name", metavar="VOLUME")
@click.option("--availability", default="active", show_default=True, metavar="STRING",
              help='Cluster Volume availability ("active", "pause", "drain").')
@click.pass_obj
def update(engine, name, availability):
    """Update a volume (cluster volumes only): as Docker's, refused for the local volumes pallet has."""
    from pallet.kernel.errors import PalletError
    from pallet.kernel.volumes import VolumeStore

    VolumeStore(engine).get(name)   # a missing volume is its own error first, as Docker's CLI inspects it first
    raise PalletError(CLUSTER_ONLY)


@volume.command("rm")
@click.argument("names", nargs=-1, required=True)
@click.option("--force", "-f", is_flag=True, help="Do not fail on volumes that do not exist.")
@click.pass_obj
@click.pass_context
def rm(ctx, engine, names, force):
    """Remove one or more volumes. A volume in use by a container cannot be removed."""
    from pallet.kernel.errors import PalletError
    from pallet.kernel.volumes import VolumeStore

    store = VolumeStore(engine)
    failed = False
    for name in names:
        try:
            store.remove(name, force=force)
            click.echo(name)
        except PalletError as exc:
            click.echo(f"Error: {exc}", err=True)
            failed = True
    if failed:
        ctx.exit(1)


@volume.command("prune")
@click.option("--all", "-a", "all_volumes", is_flag=True, help="Remove all unused volumes, not just anonymous ones.")
@click.option("--filter", "filters", multiple=True, metavar="label=KEY[=VALUE]", help="Only volumes with this label.")
@click.option("--force", "-f", is_flag=True, help="Do not prompt for confirmation.")
@click.pass_obj
def prune(engine, all_volumes, filters, force):
    """Remove unused volumes (anonymous ones unless --all)."""
    from pallet.kernel.errors import UsageError
    from pallet.kernel.volumes import VolumeStore

    labels = {}
    for item in filters:
        key, sep, value = item.partition("=")
        if key != "label" or not sep:
            raise UsageError(f'invalid filter "{item}" (known: label=KEY[=VALUE])')
        label, _, wanted = value.partition("=")
        labels[label] = wanted
    if not force:
        which = "local volumes" if all_volumes else "anonymous local volumes"
        click.echo(f"WARNING! This will remove {which} not used by at least one container.")
        if not click.confirm("Are you sure you want to continue?", default=False):
            return
    removed, reclaimed = VolumeStore(engine).prune(all_volumes, labels)
    if removed:
        click.echo("Deleted Volumes:")
        for name in removed:
            click.echo(name)
        click.echo("")
    from pallet.kernel.humanize import size

    click.echo(f"Total reclaimed space: {size(reclaimed, 4)}")


def _add_backup_commands() -> None:
    from pallet.kernel.cli import volume_backup

    for command in volume_backup.COMMANDS:
        volume.add_command(command)


_add_backup_commands()
