"""Nodes: join, ls (Ready/Down, the leader), inspect, update (availability, labels), rm; the agent's lease."""

from __future__ import annotations

import json

from tests.cluster.conftest import eventually


def test_node_ls_shows_every_node_ready_self_and_the_leader(cluster):
    a, b, c = cluster.nodes
    lines = b("node", "ls").stdout.splitlines()
    assert lines[0].split() == ["ID", "HOSTNAME", "STATUS", "AVAILABILITY", "MANAGER", "STATUS", "ENGINE", "VERSION"]
    rows = {line.split()[1] if "*" not in line else line.split()[2]: line for line in lines[1:]}
    assert sorted(rows) == ["node-a", "node-b", "node-c"]
    assert rows["node-b"].startswith(f"{b.id} *"), "the node the command runs on is marked"
    leader = cluster.leader()
    for name, line in rows.items():
        assert " Ready " in line and " Active " in line
        assert (" Leader " in line) == (name == leader) and ((" Reachable " in line) == (name != leader))
    view = json.loads(a("node", "inspect", "self").stdout)[0]
    assert view["ID"] == a.id and view["Spec"]["Labels"] == {"zone": "a"} and view["Spec"]["Role"] == "manager"
    assert view["Status"]["State"] == "ready" and view["Description"]["Hostname"] == "node-a"
    assert a("node", "inspect", "--format", "{{.Description.Hostname}}", c.id[:8]).stdout == "node-c\n"
    pretty = a("node", "inspect", "--pretty", "node-b").stdout
    assert "Hostname:" in pretty and "node-b" in pretty and "Availability:" in pretty


def test_node_update_availability_and_labels(cluster):
    a, b, _c = cluster.nodes
    a("node", "update", "--availability", "drain", "--label-add", "disk=ssd", "--label-rm", "zone", "node-b")
    view = json.loads(a("node", "inspect", "node-b").stdout)[0]
    assert view["Spec"]["Availability"] == "drain" and view["Spec"]["Labels"] == {"disk": "ssd"}
    assert " Drain " in next(line for line in a("node", "ls").stdout.splitlines() if "node-b" in line)
    missing = a("node", "update", "--label-rm", "nothere", "node-b", check=False)
    assert (missing.returncode, missing.stderr) == (1, "Error: key nothere doesn't exist in node's labels\n")
    bad = a("node", "update", "--availability", "sleepy", "node-b", check=False)
    assert bad.returncode == 2
    unknown = a("node", "inspect", "node-z", check=False)
    assert (unknown.returncode, unknown.stderr) == (1, "Error: node node-z not found\n")


def test_a_node_whose_agent_dies_goes_down_and_can_then_be_removed(cluster):
    a, _b, c = cluster.nodes
    refused = a("node", "rm", "node-c", check=False)
    assert refused.returncode == 1 and "is not down and can't be removed" in refused.stderr
    old_leader = cluster.leader()
    c.kill_agent()
    assert eventually(lambda: "node-c" not in cluster.ready()), "the lease expired"
    line = next(line for line in a("node", "ls").stdout.splitlines() if "node-c" in line)
    assert " Down " in line and " Unreachable " in line
    assert cluster.leader() == old_leader or old_leader == "node-c"
    assert a("node", "rm", "node-c").stdout == "node-c\n"
    assert "node-c" not in a("node", "ls").stdout
    restarted = c("agent", "--lease-ttl", "3", check=False, timeout=60)
    assert restarted.returncode == 1 and restarted.error_lines == [
        f"Error: node {c.id} is not in the cluster any more (removed with node rm)"], restarted.stderr


def test_join_twice_and_commands_outside_a_cluster_are_one_line(etcd, tmp_path):
    from tests.cluster.conftest import Node

    a = Node("node-a", tmp_path / "a", etcd.url)
    try:
        outside = a.pallet
        for args in (("node", "ls"), ("service", "ls"), ("service", "create", "busybox"), ("agent",)):
            result = outside(*args)
            assert result.returncode == 1 and result.error_lines == [
                'Error: this node is not part of a cluster: join one first with '
                '"pallet node join --cluster-store etcd://HOST:PORT"'], result.stderr
        bad = outside("node", "join", "--cluster-store", "etcd://")
        assert bad.returncode == 2 and "invalid cluster store" in bad.stderr
        a.join("worker")
        twice = a("node", "join", "--cluster-store", etcd.url, check=False)
        assert twice.returncode == 1 and twice.stderr.startswith("Error: This node is already part of a cluster.")
        assert " Down " in a("node", "ls").stdout and "Leader" not in a("node", "ls").stdout, "a worker without agent"
    finally:
        etcd.client().delete("/pallet/", prefix=True)


def test_pallet_serve_runs_the_agent_of_a_joined_root(etcd, tmp_path):
    from tests.api.conftest import start_server, stop_server
    from tests.cluster.conftest import Cluster, Node
    from tests.containers.conftest import cleanup_root

    node = Node("node-s", tmp_path / "s", etcd.url)
    server = None
    try:
        node("image", "build-busybox")
        node.join("manager")
        server = start_server(node.pallet, tmp_path / "s" / "api.sock")
        cluster = Cluster(etcd, [node])
        assert eventually(lambda: cluster.ready() == {"node-s"} and cluster.leader() == "node-s"), \
            server.log.read_text()
        node("service", "create", "-d", "--name", "served", "--stop-grace-period", "1s", "busybox",
             "sh", "-c", "echo hello from the task; exec sleep 1000")
        assert eventually(lambda: cluster.running("served") == {"node-s": 1}), server.log.read_text()
        task = cluster.tasks("served")[0]
        logs = eventually(lambda: node("service", "logs", "served").stdout)
        assert logs == f"served.1.{task['ID'][:12]}@node-s    | hello from the task\n"
        node("service", "rm", "served")
        assert eventually(lambda: not cluster.containers(node)), "the agent in serve removed the task's container"
    finally:
        if server is not None:
            stop_server(server)
        leaks = cleanup_root(node.pallet)
        etcd.client().delete("/pallet/", prefix=True)
    assert not leaks


def test_a_node_without_the_cluster_key_is_refused_at_join_and_its_agent_at_start(etcd, tmp_path):
    import os

    from tests.cluster.conftest import Node

    a = Node("node-a", tmp_path / "a", etcd.url)
    stranger = Node("node-b", tmp_path / "b", etcd.url, tmp_path / "b.key")
    keyless = Node("node-c", tmp_path / "c", etcd.url, tmp_path / "c.key")
    client = etcd.client()
    try:
        a.join("worker")   # the first node: its key (made now) becomes the cluster's
        assert a.secrets_key.exists() and client.get("/pallet/swarm/cluster")["KeyID"]
        stranger.secrets_key.write_bytes(os.urandom(32))
        for node, words in ((stranger, "cluster key"), (keyless, "has no cluster key")):
            refused = node("node", "join", "--cluster-store", etcd.url, "--hostname", node.name, check=False)
            assert refused.returncode == 1 and len(refused.error_lines) == 1, refused.stderr
            assert refused.error_lines[0].startswith("Error: cannot join: this node") and words in refused.stderr
            assert str(node.secrets_key) in refused.stderr and "copy the key file" in refused.stderr
            assert not node.pallet.root.joinpath("cluster", "node.json").exists(), "no membership kept"
        assert not keyless.secrets_key.exists(), "a refused join makes no key"
        assert [n["Description"]["Hostname"] for n in client.range("/pallet/swarm/nodes/")[0].values()] == ["node-a"]

        stranger.secrets_key.write_bytes(a.secrets_key.read_bytes())   # the operator copies the cluster's key
        stranger.join("worker")
        assert len(client.range("/pallet/swarm/nodes/")[0]) == 2
        stranger.secrets_key.write_bytes(os.urandom(32))   # and later replaces it by mistake
        started = stranger("agent", "--lease-ttl", "3", check=False, timeout=60)
        assert started.returncode == 1 and len(started.error_lines) == 1, started.stderr
        assert "is not the cluster's" in started.stderr and f"/pallet/swarm/alive/{stranger.id}" not in \
            client.range("/pallet/swarm/alive/")[0]

        for node in (stranger, a):
            node("node", "rm", "--force", "self")
        assert client.get("/pallet/swarm/cluster") is None, "the last node's removal forgets the cluster's key id"
    finally:
        client.delete("/pallet/", prefix=True)
