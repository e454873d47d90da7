"""Services on three nodes: spread, scale, constraints, drain; a dying node, a dying leader, a lost etcd member."""

from __future__ import annotations

import json

from tests.cluster.conftest import eventually

SLEEPER = ["--stop-grace-period", "1s", "busybox", "sleep", "100000"]


def test_replicas_spread_scale_constraint_and_drain(cluster):
    a, b, c = cluster.nodes
    created = a("service", "create", "-d", "--name", "web", "--replicas", "6", *SLEEPER)
    service_id = created.stdout.strip()
    assert len(service_id) == 25
    cluster.wait_running("web", {"node-a": 2, "node-b": 2, "node-c": 2})
    listed = b("service", "ls").stdout.splitlines()
    assert listed[0].split() == ["ID", "NAME", "MODE", "REPLICAS", "IMAGE", "PORTS"]
    assert listed[1].split() == [service_id[:12], "web", "replicated", "6/6", "busybox"]
    ps = c("service", "ps", "web").stdout.splitlines()
    assert ps[0].split() == ["ID", "NAME", "IMAGE", "NODE", "DESIRED", "STATE", "CURRENT", "STATE", "ERROR", "PORTS"]
    assert sorted(line.split()[1] for line in ps[1:]) == [f"web.{i}" for i in range(1, 7)]
    assert all(" Running " in line for line in ps[1:])
    names = {line["Names"] for line in cluster.containers(b)}
    assert len(names) == 2 and all(n.startswith("web.") for n in names), "task containers are plain containers"
    labels = json.loads(b("inspect", names.pop()).stdout)[0]["Config"]["Labels"]
    assert labels["com.docker.swarm.service.name"] == "web" and labels["com.docker.swarm.node.id"] == b.id

    assert a("service", "scale", "-d", "web=9").stdout == "web scaled to 9\n"
    cluster.wait_running("web", {"node-a": 3, "node-b": 3, "node-c": 3})
    a("service", "scale", "-d", "web=2")
    cluster.wait_running("web", 2)

    a("service", "update", "-d", "--replicas", "4", "--constraint-add", "node.hostname!=node-c",
      "--update-parallelism", "2", "--update-monitor", "1s", "web")
    cluster.wait_update("web")  # a new constraint is a new task template: a rolling update moves them
    counts = cluster.wait_running("web", 4)
    assert "node-c" not in counts, "the constraint keeps tasks off node-c"
    assert json.loads(a("service", "inspect", "web").stdout)[0]["Spec"]["TaskTemplate"]["Placement"] == {
        "Constraints": ["node.hostname!=node-c"]}

    a("node", "update", "--availability", "drain", "node-b")
    assert cluster.wait_running("web", {"node-a": 4}), "the drained node's tasks moved"
    a("node", "update", "--availability", "active", "node-b")

    pretty = a("service", "inspect", "--pretty", "web").stdout
    assert "Name:           web" in pretty and " Replicas:      4" in pretty
    assert " Constraints:   [node.hostname!=node-c]" in pretty
    assert a("service", "rm", "web").stdout == "web\n"
    assert eventually(lambda: not cluster.tasks_of(service_id) and not any(cluster.containers(n) for n in cluster.nodes))
    assert a("service", "ls", "-q").stdout == ""


def test_label_constraints_spread_resources_and_global_mode(cluster):
    a, b, c = cluster.nodes
    a("node", "update", "--label-add", "rack=r1", "node-a")
    a("node", "update", "--label-add", "rack=r1", "node-b")
    a("node", "update", "--label-add", "rack=r2", "node-c")
    a("service", "create", "-d", "--name", "spread", "--replicas", "4", "--placement-pref", "spread=node.labels.rack",
      *SLEEPER)
    counts = cluster.wait_running("spread", 4)
    assert counts["node-c"] == 2 and counts.get("node-a", 0) + counts.get("node-b", 0) == 2, counts
    a("service", "create", "-d", "--name", "pinned", "--replicas", "2", "--constraint", "node.labels.zone==b",
      *SLEEPER)
    cluster.wait_running("pinned", {"node-b": 2})
    a("service", "create", "-d", "--name", "everywhere", "--mode", "global", *SLEEPER)
    cluster.wait_running("everywhere", {"node-a": 1, "node-b": 1, "node-c": 1})
    assert " global " in a("service", "ls", "--filter", "name=everywhere").stdout
    a("service", "create", "-d", "--name", "huge", "--reserve-memory", "100000g", *SLEEPER)
    pending = eventually(lambda: [t for t in cluster.tasks("huge") if t["Status"]["Err"]])
    assert pending and pending[0]["Status"]["State"] == "pending"
    assert pending[0]["Status"]["Err"] == "no suitable node (insufficient resources on 3 nodes)"


def test_a_dead_node_a_dead_leader_and_a_lost_etcd_member(cluster):
    a, b, c = cluster.nodes
    a("service", "create", "-d", "--name", "app", "--replicas", "6", *SLEEPER)
    cluster.wait_running("app", {"node-a": 2, "node-b": 2, "node-c": 2})
    victim = next(n for n in cluster.nodes if n.name != cluster.leader())
    victim.kill_agent()
    victim.kill_containers()  # the host dies: its agent and its containers
    survivors = [n.name for n in cluster.nodes if n is not victim]
    assert cluster.wait_running("app", {survivors[0]: 3, survivors[1]: 3}), "rescheduled after the lease TTL"
    victim.start_agent()  # the host comes back: its old tasks are cleaned up, it takes new ones
    assert eventually(lambda: victim.name in cluster.ready())
    assert eventually(lambda: not cluster.containers(victim) or all(
        "Exited" not in row["Status"] for row in cluster.containers(victim)))

    leader = next(n for n in cluster.nodes if n.name == cluster.leader())
    leader.kill_agent()
    new_leader = eventually(lambda: cluster.leader() not in (None, leader.name) and cluster.leader())
    assert new_leader, cluster.agent_logs()
    other = next(n for n in cluster.nodes if n.name == new_leader)
    other("service", "scale", "-d", "app=8")
    others = [n.name for n in cluster.nodes if n is not leader]
    counts = cluster.wait_running("app", 8)
    assert set(counts) <= set(others), "a Down node gets no tasks"
    leader.start_agent()
    assert eventually(lambda: leader.name in cluster.ready())

    cluster.etcd.members[0].stop()  # one of three members: the quorum holds
    other("service", "scale", "-d", "app=3")
    cluster.wait_running("app", 3)
    assert "app" in other("service", "ls").stdout
    assert cluster.ready() == {"node-a", "node-b", "node-c"}, "every agent moved to the members left"
