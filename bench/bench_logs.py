"""Log throughput: a container writes 200 MB to stdout through json-file (rotated) and through local.

Runs ``busybox sh -c 'yes LINE | head -c 200M'`` detached (the monitor's log pump writes the log,
as with dockerd's json-file), waits for its exit and prints MB/s of container output. Each driver
is run ``--rounds`` times on a private root, removed afterwards. dockerd is compared only where a
working ``docker`` CLI and daemon are present (``--docker``); otherwise the reason is printed.

    python3 bench/bench_logs.py [--mb 200] [--rounds 2] [--docker]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LINE = "0123456789abcdef" * 4 + "0123456789abcde"   # 79 characters + newline: 80-byte lines


def pallet(root: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "pallet.kernel.cli", "--root", str(root / "root"), "--run-root", str(root / "run"), *args]
    env = {"PALLET_CONFIG": str(root / "pallet.toml"), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=str(REPO), env=env, check=True)


def run_once(root: Path, driver: str, megabytes: int) -> float:
    script = f"yes {LINE} | head -c {megabytes * 1024 * 1024}"
    started = time.perf_counter()
    cid = pallet(root, "run", "-d", "--log-driver", driver, "busybox", "sh", "-c", script).stdout.strip()
    pallet(root, "wait", cid)
    elapsed = time.perf_counter() - started
    logs = sorted(p for p in (root / "root" / "containers" / cid).iterdir() if "-json.log" in p.name)
    kept = sum(p.stat().st_size for p in logs)
    print(f"  {driver:9s} {megabytes / elapsed:8.1f} MB/s  ({elapsed:.2f} s; on disk {kept / 2**20:.1f} MiB in {len(logs)} files)")
    pallet(root, "rm", "-f", cid)
    return megabytes / elapsed


def docker_once(megabytes: int) -> float:
    script = f"yes {LINE} | head -c {megabytes * 1024 * 1024}"
    started = time.perf_counter()
    cid = subprocess.run(["docker", "run", "-d", "--log-opt", "max-size=10m", "--log-opt", "max-file=3", "busybox",
                          "sh", "-c", script], capture_output=True, text=True, check=True).stdout.strip()
    subprocess.run(["docker", "wait", cid], capture_output=True, check=True)
    elapsed = time.perf_counter() - started
    subprocess.run(["docker", "rm", "-f", cid], capture_output=True)
    print(f"  dockerd   {megabytes / elapsed:8.1f} MB/s  (json-file 10m x 3)")
    return megabytes / elapsed


def docker_reason() -> str:
    if not shutil.which("docker"):
        return "no docker CLI on this host"
    probe = subprocess.run(["docker", "info"], capture_output=True, text=True)
    return "" if probe.returncode == 0 else f"docker info failed: {probe.stderr.strip().splitlines()[-1:]}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--docker", action="store_true", help="also measure dockerd (needs a running daemon)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-logs-") as tmp:
        root = Path(tmp)
        (root / "pallet.toml").write_text('[containers]\ndefault_network = "none"\n')
        pallet(root, "image", "build-busybox")
        print(f"container writing {args.mb} MB to stdout, {args.rounds} rounds:")
        for driver in ("json-file", "local"):
            best = max(run_once(root, driver, args.mb) for _ in range(args.rounds))
            print(f"  -> {driver}: best {best:.1f} MB/s")
    if args.docker:
        reason = docker_reason()
        if reason:
            print(f"dockerd not measured: {reason}")
        else:
            print(f"  -> dockerd: best {max(docker_once(args.mb) for _ in range(args.rounds)):.1f} MB/s")
    else:
        print("dockerd not measured (pass --docker where a daemon runs; starting one here would cost minutes)")


if __name__ == "__main__":
    main()
