"""``pallet stack``: deploy a compose file as services of the cluster, list, inspect and remove stacks."""

from __future__ import annotations

import click

from pallet.kernel.cli.output import emit, filter_map, format_option


@click.group("stack")
def stack():
    """Manage stacks (compose files deployed as services of the cluster)."""


@stack.command("deploy")
@click.argument("name")
@click.option("--compose-file", "-c", "compose_files", multiple=True, metavar="FILE",
              help='Path to a Compose file, or "-" to read from stdin.')
@click.option("--prune", is_flag=True, help="Prune services that are no longer referenced.")
@click.option("--detach", "-d", is_flag=True, default=True, hidden=True, help="Exit immediately (the default).")
@click.option("--quiet", "-q", is_flag=True, help="Suppress progress output.")
@click.option("--resolve-image", type=click.Choice(["always", "changed", "never"]), default="always", hidden=True,
              help="Accepted for Docker's sake: the node that runs a task resolves its image.")
@click.option("--with-registry-auth", is_flag=True, hidden=True, help="Accepted for Docker's sake.")
@click.pass_obj
def deploy(engine, name, compose_files, prune, detach, quiet, resolve_image, with_registry_auth):
    """Deploy a new stack or update an existing stack."""
    from pallet.kernel.cluster import compose, stacks
    from pallet.kernel.errors import UsageError

    if not compose_files:
        raise UsageError("Please specify a Compose file (with --compose-file).")
    if len(compose_files) > 1:
        raise UsageError("Please specify only one compose file (with --compose-file): pallet merges no override files.")
    plan = compose.load(compose_files[0], name)
    for warning in plan.warnings:
        click.echo(warning, err=True)
    stacks.deploy(engine, plan, prune=prune, say=(lambda _line: None) if quiet else click.echo)


@stack.command("ls")
@format_option
@click.pass_obj
def ls(engine, fmt):
    """List stacks."""
    from pallet.kernel.cluster import stacks

    emit(stacks.list_stacks(engine), [("NAME", "Name"), ("SERVICES", "Services")], fmt=fmt)


def _nothing(name: str) -> None:
    click.echo(f"Nothing found in stack: {name}", err=True)


@stack.command("services")
@click.argument("name")
@click.option("--filter", "-f", "filters", multiple=True, metavar="FILTER", help="Filter output (id, name, mode, label).")
@click.option("--quiet", "-q", is_flag=True, help="Only display IDs.")
@format_option
@click.pass_obj
def services_(engine, name, filters, quiet, fmt):
    """List the services in the stack."""
    from pallet.kernel.cli.swarm_output import SERVICE_COLUMNS, service_row
    from pallet.kernel.cluster import services
    from pallet.kernel.cluster.stacks import label_filter

    wanted = filter_map(filters)
    wanted.setdefault("label", []).append(label_filter(name))
    found = services.list_services(engine, wanted)
    if not found and not filters:
        _nothing(name)
        return
    emit([service_row(s) for s in found], SERVICE_COLUMNS, fmt=fmt, quiet_field="ID", quiet=quiet)


@stack.command("ps")
@click.argument("name")
@click.option("--filter", "-f", "filters", multiple=True, metavar="FILTER",
              help="Filter output (id, name, node, desired-state).")
@click.option("--no-trunc", is_flag=True, help="Do not truncate output.")
@click.option("--no-resolve", is_flag=True, help="Do not map IDs to names.")
@click.option("--quiet", "-q", is_flag=True, help="Only display task IDs.")
@format_option
@click.pass_obj
def ps(engine, name, filters, no_trunc, no_resolve, quiet, fmt):
    """List the tasks in the stack."""
    from pallet.kernel.cli.swarm_output import TASK_COLUMNS, task_rows
    from pallet.kernel.cluster import nodes, stacks

    wanted = filter_map(filters)
    names = wanted.pop("name", None)
    in_stack = {s["ID"]: s for s in stacks.stack_services(engine, name)}
    tasks = stacks.stack_tasks(engine, name, wanted) if in_stack else []
    if not tasks and not filters:
        _nothing(name)
        return
    node_map = {} if no_resolve else {n["ID"]: n for n in nodes.list_nodes(engine)}
    rows = task_rows(tasks, {} if no_resolve else in_stack, node_map, no_trunc=no_trunc)
    if names:
        rows = [r for r in rows if any(r["Name"].lstrip(" \\_").startswith(n) for n in names)]
    emit(rows, TASK_COLUMNS, fmt=fmt, quiet_field="ID", quiet=quiet)


@stack.command("rm")
@click.argument("names", nargs=-1, required=True)
@click.option("--detach", "-d", is_flag=True, default=True, hidden=True, help="Accepted for Docker's sake.")
@click.pass_obj
def rm(engine, names, detach):
    """Remove one or more stacks (services, networks, secrets and configs; volumes are kept)."""
    from pallet.kernel.cluster import stacks

    for name in names:
        if not stacks.remove(engine, name, say=click.echo):
            _nothing(name)
