"""Thin netlink layer over pyroute2: bridges, veth pairs, addresses and routes, in the host or a sandbox."""

from __future__ import annotations

import contextlib
import errno
import os
import socket

from pallet.kernel.errors import PalletError

# Imported inside the functions (a command that makes no link never pays for it); a resident engine
# imports it ahead (pallet.kernel.resident.preload reads this).
PALLET_PRELOAD = ("pyroute2",)

NETLINK_ROUTE = 0
NTF_SELF = 0x02
NUD_PERMANENT = 0x80
LOOPBACK_INDEX = 1   # every network namespace registers its lo first, as index 1 (LOOPBACK_IFINDEX)


@contextlib.contextmanager
def iproute(netns: str | None = None):
    """An IPRoute socket in the host, or in the network namespace bind-mounted at ``netns`` (a path).

    The namespace must exist: a vanished sandbox raises FileNotFoundError rather than a namespace
    being created there.
    """
    from pyroute2 import IPRoute

    from pallet.kernel.sandbox import in_netns

    if netns:
        sock = in_netns(netns, lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_ROUTE))
        ipr = IPRoute(use_socket=sock)
    else:
        ipr = IPRoute()
    try:
        yield ipr
    finally:
        ipr.close()


def link_index(ipr, name: str) -> int | None:
    found = ipr.link_lookup(ifname=name)
    return found[0] if found else None


def ensure_bridge(name: str, address: str, prefixlen: int, mtu: int | None) -> None:
    """Create (or adopt) bridge ``name`` with the gateway address and bring it up."""
    with iproute() as ipr:
        index = link_index(ipr, name)
        if index is None:
            kwargs = {"mtu": mtu} if mtu else {}
            ipr.link("add", ifname=name, kind="bridge", **kwargs)
            index = link_index(ipr, name)
        with _ignore_exists():
            ipr.addr("add", index=index, address=address, prefixlen=prefixlen)
        ipr.link("set", index=index, state="up")


IFA_F_NODAD = 0x02


def add_ipv6(name: str, address: str, prefixlen: int, netns: str | None = None,
             gateway: str | None = None) -> bool:
    """Give link ``name`` (in ``netns``, else the host) an IPv6 address, usable at once (no DAD: the
    addresses come from IPAM, never twice); with ``gateway``, the default IPv6 route too, unless the
    namespace has one. Returns whether the route was added."""
    with iproute(netns) as ipr:
        index = link_index(ipr, name)
        with _ignore_exists():
            ipr.addr("add", index=index, address=address, prefixlen=prefixlen, family=socket.AF_INET6,
                     flags=IFA_F_NODAD)
        ipr.link("set", index=index, state="up")
        if not gateway or any(r.get_attr("RTA_DST") is None for r in ipr.get_routes(family=socket.AF_INET6, table=254)
                              if r.get("dst_len") == 0):
            return False
        ipr.route("add", dst="::/0", gateway=gateway, oif=index, family=socket.AF_INET6)
        return True


def add_address(name: str, address: str, prefixlen: int, netns: str | None = None) -> None:
    """One more address on link ``name`` (Docker's link-local IPs: /16 for IPv4, /64 for IPv6, no DAD)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with iproute(netns) as ipr:
        with _ignore_exists():
            ipr.addr("add", index=link_index(ipr, name), address=address, prefixlen=prefixlen, family=family,
                     **({"flags": IFA_F_NODAD} if family == socket.AF_INET6 else {}))


def delete_link(name: str, netns: str | None = None) -> bool:
    """Delete a link if it exists; True when something was removed."""
    from pyroute2 import NetlinkError

    try:
        with iproute(netns) as ipr:
            index = link_index(ipr, name)
            if index is None:
                return False
            ipr.link("del", index=index)
            return True
    except FileNotFoundError:  # the sandbox is gone, and its links with it
        return False
    except NetlinkError as exc:
        if exc.code == errno.ENODEV:  # vanished meanwhile: its peer's namespace went away
            return False
        raise


def create_veth_pair(host_name: str, peer_name: str, mtu: int | None) -> None:
    with iproute() as ipr:
        kwargs = {"mtu": mtu} if mtu else {}
        ipr.link("add", ifname=host_name, kind="veth", peer={"ifname": peer_name, **kwargs}, **kwargs)


def create_veth_into(host_name: str, bridge: str, sandbox: str, mac: str, address: str, prefixlen: int,
                     gateway: str | None, mtu: int | None, ifname: str | None = None) -> tuple[str, bool]:
    """A veth pair whose host end ``host_name`` is enslaved to ``bridge`` and up, and whose other end is made
    inside the sandbox as ``ifname`` (else the next free ``ethN``) with its MAC, address and, unless the
    sandbox has one, the default route via ``gateway``; returns ``(interface name, default route added)``.

    The container's end is created in its namespace (``IFLA_NET_NS_FD`` on the peer), not made in the host
    and moved: moving a link between namespaces costs 30-60 ms here (the kernel unregisters it and waits
    for RCU), creating it there ~5 ms.
    """
    kwargs = {"mtu": mtu} if mtu else {}
    with iproute(sandbox) as inside:
        names = {link.get_attr("IFLA_IFNAME") for link in inside.get_links()}
        if ifname in names:
            raise PalletError(f"interface {ifname} already exists in the container")
        ifname = ifname or next(f"eth{i}" for i in range(len(names) + 1) if f"eth{i}" not in names)
        fd = os.open(sandbox, os.O_RDONLY | os.O_CLOEXEC)
        try:
            with iproute() as ipr:
                master = link_index(ipr, bridge)
                if master is None:
                    raise RuntimeError(f"bridge {bridge} does not exist")
                # Enslaved and up as it is made: one request, not three.
                ipr.link("add", ifname=host_name, kind="veth", master=master, state="up",
                         peer={"ifname": ifname, "net_ns_fd": fd, "address": mac, **kwargs}, **kwargs)
        finally:
            os.close(fd)
        return ifname, _configure(inside, link_index(inside, ifname), address, prefixlen, gateway)


def _configure(ipr, index: int, address: str, prefixlen: int, gateway: str | None) -> bool:
    """Address and bring up a sandbox's interface (and its ``lo``); the default route via ``gateway`` only
    if the sandbox has none yet (the first network a container joins gives it). Whether it was added."""
    ipr.addr("add", index=index, address=address, prefixlen=prefixlen)
    ipr.link("set", index=index, state="up")
    ipr.link("set", index=LOOPBACK_INDEX, state="up")
    if gateway and not any(r.get_attr("RTA_DST") is None for r in ipr.get_routes(family=socket.AF_INET, table=254)):
        ipr.route("add", dst="0.0.0.0/0", gateway=gateway, oif=index)
        return True
    return False


def move_and_configure(peer_name: str, sandbox: str, mac: str, address: str, prefixlen: int,
                       gateway: str | None, mtu: int | None, ifname: str | None = None) -> tuple[str, bool]:
    """Move ``peer_name`` into the sandbox as ``ifname`` (else the next free ``ethN``) with its MAC and address, up.

    The default route via ``gateway`` is added only if the sandbox has none yet (the first
    network a container joins gives it). Returns ``(interface name, default route added)``.
    """
    fd = os.open(sandbox, os.O_RDONLY | os.O_CLOEXEC)
    try:
        with iproute() as ipr:
            ipr.link("set", index=link_index(ipr, peer_name), net_ns_fd=fd)
    finally:
        os.close(fd)
    with iproute(sandbox) as ipr:
        names = {link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
        if ifname in names:
            raise PalletError(f"interface {ifname} already exists in the container")
        ifname = ifname or next(f"eth{i}" for i in range(len(names) + 1) if f"eth{i}" not in names)
        index = link_index(ipr, peer_name)
        kwargs = {"mtu": mtu} if mtu else {}
        ipr.link("set", index=index, ifname=ifname, address=mac, **kwargs)
        routed = _configure(ipr, index, address, prefixlen, gateway)
    return ifname, routed


def sysctl(key: str, value: str) -> None:
    path = "/proc/sys/" + key.replace(".", "/")
    with open(path) as handle:
        if handle.read().strip() == value:
            return
    with open(path, "w") as handle:
        handle.write(value)


def host_routes() -> list[tuple[str, int]]:
    """IPv4 destinations routed in the host's main table, as (network, prefixlen), from /proc/net/route."""
    import socket
    import struct

    routes = []
    with open("/proc/net/route") as handle:
        next(handle)
        for line in handle:
            fields = line.split()
            dest = socket.inet_ntoa(struct.pack("<I", int(fields[1], 16)))
            mask = bin(int(fields[7], 16)).count("1")
            if mask:  # the default route covers everything and must not block every pool
                routes.append((dest, mask))
    return routes


@contextlib.contextmanager
def _ignore_exists():
    """Swallow a netlink EEXIST, so re-running a step after a crash is harmless."""
    from pyroute2 import NetlinkError

    try:
        yield
    except NetlinkError as exc:
        if exc.code != errno.EEXIST:
            raise


def create_vxlan_in(ns: str, name: str, vni: int, local: str, bridge: str, mtu: int) -> None:
    """Make the VXLAN device here (its UDP socket stays in this, the underlay, namespace) and move it into ``ns``."""
    temp = f"vx{vni}"[:15]
    with iproute() as ipr:
        if link_index(ipr, temp) is not None:
            ipr.link("del", index=link_index(ipr, temp))
        ipr.link("add", ifname=temp, kind="vxlan", vxlan_id=vni, vxlan_local=local, vxlan_port=4789,
                 vxlan_learning=0, vxlan_proxy=1, mtu=mtu)
        fd = os.open(ns, os.O_RDONLY | os.O_CLOEXEC)
        try:
            ipr.link("set", index=link_index(ipr, temp), net_ns_fd=fd)
        finally:
            os.close(fd)
    with iproute(ns) as ipr:
        index = link_index(ipr, temp)
        ipr.link("set", index=index, ifname=name)
        ipr.link("set", index=index, master=link_index(ipr, bridge), state="up")


def ensure_bridge_in(ns: str, name: str, mtu: int) -> None:
    with iproute(ns) as ipr:
        if link_index(ipr, name) is None:
            ipr.link("add", ifname=name, kind="bridge", mtu=mtu)
        ipr.link("set", index=link_index(ipr, name), state="up")
        lo = link_index(ipr, "lo")
        ipr.link("set", index=lo, state="up")


def move_to_bridge_in(ns: str, link: str, bridge: str) -> None:
    """Move host-side ``link`` into ``ns`` and enslave it to ``bridge`` there."""
    fd = os.open(ns, os.O_RDONLY | os.O_CLOEXEC)
    try:
        with iproute() as ipr:
            ipr.link("set", index=link_index(ipr, link), net_ns_fd=fd)
    finally:
        os.close(fd)
    with iproute(ns) as ipr:
        ipr.link("set", index=link_index(ipr, link), master=link_index(ipr, bridge), state="up")


def program_peer(ipr, vxlan: str, ip: str, mac: str, vtep: str, present: bool) -> None:
    """Add or remove the FDB entry (MAC behind VTEP) and the proxy-ARP entry (IP is MAC) of a remote endpoint."""
    from pyroute2 import NetlinkError

    index = link_index(ipr, vxlan)
    if index is None:
        return
    try:
        if present:
            # NTF_SELF: the entry belongs to the VXLAN device (MAC behind a VTEP), not to br0's table.
            ipr.fdb("replace", ifindex=index, lladdr=mac, dst=vtep, flags=NTF_SELF, state=NUD_PERMANENT)
            ipr.neigh("replace", ifindex=index, dst=ip, lladdr=mac, state=NUD_PERMANENT)
        else:
            ipr.fdb("del", ifindex=index, lladdr=mac, dst=vtep, flags=NTF_SELF)
            ipr.neigh("del", ifindex=index, dst=ip, lladdr=mac)
    except NetlinkError as exc:
        if present or exc.code not in (errno.ENOENT, errno.ESRCH):
            raise


def source_address_towards(destination: str) -> str:
    """The local address the kernel would use to reach ``destination`` (the VTEP of this host)."""
    with iproute() as ipr:
        routes = ipr.route("get", dst=destination)
        return routes[0].get_attr("RTA_PREFSRC")
