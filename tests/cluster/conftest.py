"""Cluster fixtures: a real 3-member etcd cluster and three nodes (one pallet root each) with agents
(``etcd``, ``cluster``). The mesh tests' simulated hosts are in ``tests/cluster/mesh_swarm.py``.

Everything a test makes goes afterwards: the agents are stopped, every container of every root is
removed (with the leak check of the container tests), the test's keys under ``/pallet/`` are
deleted (a key left is reported) and the etcd members are stopped.
"""


from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.cluster.etcd_cluster import etcd_cluster
from tests.conftest import REPO, Pallet, teardown_networks
from tests.containers.conftest import cleanup_root

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

    def __init__(self, name: str, base: Path, url: str, secrets_key: Path | None = None):
        """``secrets_key``: the node's copy of the cluster key (by default one file beside ``base``, shared by
        the nodes made in the same directory, as an operator copies it to every node)."""
        self.name, self.url = name, url
        base.mkdir(parents=True)
        self.secrets_key = secrets_key or base.parent / "secrets.key"
        config = f'[containers]\ndefault_network = "none"\n[secrets]\nkey_file = "{self.secrets_key}"\n'
        (base / "pallet.toml").write_text(config)
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
                                                     "/pallet/swarm/leader", "/pallet/swarm/log-endpoints/",
                                                     "/pallet/mesh-synced/", "/pallet/swarm/cluster"))], sorted(left)
