"""``pallet config``: create, list, inspect and remove cluster configs (files given to services' tasks)."""

from __future__ import annotations

import json
import sys

import click

from pallet.kernel.cli.output import emit, format_option, inspect_format_option, json_option, print_inspected, render_template


@click.group("config")
def config():
    """Manage configs (cluster objects: files a service's tasks see at their target)."""


@config.command("create")
@click.argument("name")
@click.argument("file")
@click.option("--label", "-l", "labels", multiple=True, metavar="KEY=VALUE", help="Config labels.")
@click.pass_obj
def create(engine, name, file, labels):
    """Create a config from FILE, or from standard input when FILE is "-"."""
    from pallet.kernel.cluster import configs
    from pallet.kernel.errors import PalletError

    try:
        if file == "-":
            data = sys.stdin.buffer.read(configs.MAX_SIZE + 1)
        else:
            with open(file, "rb") as handle:
                data = handle.read(configs.MAX_SIZE + 1)
    except OSError as exc:
        raise PalletError(f"config create: cannot read {file}: {exc.strerror or exc}") from None
    click.echo(configs.create(engine, name, data, dict(label.partition("=")[::2] for label in labels)))


@config.command("ls")
@click.option("--quiet", "-q", is_flag=True, help="Only display IDs.")
@click.option("--filter", "-f", "filters", multiple=True, help="Filter output based on conditions provided.")
@format_option
@json_option
@click.pass_obj
def ls(engine, quiet, filters, fmt, as_json):
    """List configs."""
    import time

    from pallet.kernel.cluster import configs, store
    from pallet.kernel.humanize import duration

    wanted: dict[str, list[str]] = {}
    for item in filters:
        key, _, value = item.partition("=")
        wanted.setdefault(key, []).append(value)
    ago = lambda t: duration(max(0.0, time.time() - store.parse_time(t))) + " ago"  # noqa: E731
    rows = [{"ID": r["ID"], "Name": r["Spec"]["Name"], "CreatedAt": ago(r.get("CreatedAt", "")),
             "UpdatedAt": ago(r.get("UpdatedAt", "")),
             "Labels": ",".join(f"{k}={v}" for k, v in sorted((r["Spec"].get("Labels") or {}).items()))}
            for r in configs.list_configs(engine, wanted)]
    emit(rows, [("ID", "ID"), ("NAME", "Name"), ("CREATED", "CreatedAt"), ("UPDATED", "UpdatedAt")],
         fmt=fmt, as_json=as_json, quiet_field="ID", quiet=quiet)


@config.command("inspect")
@click.argument("names", nargs=-1, required=True)
@inspect_format_option
@click.pass_obj
@click.pass_context
def inspect(ctx, engine, names, fmt):
    """Display detailed information on one or more configs (with their data, base64, as Docker shows it)."""
    from pallet.kernel.cluster import configs

    print_inspected(ctx, names, lambda name: configs.inspect(engine, name), fmt)


@config.command("rm")
@click.argument("names", nargs=-1, required=True)
@click.pass_obj
@click.pass_context
def rm(ctx, engine, names):
    """Remove one or more configs no service uses."""
    from pallet.kernel.cluster import configs
    from pallet.kernel.errors import PalletError

    failed = False
    for name in names:
        try:
            configs.remove(engine, name)
            click.echo(name)
        except PalletError as exc:
            click.echo(f"Error: {exc}", err=True)
            failed = True
    if failed:
        ctx.exit(1)
