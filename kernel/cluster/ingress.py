"""The routing mesh on this node: a service's published ports, on every address of the host, reach its tasks.

The shape of Docker's ingress sandbox. A namespace of this root (``<run_root>/netns/mesh-<root
hash>``) joins the overlay network of each service that publishes ports, through the network store
like any container (so its address comes from the cluster IPAM and the other hosts learn it), and
a veth pair links it to the host (``pm<hash>`` here, ``mesh0`` there, a link-local /30). The
host's table ``pallet_mesh_<hash>`` DNATs each published port to the sandbox; the sandbox's own
table DNATs it on to one task in turn (``numgen inc``) and masquerades, so a task on any host
answers to the sandbox, and the reply goes back the way it came. ``PublishMode: host`` maps only
the tasks whose endpoint is on this host; a host with none refuses the port.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import subprocess
from pathlib import Path

from pallet.kernel.errors import PalletError
from pallet.kernel.network.nftables import chain, replace_table

SANDBOX_LINK = "mesh0"
PORT_COMMENT = "pallet-port"  # the bridge driver reads these back, so ``-p`` refuses a port the mesh holds


def published_ports(service: dict) -> list[dict]:
    """``[{"proto", "published", "target", "mode"}]`` from ``Endpoint.Ports`` (else ``EndpointSpec.Ports``)."""
    ports = (service.get("Endpoint") or {}).get("Ports") or ((service.get("Spec") or {}).get("EndpointSpec") or {}).get("Ports") or []
    return [{"proto": (p.get("Protocol") or "tcp").lower(), "published": int(p["PublishedPort"]),
             "target": int(p["TargetPort"]), "mode": p.get("PublishMode") or "ingress"}
            for p in ports if p.get("PublishedPort") and p.get("TargetPort")]


class Mesh:
    """This root's ingress sandbox and its names, all derived from the root's path."""

    def __init__(self, store):
        self.store = store
        digest = hashlib.sha256(str(Path(store.engine.root).resolve()).encode()).hexdigest()
        self.id = f"mesh-{digest[:20]}"
        self.link = f"pm{digest[:10]}"
        self.table = f"pallet_mesh_{digest[:10]}"
        n = int(digest[:4], 16) % 16384  # one /30 of 169.254.0.0/16, so two roots' meshes rarely meet
        base = ipaddress.IPv4Address("169.254.0.0") + n * 4
        self.host_ip, self.sandbox_ip = str(base + 1), str(base + 2)

    @property
    def sandbox(self) -> str:
        from pallet.kernel.sandbox import sandbox_path

        return str(sandbox_path(self.store.engine.run_root, self.id))

    def exists(self) -> bool:
        return Path(self.sandbox).exists()

    def create(self) -> None:
        from pallet.kernel.sandbox import create_sandbox

        create_sandbox(self.store.engine.run_root, self.id)
        try:
            inside = ["nsenter", f"--net={self.sandbox}"]
            _ip(*inside, "ip", "link", "add", SANDBOX_LINK, "type", "veth", "peer", "name", self.link,
                "netns", str(os.getpid()))
            _ip("ip", "addr", "add", f"{self.host_ip}/30", "dev", self.link)
            _ip("ip", "link", "set", self.link, "up")
            _ip(*inside, "ip", "addr", "add", f"{self.sandbox_ip}/30", "dev", SANDBOX_LINK)
            _ip(*inside, "ip", "link", "set", SANDBOX_LINK, "up")
            _ip(*inside, "ip", "route", "add", "default", "via", self.host_ip)
            _ip(*inside, "sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward")
            Path("/proc/sys/net/ipv4/ip_forward").write_text("1\n")  # this (the host's) namespace
        except BaseException:
            self.remove()
            raise

    def networks(self) -> set[str]:
        """Ids of the networks the sandbox is joined to."""
        return {ep.network_id for ep in self.store.endpoints() if ep.container_id == self.id}

    def join(self, network_id: str) -> None:
        from types import SimpleNamespace

        self.store.connect(SimpleNamespace(id=self.id, name=self.id), self.sandbox, network_id)

    def leave(self, network_id: str) -> None:
        self.store.disconnect(self.id, network_id)

    def remove(self) -> None:
        from pallet.kernel.sandbox import remove_sandbox

        replace_table(self.table, None)
        self.store.disconnect(self.id)
        subprocess.run(["ip", "link", "del", self.link], capture_output=True)
        remove_sandbox(self.store.engine.run_root, self.id)


def sync(store, ports: list[dict]) -> None:
    """Make the mesh match ``ports`` (from :func:`pallet.kernel.cluster.mesh.plan`); none takes it down."""
    mesh = Mesh(store)
    if not ports:
        if mesh.exists() or _link_exists(mesh.link):
            mesh.remove()
        else:
            replace_table(mesh.table, None)
        return
    if not mesh.exists():
        mesh.create()
    wanted = {p["network_id"] for p in ports}
    joined = mesh.networks()
    for network_id in sorted(wanted - joined):
        mesh.join(network_id)
    for network_id in sorted(joined - wanted):
        mesh.leave(network_id)
    local = {ep.address.split("/")[0] for ep in store.endpoints() if ep.container_id != mesh.id}
    host_rules, sandbox_rules = [], []
    for port in sorted(ports, key=lambda p: (p["proto"], p["published"])):
        proto, published = port["proto"], port["published"]
        backends = port["backends"] if port["mode"] == "ingress" else [ip for ip in port["backends"] if ip in local]
        if not backends:
            continue  # nothing to reach from here: the host refuses the port
        comment = f'comment "{PORT_COMMENT}|{proto}||{published}"'
        host_rules.append(f"{proto} dport {published} dnat to {mesh.sandbox_ip}:{published} {comment}")
        targets = ", ".join(f"{i} : {ip} . {port['target']}" for i, ip in enumerate(backends))
        sandbox_rules.append(f'iifname "{SANDBOX_LINK}" {proto} dport {published} '
                             f"dnat ip to numgen inc mod {len(backends)} map {{ {targets} }}")
    host = (chain("prerouting", "type nat hook prerouting priority -100",
                  [f"fib daddr type local {rule}" for rule in host_rules])
            + chain("output", "type nat hook output priority -100",
                    [f"fib daddr type local ip daddr != 127.0.0.0/8 {rule}" for rule in host_rules]))
    inside = (chain("prerouting", "type nat hook prerouting priority -100", sandbox_rules)
              + chain("postrouting", "type nat hook postrouting priority 100",
                      [f'oifname != "{SANDBOX_LINK}" masquerade']))
    # Sandbox first: a host rule must never point at a sandbox that does not forward the port yet.
    replace_table(mesh.table, inside, mesh.sandbox)
    replace_table(mesh.table, host)


def _link_exists(name: str) -> bool:
    return subprocess.run(["ip", "link", "show", name], capture_output=True).returncode == 0


def _ip(*cmd: str) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise PalletError(f"routing mesh: {' '.join(cmd[2:] if cmd[0] == 'nsenter' else cmd)}: {proc.stderr.strip()}")
