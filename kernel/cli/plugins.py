"""``pallet plugins``: list every plugin with its origin, version and availability on this host."""

from __future__ import annotations

import click

from pallet.kernel.cli.output import emit, format_option, json_option
from pallet.kernel.plugins import DRIVER_KINDS, GROUPS


@click.group("plugins")
def plugins():
    """List and check plugins."""


def plugin_rows(engine, kinds: tuple[str, ...]) -> list[dict]:
    """One row per driver, naming its entry point, plus one per entry point that is broken or disabled.

    A broken or disabled entry point registered nothing this time, so it is one row named after
    itself; its kind is what it registered when it last loaded (the entry-point cache remembers),
    else its group's kind.
    """
    manager = engine.plugins
    groups = {DRIVER_KINDS[k][0] for k in kinds} if kinds else set(GROUPS)
    manager.load(*sorted(groups))
    all_plugins = manager.all_plugins()
    rows = []
    for kind, drivers in manager.drivers.items():
        if kinds and kind not in kinds:
            continue
        for name, record in sorted(drivers.items()):
            availability = record.availability()
            plugin = record.plugin
            rows.append({
                "Name": name,
                "Kind": kind,
                "EntryPoint": plugin.name,
                "Group": plugin.group,
                "Plugin": plugin.name,
                "Distribution": plugin.distribution,
                "Version": plugin.version,
                "Origin": plugin.origin,
                "Status": "available" if availability.available else "unavailable",
                "Reason": availability.reason,
                "Description": record.cls.description,
            })
    group_kind = {group: kind for kind, group in GROUPS.items()}
    for plugin in all_plugins:
        if plugin.state == "loaded":
            continue
        plugin_kinds = sorted(manager.last_registered(plugin)) or [group_kind[plugin.group]]
        if kinds and not set(plugin_kinds) & set(kinds):
            continue
        rows.append({
            "Name": plugin.name, "Kind": ",".join(plugin_kinds), "EntryPoint": plugin.name, "Group": plugin.group,
            "Plugin": plugin.name, "Distribution": plugin.distribution, "Version": plugin.version,
            "Origin": plugin.origin, "Status": plugin.state, "Reason": plugin.error,
        })
    return rows


@plugins.command("ls")
@click.option("--kind", "kinds", multiple=True, type=click.Choice(sorted(DRIVER_KINDS)),
              help="Only this kind of driver (repeatable).")
@format_option
@json_option
@click.pass_obj
def ls(engine, kinds, fmt, as_json):
    """List plugins and the drivers they provide, with availability on this host."""
    rows = plugin_rows(engine, tuple(kinds))
    for row in rows:
        row["Availability"] = row["Status"] + (f": {row['Reason']}" if row["Reason"] else "")
    emit(rows, [("NAME", "Name"), ("KIND", "Kind"), ("ENTRYPOINT", "EntryPoint"), ("ORIGIN", "Origin"),
                ("DISTRIBUTION", "Distribution"),
                ("VERSION", "Version"), ("AVAILABILITY", "Availability")], fmt=fmt, as_json=as_json)


@plugins.command("check")
@click.argument("kind", type=click.Choice(["storage", "volume", "network", "ipam"]))
@click.argument("name")
@click.option("--home", type=click.Path(file_okay=False), help="Directory for the drivers' test homes (default /tmp).")
@click.option("--opt", "--storage-opt", "opts", multiple=True, metavar="KEY=VALUE", help="Driver option (repeatable).")
@click.option("-k", "keyword", metavar="EXPRESSION", help="Only the kit's tests matching this pytest -k expression.")
@click.option("-v", "--verbose", is_flag=True, help="One line per test (pytest -v).")
@click.option("--junitxml", type=click.Path(dir_okay=False), help="Write a JUnit XML report here (pytest --junitxml).")
@click.pass_obj
def check(engine, kind, name, home, opts, keyword, verbose, junitxml):
    """Run the conformance kit of KIND against driver NAME; exit 0 when it passes."""
    import os

    from pallet.kernel.errors import PalletError, UsageError

    record = engine.plugins.driver(kind, name)
    options = {}
    for opt in opts:
        key, sep, value = opt.partition("=")
        if not sep:
            raise UsageError(f'invalid --opt "{opt}" (want KEY=VALUE)')
        options[key] = value
    probe_home = os.path.join(home or "/tmp", name)
    availability = record.availability(probe_home, options)
    if not availability.available:
        raise PalletError(f'{kind} driver "{name}" is unavailable on this host: {availability.reason}')
    try:
        import pytest
    except ImportError:
        raise PalletError("the conformance kit needs pytest (pip install pytest)") from None

    from pallet.kernel.conformance import suite_path

    suite = suite_path(kind)
    args = [suite, f"--pallet-{kind}-driver", name, "-p", "no:cacheprovider",
            "-v" if verbose else "-q", "-rfEs", "--tb=short", "--rootdir", os.path.dirname(suite)]
    if keyword:
        args += ["-k", keyword]
    if junitxml:
        args += ["--junitxml", junitxml]
    if home:
        args += [f"--pallet-{kind}-home", home]
    for opt in opts:
        args += [f"--pallet-{kind}-opt", opt]
    if os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD"):
        args += ["-p", "pallet.kernel.conformance.pytest_plugin"]
    engine.plugins.all_plugins()  # fills in each plugin's distribution for the line below
    click.echo(f"Running the pallet {kind} conformance kit against {name} ({record.plugin.describe()})")
    code = pytest.main(args)
    if code == pytest.ExitCode.NO_TESTS_COLLECTED:
        raise UsageError(f'no test of the {kind} conformance kit matches -k "{keyword}"')
    if code != 0:
        raise PalletError(f'{kind} driver "{name}" failed the conformance kit')
    click.echo(f'{kind} driver "{name}" passed the conformance kit')


@plugins.command("new")
@click.argument("kind", type=click.Choice(["storage", "volume", "network"]))
@click.argument("name")
@click.argument("directory", required=False, type=click.Path(file_okay=False))
def new(kind, name, directory):
    """Write a vendor distribution for a new KIND driver NAME into DIRECTORY (default ./pallet-NAME).

    It has the pyproject with the entry point, the driver with every method written out and
    documented, a test module running the conformance kit, and a README; it passes its kit as written.
    """
    from pathlib import Path

    from pallet.kernel.scaffold import check_name, scaffold

    check_name(name)
    target = Path(directory or f"pallet-{name}")
    written = scaffold(kind, name, target)
    for path in written:
        click.echo(path)
    click.echo(f"Next: pip install {target} && pallet plugins check {kind} {name}")
