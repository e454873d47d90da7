"""``pallet network``: create, list, inspect, remove, prune networks; connect and disconnect containers."""

from __future__ import annotations

import json

import click

from pallet.kernel.cli.output import emit, format_option, inspect_format_option
from pallet.kernel.cli.trust import GoBoolCommand
from pallet.kernel.config import parse_key_values


@click.group("network")
def network():
    """Manage networks."""


def split_families(subnets, gateways, ranges) -> dict:
    """Docker's repeatable ``--subnet``/``--gateway``/``--ip-range`` as one IPv4 and one IPv6 set (each value
    goes with its family: pallet networks have at most one subnet of each)."""
    import ipaddress

    from pallet.kernel.errors import UsageError

    pools = {"subnet": "", "gateway": "", "ip_range": "", "subnet6": "", "gateway6": "", "ip_range6": ""}
    for values, key in ((subnets, "subnet"), (gateways, "gateway"), (ranges, "ip_range")):
        for value in values:
            try:
                family = (ipaddress.ip_address(value) if key == "gateway"
                          else ipaddress.ip_network(value, strict=False)).version
            except ValueError as exc:
                raise UsageError(f'invalid {key.replace("_", "-")} "{value}": {exc}') from None
            slot = key if family == 4 else key + "6"
            if pools[slot]:
                raise UsageError(f"pallet networks take one IPv4 and one IPv6 --{key.replace('_', '-')}")
            pools[slot] = value
    return pools


INGRESS = ("--ingress: pallet's routing mesh joins each service's own overlay network (docs/network.md); "
           "there is no ingress network to create")


@network.command("create", cls=GoBoolCommand)
@click.argument("name")
@click.option("--driver", "-d", default="bridge", show_default=True, help="Driver to manage the network.")
@click.option("--subnet", multiple=True, help="Subnet in CIDR format (one IPv4, one IPv6 with --ipv6).")
@click.option("--gateway", multiple=True, help="IPv4 or IPv6 gateway for the subnet of its family.")
@click.option("--ip-range", multiple=True, help="Allocate container addresses from a sub-range.")
@click.option("--internal", is_flag=True, help="Restrict external access to the network.")
@click.option("--attachable", is_flag=True, help="Accepted for compatibility (every network is attachable).")
@click.option("--label", multiple=True, metavar="KEY=VALUE", help="Set metadata on the network.")
@click.option("--opt", "-o", multiple=True, metavar="KEY=VALUE", help="Driver specific options.")
@click.option("--ipam-driver", default="default", show_default=True, help="IP address management driver.")
@click.option("--ipam-opt", multiple=True, metavar="KEY=VALUE", help="IPAM driver specific options.")
@click.option("--aux-address", multiple=True, metavar="NAME=IP", help="Reserve an address of the subnet (never given "
              "to a container).")
@click.option("--config-only", is_flag=True, help="Create a configuration only network (for --config-from).")
@click.option("--config-from", default="", metavar="NETWORK", help="The network from which to copy the configuration.")
@click.option("--scope", default="", metavar="SCOPE", help="The network's scope: the driver's own (local, or global "
              "for overlay).")
@click.option("--ingress", is_flag=True, help="Refused: the routing mesh joins each service's overlay network.")
@click.option("--ipv4", is_flag=True, default=True, help="IPv4 address assignment (always on). [default: true]")
@click.option("--ipv6", is_flag=True, help="Enable IPv6 address assignment (bridge driver; a /64 of a ULA prefix "
              "unless an IPv6 --subnet is given).")
@click.pass_obj
def create(engine, name, driver, subnet, gateway, ip_range, internal, attachable, label, opt, ipam_driver, ipam_opt,
           aux_address, config_only, config_from, scope, ingress, ipv4, ipv6):
    """Create a network."""
    from pallet.kernel.errors import UsageError
    from pallet.kernel.network.store import NetworkStore

    if ingress:
        raise UsageError(INGRESS)
    if not ipv4:
        raise UsageError("--ipv4=false: pallet's network drivers need an IPv4 subnet on every network")
    if config_only and attachable:
        raise UsageError("configuration network can only contain network specific fields. Network operator "
                         "fields like [ ingress | internal | attachable | scope ] are not supported.")
    pools = split_families(subnet, gateway, ip_range)
    record = NetworkStore(engine).create(
        name, "null" if config_only else driver, **pools, ipv6=ipv6, internal=internal,
        labels=parse_key_values(label, "--label"), options=parse_key_values(opt, "--opt"),
        ipam_driver=ipam_driver, ipam_options=parse_key_values(ipam_opt, "--ipam-opt"),
        aux_addresses=parse_key_values(aux_address, "--aux-address"), scope=scope, config_only=config_only,
        config_from=config_from)
    click.echo(record.id)


@network.command("ls")
@click.option("--quiet", "-q", is_flag=True, help="Only display network IDs.")
@click.option("--filter", "-f", "filters", multiple=True, metavar="KEY=VALUE",
              help="Filter output (driver, name, id, label, scope, type=custom|builtin).")
@click.option("--no-trunc", is_flag=True, help="Do not truncate the output.")
@format_option
@click.pass_obj
def ls(engine, quiet, filters, no_trunc, fmt):
    """List networks."""
    from pallet.kernel.network.store import NetworkStore

    records = [r for r in NetworkStore(engine).all() if _matches(r, filters)]
    rows = [{"ID": r.id if no_trunc else r.id[:12], "Name": r.name, "Driver": r.driver, "Scope": r.scope,
             "Internal": r.internal, "Labels": ",".join(f"{k}={v}" for k, v in r.labels.items()),
             "CreatedAt": r.created} for r in records]
    emit(rows, [("NETWORK ID", "ID"), ("NAME", "Name"), ("DRIVER", "Driver"), ("SCOPE", "Scope")],
         fmt=fmt, quiet=quiet, quiet_field="ID")


def _matches(record, filters) -> bool:
    for key, value in parse_key_values(filters, "--filter").items():
        if key == "driver" and record.driver != value:
            return False
        if key == "name" and value not in record.name:
            return False
        if key == "id" and not record.id.startswith(value):
            return False
        if key == "scope" and record.scope != value:
            return False
        if key == "type" and (value == "custom") == record.predefined:
            return False
        if key == "label":
            k, _, v = value.partition("=")
            if k not in record.labels or (v and record.labels[k] != v):
                return False
    return True


@network.command("inspect")
@click.argument("names", nargs=-1, required=True)
@inspect_format_option
@click.pass_obj
def inspect(engine, names, fmt):
    """Display detailed information on one or more networks."""
    from pallet.kernel.cli.output import render_template
    from pallet.kernel.network.store import NetworkStore

    store = NetworkStore(engine)
    views = [store.inspect(store.get(name)) for name in names]
    if fmt:
        for view in views:
            click.echo(render_template(fmt, view))
    else:
        click.echo(json.dumps(views, indent=4))


@network.command("rm")
@click.argument("names", nargs=-1, required=True)
@click.option("-f", "--force", is_flag=True, help="Do not error if the network does not exist.")
@click.pass_obj
def rm(engine, names, force):
    """Remove one or more networks."""
    from pallet.kernel.errors import NotFound, PalletError
    from pallet.kernel.network.store import NetworkStore

    store = NetworkStore(engine)
    failed = None
    for name in names:
        try:
            store.remove(name)
            click.echo(name)
        except PalletError as exc:
            if force and isinstance(exc, NotFound):
                continue
            failed = exc
            if len(names) > 1:
                click.echo(f"Error: {exc}", err=True)
    if failed is not None:
        if len(names) > 1:
            raise SystemExit(1)
        raise failed


@network.command("prune")
@click.option("--force", "-f", is_flag=True, help="Do not prompt for confirmation.")
@click.option("--filter", "filters", multiple=True, metavar="KEY=VALUE", help="Provide filter values (label=…).")
@click.pass_obj
def prune(engine, force, filters):
    """Remove all unused custom networks."""
    if not force and not click.confirm("WARNING! This will remove all custom networks not used by at least one "
                                       "container.\nAre you sure you want to continue?"):
        return
    from pallet.kernel.network.store import NetworkStore

    removed = prune_networks(NetworkStore(engine), filters)
    if removed:
        click.echo("Deleted Networks:\n" + "\n".join(removed))


def prune_networks(store, filters, keep=lambda record: False) -> list[str]:
    """Remove the custom networks no container is on that match ``filters`` (``KEY=VALUE``) but those
    ``keep`` keeps; their names. Networks a driver found outside the store (CNI conflists) are not
    pallet's to remove: they would be found again at the next listing."""
    from pallet.kernel.network.store import DISCOVERED_LABEL

    removed = []
    depended_on = {r.config_from for r in store.all() if r.config_from}  # a --config-from network's source stays
    for record in store.all():
        if record.predefined or record.labels.get(DISCOVERED_LABEL) or not _matches(record, filters) \
                or keep(record) or store.endpoints(record.id) or record.name in depended_on:
            continue
        store.remove(record.id)
        removed.append(record.name)
    return removed


@network.command("connect")
@click.argument("network_name", metavar="NETWORK")
@click.argument("container")
@click.option("--alias", multiple=True, help="Add network-scoped alias for the container.")
@click.option("--ip", default="", help="IPv4 address (e.g. 172.30.100.104).")
@click.option("--ip6", default="", metavar="IPV6", help="IPv6 address (e.g. 2001:db8::33), on a network made with --ipv6.")
@click.option("--link", "links", multiple=True, metavar="CONTAINER[:ALIAS]",
              help="Add link to another container (ALIAS resolves to it for this container only).")
@click.option("--link-local-ip", "link_local_ips", multiple=True, metavar="IP",
              help="Add a link-local address for the container (IPv4 /16, IPv6 /64).")
@click.option("--gw-priority", type=int, default=0, show_default=True, metavar="INT",
              help="Accepted as 0 only: a container's default gateway is its first network's.")
@click.option("--driver-opt", "driver_opts", multiple=True, metavar="KEY=VALUE",
              help="Endpoint options: com.docker.network.endpoint.ifname=NAME, "
                   "com.docker.network.endpoint.sysctls=net.ipv4.conf.IFNAME.KEY=VALUE[,…].")
@click.pass_obj
def connect(engine, network_name, container, alias, ip, ip6, links, link_local_ips, gw_priority, driver_opts):
    """Connect a running container to a network."""
    from pallet.kernel.network.attach import connect as net_connect, sandbox_of
    from pallet.kernel.errors import PalletError, UsageError

    if gw_priority:
        raise UsageError("--gw-priority: a container's default gateway is its first network's (pallet does not "
                         "choose gateways by priority)")
    record, sandbox = sandbox_of(engine, container)
    if record.network_mode in ("none", "host") or record.network_mode.startswith("container:"):
        raise PalletError(f"container {record.name} uses network mode {record.network_mode} "
                          "and cannot be connected to other networks")
    if sandbox is None:
        raise PalletError(f"container {record.name} is not running")
    from pallet.kernel.runopts import parse_ipv4, parse_ipv6, parse_link_local

    result = net_connect(engine, record, sandbox, network=network_name, aliases=list(alias), ip=parse_ipv4(ip),
                         ip6=parse_ipv6(ip6), link_local_ips=parse_link_local(link_local_ips),
                         links=resolve_links(engine, links), driver_opts=_driver_opts(driver_opts))
    _record_attachment(engine, record, result)
    _use_embedded_dns(engine, record, result)


def resolve_links(engine, links) -> list[str]:
    """Docker's ``CONTAINER[:ALIAS]`` as ``NAME:ALIAS`` with the container's own name (it must exist)."""
    from pallet.kernel.containers import ContainerStore

    store, resolved = ContainerStore(engine), []
    for link in links:
        target, _sep, alias = link.partition(":")
        if not target:
            raise click.UsageError(f"invalid link {link!r}: expected CONTAINER[:ALIAS]")
        other = store.get(target)
        resolved.append(f"{other.name}:{alias or other.name}")
    return resolved


def _driver_opts(values) -> dict:
    """``KEY=VALUE`` each; a value may hold commas and ``=`` (the sysctls option's list)."""
    options = {}
    for value in values:
        key, eq, rest = value.partition("=")
        if not eq or not key:
            raise click.UsageError(f"invalid --driver-opt {value!r}: expected KEY=VALUE")
        options[key] = rest
    return options


def _use_embedded_dns(engine, record, result) -> None:
    """Joining a network with the embedded DNS switches the container's resolver to it, as Docker does,
    so it finds its new neighbours by name. Written in place: the container sees the file through a bind."""
    from pallet.kernel.containers import ContainerStore
    from pallet.kernel.sandbox import EMBEDDED_DNS, override_resolv_conf

    if EMBEDDED_DNS not in (result.get("dns_servers") or []):
        return
    path = ContainerStore(engine).run_dir(record.id) / "resolv.conf"
    try:
        current = path.read_text()
    except FileNotFoundError:
        return
    if any(line.split()[1:2] == [EMBEDDED_DNS] for line in current.splitlines() if line.startswith("nameserver")):
        return
    host = record.host_config
    text = override_resolv_conf(result["resolv_conf"], {"servers": host.get("Dns") or [],
                                                        "search": host.get("DnsSearch") or [],
                                                        "options": host.get("DnsOptions") or []})
    with open(path, "r+") as handle:
        handle.write(text)
        handle.truncate()


def _record_attachment(engine, record, result) -> None:
    from pallet.kernel.containers import ContainerStore

    networks = dict(record.network.get("Networks", {}))
    networks.update(result["Networks"])
    record.network = {**record.network, "Networks": networks}
    ContainerStore(engine).save(record)


@network.command("disconnect")
@click.argument("network_name", metavar="NETWORK")
@click.argument("container")
@click.option("--force", "-f", is_flag=True, help="Force the container to disconnect from a network.")
@click.pass_obj
def disconnect(engine, network_name, container, force):
    """Disconnect a container from a network."""
    from pallet.kernel.containers import ContainerStore
    from pallet.kernel.errors import PalletError
    from pallet.kernel.network.store import NetworkStore

    store = NetworkStore(engine)
    net = store.get(network_name)
    record = ContainerStore(engine).get(container)
    if not store.disconnect(record.id, net.id) and not force:
        raise PalletError(f"container {record.id[:12]} is not connected to network {net.name}")
    networks = {k: v for k, v in record.network.get("Networks", {}).items() if k != net.name}
    record.network = {**record.network, "Networks": networks}
    ContainerStore(engine).save(record)
