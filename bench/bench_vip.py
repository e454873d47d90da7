"""Service load-balancing benchmark: HTTP requests/s (a new connection each) through a service's VIP and
through the routing mesh, against the same requests straight to one task.

Three simulated nodes (namespaces on an underlay bridge, etcd on it, a pallet root each, as the
tests make them), one overlay network, a service ``one`` with a single task on node a and a
service ``three`` with a task on each node. The client is a plain namespace joined to the overlay
on node a (it gets the VIP rules at connect, like any container); the load is the same small
Python loop in every case, so the ratios compare the paths, not the tools:

- direct: the task of ``one`` by its address (the baseline);
- VIP, 1 task: the same task through ``one``'s VIP (what the DNAT costs);
- VIP, 3 tasks: ``three``'s VIP, two of every three connections over VXLAN to another node;
- mesh: ``three``'s published port on node b's underlay address, from the underlay.

Run as root from the repository: ``python3 bench/bench_vip.py``. Everything it makes is removed.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

SECONDS = 3.0
ROUNDS = 3
LOAD = """
import socket, sys, time
host, port, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
done, end = 0, time.monotonic() + seconds
while time.monotonic() < end:
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")
        while sock.recv(65536):
            pass
    done += 1
print(done / seconds)
"""


def rate(netns: str | None, address: str, port: int) -> float:
    prefix = ["nsenter", f"--net={netns}"] if netns else []
    out = subprocess.run([*prefix, sys.executable, "-c", LOAD, address, str(port), str(SECONDS)],
                         capture_output=True, text=True, check=True).stdout
    return float(out)


def main() -> None:
    from tests.cluster.mesh_swarm import SUBNET, Swarm
    from tests.network.test_overlay import UNDERLAY, simulated_cluster

    tmp = Path(tempfile.mkdtemp(prefix="bench-vip-"))
    client_ns = f"pbv{uuid.uuid4().hex[:8]}"
    with simulated_cluster(tmp) as hosts:
        a, b, c = hosts
        swarm = None
        subprocess.run(["ip", "netns", "add", client_ns], check=True)
        sandbox = f"/run/netns/{client_ns}"
        client_id = uuid.uuid4().hex * 2
        try:
            for host in hosts:
                host.pallet("image", "build-busybox")
            network_id = a.pallet("network", "create", "-d", "overlay", "--subnet", SUBNET, "ov").stdout.strip()
            swarm = Swarm(hosts, network_id)
            for host in hosts:
                swarm.etcd.put(f"/pallet/swarm/alive/{host.name}", host.name)
            one = swarm.create_service("one")
            three = swarm.create_service("three", ports=[{"Protocol": "tcp", "TargetPort": 80,
                                                          "PublishedPort": 30080, "PublishMode": "ingress"}])
            task = swarm.run_task(a, one, 1)
            for slot, host in enumerate(hosts, 1):
                swarm.run_task(host, three, slot)
            swarm.sync()
            subprocess.run(["nsenter", f"--net={sandbox}", "ip", "link", "set", "lo", "up"], check=True)
            a.driver("connect", "ov", client_id, "bench-client", sandbox)
            cases = {
                "direct to one task": (sandbox, task["ip"], 80),
                "VIP, 1 task": (sandbox, one["Endpoint"]["VirtualIPs"][0]["Addr"].split("/")[0], 80),
                "VIP, 3 tasks on 3 nodes": (sandbox, three["Endpoint"]["VirtualIPs"][0]["Addr"].split("/")[0], 80),
                "published port, node b": (None, f"{UNDERLAY}.12", 30080),
            }
            results = {name: [] for name in cases}
            for _ in range(ROUNDS):  # interleaved, so a busy moment of the machine hits every case alike
                for name, (netns, address, port) in cases.items():
                    results[name].append(rate(netns, address, port))
            base = statistics.median(results["direct to one task"])
            print(f"{'path':28} {'req/s':>8} {'vs direct':>10}")
            for name, values in results.items():
                median = statistics.median(values)
                print(f"{name:28} {median:8.0f} {median / base:10.2f}")
            print(json.dumps({name: statistics.median(v) for name, v in results.items()}))
        finally:
            a.driver("disconnect", client_id)
            subprocess.run(["ip", "netns", "del", client_ns], capture_output=True)
            if swarm is not None:
                swarm.cleanup()
                for host in hosts:
                    swarm.mesh(host, "teardown")
            for host in hosts:
                host.pallet("network", "rm", "ov", check=False)


if __name__ == "__main__":
    main()
