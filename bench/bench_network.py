"""Network benchmark: container start with bridge vs none, per-container connect cost, and TCP throughput
between two namespaces over a bare veth pair, a pallet bridge network and a pallet overlay (VXLAN) network.

Run as root from the repository: ``python3 bench/bench_network.py``. Every link, namespace, table,
etcd and process it makes is removed at the end. Throughput is measured with the same small Python
sender/receiver in every case, so the ratios compare the paths, not the tools.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

SECONDS = 2.0
RECEIVER = """
import socket, sys, time
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("0.0.0.0", 5201)); srv.listen(1); print("ready", flush=True)
conn, _ = srv.accept(); total = 0; start = time.monotonic()
while True:
    data = conn.recv(1 << 20)
    if not data: break
    total += len(data)
print(total / (time.monotonic() - start))
"""
SENDER = """
import socket, sys, time
sock = socket.create_connection((sys.argv[1], 5201)); chunk = b"x" * (1 << 20)
end = time.monotonic() + float(sys.argv[2])
while time.monotonic() < end: sock.sendall(chunk)
sock.close()
"""


def throughput(server_ns: str, client_ns: str, server_ip: str) -> float:
    """Bytes per second from a sender in ``client_ns`` to a receiver in ``server_ns``."""
    receiver = subprocess.Popen(["nsenter", f"--net={server_ns}", sys.executable, "-c", RECEIVER],
                                stdout=subprocess.PIPE, text=True)
    try:
        assert receiver.stdout.readline().strip() == "ready"
        subprocess.run(["nsenter", f"--net={client_ns}", sys.executable, "-c", SENDER, server_ip, str(SECONDS)],
                       check=True)
        return float(receiver.stdout.readline())
    finally:
        receiver.kill()
        receiver.wait()


class Namespaces:
    def __init__(self):
        self.made = []

    def new(self) -> str:
        name = f"pbn{uuid.uuid4().hex[:8]}"
        subprocess.run(["ip", "netns", "add", name], check=True)
        self.made.append(name)
        subprocess.run(["nsenter", f"--net=/run/netns/{name}", "ip", "link", "set", "lo", "up"], check=True)
        return f"/run/netns/{name}"

    def close(self):
        for name in self.made:
            subprocess.run(["ip", "netns", "del", name], capture_output=True)


def veth_only(ns: Namespaces) -> float:
    a, b = ns.new(), ns.new()
    tag = uuid.uuid4().hex[:6]
    subprocess.run(["ip", "link", "add", f"pba{tag}", "netns", Path(a).name, "type", "veth", "peer", "name",
                    f"pbb{tag}", "netns", Path(b).name], check=True)
    for path, dev, ip in ((a, f"pba{tag}", "10.231.250.1/24"), (b, f"pbb{tag}", "10.231.250.2/24")):
        subprocess.run(["nsenter", f"--net={path}", "ip", "addr", "add", ip, "dev", dev], check=True)
        subprocess.run(["nsenter", f"--net={path}", "ip", "link", "set", dev, "up"], check=True)
    return throughput(a, b, "10.231.250.1")


def bridge(ns: Namespaces, engine) -> tuple[float, float]:
    """(throughput, mean seconds for connect+disconnect of one container)."""
    from pallet.kernel import network as net
    from pallet.kernel.network.store import NetworkStore
    from tests.network.conftest import FakeContainer

    NetworkStore(engine).create("benchnet", subnet="10.231.251.0/24")
    a, b = ns.new(), ns.new()
    ra = net.connect(engine, FakeContainer(uuid.uuid4().hex * 2, "a", "benchnet"), a)
    net.connect(engine, FakeContainer(uuid.uuid4().hex * 2, "b", "benchnet"), b)
    rate = throughput(a, b, ra["IPAddress"])
    costs = []
    for _ in range(10):
        sandbox = ns.new()
        c = FakeContainer(uuid.uuid4().hex * 2, "c", "benchnet")
        start = time.perf_counter()
        net.connect(engine, c, sandbox)
        net.disconnect(engine, c)
        costs.append(time.perf_counter() - start)
    return rate, statistics.mean(costs)


def overlay(ns: Namespaces, tmp: Path) -> float:
    import json

    from tests.network.test_overlay import simulated_cluster

    with simulated_cluster(tmp) as (host_a, host_b, _c):
        host_a.pallet("network", "create", "-d", "overlay", "--subnet", "10.231.252.0/24", "benchov")
        a, b = ns.new(), ns.new()
        ids = [uuid.uuid4().hex * 2 for _ in range(2)]
        ra = json.loads(host_a.driver("connect", "benchov", ids[0], "a", a))
        host_b.driver("connect", "benchov", ids[1], "b", b)
        for _ in range(50):  # the agents program FDB/ARP from etcd's watch
            if subprocess.run(["nsenter", f"--net={b}", "busybox", "ping", "-c1", "-W1", ra["IPAddress"]],
                              capture_output=True).returncode == 0:
                break
        rate = throughput(a, b, ra["IPAddress"])
        host_a.driver("disconnect", ids[0])
        host_b.driver("disconnect", ids[1])
        host_b.pallet("network", "rm", "benchov")
        host_a.pallet("network", "rm", "benchov")
    return rate


def run_latency(tmp: Path, keep_bridge: bool) -> dict[str, float] | None:
    """Median wall time of ``pallet run --rm busybox true`` per network mode, or None without containers.

    ``keep_bridge``: the default bridge stays up between runs (pallet's default, as Docker's docker0),
    else it is created and removed with each container (as Podman's netavark).
    """
    root = tmp / f"runroot-{keep_bridge}"
    cmd = [sys.executable, "-m", "pallet.kernel.cli", "--root", str(root)]
    env_config = tmp / f"run-{keep_bridge}.toml"
    env_config.write_text(f'[network]\nbridge_name = "pb{uuid.uuid4().hex[:6]}"\n'
                          f'keep_default_bridge = {"true" if keep_bridge else "false"}\n')
    env = {**os.environ, "PALLET_CONFIG": str(env_config)}
    built = subprocess.run([*cmd, "image", "build-busybox"], capture_output=True, text=True, cwd=REPO, env=env)
    if built.returncode != 0:
        print(f"  (build-busybox failed: {built.stderr.strip()})")
        return None
    results = {}
    try:
        for mode in ("none", "bridge", "none", "bridge"):
            times = []
            for _ in range(5):
                start = time.perf_counter()
                proc = subprocess.run([*cmd, "run", "--rm", "--network", mode, "busybox", "true"],
                                      capture_output=True, text=True, cwd=REPO, env=env)
                if proc.returncode != 0:
                    print(f"  (run --network {mode} failed: {proc.stderr.strip()})")
                    return None
                times.append(time.perf_counter() - start)
            results[mode] = min(results.get(mode, 1e9), statistics.median(times))
    finally:
        from pallet.kernel.config import Config
        from pallet.kernel.engine import Engine
        from pallet.kernel.network.store import NetworkStore

        NetworkStore(Engine(Config.load(root=str(root), config_path=str(env_config)))).teardown_all()
    return results


def main() -> None:
    from pallet.kernel.config import Config
    from pallet.kernel.engine import Engine
    from pallet.kernel.network.store import NetworkStore

    tmp = Path(tempfile.mkdtemp(prefix="pallet-bench-net-"))
    config = tmp / "pallet.toml"
    config.write_text(f'[network]\nbridge_name = "pb{uuid.uuid4().hex[:6]}"\n')
    engine = Engine(Config.load(root=str(tmp / "root"), config_path=str(config)))
    ns = Namespaces()
    try:
        base = veth_only(ns)
        over_bridge, connect_cost = bridge(ns, engine)
        over_overlay = overlay(ns, tmp)
    finally:
        try:
            NetworkStore(engine).teardown_all()
        finally:
            ns.close()
    gbit = lambda rate: rate * 8 / 1e9  # noqa: E731
    print(f"TCP throughput (Python sender, {SECONDS:.0f} s each)")
    print(f"  veth pair only   {gbit(base):6.2f} Gbit/s   1.00")
    print(f"  pallet bridge    {gbit(over_bridge):6.2f} Gbit/s   {over_bridge / base:.2f} of veth")
    print(f"  pallet overlay   {gbit(over_overlay):6.2f} Gbit/s   {over_overlay / base:.2f} of veth")
    print(f"bridge connect+disconnect per container: {connect_cost * 1000:.1f} ms")
    for keep, label in ((True, "bridge kept up (default)"), (False, "bridge made per run (keep_default_bridge=false)")):
        latency = run_latency(tmp, keep)
        if latency is None:
            print("run --rm latency: skipped (pallet run with busybox is not available in this tree)")
            break
        added = latency["bridge"] - latency["none"]
        print(f"run --rm busybox true, {label}: none {latency['none'] * 1000:.0f} ms, "
              f"bridge {latency['bridge'] * 1000:.0f} ms (adds {added * 1000:.0f} ms, "
              f"ratio {latency['bridge'] / latency['none']:.2f})")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
