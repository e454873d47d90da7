"""``pallet secret``: create, list, inspect and remove secrets without swarm (values never printed)."""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone

import click

from pallet.kernel.cli.output import emit, format_option, inspect_format_option, json_option, print_inspected, render_template


@click.group("secret")
def secret():
    """Manage secrets (encrypted at rest, given to containers with run --secret)."""


def _when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def inspect_data(record, users: list[str]) -> dict:
    """Docker's ``secret inspect`` shape, less swarm's version; ``Containers`` lists who references it."""
    return {"ID": record.id, "CreatedAt": _when(record.created), "UpdatedAt": _when(record.updated),
            "Spec": {"Name": record.name, "Labels": record.labels or {}, "Driver": None},
            "Containers": users}


@secret.command("create")
@click.argument("name")
@click.argument("file")
@click.option("--label", "-l", "labels", multiple=True, metavar="KEY=VALUE", help="Secret labels.")
@click.pass_obj
def create(engine, name, file, labels):
    """Create a secret from FILE, or from standard input when FILE is "-"."""
    from pallet.kernel.errors import PalletError
    from pallet.kernel.secrets import MAX_SIZE, open_store

    if file == "-":
        value = sys.stdin.buffer.read(MAX_SIZE + 1)
    else:
        try:
            with open(file, "rb") as handle:
                value = handle.read(MAX_SIZE + 1)
        except OSError as exc:
            raise PalletError(f"secret create: cannot read {file}: {exc.strerror or exc}") from None
    label_map = {}
    for label in labels:
        key, _, val = label.partition("=")
        label_map[key] = val
    click.echo(open_store(engine).create(name, value, label_map).id)


@secret.command("ls")
@click.option("--quiet", "-q", is_flag=True, help="Only display IDs.")
@format_option
@json_option
@click.pass_obj
def ls(engine, quiet, fmt, as_json):
    """List secrets (names and dates only)."""
    import time

    from pallet.kernel.humanize import duration
    from pallet.kernel.secrets import open_store

    ago = lambda t: duration(max(0.0, time.time() - t)) + " ago"  # noqa: E731
    rows = [{"ID": r.id, "Name": r.name, "Driver": "", "CreatedAt": ago(r.created), "UpdatedAt": ago(r.updated),
             "Labels": ",".join(f"{k}={v}" for k, v in sorted(r.labels.items()))}
            for r in open_store(engine).all()]
    emit(rows, [("ID", "ID"), ("NAME", "Name"), ("DRIVER", "Driver"), ("CREATED", "CreatedAt"),
                ("UPDATED", "UpdatedAt")], fmt=fmt, as_json=as_json, quiet_field="ID", quiet=quiet)


@secret.command("inspect")
@click.argument("names", nargs=-1, required=True)
@inspect_format_option
@click.pass_obj
@click.pass_context
def inspect(ctx, engine, names, fmt):
    """Display the metadata of one or more secrets; the value is never shown."""
    from pallet.kernel.secrets import open_store

    store = open_store(engine)

    def one(name):
        record = store.get(name)
        return inspect_data(record, store.users(record.id))

    print_inspected(ctx, names, one, fmt)


@secret.command("rm")
@click.argument("names", nargs=-1, required=True)
@click.pass_obj
@click.pass_context
def rm(ctx, engine, names):
    """Remove one or more secrets no container references."""
    from pallet.kernel.errors import PalletError
    from pallet.kernel.secrets import open_store

    store = open_store(engine)
    failed = False
    for name in names:
        try:
            store.remove(name)
            click.echo(name)
        except PalletError as exc:
            click.echo(f"Error: {exc}", err=True)
            failed = True
    if failed:
        ctx.exit(1)
