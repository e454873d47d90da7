"""pallet vs Docker swarm on one node: ``service create --replicas N`` to N running tasks, and ``service rm`` to none.

Both on this host, both single-node clusters, both running pallet's busybox (``pallet save`` into a
private dockerd, ``peers.docker``): pallet with one root joined to a one-member etcd and its agent,
Docker with ``docker swarm init`` on its private dockerd (listening on 127.0.0.1 only, its data path
on a port of its own so no overlay elsewhere on this host is disturbed). Each round creates
``--replicas N`` of ``busybox sleep`` without a network or health check, polls (every 0.1 s) until
N tasks are running, then removes the service and waits until no task container is left; the
engines alternate, first in turn. Medians of ``--rounds`` and their ratio are printed.

Run as root from the repository, on a quiet machine: ``python3 bench/bench_swarm.py [--replicas 10]``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import peers  # noqa: E402 (bench/ is the script's directory)
from tests.cluster.conftest import Node  # noqa: E402
from tests.cluster.etcd_cluster import etcd_cluster  # noqa: E402
from tests.containers.conftest import cleanup_root  # noqa: E402
from tests.network.test_overlay import free_port  # noqa: E402

SLEEP = ["busybox", "sleep", "100000"]


def data_path_port() -> int:
    """A free UDP port in the range Docker accepts for ``--data-path-port`` (1024-49151)."""
    import random
    import socket

    while True:
        port = random.randint(20000, 49151)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            with contextlib.suppress(OSError):
                sock.bind(("0.0.0.0", port))
                return port


def pallet_round(node: Node, etcd, replicas: int) -> tuple[float, float]:
    def running() -> int:
        tasks = etcd.client().range("/pallet/swarm/tasks/")[0].values()
        return sum(t["DesiredState"] == "running" and t["Status"]["State"] == "running" for t in tasks)
    start = time.monotonic()
    node("service", "create", "-d", "--name", "bench", "--replicas", str(replicas), "--stop-grace-period", "1s",
         *SLEEP)
    peers.wait(lambda: running() == replicas)
    up = time.monotonic() - start
    start = time.monotonic()
    node("service", "rm", "bench")
    peers.wait(lambda: not node("ps", "-aq").stdout.strip())
    return up, time.monotonic() - start


def docker_round(docker: list[str], replicas: int) -> tuple[float, float]:
    def running() -> int:
        out = subprocess.run([*docker, "service", "ps", "bench", "--filter", "desired-state=running", "--format",
                              "{{.CurrentState}}"], capture_output=True, text=True).stdout
        return sum(line.startswith("Running") for line in out.splitlines())
    start = time.monotonic()
    subprocess.run([*docker, "service", "create", "-d", "--name", "bench", "--replicas", str(replicas),
                    "--stop-grace-period", "1s", *SLEEP], check=True, capture_output=True)
    peers.wait(lambda: running() == replicas)
    up = time.monotonic() - start
    start = time.monotonic()
    subprocess.run([*docker, "service", "rm", "bench"], check=True, capture_output=True)
    peers.wait(lambda: not subprocess.run([*docker, "ps", "-aq"], capture_output=True, text=True).stdout.strip())
    return up, time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--replicas", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # a killed run still cleans up
    print(f"load average before: {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory(prefix="bench-swarm-") as tmp, contextlib.ExitStack() as stack:
        work = Path(tmp)
        etcd = stack.enter_context(etcd_cluster(work, size=1))
        node = Node("bench", work / "pallet", etcd.url)
        stack.callback(lambda: cleanup_root(node.pallet))
        node("image", "build-busybox")
        archive = work / "busybox.tar"
        node("save", "-o", str(archive), "busybox")
        node.join("manager")
        node.start_agent()
        stack.callback(node.stop_agent)
        peers.wait(lambda: etcd.client().range("/pallet/swarm/alive/")[0])
        docker = stack.enter_context(peers.docker(work, archive))
        if docker is None:
            raise SystemExit("dockerd is not installed (bench/setup-peers.sh)")
        subprocess.run([*docker, "swarm", "init", "--advertise-addr", "127.0.0.1",
                        "--listen-addr", f"127.0.0.1:{free_port()}", "--data-path-port", str(data_path_port())],
                       check=True, capture_output=True)
        stack.callback(subprocess.run, [*docker, "swarm", "leave", "--force"], capture_output=True)
        results = {"pallet": [], "docker swarm": []}
        for index in range(args.rounds):
            order = [("pallet", lambda: pallet_round(node, etcd, args.replicas)),
                     ("docker swarm", lambda: docker_round(docker, args.replicas))]
            for name, run in order if index % 2 == 0 else reversed(order):
                results[name].append(run())
        print(f"load average after: {os.getloadavg()[0]:.1f}; {args.rounds} rounds, {args.replicas} replicas, one node")
        for name, samples in results.items():
            up = statistics.median(s[0] for s in samples)
            down = statistics.median(s[1] for s in samples)
            print(f"{name:>13}: create -> {args.replicas} running {up:6.1f} s   rm -> no container {down:6.1f} s")
        ratio_up = statistics.median(s[0] for s in results["pallet"]) / statistics.median(
            s[0] for s in results["docker swarm"])
        ratio_down = statistics.median(s[1] for s in results["pallet"]) / statistics.median(
            s[1] for s in results["docker swarm"])
        print(f"pallet / docker swarm: create {ratio_up:.2f}x, rm {ratio_down:.2f}x")


if __name__ == "__main__":
    main()
