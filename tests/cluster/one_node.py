"""One cluster node on a single-member etcd, with or without its agent: enough for stacks and the Engine API."""

from __future__ import annotations

import contextlib

from tests.cluster.conftest import Node, eventually
from tests.cluster.etcd_cluster import etcd_cluster
from tests.conftest import teardown_networks
from tests.containers.conftest import cleanup_root

KEPT = ("/pallet/swarm/nodes/", "/pallet/swarm/alive/", "/pallet/swarm/leader",   # the node's own, some under
        "/pallet/swarm/log-endpoints/", "/pallet/mesh-synced/",                    # its lease, and the
        "/pallet/swarm/cluster")                                                   # cluster's key id



@contextlib.contextmanager
def one_node(tmp_path, agent: bool = True, name: str = "solo", busybox: bool | None = None):
    """Yield ``(etcd, node)``: a manager node, busybox in its root when it runs an agent (or ``busybox``).

    Afterwards the stacks and services left are removed (the agent retires their tasks), the agent stops,
    the root's containers and networks go, and every key the test made under ``/pallet/`` must
    have gone with them (the node's own records excepted), then those are deleted too.
    """
    with etcd_cluster(tmp_path, size=1) as etcd:
        node = Node(name, tmp_path / name, etcd.url)
        problems, left = [], []
        try:
            if agent if busybox is None else busybox:
                node("image", "build-busybox")
            node.join("manager")
            if agent:
                node.start_agent()
            yield etcd, node
        finally:
            client = etcd.client()
            for stack in node("stack", "ls", "--format", "{{.Name}}", check=False).stdout.split():
                node("stack", "rm", stack, check=False)
            for service in node("service", "ls", "-q", check=False).stdout.split():
                node("service", "rm", service, check=False)
            if node.agent is not None:
                eventually(lambda: not client.range("/pallet/swarm/tasks/")[0], timeout=60)
            node.stop_agent()
            for container in node("ps", "-aq", check=False).stdout.split():
                node("rm", "-f", container, check=False)
            teardown_networks(node.pallet)   # the overlay networks' namespaces go before the leak check
            problems += cleanup_root(node.pallet)
            left = [k for k in client.range("/pallet/")[0] if not k.startswith(KEPT)]
            client.delete("/pallet/", prefix=True)
        assert not problems, f"left behind: {problems}"
        assert not left, f"etcd keys left behind: {sorted(left)}"
