"""End to end on three simulated hosts with their real agents: a client reaching a service's VIP keeps
being answered while ``service update --image`` rolls every task (start-first, gated on health)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from tests.cluster.conftest import eventually
from tests.cluster.mesh_swarm import SUBNET, Swarm, fetch
from tests.conftest import REPO
from tests.network.test_overlay import simulated_cluster

pytestmark = pytest.mark.timeout(900)

SERVE = 'mkdir -p /www && echo "$VERSION $(hostname)" > /www/index.html && touch /tmp/ok && exec httpd -f -p 80 -h /www'
HEALTHY = ["--health-cmd", "test -e /tmp/ok", "--health-interval", "300ms", "--health-retries", "1"]
# Requests that may fail while tasks are replaced: none. A task leaves the VIP (its task retired in
# etcd, every node's agent takes it out of its map) before its container is stopped, and its
# successor joins only once healthy; a failure would be a connection lost in that hand-over.
FAILURES_ALLOWED = 0


def _agent(host, log) -> subprocess.Popen:
    cmd = ["nsenter", f"--net=/run/netns/{host.netns}", sys.executable, "-m", "pallet.kernel.cli", "--root",
           str(host.root), "--cluster-store", host.store, "agent", "--lease-ttl", "3"]
    return subprocess.Popen(cmd, cwd=REPO, env={**os.environ, "PALLET_CONFIG": f"{host.root}.toml"},
                            stdout=subprocess.DEVNULL, stderr=log.open("ab"), start_new_session=True)


@pytest.fixture
def nodes(tmp_path):
    """Three hosts joined as managers with their agents, busybox:v1 and :v2 in each root, the overlay ``ov``
    and a client container on host-a; afterwards services, containers, the network, the mesh and every
    cluster key go (``simulated_cluster`` then checks that etcd holds nothing of ours)."""
    with simulated_cluster(tmp_path) as hosts:
        agents, swarm = [], Swarm(hosts, "")
        try:
            for host in hosts:
                Swarm.pallet(host, "image", "build-busybox")
                Swarm.pallet(host, "tag", "busybox", "busybox:v1")
                Swarm.pallet(host, "tag", "busybox", "busybox:v2")
                Swarm.pallet(host, "node", "join", "--cluster-store", host.store, "--role", "manager",
                             "--hostname", host.name)
                agents.append(_agent(host, tmp_path / f"agent-{host.name}.log"))
            made = Swarm.pallet(hosts[0], "network", "create", "-d", "overlay", "--subnet", SUBNET, "ov", check=False)
            if made.returncode != 0 and "overlay agent did not start" in made.stderr:
                made = Swarm.pallet(hosts[0], "network", "create", "-d", "overlay", "--subnet", SUBNET, "ov")
            assert made.returncode == 0, made.stderr
            swarm.network_id = made.stdout.strip()
            swarm.clients["host-a"] = swarm.run(hosts[0], "client", "busybox", "sleep", "3600")
            swarm.logs = lambda: "\n".join(f"--- {p.name}\n{p.read_text()[-1500:]}"
                                           for p in sorted(tmp_path.glob("agent-*.log")))
            yield swarm
        finally:
            for name in Swarm.pallet(hosts[0], "service", "ls", "-q", check=False).stdout.split():
                Swarm.pallet(hosts[0], "service", "rm", name, check=False)
            eventually(lambda: not swarm.etcd.range("/pallet/swarm/tasks/")[0], timeout=60)
            for agent in agents:
                if agent.poll() is None:
                    os.killpg(agent.pid, signal.SIGTERM)
                    try:
                        agent.wait(30)
                    except subprocess.TimeoutExpired:
                        os.killpg(agent.pid, signal.SIGKILL)
                        agent.wait()
            for host in hosts:
                leftover = Swarm.pallet(host, "ps", "-aq", check=False).stdout.split()
                if leftover:
                    Swarm.pallet(host, "rm", "-f", *leftover, check=False)
            for host in hosts:
                swarm.mesh(host, "teardown")
                Swarm.pallet(host, "network", "rm", "ov", check=False)
            swarm.etcd.delete("/pallet/swarm/", prefix=True)
            swarm.etcd.delete("/pallet/mesh-synced/", prefix=True)


def _service(swarm, name: str) -> dict:
    sid = swarm.etcd.get(f"/pallet/swarm/service-names/{name}")
    return swarm.etcd.get(f"/pallet/swarm/services/{sid}") or {}


def _live(swarm, name: str) -> list[dict]:
    sid = swarm.etcd.get(f"/pallet/swarm/service-names/{name}")
    return [t for t in swarm.etcd.range("/pallet/swarm/tasks/")[0].values()
            if t.get("ServiceID") == sid and t["DesiredState"] == "running" and t["Status"]["State"] == "running"]


def test_the_vip_answers_throughout_a_start_first_rolling_update(nodes, tmp_path):
    swarm = nodes
    a = swarm.hosts[0]
    Swarm.pallet(a, "service", "create", "-d", "--name", "web", "--replicas", "3", "--network", "ov",
                 "--env", "VERSION=v1", *HEALTHY, "--stop-grace-period", "1s", "--update-parallelism", "1",
                 "--update-order", "start-first", "--update-monitor", "1s", "busybox:v1", "sh", "-c", SERVE)
    assert eventually(lambda: len(_live(swarm, "web")) == 3 and all(
        t["Status"]["Health"] == "healthy" for t in _live(swarm, "web")), timeout=240), swarm.logs()
    assert len({t["NodeID"] for t in _live(swarm, "web")}) == 3, "one task a node"
    vip = _service(swarm, "web")["Endpoint"]["VirtualIPs"][0]["Addr"].split("/")[0]
    answers = lambda: {line for line in swarm.in_client(a, f"for i in $(seq 9); do {fetch(vip)}; done").splitlines()  # noqa: E731
                       if line.startswith("v1 ")}
    assert eventually(lambda: len(answers()) == 3, timeout=60), "every task answers through the VIP before the update"

    results, stop = tmp_path / "replies", tmp_path / "stop"
    loop = (f'while [ ! -e {stop} ]; do r=$({fetch(vip)} | tail -n 1); echo "${{r:-FAILED}}"; sleep 0.05; done '
            f'> {results}')
    client = subprocess.Popen(["nsenter", f"--net={swarm.clients['host-a']}", "sh", "-c", loop])
    try:
        assert eventually(lambda: results.exists() and results.read_text().count("\n") >= 5, timeout=30)
        Swarm.pallet(a, "service", "update", "-d", "--image", "busybox:v2", "--env-add", "VERSION=v2", "web")
        assert eventually(lambda: (_service(swarm, "web").get("UpdateStatus") or {}).get("State") == "completed",
                          timeout=300), f"{_service(swarm, 'web').get('UpdateStatus')}; {swarm.logs()}"
        assert eventually(lambda: all(t["Spec"]["ContainerSpec"]["Image"] == "busybox:v2"
                                      for t in _live(swarm, "web")) and len(_live(swarm, "web")) == 3)
        time.sleep(2)  # the last replies come from the new tasks only
    finally:
        stop.touch()
        client.wait(60)
    replies = results.read_text().split("\n")[:-1]
    versions = Counter(r.split()[0] for r in replies)
    failed = versions.pop("FAILED", 0)
    assert failed <= FAILURES_ALLOWED, f"{failed} of {len(replies)} requests failed during the update: {versions}"
    assert versions["v1"] and versions["v2"] and set(versions) == {"v1", "v2"}, versions
    tail = replies[-20:]
    assert all(r.startswith("v2 ") for r in tail), f"after the update only new tasks answer: {tail}"
    assert len({r.split()[1] for r in replies if r.startswith("v2 ")}) == 3, "the three new tasks answer"
