"""A small swarm for the mesh tests: three simulated hosts with busybox on one overlay network, a client
container on each, and helpers that write Service and Task records into etcd and run each task as
a real container. The agent's part (calling ``mesh.sync`` on each node) is ``Swarm.sync``.

Queries run from a client container's namespace with the host's busybox (``nsenter --net``), which
costs a few milliseconds where a ``pallet run`` costs a second or more on a busy machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import uuid

import pytest

from tests.conftest import REPO
from tests.network.conftest import NET
from tests.network.test_overlay import simulated_cluster

SUBNET = f"{NET}.230.0/24"
SERVE = "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p {port} -h /www"


def fetch(address: str, port: int = 80) -> str:
    """A shell command that GETs / (busybox's static wget crashes here; nc does the job)."""
    return f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | busybox nc -w 3 {address} {port}"


def served_by(output: str) -> list[str]:
    """The hostnames in ``output`` (the bodies of the replies), in order."""
    return [line.strip() for line in output.splitlines() if re.fullmatch(r"t[0-9a-z-]+", line.strip())]


class Swarm:
    def __init__(self, hosts, network_id: str):
        from pallet.kernel.network.etcd import Etcd

        self.hosts, self.network_id = hosts, network_id
        self.etcd = Etcd(hosts[0].store)
        self.services: list[dict] = []
        self.containers: list[tuple] = []
        self.clients: dict[str, str] = {}   # host name -> the sandbox of its client container

    def mesh(self, host, op: str, *args: str) -> str:
        cmd = ["nsenter", f"--net=/run/netns/{host.netns}", sys.executable, "-m", "tests.cluster.mesh_host",
               str(host.root), host.store, op, *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=120)
        if proc.returncode != 0:
            raise AssertionError(f"{host.name}: mesh {op}: {proc.stderr}")
        return proc.stdout

    @staticmethod
    def pallet(host, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """``host.pallet`` with room for a busy machine (a ``run`` has been seen to take a minute)."""
        cmd = ["nsenter", f"--net=/run/netns/{host.netns}", sys.executable, "-m", "pallet.kernel.cli", "--root",
               str(host.root), "--cluster-store", host.store, *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=240,
                              env={**os.environ, "PALLET_CONFIG": f"{host.root}.toml"})
        if check and proc.returncode != 0:
            raise AssertionError(f"{host.name}: pallet {' '.join(args)}: {proc.stderr}")
        return proc

    def in_host(self, host, *cmd: str, timeout: float = 30) -> subprocess.CompletedProcess:
        return subprocess.run(["nsenter", f"--net=/run/netns/{host.netns}", *cmd], capture_output=True, text=True,
                              timeout=timeout)

    def run(self, host, name: str, *args: str) -> str:
        """``pallet run -d`` on the overlay network; the container's sandbox."""
        cid = self.pallet(host, "run", "-d", "--name", name, "--network", "ov", *args).stdout.strip()
        self.containers.append((host, name))
        return str(host.root / "run" / "netns" / cid)

    def start_clients(self) -> None:
        for host in self.hosts:
            self.clients[host.name] = self.run(host, f"client-{host.name}", "busybox", "sleep", "3600")
        self.client_containers = list(self.containers)
        self.containers.clear()

    def in_client(self, host, script: str) -> str:
        proc = subprocess.run(["nsenter", f"--net={self.clients[host.name]}", "sh", "-c", script],
                              capture_output=True, text=True, timeout=120)
        return proc.stdout + proc.stderr

    def create_service(self, name: str, mode: str = "vip", ports: list[dict] | None = None) -> dict:
        service = {"ID": uuid.uuid4().hex[:25], "Spec": {
            "Name": name, "TaskTemplate": {"Networks": [{"Target": "ov", "Aliases": [f"{name}-alias"]}]},
            "EndpointSpec": {"Mode": mode, "Ports": ports or []}}}
        service["Endpoint"] = {"Spec": service["Spec"]["EndpointSpec"], "Ports": ports or [],
                               "VirtualIPs": json.loads(self.mesh(self.hosts[0], "allocate", json.dumps(service)))}
        self.etcd.put(f"/pallet/swarm/services/{service['ID']}", service)
        self.services.append(service)
        return service

    def run_task(self, host, service: dict, slot: int, port: int = 80, state: str = "running",
                 health: str = "") -> dict:
        task_id = uuid.uuid4().hex[:25]
        hostname = f"t{slot}-{task_id[:8]}"
        sandbox = self.run(host, f"{service['Spec']['Name']}.{slot}.{task_id}", "--hostname", hostname,
                           "busybox", "sh", "-c", SERVE.format(port=port))
        endpoint = host.root / "networks" / "endpoints" / self.network_id / f"{sandbox.rsplit('/', 1)[1]}.json"
        address = json.loads(endpoint.read_text())["address"]
        task = {"ID": task_id, "ServiceID": service["ID"], "Slot": slot, "NodeID": host.name,
                "DesiredState": "running", "Status": {"State": state, "Health": health},
                "NetworksAttachments": [{"Network": {"ID": self.network_id}, "Addresses": [address]}],
                "ip": address.split("/")[0], "hostname": hostname}
        self.put_task(task)
        return task

    def put_task(self, task: dict) -> None:
        self.etcd.put(f"/pallet/swarm/tasks/{task['ID']}", task)

    def sync(self, *hosts) -> None:
        for host in hosts or self.hosts:
            self.mesh(host, "sync")

    def resolve(self, host, name: str) -> set[str]:
        out = self.in_client(host, f"busybox nslookup {name} 127.0.0.11")
        return set(re.findall(rf"Address:\s*({re.escape(NET)}\.230\.\d+)", out))

    def responders(self, host, address: str, port: int = 80, count: int = 12) -> list[str]:
        """Who answers ``count`` requests to ``address:port`` from the client container on ``host``."""
        return served_by(self.in_client(host, f"for i in $(seq {count}); do {fetch(address, port)}; done"))

    def remove_containers(self, containers: list[tuple]) -> None:
        by_host: dict = {}
        for host, name in containers:
            by_host.setdefault(host.name, (host, []))[1].append(name)
        for host, names in by_host.values():
            self.pallet(host, "rm", "-f", *names, check=False)

    def cleanup(self) -> None:
        self.remove_containers(self.containers)
        self.containers.clear()
        for service in self.services:
            with contextlib.suppress(Exception):
                self.mesh(self.hosts[0], "release", json.dumps(service))
        self.services.clear()
        self.etcd.delete("/pallet/swarm/", prefix=True)


@pytest.fixture(scope="module")
def swarm_hosts(tmp_path_factory):
    with simulated_cluster(tmp_path_factory.mktemp("mesh")) as hosts:
        swarm = None
        try:
            for host in hosts:
                Swarm.pallet(host, "image", "build-busybox")
            create = ("network", "create", "-d", "overlay", "--subnet", SUBNET, "ov")
            made = Swarm.pallet(hosts[0], *create, check=False)
            if made.returncode != 0 and "overlay agent did not start" in made.stderr:
                made = Swarm.pallet(hosts[0], *create, check=False)  # its 10 s start deadline, on a loaded machine
            assert made.returncode == 0, made.stderr
            network_id = made.stdout.strip()
            swarm = Swarm(hosts, network_id)
            swarm.start_clients()
            yield swarm
        finally:
            if swarm is not None:
                swarm.cleanup()
                swarm.remove_containers(getattr(swarm, "client_containers", []))
                for host in hosts:
                    swarm.mesh(host, "teardown")
            for host in hosts:
                Swarm.pallet(host, "network", "rm", "ov", check=False)


@pytest.fixture
def swarm(swarm_hosts):
    """The module's swarm with every node alive; services, tasks and their containers removed after the test."""
    for host in swarm_hosts.hosts:
        swarm_hosts.etcd.put(f"/pallet/swarm/alive/{host.name}", host.name)
    try:
        yield swarm_hosts
    finally:
        swarm_hosts.cleanup()
        swarm_hosts.sync()
