"""``pallet node …`` (join, ls, inspect, update, ps, rm) and ``pallet agent``: this root as a cluster node."""

from __future__ import annotations

import json

import click

from pallet.kernel.cli.output import emit, filter_map, format_option, inspect_format_option, render_template


@click.group("node")
def node():
    """Manage cluster nodes."""


@node.command("join")
@click.option("--cluster-store", "cluster_store", metavar="URL",
              help="The cluster's etcd members: etcd://HOST:PORT[,HOST:PORT…] (else the global --cluster-store).")
@click.option("--role", type=click.Choice(["manager", "worker"]), default="worker", show_default=True,
              help="Managers take part in the leader election and may run the scheduler.")
@click.option("--label", "labels", multiple=True, metavar="KEY=VALUE", help="Node label (repeatable).")
@click.option("--hostname", default=None, help="The node's name in the cluster [default: the host name].")
@click.option("--advertise-addr", default=None, metavar="ADDR",
              help="Address other nodes reach this one at [default: the one towards the cluster store].")
@click.pass_context
def join(ctx, cluster_store, role, labels, hostname, advertise_addr):
    """Join this root to a cluster as a node (its ID is kept in the root).

    The node must hold the cluster's key, the file named by [secrets] key_file: the first node's key
    becomes the cluster's, copy it to every other node before it joins.
    """
    from pallet.kernel.cluster import nodes
    from pallet.kernel.errors import UsageError

    url = cluster_store or ctx.find_root().params.get("cluster_store")
    if not url:
        raise UsageError("node join needs --cluster-store etcd://HOST:PORT[,HOST:PORT…]")
    node_id = nodes.join(ctx.obj, url, role, nodes.parse_labels(labels), hostname, advertise_addr)
    click.echo(f"This node joined a cluster as a {role}.\nNode ID: {node_id}\n"
               f'Run "pallet agent" (or the pallet-agent systemd unit) to keep it Ready.')


def _row(view: dict, self_id: str) -> dict:
    manager = view.get("ManagerStatus")
    manager_status = "" if manager is None else "Leader" if manager["Leader"] else \
        manager["Reachability"].title()
    return {"ID": view["ID"] + (" *" if view["ID"] == self_id else ""), "Self": view["ID"] == self_id,
            "Hostname": view["Description"]["Hostname"], "Status": view["Status"]["State"].title(),
            "Availability": view["Spec"]["Availability"].title(), "ManagerStatus": manager_status,
            "EngineVersion": (view["Description"].get("Engine") or {}).get("EngineVersion", ""),
            "TLSStatus": "Ready"}


@node.command("ls")
@click.option("--filter", "-f", "filters", multiple=True, metavar="KEY=VALUE",
              help="Filter output (id, name, role, label, node.label, membership).")
@click.option("--quiet", "-q", is_flag=True, help="Only display IDs.")
@format_option
@click.pass_obj
def ls(engine, filters, quiet, fmt):
    """List nodes in the cluster."""
    from pallet.kernel.cluster import nodes, store

    self_id = store.require_membership(engine)["ID"]
    views = nodes.list_nodes(engine, filter_map(filters))
    rows = [_row(v, self_id) for v in views]
    if quiet:
        for view in views:
            click.echo(view["ID"])
        return
    emit(rows, [("ID", "ID"), ("HOSTNAME", "Hostname"), ("STATUS", "Status"), ("AVAILABILITY", "Availability"),
                ("MANAGER STATUS", "ManagerStatus"), ("ENGINE VERSION", "EngineVersion")], fmt=fmt)


@node.command("inspect")
@click.argument("names", nargs=-1, required=True)
@click.option("--pretty", is_flag=True, help="Print the information in a human friendly format.")
@inspect_format_option
@click.pass_obj
def inspect(engine, names, pretty, fmt):
    """Display detailed information on one or more nodes ("self" is this one)."""
    from pallet.kernel.cluster import nodes

    views = [nodes.inspect_node(engine, name) for name in names]
    if fmt:
        for view in views:
            click.echo(render_template(fmt, view))
    elif pretty:
        click.echo("\n\n".join(_pretty(v) for v in views))
    else:
        click.echo(json.dumps(views, indent=4))


def _pretty(view: dict) -> str:
    from pallet.kernel.humanize import binary_size

    spec, description = view["Spec"], view["Description"]
    lines = [f"ID:\t\t\t{view['ID']}", f"Hostname:\t\t{description['Hostname']}", f"Joined at:\t\t{view['CreatedAt']}",
             "Status:", f" State:\t\t\t{view['Status']['State'].title()}",
             f" Availability:\t\t{spec['Availability'].title()}", f" Address:\t\t{view['Status'].get('Addr', '')}"]
    if view.get("ManagerStatus"):
        manager = view["ManagerStatus"]
        lines += ["Manager Status:", f" Address:\t\t{manager['Addr']}",
                  f" Raft Status:\t\t{manager['Reachability'].title()}",
                  f" Leader:\t\t{'Yes' if manager['Leader'] else 'No'}"]
    if spec.get("Labels"):
        lines += ["Labels:"] + [f" - {k}={v}" for k, v in sorted(spec["Labels"].items())]
    resources = description.get("Resources") or {}
    lines += ["Platform:", f" Operating System:\t{description['Platform'].get('OS', '')}",
              f" Architecture:\t\t{description['Platform'].get('Architecture', '')}",
              "Resources:", f" CPUs:\t\t\t{resources.get('NanoCPUs', 0) // 10**9}",
              f" Memory:\t\t{binary_size(resources.get('MemoryBytes', 0))}",
              f"Engine Version:\t\t{(description.get('Engine') or {}).get('EngineVersion', '')}"]
    return "\n".join(line.expandtabs(8) for line in lines)


@node.command("update")
@click.option("--availability", type=click.Choice(["active", "pause", "drain"]), default=None,
              help="Availability of the node.")
@click.option("--role", type=click.Choice(["manager", "worker"]), default=None, help="Role of the node.")
@click.option("--label-add", multiple=True, metavar="KEY=VALUE", help="Add or update a node label.")
@click.option("--label-rm", multiple=True, metavar="KEY", help="Remove a node label if it exists.")
@click.argument("name")
@click.pass_obj
def update(engine, availability, role, label_add, label_rm, name):
    """Update a node."""
    from pallet.kernel.cluster import nodes

    view = nodes.update_node(engine, name, availability=availability, role=role,
                             label_add=nodes.parse_labels(label_add), label_rm=label_rm)
    click.echo(view["ID"] if name not in (view["ID"], "self") else name)


@node.command("rm")
@click.option("--force", "-f", is_flag=True, help="Force remove a node from the cluster.")
@click.argument("names", nargs=-1, required=True)
@click.pass_obj
def rm(engine, force, names):
    """Remove one or more nodes from the cluster."""
    from pallet.kernel.cluster import nodes
    from pallet.kernel.errors import PalletError

    failed = None
    for name in names:
        try:
            nodes.remove_node(engine, name, force=force)
            click.echo(name)
        except PalletError as exc:
            click.echo(f"Error: {exc}", err=True)
            failed = exc
    if failed is not None:
        raise click.exceptions.Exit(1)


@node.command("ps")
@click.argument("names", nargs=-1)
@click.option("--filter", "-f", "filters", multiple=True, metavar="KEY=VALUE", help="Filter output.")
@click.option("--no-trunc", is_flag=True, help="Do not truncate output.")
@click.option("--quiet", "-q", is_flag=True, help="Only display task IDs.")
@format_option
@click.pass_obj
def ps(engine, names, filters, no_trunc, quiet, fmt):
    """List tasks running on one or more nodes, defaults to the current node."""
    from pallet.kernel.cli.service import print_tasks

    wanted = filter_map(filters)
    wanted["node"] = list(names or ["self"])
    print_tasks(engine, wanted, no_trunc, quiet, fmt)


@click.command("agent")
@click.option("--lease-ttl", type=click.IntRange(2, 3600), default=10, show_default=True,
              help="Seconds without this agent before the node counts as Down and its tasks move.")
@click.pass_obj
def agent(engine, lease_ttl):
    """Run this node's agent in the foreground: presence, the leader election, its tasks."""
    from pallet.kernel.cluster.agent import Agent

    engine.plugins.load("storage", "security", "runtime")
    Agent(engine, lease_ttl=lease_ttl).run()
