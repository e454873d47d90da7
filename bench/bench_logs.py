"""Log throughput: a container writes 200 MB to stdout through json-file (rotated) and local, pallet vs dockerd.

Runs ``busybox sh -c 'yes LINE | head -c 200M'`` detached (pallet's monitor pumps the log; dockerd's
containerd-shim hands the output to the daemon, which writes it), waits for its exit and prints
MB/s of container output. Contenders, each on private state: pallet json-file (10m x 3, its
default), pallet local (20m x 5 compressed, Docker's local defaults), and a private dockerd
(``peers.docker``, Debian's docker.io) with json-file ``max-size=10m,max-file=3`` and with
``--log-driver local`` (its defaults: 20m x 5, compressed). Every round runs each contender once,
in a shuffled order; the medians and the pallet/dockerd ratio per driver are printed.
``--mode non-blocking`` gives both engines ``--log-opt mode=non-blocking`` (the ring buffer, default
max-buffer-size): the figure is then the container's output rate, and the line shows what reached
the disk.

    python3 bench/bench_logs.py [--mb 200] [--rounds 3] [--mode blocking|non-blocking] [--no-docker]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import peers

REPO = Path(__file__).resolve().parent.parent
LINE = "0123456789abcdef" * 4 + "0123456789abcde"   # 79 characters + newline: 80-byte lines
DOCKER_OPTS = {"json-file": ["--log-opt", "max-size=10m", "--log-opt", "max-file=3"],
               "local": ["--log-driver", "local"]}


def pallet(root: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "pallet.kernel.cli", "--root", str(root / "root"), "--run-root", str(root / "run"), *args]
    env = {"PALLET_CONFIG": str(root / "pallet.toml"), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=str(REPO), env=env, check=True)


def script(megabytes: int) -> str:
    return f"yes {LINE} | head -c {megabytes * 1024 * 1024}"


def pallet_once(root: Path, driver: str, megabytes: int, mode: list[str]) -> float:
    started = time.perf_counter()
    cid = pallet(root, "run", "-d", "--log-driver", driver, *mode, "busybox", "sh", "-c", script(megabytes)).stdout.strip()
    pallet(root, "wait", cid)
    elapsed = time.perf_counter() - started
    logs = sorted(p for p in (root / "root" / "containers" / cid).iterdir() if "-json.log" in p.name)
    kept = sum(p.stat().st_size for p in logs)
    print(f"  pallet  {driver:9s} {megabytes / elapsed:8.1f} MB/s  ({elapsed:.2f} s; on disk {kept / 2**20:.1f} MiB "
          f"in {len(logs)} files)", flush=True)
    pallet(root, "rm", "-f", cid)
    return megabytes / elapsed


def docker_once(prefix: list[str], driver: str, megabytes: int, mode: list[str]) -> float:
    started = time.perf_counter()
    cid = subprocess.run([*prefix, "run", "-d", "--network", "none", *DOCKER_OPTS[driver], *mode, "busybox", "sh", "-c",
                          script(megabytes)], capture_output=True, text=True, check=True).stdout.strip()
    subprocess.run([*prefix, "wait", cid], capture_output=True, check=True)
    elapsed = time.perf_counter() - started
    subprocess.run([*prefix, "rm", "-f", cid], capture_output=True)
    print(f"  dockerd {driver:9s} {megabytes / elapsed:8.1f} MB/s  ({elapsed:.2f} s)", flush=True)
    return megabytes / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-docker", action="store_true", help="measure pallet alone")
    parser.add_argument("--mode", choices=("blocking", "non-blocking"), default="blocking",
                        help="--log-opt mode= for both engines (blocking: Docker's default and pallet's for files)")
    args = parser.parse_args()
    mode = [] if args.mode == "blocking" else ["--log-opt", f"mode={args.mode}"]
    with tempfile.TemporaryDirectory(prefix="bench-logs-") as tmp, contextlib.ExitStack() as stack:
        root = Path(tmp)
        (root / "pallet.toml").write_text('[containers]\ndefault_network = "none"\n')
        pallet(root, "image", "build-busybox")
        archive = root / "busybox.tar"
        pallet(root, "save", "-o", str(archive), "busybox")
        contenders = {("pallet", d): (lambda d=d: pallet_once(root, d, args.mb, mode)) for d in DOCKER_OPTS}
        skipped = ""
        if args.no_docker:
            skipped = "--no-docker"
        else:
            docker = stack.enter_context(peers.docker(root, archive))
            if docker is None:
                skipped = "dockerd is not installed (bench/setup-peers.sh)"
            else:
                contenders.update({("dockerd", d): (lambda d=d: docker_once(docker, d, args.mb, mode)) for d in DOCKER_OPTS})
        samples = {name: [] for name in contenders}
        print(f"container writing {args.mb} MB to stdout, mode={args.mode}, {args.rounds} shuffled rounds "
              f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs):", flush=True)
        for number in range(args.rounds):
            order = list(contenders)
            random.shuffle(order)
            print(f" round {number + 1}", flush=True)
            for name in order:
                samples[name].append(contenders[name]())
        medians = {name: statistics.median(values) for name, values in samples.items()}
        for (engine, driver), value in medians.items():
            print(f"  -> {engine} {driver}: median {value:.1f} MB/s")
        for driver in DOCKER_OPTS:
            if ("dockerd", driver) in medians:
                ratio = medians[("pallet", driver)] / medians[("dockerd", driver)]
                print(f"  pallet/dockerd {driver} = {ratio:.2f}")
        if skipped:
            print(f"  dockerd not measured: {skipped}")


if __name__ == "__main__":
    main()
