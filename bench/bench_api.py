"""Benchmark the Engine API: docker-py create + start + wait of a ``true`` container, ``docker run
--rm busybox true`` through the CLI, and requests/s of ``GET /containers/json?all=1`` with 100
containers, against ``pallet serve``, a private dockerd and ``podman system service``.

Interleaved rounds (shuffled order each round), medians and ratios; each peer is measured only when
installed (``bench/setup-peers.sh``).

    python3 bench/bench_api.py [--rounds 10] [--list-requests 200]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import peers

REPO = Path(__file__).resolve().parent.parent


def pallet_server(work: Path):
    """A private root with busybox and ``pallet serve`` on it; yields the socket URL."""
    env = {**os.environ, "PALLET_CONFIG": str(work / "pallet.toml")}
    (work / "pallet.toml").write_text('[containers]\ndefault_network = "none"\n')
    base = [sys.executable, "-m", "pallet.kernel.cli", "--root", str(work / "root"), "--run-root", str(work / "run")]
    subprocess.run([*base, "image", "build-busybox", "-q"], check=True, env=env, cwd=REPO, capture_output=True)
    sock = work / "api.sock"
    server = subprocess.Popen([*base, "serve", "-H", f"unix://{sock}"], env=env, cwd=REPO,
                              stderr=subprocess.DEVNULL)
    while not sock.exists():
        time.sleep(0.02)
    return server, f"unix://{sock}", base, env


def ulimits():
    """The rlimits every engine is given (podman's runc would set limits above root's hard ones here)."""
    import docker

    return [docker.types.Ulimit(name=name, soft=int(soft), hard=int(hard)) for name, soft, hard in
            (flag.replace("=", ":").split(":") for flag in peers.PODMAN_RUN_FLAGS[1::2])]


def create_start_wait(client) -> float:
    start = time.perf_counter()
    container = client.containers.create("busybox", ["true"], network_mode="none", ulimits=ulimits())
    container.start()
    container.wait()
    elapsed = time.perf_counter() - start
    container.remove()
    return elapsed


def cli_run(host: str) -> float:
    start = time.perf_counter()
    subprocess.run(["docker", "-H", host, "run", "--rm", "--network", "none", *peers.PODMAN_RUN_FLAGS, "busybox", "true"], check=True,
                   capture_output=True)
    return time.perf_counter() - start


def list_rate(client, requests: int) -> float:
    """Requests per second of ``GET /containers/json?all=1`` over one connection."""
    start = time.perf_counter()
    for _ in range(requests):
        client.api.containers(all=True)
    return requests / (time.perf_counter() - start)


def main() -> None:
    import docker

    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--list-requests", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp:
        work = Path(tmp)
        server, url, base, env = pallet_server(work)
        image_tar = work / "busybox.tar"
        subprocess.run([*base, "save", "-o", str(image_tar), "busybox"], check=True, env=env, cwd=REPO)
        try:
            with contextlib.ExitStack() as stack:
                docker_prefix = stack.enter_context(peers.docker(work, image_tar))
                podman_url = stack.enter_context(peers.podman_service(work, image_tar))
                hosts = {"pallet": url}
                if docker_prefix is not None:
                    hosts["dockerd"] = docker_prefix[2]
                if podman_url is not None:
                    hosts["podman"] = podman_url
                clients = {name: docker.DockerClient(base_url=host) for name, host in hosts.items()}
                times = {f"{name} {kind}": [] for name in hosts for kind in ("api", "cli")}
                order = list(hosts)
                for _ in range(args.rounds):
                    random.shuffle(order)
                    for name in order:
                        times[f"{name} api"].append(create_start_wait(clients[name]))
                        times[f"{name} cli"].append(cli_run(hosts[name]))
                for label, values in times.items():
                    print(f"{label:14s} median {statistics.median(values) * 1000:7.1f} ms")
                for peer in ("dockerd", "podman"):
                    for kind in ("api", "cli"):
                        if f"{peer} {kind}" in times:
                            ratio = statistics.median(times[f"pallet {kind}"]) / statistics.median(times[f"{peer} {kind}"])
                            print(f"pallet/{peer} {kind}: {ratio:.2f}x")
                # GET /containers/json with 100 (created, never started) containers on each engine
                made = {name: [clients[name].containers.create("busybox", ["true"], network_mode="none")
                               for _ in range(100)] for name in hosts}
                rates = {name: [] for name in hosts}
                for _ in range(3):
                    random.shuffle(order)
                    for name in order:
                        rates[name].append(list_rate(clients[name], args.list_requests))
                for name in hosts:
                    print(f"{name:8s} GET /containers/json (100 containers): {statistics.median(rates[name]):7.1f} req/s")
                for peer in ("dockerd", "podman"):
                    if peer in rates:
                        print(f"pallet/{peer} list req/s: {statistics.median(rates['pallet']) / statistics.median(rates[peer]):.2f}x")
                for name, containers in made.items():
                    for container in containers:
                        container.remove()
                for missing, present in (("dockerd", docker_prefix), ("podman", podman_url)):
                    if present is None:
                        print(f"{missing}: skipped (not installed; bench/setup-peers.sh installs it)")
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(60)
            subprocess.run([*base, "rm", "-f", *subprocess.run([*base, "ps", "-aq"], env=env, cwd=REPO,
                                                                capture_output=True, text=True).stdout.split()],
                           env=env, cwd=REPO, capture_output=True)


if __name__ == "__main__":
    main()
