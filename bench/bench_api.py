"""Benchmark the Engine API: docker-py create + start + wait of a ``true`` container, and
``docker run --rm busybox true`` through the CLI, against ``pallet serve`` and a private dockerd.

Interleaved rounds, medians and ratios; dockerd is measured only when installed (``bench/setup-peers.sh``).

    python3 bench/bench_api.py [--rounds 10]
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


def create_start_wait(client) -> float:
    start = time.perf_counter()
    container = client.containers.create("busybox", ["true"], network_mode="none")
    container.start()
    container.wait()
    elapsed = time.perf_counter() - start
    container.remove()
    return elapsed


def cli_run(host: str) -> float:
    start = time.perf_counter()
    subprocess.run(["docker", "-H", host, "run", "--rm", "--network", "none", "busybox", "true"], check=True,
                   capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    import docker

    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=10)
    rounds = parser.parse_args().rounds
    with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp:
        work = Path(tmp)
        server, url, base, env = pallet_server(work)
        image_tar = work / "busybox.tar"
        subprocess.run([*base, "save", "-o", str(image_tar), "busybox"], check=True, env=env, cwd=REPO)
        try:
            with contextlib.ExitStack() as stack:
                docker_prefix = stack.enter_context(peers.docker(work, image_tar))
                hosts = {"pallet": url}
                if docker_prefix is not None:
                    hosts["dockerd"] = docker_prefix[2]
                clients = {name: docker.DockerClient(base_url=host) for name, host in hosts.items()}
                times = {f"{name} {kind}": [] for name in hosts for kind in ("api", "cli")}
                for _ in range(rounds):
                    for name, host in hosts.items():
                        times[f"{name} api"].append(create_start_wait(clients[name]))
                        times[f"{name} cli"].append(cli_run(host))
                for label, values in times.items():
                    print(f"{label:14s} median {statistics.median(values) * 1000:7.1f} ms")
                for kind in ("api", "cli"):
                    if f"dockerd {kind}" in times:
                        ratio = statistics.median(times[f"pallet {kind}"]) / statistics.median(times[f"dockerd {kind}"])
                        print(f"pallet/dockerd {kind}: {ratio:.2f}x")
                if docker_prefix is None:
                    print("dockerd: skipped (not installed; bench/setup-peers.sh installs docker.io)")
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(60)
            subprocess.run([*base, "rm", "-f", *subprocess.run([*base, "ps", "-aq"], env=env, cwd=REPO,
                                                                capture_output=True, text=True).stdout.split()],
                           env=env, cwd=REPO, capture_output=True)


if __name__ == "__main__":
    main()
