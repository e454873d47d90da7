"""overlay network driver: multi-host VXLAN networks with state in etcd.

Per network and host, as Docker does: a dedicated namespace (``<run_root>/netns/ov-<id>``) holding
a bridge ``br0`` and the VXLAN device ``vxlan0`` (created in the host namespace so its UDP socket
uses the underlay, then moved in). Containers' veths hang off ``br0``. Remote endpoints are
published in etcd under ``/pallet/endpoints/<network id>/``; an agent process per network and host
watches that prefix and programs FDB and proxy-ARP entries, so nothing floods and learning is off.
Addresses come from the ``cluster`` IPAM: one etcd transaction per address, so hosts never collide.
"""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from pallet.kernel import hookimpl
from pallet.kernel.drivers import Availability, EndpointInfo, IpamDriver, JoinInfo, NetworkDriver
from pallet.kernel.errors import Conflict, PalletError, UsageError

PREFIX = "/pallet/"
VNI_OPTION = "com.docker.network.driver.overlay.vxlanid_list"
OVERLAY_MTU = 1450  # 1500 minus the VXLAN/UDP/IP headers
FIRST_VNI = 256
DEFAULT_LEASE_TTL = 15  # seconds a dead host's endpoints stay visible to the others


def cluster(options: dict):
    from pallet.kernel.network.etcd import Etcd

    url = (options or {}).get("cluster-store") or os.environ.get("PALLET_CLUSTER_STORE")
    if not url:
        raise PalletError("overlay networks need a cluster store (--cluster-store etcd://HOST:2379)")
    return Etcd(url)


class OverlayNetwork(NetworkDriver):
    description = "VXLAN across hosts, cluster state in etcd"
    scope = "global"

    @classmethod
    def probe(cls, home=None, options=None):
        options = options or {}
        if not os.path.exists("/proc/self/ns/net"):
            return Availability.no("network namespaces are not supported by this kernel")
        if not (options.get("cluster-store") or os.environ.get("PALLET_CLUSTER_STORE")):
            return Availability.no("no cluster store configured (--cluster-store etcd://HOST:2379)")
        return Availability.ok()

    @property
    def etcd(self):
        if not hasattr(self, "_etcd"):
            self._etcd = cluster(self.options)
        return self._etcd

    @property
    def root(self) -> Path:
        return Path(self.home).parent.parent

    def vtep(self) -> str:
        from urllib.parse import urlparse

        from pallet.plugins.network.netlink import source_address_towards

        if self.options.get("advertise-address"):
            return self.options["advertise-address"]
        return source_address_towards(urlparse(self.etcd.base).hostname)

    # --- networks ---------------------------------------------------------------------------
    def create_network(self, network_id, options, ipv4) -> dict:
        from pallet.kernel.sandbox import create_sandbox
        from pallet.plugins.network import netlink

        allocated = not options.get(VNI_OPTION)
        vni = int(options.get(VNI_OPTION) or self._allocate_vni(network_id))
        ttl = int(self.options.get("lease-ttl") or DEFAULT_LEASE_TTL)
        run_root = self.context.run_root
        ns = str(create_sandbox(run_root, f"ov-{network_id[:12]}"))
        data = {"vni": vni, "ns": ns, "vtep": self.vtep(), "subnet": ipv4[0]["pool"], "lease_ttl": ttl}
        try:
            netlink.ensure_bridge_in(ns, "br0", OVERLAY_MTU)
            netlink.create_vxlan_in(ns, "vxlan0", vni, data["vtep"], "br0", OVERLAY_MTU)
            data["agent"] = start_agent(self, network_id, data)
        except BaseException:
            self.delete_network(network_id, data)
            if allocated:   # the network never came to be: its VXLAN id is free again
                self.etcd.delete(f"{PREFIX}vni/{vni}")
            raise
        return data

    def _allocate_vni(self, network_id: str) -> int:
        for vni in range(FIRST_VNI, 1 << 24):
            if self.etcd.create(f"{PREFIX}vni/{vni}", network_id):
                return vni
        raise PalletError("no free VXLAN id")

    def delete_network(self, network_id, data) -> None:
        from pallet.kernel.sandbox import remove_sandbox

        stop_agent(data.get("agent"), network_id)
        self.etcd.delete(f"{PREFIX}leases/{network_id}/{data.get('vtep')}")
        for endpoint_id, value in self.etcd.range(f"{PREFIX}endpoints/{network_id}/")[0].items():
            if isinstance(value, dict) and value.get("vtep") == data.get("vtep"):
                self.etcd.delete(endpoint_id)
        if data.get("ns"):
            remove_sandbox(Path(data["ns"]).parent.parent, Path(data["ns"]).name)

    def release_cluster(self, network_id, options) -> None:
        """The last host left the network: forget its VXLAN id."""
        if options.get(VNI_OPTION):
            self.etcd.delete(f"{PREFIX}vni/{options[VNI_OPTION]}")

    # --- endpoints --------------------------------------------------------------------------
    def create_endpoint(self, network_id, endpoint_id, data, info: EndpointInfo, options) -> EndpointInfo:
        from pallet.plugins.network import netlink
        from pallet.plugins.network.bridge import mac_from_ip

        ip = info.address.split("/")[0]
        mac = options.get("mac_address") or mac_from_ip(ip)
        host, peer = f"pv{endpoint_id[:11]}", f"pc{endpoint_id[:11]}"
        try:
            netlink.create_veth_pair(host, peer, OVERLAY_MTU)
            netlink.move_to_bridge_in(data["ns"], host, "br0")
            # Under the host agent's lease: if this host dies, its endpoints expire everywhere.
            lease = self.etcd.get(f"{PREFIX}leases/{network_id}/{data['vtep']}")
            self.etcd.put(f"{PREFIX}endpoints/{network_id}/{endpoint_id}", {
                "ip": ip, "mac": mac, "vtep": data["vtep"], "name": options.get("container_name", ""),
                "aliases": options.get("aliases", []), "container_id": options.get("container_id", "")},
                lease=lease or None)
        except BaseException:
            self.delete_endpoint(network_id, endpoint_id, data)
            raise
        return EndpointInfo(address=info.address, gateway="", mac_address=mac, extra={"ports": {}})

    def delete_endpoint(self, network_id, endpoint_id, data) -> None:
        from pallet.plugins.network import netlink

        self.etcd.delete(f"{PREFIX}endpoints/{network_id}/{endpoint_id}")
        netlink.delete_link(f"pc{endpoint_id[:11]}")
        if data.get("ns"):
            netlink.delete_link(f"pv{endpoint_id[:11]}", netns=data["ns"])

    def join(self, network_id, endpoint_id, data, sandbox_key, options) -> JoinInfo:
        from pallet.plugins.network import netlink

        endpoint = self.etcd.get(f"{PREFIX}endpoints/{network_id}/{endpoint_id}")
        prefixlen = ipaddress.IPv4Network(data["subnet"]).prefixlen
        ifname, _ = netlink.move_and_configure(f"pc{endpoint_id[:11]}", sandbox_key, endpoint["mac"], endpoint["ip"],
                                               prefixlen, None, OVERLAY_MTU, options.get("interface_name") or None)
        # Do not wait for the agent: peers and their names must be known before the container starts.
        from pallet.kernel.fsutil import atomic_write_json

        known, _ = sync_peers(self.etcd, network_id, data)
        names = self.root / "networks" / "endpoints" / f"{network_id}.remote"
        _write_names(atomic_write_json, names, known, data["vtep"])
        return JoinInfo(interface=ifname, gateway="")

    def leave(self, network_id, endpoint_id, data, sandbox_key) -> None:
        from pallet.plugins.network import netlink

        if data.get("ns"):
            netlink.delete_link(f"pv{endpoint_id[:11]}", netns=data["ns"])


class ClusterIpam(IpamDriver):
    """Pools and addresses as etcd keys created in transactions: two hosts can never take the same one."""

    description = "pools and addresses in the cluster store (etcd transactions)"
    DEFAULT_POOLS = "10.0.0.0/8:24"

    @property
    def etcd(self):
        if not hasattr(self, "_etcd"):
            self._etcd = cluster(self.options)
        return self._etcd

    def request_pool(self, pool="", sub_pool="", options=None):
        from pallet.plugins.network.ipam import parse_pools

        if pool:
            network = ipaddress.IPv4Network(pool)
            if not self.etcd.create(f"{PREFIX}pools/{network}", sub_pool):
                raise Conflict(f"Pool overlaps with other one on this address space: {network}")
            return str(network), str(network)
        for base, size in parse_pools(self.options.get("pools") or self.DEFAULT_POOLS):
            taken = [ipaddress.IPv4Network(key[len(f"{PREFIX}pools/"):]) for key in self.etcd.range(f"{PREFIX}pools/")[0]]
            for candidate in base.subnets(new_prefix=size):
                if not any(candidate.overlaps(t) for t in taken) and self.etcd.create(f"{PREFIX}pools/{candidate}", ""):
                    return str(candidate), str(candidate)
        raise PalletError("could not find an available address pool in the cluster store")

    def release_pool(self, pool_id):
        self.etcd.delete(f"{PREFIX}addresses/{pool_id}/", prefix=True)
        self.etcd.delete(f"{PREFIX}pools/{pool_id}")

    def request_address(self, pool_id, address="", options=None):
        network = ipaddress.IPv4Network(pool_id)
        sub = self.etcd.get(f"{PREFIX}pools/{pool_id}") or ""
        if address:
            ip = ipaddress.IPv4Address(address.split("/")[0])
            if ip not in network:
                raise UsageError(f"address {ip} is not inside {network}")
            if not self.etcd.create(f"{PREFIX}addresses/{pool_id}/{ip}", "1"):
                raise Conflict(f"Address already in use: {ip}")
            return f"{ip}/{network.prefixlen}"
        gateway = (options or {}).get("RequestAddressType") == "com.docker.network.gateway"
        scope = ipaddress.IPv4Network(sub) if sub and not gateway else network
        for ip in scope.hosts():
            if self.etcd.create(f"{PREFIX}addresses/{pool_id}/{ip}", "1"):
                return f"{ip}/{network.prefixlen}"
        raise PalletError(f"no available IPv4 addresses on this network's address pool {network}")

    def release_address(self, pool_id, address):
        self.etcd.delete(f"{PREFIX}addresses/{pool_id}/{address.split('/')[0]}")


# --- FDB/ARP programming and the agent that keeps it current ----------------------------------

def sync_peers(etcd, network_id: str, data: dict) -> tuple[dict, int]:
    """Program every remote endpoint now; return them and the etcd revision they were read at."""
    from pallet.plugins.network.netlink import iproute, program_peer

    endpoints, revision = etcd.range(f"{PREFIX}endpoints/{network_id}/")
    with iproute(data["ns"]) as ipr:
        for value in endpoints.values():
            if isinstance(value, dict) and value.get("vtep") != data["vtep"]:
                program_peer(ipr, "vxlan0", value["ip"], value["mac"], value["vtep"], True)
    return endpoints, revision


def start_agent(driver: OverlayNetwork, network_id: str, data: dict) -> int:
    repo = Path(__file__).resolve().parents[2]
    names = driver.root / "networks" / "endpoints" / f"{network_id}.remote"
    log = Path(data["ns"]).parent / f"ov-{network_id[:12]}.agent.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pallet.plugins.network.overlay", driver.etcd.url, network_id, json.dumps(data),
             str(names)],
            cwd=repo, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True)
    deadline = time.monotonic() + 30   # generous: a loaded host starts Python slowly
    while driver.etcd.get(f"{PREFIX}leases/{network_id}/{data['vtep']}") is None:  # endpoints need the lease
        if proc.poll() is not None or time.monotonic() > deadline:
            raise PalletError(f"the overlay agent did not start (see {log})")
        time.sleep(0.02)
    return proc.pid


def stop_agent(pid: int | None, network_id: str) -> None:
    if not pid:
        return
    try:
        if network_id.encode() not in Path(f"/proc/{pid}/cmdline").read_bytes():
            return  # the pid was reused: not ours
        os.kill(pid, signal.SIGTERM)
    except (FileNotFoundError, ProcessLookupError):
        return
    for _ in range(200):
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return
        if state == "Z":
            return
        time.sleep(0.01)


def agent_main(base: str, network_id: str, data: dict, names_file: Path) -> None:
    """Watch the network's endpoints in etcd; keep FDB/ARP entries and the DNS names of remote ones current."""
    from pallet.kernel.fsutil import atomic_write_json
    from pallet.kernel.network.etcd import Etcd
    from pallet.plugins.network.netlink import iproute, program_peer

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    etcd = Etcd(base)
    prefix = f"{PREFIX}endpoints/{network_id}/"
    local = names_file.with_suffix("")  # this host's endpoint records: <root>/networks/endpoints/<id>/
    threading.Thread(target=hold_lease, args=(etcd, network_id, data, local), daemon=True).start()
    while Path(data["ns"]).exists():
        try:
            known, revision = sync_peers(etcd, network_id, data)
            _write_names(atomic_write_json, names_file, known, data["vtep"])
            for kind, key, value in etcd.watch(prefix, revision + 1):
                with iproute(data["ns"]) as ipr:
                    if kind == "DELETE":
                        gone = known.pop(key, None)
                        if isinstance(gone, dict) and gone.get("vtep") != data["vtep"]:
                            program_peer(ipr, "vxlan0", gone["ip"], gone["mac"], gone["vtep"], False)
                    elif isinstance(value, dict):
                        known[key] = value
                        if value.get("vtep") != data["vtep"]:
                            program_peer(ipr, "vxlan0", value["ip"], value["mac"], value["vtep"], True)
                _write_names(atomic_write_json, names_file, known, data["vtep"])
        except (PalletError, OSError) as exc:
            print(f"overlay agent: {exc}; retrying", file=sys.stderr, flush=True)
            time.sleep(1)
        except Exception as exc:  # httpx stream errors: reconnect from a fresh read
            print(f"overlay agent: {type(exc).__name__}: {exc}; retrying", file=sys.stderr, flush=True)
            time.sleep(1)


def hold_lease(etcd, network_id: str, data: dict, local: Path) -> None:
    """Keep this host's lease alive; after a gap long enough to lose it, take a new one and re-publish.

    Publishing puts this host's endpoints (from its own records) under the lease, then the lease id
    at ``leases/<network>/<vtep>`` where ``create_endpoint`` finds it.
    """
    ttl = int(data.get("lease_ttl") or DEFAULT_LEASE_TTL)
    lease = None
    while True:
        try:
            if lease is None or etcd.keepalive(lease) == 0:
                lease = etcd.grant(ttl)
                for path in local.glob("*.json"):
                    ep = json.loads(path.read_text())
                    if not ep.get("mac_address"):
                        continue  # still being created: create_endpoint publishes it
                    etcd.put(f"{PREFIX}endpoints/{network_id}/{ep['id']}", {
                        "ip": ep["address"].split("/")[0], "mac": ep["mac_address"], "vtep": data["vtep"],
                        "name": ep["container_name"], "aliases": ep["aliases"], "container_id": ep["container_id"]},
                        lease=lease)
                etcd.put(f"{PREFIX}leases/{network_id}/{data['vtep']}", lease, lease=lease)
        except (PalletError, OSError, ValueError, KeyError) as exc:
            print(f"overlay agent: lease: {exc}", file=sys.stderr, flush=True)
        time.sleep(max(ttl / 3, 0.5))


def _write_names(write, names_file: Path, known: dict, vtep: str) -> None:
    """Remote endpoints' names for the network's DNS responder: {name: [ip, …]}."""
    names: dict[str, list[str]] = {}
    for value in known.values():
        if isinstance(value, dict) and value.get("vtep") != vtep:
            for name in [value.get("name"), value.get("container_id", "")[:12], *value.get("aliases", [])]:
                if name:
                    names.setdefault(name.lower(), []).append(value["ip"])
    if names_file.parent.exists():
        write(names_file, names)


@hookimpl
def pallet_register_network_drivers(register):
    register("overlay", OverlayNetwork)


@hookimpl
def pallet_register_ipam_drivers(register):
    register("cluster", ClusterIpam)


if __name__ == "__main__":
    agent_main(sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), Path(sys.argv[4]))
