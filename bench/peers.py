"""Peers to compare with in benchmarks: podman and docker, each on private state under a work dir.

Both get pallet's own busybox image through ``pallet save`` (no registry is reachable here), so
every engine runs the same bytes. Install them with ``bench/setup-peers.sh``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

# The flags this host needs (see ../shared/BRIEF.md §3): cgroupfs on hybrid cgroups, file events,
# runc (crun refuses hybrid cgroups), and rlimits no higher than root's hard limits here.
PODMAN_FLAGS = ["--cgroup-manager=cgroupfs", "--events-backend=file", "--runtime", "runc"]
PODMAN_RUN_FLAGS = ["--ulimit", "nofile=20000:20000", "--ulimit", "nproc=32768:32768"]


def wait(predicate, timeout: float = 600) -> float:
    """Seconds until ``predicate()`` holds, polled every 0.1 s (the benchmark ends after ``timeout``)."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise SystemExit("timed out")
        time.sleep(0.1)
    return time.monotonic() - start


def podman(work: Path, image_tar: Path) -> list[str] | None:
    """The podman command prefix on private storage with busybox loaded, or None when podman is absent."""
    if shutil.which("podman") is None:
        return None
    prefix = ["podman", *PODMAN_FLAGS, "--root", str(work / "podman"), "--runroot", str(work / "podman-run")]
    subprocess.run([*prefix, "load", "-q", "-i", str(image_tar)], check=True, capture_output=True)
    return prefix


def podman_cleanup(prefix: list[str] | None) -> None:
    if prefix:
        subprocess.run([*prefix, "system", "reset", "-f"], capture_output=True)


@contextlib.contextmanager
def docker(work: Path, image_tar: Path):
    """Start a private dockerd (no iptables, no default bridge) and yield the docker command prefix.

    Yields None when dockerd is not installed. The daemon and its containerd are stopped afterwards.
    """
    if shutil.which("dockerd") is None:
        yield None
        return
    sock, pidfile = work / "docker.sock", work / "docker.pid"
    log = open(work / "dockerd.log", "wb")
    daemon = subprocess.Popen(
        ["dockerd", "--iptables=false", "--ip6tables=false", "--bridge=none", "-H", f"unix://{sock}",
         "--data-root", str(work / "docker-data"), "--exec-root", str(work / "docker-exec"),
         "--pidfile", str(pidfile)],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    prefix = ["docker", "-H", f"unix://{sock}"]
    try:
        deadline = time.monotonic() + 30
        while subprocess.run([*prefix, "info"], capture_output=True).returncode != 0:
            if daemon.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"dockerd did not start; see {work / 'dockerd.log'}")
            time.sleep(0.3)
        subprocess.run([*prefix, "load", "-q", "-i", str(image_tar)], check=True, capture_output=True)
        yield prefix
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(daemon.pid, signal.SIGTERM)
        try:
            daemon.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)
            daemon.wait()
        log.close()
        # everything under its roots, deepest first: dockerd leaves docker-exec/netns/default mounted at
        # times, and umount -R of a directory that is not itself a mount point does nothing
        with open("/proc/self/mountinfo") as handle:
            points = [line.split()[4] for line in handle]
        for root in (work / "docker-data", work / "docker-exec"):
            for point in sorted({p for p in points if p == str(root) or p.startswith(f"{root}/")}, key=len,
                                reverse=True):
                subprocess.run(["umount", "-l", point], capture_output=True)


@contextlib.contextmanager
def podman_service(work: Path, image_tar: Path):
    """``podman system service`` (its Docker-compatible API) on private storage; yields its ``unix://`` URL.

    Yields None when podman is not installed. The service is stopped and its storage reset afterwards.
    """
    prefix = podman(work, image_tar)
    if prefix is None:
        yield None
        return
    sock = work / "podman.sock"
    log = open(work / "podman-service.log", "wb")
    service = subprocess.Popen([*prefix, "system", "service", "--time", "0", f"unix://{sock}"],
                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while not sock.exists():
            if service.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"podman system service did not start; see {work / 'podman-service.log'}")
            time.sleep(0.1)
        yield f"unix://{sock}"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(service.pid, signal.SIGTERM)
        try:
            service.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(service.pid, signal.SIGKILL)
            service.wait()
        log.close()
        podman_cleanup(prefix)
