"""A small swarm for the mesh tests: three simulated hosts with busybox, one overlay network, and
helpers that write Service and Task records into etcd and run each task as a real container."""

from __future__ import annotations

import contextlib
import json
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


class Swarm:
    def __init__(self, hosts, network_id: str):
        from pallet.kernel.network.etcd import Etcd

        self.hosts, self.network_id = hosts, network_id
        self.etcd = Etcd(hosts[0].store)
        self.services: list[dict] = []
        self.containers: list[tuple] = []

    def mesh(self, host, op: str, *args: str) -> str:
        cmd = ["nsenter", f"--net=/run/netns/{host.netns}", sys.executable, "-m", "tests.cluster.mesh_host",
               str(host.root), host.store, op, *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=120)
        if proc.returncode != 0:
            raise AssertionError(f"{host.name}: mesh {op}: {proc.stderr}")
        return proc.stdout

    def in_host(self, host, *cmd: str, timeout: float = 30) -> subprocess.CompletedProcess:
        return subprocess.run(["nsenter", f"--net=/run/netns/{host.netns}", *cmd], capture_output=True, text=True,
                              timeout=timeout)

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
        name = f"{service['Spec']['Name']}.{slot}.{task_id}"
        host.pallet("run", "-d", "--name", name, "--network", "ov", "busybox", "sh", "-c", SERVE.format(port=port))
        self.containers.append((host, name))
        ip = host.pallet("inspect", "--format", "{{.NetworkSettings.Networks.ov.IPAddress}}", name).stdout.strip()
        task = {"ID": task_id, "ServiceID": service["ID"], "Slot": slot, "NodeID": host.name,
                "DesiredState": "running", "Status": {"State": state, "Health": health},
                "NetworksAttachments": [{"Network": {"ID": self.network_id}, "Addresses": [f"{ip}/24"]}],
                "ip": ip, "container": name}
        self.put_task(task)
        return task

    def put_task(self, task: dict) -> None:
        self.etcd.put(f"/pallet/swarm/tasks/{task['ID']}", task)

    def sync(self, *hosts) -> None:
        for host in hosts or self.hosts:
            self.mesh(host, "sync")

    def client(self, host, script: str) -> str:
        """Run ``script`` in a fresh container on the overlay network on ``host``; its output."""
        proc = host.pallet("run", "--rm", "--network", "ov", "busybox", "sh", "-c", script, check=False)
        return proc.stdout + proc.stderr

    def resolve(self, host, name: str) -> set[str]:
        out = self.client(host, f"nslookup {name} 127.0.0.11")
        return set(re.findall(rf"Address:\s*({re.escape(NET)}\.230\.\d+)", out))

    def responders(self, host, url: str, count: int = 12) -> list[str]:
        out = self.client(host, f"for i in $(seq {count}); do wget -q -T 3 -O- {url}; done")
        return [line.strip() for line in out.splitlines() if re.fullmatch(r"[0-9a-f]{12}", line.strip())]

    def cleanup(self) -> None:
        for host, name in self.containers:
            host.pallet("rm", "-f", name, check=False)
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
                host.pallet("image", "build-busybox")
            network_id = hosts[0].pallet("network", "create", "-d", "overlay", "--subnet", SUBNET, "ov").stdout.strip()
            swarm = Swarm(hosts, network_id)
            yield swarm
        finally:
            if swarm is not None:
                swarm.cleanup()
                for host in hosts:
                    swarm.mesh(host, "teardown")
            for host in hosts:
                host.pallet("network", "rm", "ov", check=False)


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
