"""Orchestration on three nodes (three roots on this host, a 3-member etcd): time to converge.

Measures, each from the command to the state seen in the store (polled every 0.1 s):
- ``service create --replicas 30`` (with a health check) to 30 running, healthy tasks;
- one node's agent and containers killed to its tasks running healthy on the other two
  (lease TTL 3 s included);
- a rolling update of the 30 tasks to a new tag (``--update-parallelism 5 --update-monitor 0s``).

Run as root from the repository: ``python3 bench/bench_orchestration.py``. Docker swarm is not
measured beside it yet: a swarm of three needs three dockerds, each with its own network
namespace, data root and swarm ports, a setup this script does not build.
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from peers import wait  # noqa: E402 (bench/ is the script's directory)
from tests.cluster.conftest import Cluster, Node  # noqa: E402
from tests.cluster.etcd_cluster import etcd_cluster  # noqa: E402
from tests.containers.conftest import cleanup_root  # noqa: E402

REPLICAS = 30
# Each probe is a `pallet healthcheck run` process: at 30 tasks a short interval alone would load
# two cores, so the probes run every 2 s.
HEALTH = ["--health-cmd", "test -e /tmp/ok", "--health-interval", "2s", "--health-retries", "1"]


def healthy(cluster: Cluster, service: str, image: str | None = None) -> int:
    return sum(t["DesiredState"] == "running" and t["Status"]["State"] == "running"
               and t["Status"].get("Health") == "healthy"
               and (image is None or t["Spec"]["ContainerSpec"]["Image"] == image)
               for t in cluster.tasks(service) if t.get("NodeID") in cluster.ready_ids())


def main() -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # a killed run still cleans up
    print(f"load average before: {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory(prefix="bench-orch-") as tmp, etcd_cluster(Path(tmp)) as etcd:
        nodes = [Node(name, Path(tmp) / name, etcd.url) for name in ("node-a", "node-b", "node-c")]
        cluster = Cluster(etcd, nodes)
        cluster.ready_ids = lambda: {n.id for n in nodes if n.name in cluster.ready()}
        try:
            for node in nodes:
                node("image", "build-busybox")
                node("tag", "busybox", "busybox:v2")
                node.join("manager")
                node.start_agent()
            wait(lambda: len(cluster.ready()) == 3)
            a = nodes[0]
            start = time.monotonic()
            a("service", "create", "-d", "--name", "bench", "--replicas", str(REPLICAS), *HEALTH,
              "--stop-grace-period", "1s", "--update-parallelism", "5", "--update-monitor", "0s",
              "busybox", "sh", "-c", "touch /tmp/ok; exec sleep 100000")
            wait(lambda: healthy(cluster, "bench") == REPLICAS)
            print(f"create --replicas {REPLICAS} -> {REPLICAS} healthy: {time.monotonic() - start:.1f} s")

            victim = next(n for n in nodes if n.name != cluster.leader())
            start = time.monotonic()
            victim.kill_agent()
            victim.kill_containers()
            wait(lambda: healthy(cluster, "bench") == REPLICAS and victim.name not in cluster.ready())
            print(f"a node dies -> its tasks healthy elsewhere (lease TTL 3 s): {time.monotonic() - start:.1f} s")
            victim.start_agent()
            wait(lambda: victim.name in cluster.ready())

            start = time.monotonic()
            a("service", "update", "-d", "--image", "busybox:v2", "bench")
            wait(lambda: cluster.update_state("bench") == "completed" and healthy(cluster, "bench", "busybox:v2")
                 == REPLICAS)
            print(f"rolling update of {REPLICAS} tasks (parallelism 5): {time.monotonic() - start:.1f} s")
            print(f"load average after: {os.getloadavg()[0]:.1f}")
            a("service", "rm", "bench")
            wait(lambda: not etcd.client().range("/pallet/swarm/tasks/")[0], 120)
        finally:
            for node in nodes:
                node.stop_agent()
            for node in nodes:
                cleanup_root(node.pallet)
            etcd.client().delete("/pallet/", prefix=True)


if __name__ == "__main__":
    main()
