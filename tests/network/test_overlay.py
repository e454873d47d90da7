"""Overlay across simulated hosts: namespaces on an underlay bridge, etcd on the underlay, a root per host."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.network.conftest import NET, run_in

UNDERLAY = f"{NET}.200"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Host:
    """One simulated machine: a network namespace on the underlay and its own pallet root."""

    def __init__(self, name: str, netns: str, root: Path, store: str):
        self.name, self.netns, self.root, self.store = name, netns, root, store
        # A short lease, so a host that dies is noticed by the others within the test.
        Path(f"{root}.toml").write_text("[network]\noverlay_lease_ttl = 2\n")

    def pallet(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        cmd = ["nsenter", f"--net=/run/netns/{self.netns}", sys.executable, "-m", "pallet.kernel.cli", "--root",
               str(self.root), "--cluster-store", self.store, *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=60,
                              env={**os.environ, "PALLET_CONFIG": f"{self.root}.toml"})
        if check and proc.returncode != 0:
            raise AssertionError(f"{self.name}: pallet {' '.join(args)}: {proc.stderr}")
        return proc

    def driver(self, *args: str) -> str:
        cmd = ["nsenter", f"--net=/run/netns/{self.netns}", sys.executable, "-m", "tests.network.overlay_host",
               str(self.root), self.store, *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=60)
        if proc.returncode != 0:
            raise AssertionError(f"{self.name}: {' '.join(args)}: {proc.stderr}")
        return proc.stdout


@pytest.fixture
def cluster(tmp_path):
    with simulated_cluster(tmp_path) as hosts:
        yield hosts


@contextlib.contextmanager
def simulated_cluster(tmp_path: Path):
    """An underlay bridge, etcd listening on it, and three host namespaces plugged into it.

    Afterwards every host tears its root down, and the etcd prefix must be empty.
    """
    tag = uuid.uuid4().hex[:6]
    bridge = f"pu{tag}"
    made_netns, made_links, etcd, hosts = [], [bridge], None, []
    client, peer = free_port(), free_port()
    store = f"etcd://{UNDERLAY}.1:{client}"
    try:
        subprocess.run(["ip", "link", "add", bridge, "type", "bridge"], check=True)
        subprocess.run(["ip", "addr", "add", f"{UNDERLAY}.1/24", "dev", bridge], check=True)
        subprocess.run(["ip", "link", "set", bridge, "up"], check=True)
        etcd = subprocess.Popen(
            ["etcd", "--name", f"t{tag}", "--data-dir", str(tmp_path / "etcd"),
             "--listen-client-urls", f"http://{UNDERLAY}.1:{client}",
             "--advertise-client-urls", f"http://{UNDERLAY}.1:{client}",
             "--listen-peer-urls", f"http://127.0.0.1:{peer}",
             "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
             "--initial-cluster", f"t{tag}=http://127.0.0.1:{peer}"],
            stdout=subprocess.DEVNULL, stderr=(tmp_path / "etcd.log").open("wb"))
        for i, letter in enumerate("abc"):
            netns, outer = f"pth{tag}{letter}", f"pu{tag}{letter}"
            subprocess.run(["ip", "netns", "add", netns], check=True)
            made_netns.append(netns)
            subprocess.run(["ip", "link", "add", outer, "type", "veth", "peer", "name", "eth9",
                            "netns", netns], check=True)
            made_links.append(outer)
            subprocess.run(["ip", "link", "set", outer, "master", bridge, "up"], check=True)
            inside = ["nsenter", f"--net=/run/netns/{netns}"]
            subprocess.run([*inside, "ip", "addr", "add", f"{UNDERLAY}.{11 + i}/24", "dev", "eth9"], check=True)
            subprocess.run([*inside, "ip", "link", "set", "eth9", "up"], check=True)
            subprocess.run([*inside, "ip", "link", "set", "lo", "up"], check=True)
            hosts.append(Host(f"host-{letter}", netns, tmp_path / f"root-{letter}", store))
        _wait_for_etcd(store)
        yield hosts
    finally:
        problems = []
        for host in hosts:
            try:
                host.driver("teardown")
            except AssertionError as exc:
                problems.append(str(exc))
        if etcd is not None:
            if not problems:
                from pallet.kernel.network.etcd import Etcd

                left = Etcd(store).range("/pallet/")[0]
                problems += [f"etcd keys left behind: {sorted(left)}"] if left else []
            etcd.terminate()
            etcd.wait()
        for netns in made_netns:
            subprocess.run(["ip", "netns", "del", netns], capture_output=True)
        for link in made_links:
            subprocess.run(["ip", "link", "del", link], capture_output=True)
    assert not problems, problems


def _wait_for_etcd(store: str) -> None:
    from pallet.kernel.network.etcd import Etcd

    deadline = time.monotonic() + 20
    while True:
        try:
            Etcd(store, timeout=1).range("/")
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def ping_eventually(sandbox: str, ip: str, expect: bool = True, seconds: float = 5) -> bool:
    deadline = time.monotonic() + seconds
    while True:
        ok = run_in(sandbox, "busybox", "ping", "-c", "1", "-W", "1", ip).returncode == 0
        if ok == expect or time.monotonic() > deadline:
            return ok
        time.sleep(0.2)


def test_containers_on_three_hosts_reach_each_other_by_ip_and_name(cluster, sandbox):
    a, b, c = cluster
    network_id = a.pallet("network", "create", "-d", "overlay", "--subnet", f"{NET}.220.0/24", "ov").stdout.strip()
    listed = b.pallet("network", "ls", "--format", "{{.Name}} {{.Driver}} {{.Scope}} {{.ID}}").stdout
    assert f"ov overlay global {network_id[:12]}" in listed, "a network created on one host is known on the others"

    boxes = {h.name: sandbox() for h in cluster}
    ids = {h.name: uuid.uuid4().hex * 2 for h in cluster}
    results = {}
    for host, name in zip(cluster, ("alpha", "beta", "gamma")):
        results[host.name] = json.loads(host.driver("connect", "ov", ids[host.name], name, boxes[host.name],
                                                    f"{name}-alias"))
    addresses = {r["IPAddress"] for r in results.values()}
    assert len(addresses) == 3 and all(ip.startswith(f"{NET}.220.") for ip in addresses)

    beta_ip = results["host-b"]["IPAddress"]
    assert ping_eventually(boxes["host-a"], beta_ip)
    assert ping_eventually(boxes["host-c"], results["host-a"]["IPAddress"])
    lookup = ""
    for _ in range(25):
        lookup = run_in(boxes["host-a"], "busybox", "nslookup", "beta-alias", "127.0.0.11").stdout
        if beta_ip in lookup:
            break
        time.sleep(0.2)
    assert beta_ip in lookup, "names of containers on other hosts resolve over the overlay"

    # Host c dies (its agent stops renewing the lease): its endpoint expires on the other hosts.
    gamma_ip = results["host-c"]["IPAddress"]
    agent = json.loads((c.root / "networks" / f"{network_id}.json").read_text())["driver_data"]["agent"]
    ov_ns = f"{a.root}/run/netns/ov-{network_id[:12]}"
    assert gamma_ip in run_in(ov_ns, "ip", "neigh", "show", "dev", "vxlan0").stdout
    os.kill(agent, 9)
    deadline = time.monotonic() + 10
    while gamma_ip in run_in(ov_ns, "ip", "neigh", "show", "dev", "vxlan0").stdout:
        assert time.monotonic() < deadline, "a dead host's endpoint must expire with its lease"
        time.sleep(0.2)

    # Removing beta's endpoint takes its FDB/ARP entries away on the other hosts.
    b.driver("disconnect", ids["host-b"])
    deadline = time.monotonic() + 5
    while beta_ip in run_in(ov_ns, "ip", "neigh", "show", "dev", "vxlan0").stdout and time.monotonic() < deadline:
        time.sleep(0.1)
    assert beta_ip not in run_in(ov_ns, "ip", "neigh", "show", "dev", "vxlan0").stdout
    assert not ping_eventually(boxes["host-a"], beta_ip, expect=False)

    for host in cluster:
        host.driver("disconnect", ids[host.name])
    for host in (b, c, a):
        host.pallet("network", "rm", "ov")


def test_addresses_never_collide_across_hosts(cluster):
    from concurrent.futures import ThreadPoolExecutor

    from pallet.kernel.network.etcd import Etcd
    from pallet.kernel.drivers import DriverContext
    from pallet.plugins.network.overlay import ClusterIpam

    store = cluster[0].store
    ipam = ClusterIpam(DriverContext("/nonexistent", {"cluster-store": store}))
    pool, _ = ipam.request_pool(f"{NET}.221.0/26")
    try:
        with ThreadPoolExecutor(8) as pool_exec:
            got = list(pool_exec.map(lambda _: ClusterIpam(DriverContext("/x", {"cluster-store": store})).request_address(pool),
                                     range(40)))
        assert len(set(got)) == 40
    finally:
        ipam.release_pool(pool)
    assert not Etcd(store).range("/pallet/")[0]


def test_pallet_run_on_two_hosts_reach_each_other_by_name(cluster):
    a, b, _c = cluster
    for host in (a, b):
        host.pallet("image", "build-busybox")
    network_id = a.pallet("network", "create", "-d", "overlay", "--subnet", f"{NET}.222.0/24", "ov").stdout.strip()
    a.pallet("run", "-d", "--name", "alpha", "--network", "ov", "busybox", "sleep", "120")
    try:
        reply = b.pallet("run", "--rm", "--network", "ov", "busybox", "ping", "-c", "1", "alpha", check=False)
        assert reply.returncode == 0 and f"{NET}.222.2" in reply.stdout, reply.stdout + reply.stderr
        keep = b.pallet("run", "-d", "--name", "beta", "--network", "ov", "busybox", "sleep", "120")
        assert keep.stdout.strip()
    finally:
        a.pallet("rm", "-f", "alpha", check=False)
    # alpha is gone: host b's overlay namespace forgets its address.
    ov_ns = f"{b.root}/run/netns/ov-{network_id[:12]}"
    deadline = time.monotonic() + 5
    while f"{NET}.222.2 " in run_in(ov_ns, "ip", "neigh", "show", "dev", "vxlan0").stdout:
        assert time.monotonic() < deadline, "alpha's ARP entry is still programmed on host b"
        time.sleep(0.1)
    b.pallet("rm", "-f", "beta")
    for host in (b, a):
        host.pallet("network", "rm", "ov")
