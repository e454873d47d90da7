"""Cluster fixtures: a real 3-member etcd cluster and three nodes (one pallet root each) with agents
(``etcd``, ``cluster``); and for the mesh tests three simulated hosts with busybox on one overlay
network, with helpers that write Service and Task records into etcd and run each task as a real
container (``swarm_hosts``, ``swarm``).

Everything a test makes goes afterwards: the agents are stopped, every container of every root is
removed (with the leak check of the container tests), the test's keys under ``/pallet/`` are
deleted (a key left is reported) and the etcd members are stopped.
"""


from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.cluster.etcd_cluster import etcd_cluster
from tests.conftest import REPO, Pallet, teardown_networks
from tests.containers.conftest import cleanup_root
from tests.network.conftest import NET
from tests.network.test_overlay import simulated_cluster

LEASE_TTL = 3


def eventually(predicate, timeout: float = 90.0, step: float = 0.3):
    """Poll ``predicate`` until it returns something true (returned) or the generous deadline passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(step)


class Node:
    """One cluster node: a pallet root holding busybox, joined to the cluster, and its agent process."""

    def __init__(self, name: str, base: Path, url: str):
        self.name, self.url = name, url
        base.mkdir(parents=True)
        (base / "pallet.toml").write_text('[containers]\ndefault_network = "none"\n')
        self.pallet = Pallet(base / "root", base / "run")
        self.agent: subprocess.Popen | None = None
        self.log = base / "agent.log"
        self.id = ""

    def __call__(self, *args: str, check: bool = True, timeout: float = 120):
        return self.pallet(*args, check=check, timeout=timeout)

    def join(self, role: str = "manager", labels=()) -> str:
        args = ["node", "join", "--cluster-store", self.url, "--role", role, "--hostname", self.name]
        for label in labels:
            args += ["--label", label]
        out = self(*args).stdout
        self.id = next(line.split()[-1] for line in out.splitlines() if line.startswith("Node ID:"))
        return self.id

    def start_agent(self, ttl: int = LEASE_TTL) -> None:
        self.agent = subprocess.Popen(self.pallet.command("agent", "--lease-ttl", str(ttl)), cwd=str(REPO),
                                      env=self.pallet.env, stdout=subprocess.DEVNULL,
                                      stderr=self.log.open("ab"), start_new_session=True)

    def kill_agent(self) -> None:
        """The host dies: the agent is killed at once (its lease is left to expire)."""
        if self.agent is not None and self.agent.poll() is None:
            os.kill(self.agent.pid, signal.SIGKILL)
            self.agent.wait()
        self.agent = None

    def stop_agent(self) -> None:
        if self.agent is not None and self.agent.poll() is None:
            self.agent.terminate()
            try:
                self.agent.wait(30)
            except subprocess.TimeoutExpired:
                self.agent.kill()
                self.agent.wait()
        self.agent = None

    def kill_containers(self) -> None:
        for cid in self("ps", "-q", "--no-trunc").stdout.split():
            self("kill", cid, check=False)


class Cluster:
    def __init__(self, etcd, nodes: list[Node]):
        self.etcd, self.nodes = etcd, nodes

    def tasks(self, service: str) -> list[dict]:
        from pallet.kernel.cluster import PREFIX

        items, _ = self.etcd.client().range(PREFIX + "tasks/")
        sid = self.service_id(service)
        return [t for t in items.values() if t.get("ServiceID") == sid]

    def tasks_of(self, service_id: str) -> list[dict]:
        from pallet.kernel.cluster import PREFIX

        items, _ = self.etcd.client().range(PREFIX + "tasks/")
        return [t for t in items.values() if t.get("ServiceID") == service_id]

    def service_id(self, name: str) -> str | None:
        from pallet.kernel.cluster import PREFIX

        return self.etcd.client().get(f"{PREFIX}service-names/{name}")

    def running(self, service: str) -> dict[str, int]:
        """Node name -> tasks of ``service`` that want to run and run there."""
        names = {n.id: n.name for n in self.nodes}
        counts: dict[str, int] = {}
        for task in self.tasks(service):
            if task["DesiredState"] == "running" and task["Status"]["State"] == "running":
                node = names.get(task["NodeID"], task["NodeID"])
                counts[node] = counts.get(node, 0) + 1
        return counts

    def update_state(self, service: str) -> str:
        from pallet.kernel.cluster import PREFIX

        record = self.etcd.client().get(f"{PREFIX}services/{self.service_id(service)}") or {}
        return (record.get("UpdateStatus") or {}).get("State", "")

    def wait_update(self, service: str, state: str = "completed", timeout: float = 120.0) -> None:
        assert eventually(lambda: self.update_state(service) == state, timeout), \
            f"{service}: update state {self.update_state(service)!r}, wanted {state!r}; {self.agent_logs()}"

    def ready(self) -> set[str]:
        """Names of the nodes whose agents hold their lease."""
        from pallet.kernel.cluster import PREFIX

        alive = self.etcd.client().range(PREFIX + "alive/")[0]
        return {n.name for n in self.nodes if f"{PREFIX}alive/{n.id}" in alive}

    def leader(self) -> str | None:
        from pallet.kernel.cluster import PREFIX

        leader = self.etcd.client().leader(PREFIX + "leader")
        return next((n.name for n in self.nodes if n.id == leader), None)

    def containers(self, node: Node) -> list[dict]:
        out = node("ps", "--format", "{{json .}}").stdout
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def wait_running(self, service: str, expected: dict[str, int] | int, timeout: float = 90.0):
        def check():
            counts = self.running(service)
            total = sum(counts.values())
            ok = counts == expected if isinstance(expected, dict) else total == expected
            if ok and self.settled_containers(service):
                return counts
            return None
        result = eventually(check, timeout)
        assert result, f"{service}: wanted {expected}, have {self.running(service)}; agents: {self.agent_logs()}"
        return result

    def settled_containers(self, service: str) -> bool:
        """Every node runs exactly the containers its live tasks want (old ones are gone)."""
        wanted = {}
        for task in self.tasks(service):
            if task["DesiredState"] == "running" and task["Status"]["State"] == "running":
                wanted.setdefault(task["NodeID"], set()).add(task["ID"])
        for node in self.nodes:
            if node.agent is None:
                continue
            names = {c["Names"] for c in self.containers(node) if c["Names"].startswith(f"{service}.")}
            have = {n.rsplit(".", 1)[-1] for n in names}
            if have != wanted.get(node.id, set()):
                return False
        return True

    def agent_logs(self) -> str:
        return "\n".join(f"--- {n.name}\n" + n.log.read_text()[-1500:] for n in self.nodes if n.log.exists())


@pytest.fixture
def etcd(tmp_path):
    with etcd_cluster(tmp_path) as cluster:
        yield cluster


@pytest.fixture
def cluster(tmp_path, etcd):
    """Three manager nodes (a, b, c) with agents running, busybox in each root."""
    nodes = [Node(name, tmp_path / name, etcd.url) for name in ("node-a", "node-b", "node-c")]
    problems = []
    try:
        for node in nodes:
            node("image", "build-busybox")
            node.join("manager", [f"zone={node.name[-1]}"])
            node.start_agent()
        made = Cluster(etcd, nodes)
        assert eventually(lambda: made.ready() == {n.name for n in nodes}), made.agent_logs()
        yield made
    finally:
        running = [n for n in nodes if n.agent is not None]
        if running:  # services removed while agents run: the leader retires their tasks, agents remove containers
            for name in running[0]("service", "ls", "-q", check=False).stdout.split():
                running[0]("service", "rm", name, check=False)
            eventually(lambda: not etcd.client().range("/pallet/swarm/tasks/")[0], timeout=60)
        for node in nodes:
            node.stop_agent()
        for node in nodes:
            problems += cleanup_root(node.pallet)
            teardown_networks(node.pallet)
        client = etcd.client()
        left = client.range("/pallet/")[0]
        client.delete("/pallet/", prefix=True)
    assert not problems, f"left behind: {problems}"
    assert not [k for k in left if not k.startswith(("/pallet/swarm/nodes/", "/pallet/swarm/alive/",
                                                     "/pallet/swarm/leader"))], sorted(left)


# --- the mesh tests' simulated hosts ------------------------------------------------------

SUBNET = f"{NET}.230.0/24"
SERVE = "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p {port} -h /www"


def fetch(address: str, port: int = 80) -> str:
    """A shell command that GETs / (busybox's static wget crashes here; nc does the job)."""
    return f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {address} {port}"


def served_by(output: str) -> list[str]:
    """The hostnames in ``output`` (the bodies of the replies), in order."""
    return [line.strip() for line in output.splitlines() if re.fullmatch(r"[0-9a-z.-]+", line.strip())]


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
        ip, hostname = host.pallet("inspect", "--format", "{{.NetworkSettings.Networks.ov.IPAddress}} {{.Config.Hostname}}",
                                   name).stdout.split()
        task = {"ID": task_id, "ServiceID": service["ID"], "Slot": slot, "NodeID": host.name,
                "DesiredState": "running", "Status": {"State": state, "Health": health},
                "NetworksAttachments": [{"Network": {"ID": self.network_id}, "Addresses": [f"{ip}/24"]}],
                "ip": ip, "hostname": hostname, "container": name}
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

    def responders(self, host, address: str, port: int = 80, count: int = 12, container: str = "") -> list[str]:
        """Who answers ``count`` requests to ``address:port`` from a new container (or ``container``) on ``host``."""
        script = f"for i in $(seq {count}); do {fetch(address, port)}; done"
        if container:
            out = host.pallet("exec", container, "sh", "-c", script, check=False).stdout
        else:
            out = self.client(host, script)
        return served_by(out)

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
