"""Published ports: parse Docker's PortBindings, pick free host ports, refuse conflicts host-wide.

A kernel service for every driver that publishes ports; ``host_lock`` also serialises other
host-wide choices between roots (the network store picks unrouted subnets under it).
"""

from __future__ import annotations

import socket

from pallet.kernel.errors import Conflict, UsageError
from pallet.kernel.fsutil import locked

HOST_LOCK = "/run/lock/pallet-network.lock"


def host_lock():
    """Serialises port allocation between every pallet root on this host."""
    return locked(HOST_LOCK)


def allocate(bindings: dict, reserved: set) -> list[dict]:
    """``{"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}`` -> concrete mappings; raise Conflict on a taken port.

    ``reserved`` holds (proto, host ip, port) already published on this host, by this root and
    (as the driver reads them back, e.g. from nft rules) by others; a port some process listens
    on is refused too (as Docker's proxy would fail to bind it). Call it under ``host_lock``.
    """
    taken = set(reserved)
    result = []
    for key, entries in sorted(bindings.items()):
        port_text, _, proto = key.partition("/")
        proto = proto or "tcp"
        if proto not in ("tcp", "udp"):
            raise UsageError(f'invalid protocol "{proto}" for port {port_text}')
        container_port = _port(port_text)
        for entry in entries or [{}]:
            host_ip = entry.get("HostIp") or ""
            host_port = _port(entry["HostPort"]) if entry.get("HostPort") else _random_port(proto, host_ip, taken)
            if _collides(taken, proto, host_ip, host_port) or not _bindable(proto, host_ip, host_port):
                raise Conflict(f"Bind for {host_ip or '0.0.0.0'}:{host_port} failed: port is already allocated")
            taken.add((proto, host_ip, host_port))
            result.append({"proto": proto, "host_ip": host_ip, "host_port": host_port,
                           "container_port": container_port})
    return result


def as_bindings(mappings: list[dict]) -> dict:
    """Back to Docker's shape with the ports actually used (what ``pallet port`` prints)."""
    out: dict[str, list] = {}
    for m in mappings:
        out.setdefault(f"{m['container_port']}/{m['proto']}", []).append(
            {"HostIp": m["host_ip"] or "0.0.0.0", "HostPort": str(m["host_port"])})
    return out


def _collides(taken, proto, host_ip, port) -> bool:
    wildcard = ("", "0.0.0.0")
    for t_proto, t_ip, t_port in taken:
        if t_proto == proto and t_port == port and (t_ip == host_ip or t_ip in wildcard or host_ip in wildcard):
            return True
    return False


def _bindable(proto: str, host_ip: str, port: int) -> bool:
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, kind) as sock:
        try:
            sock.bind((host_ip or "0.0.0.0", port))
        except OSError:
            return False
    return True


def _random_port(proto: str, host_ip: str, taken) -> int:
    for _ in range(64):
        kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
        with socket.socket(socket.AF_INET, kind) as sock:
            sock.bind((host_ip or "0.0.0.0", 0))  # the kernel picks from its ephemeral range
            port = sock.getsockname()[1]
        if not _collides(taken, proto, host_ip, port):
            return port
    raise Conflict("could not find a free host port to publish on")


def _port(text) -> int:
    try:
        port = int(text)
    except (TypeError, ValueError):
        raise UsageError(f'invalid port "{text}"') from None
    if not 1 <= port <= 65535:
        raise UsageError(f"invalid port {port}: out of range 1-65535")
    return port
