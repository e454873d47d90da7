"""Benchmark ``pallet build`` against Debian's ``buildah bud`` on the same Dockerfiles and contexts.

Three figures, interleaved rounds (one pallet, one buildah per round), medians and ratios:

1. full build (no cache) of a 3-stage, 15-step Dockerfile on busybox with a 2,000-file context;
2. the fully cached rebuild of it;
3. a 20,000-file context whose ``.dockerignore`` excludes 90 %: a build that copies the rest.

buildah runs as the tests run it: its own root, vfs, runc, cgroupfs, ``--layers`` (its layer cache).

    python3 bench/bench_build.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

DOCKERFILE = """\
FROM busybox AS deps
ARG VERSION=1
RUN mkdir -p /deps && echo "deps $VERSION" > /deps/list
COPY src/0 /deps/src0/
RUN find /deps -type f | wc -l > /deps/count

FROM busybox AS assets
COPY src /assets/
RUN ls /assets | wc -l > /assets.count

FROM busybox
ENV APP=/app
WORKDIR /app
COPY --from=deps /deps /app/deps
COPY --from=assets /assets.count /app/
COPY src/1 /app/src1/
RUN echo built > /app/stamp
LABEL org.example.bench=yes
EXPOSE 8080
USER nobody
CMD ["cat", "/app/stamp"]
"""


def make_context(root: Path, files: int, ignored_share: float = 0.0) -> Path:
    root.mkdir(parents=True)
    (root / "Dockerfile").write_text(DOCKERFILE if not ignored_share else "FROM busybox\nCOPY . /ctx/\n")
    kept = files - int(files * ignored_share)
    for index in range(files):
        folder = root / ("src" if index < kept else "ignored") / str(index % 10)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{index}.txt").write_text(f"file {index}\n" * 4)
    if ignored_share:
        (root / ".dockerignore").write_text("ignored\n")
    return root


def timed(cmd, env=None) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the command and its children): CPU tells more on a loaded machine."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=str(REPO), env=env)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, cmd))} failed: {result.stderr.decode().strip()[-2000:]}")
    return elapsed, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    buildah = shutil.which("buildah")
    if buildah is None:
        raise SystemExit("buildah is not installed (scripts/setup.sh installs it)")
    work = Path(tempfile.mkdtemp(prefix="bench-build-"))
    try:
        pallet = [sys.executable, "-m", "pallet.kernel.cli", "--root", str(work / "root"),
                  "--run-root", str(work / "run")]
        env = {**os.environ, "PALLET_CONFIG": str(work / "pallet.toml")}
        (work / "pallet.toml").touch()
        subprocess.run([*pallet, "image", "build-busybox", "-q"], check=True, capture_output=True, env=env,
                       cwd=str(REPO))
        subprocess.run([*pallet, "save", "-o", str(work / "busybox.tar"), "busybox"], check=True, env=env,
                       cwd=str(REPO))
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        pid_max = Path("/proc/sys/kernel/pid_max").read_text().strip()
        bh = [buildah, "--root", str(work / "bh-root"), "--runroot", str(work / "bh-run"), "--storage-driver", "vfs"]
        subprocess.run([*bh, "pull", "-q", f"docker-archive:{work / 'busybox.tar'}"], check=True, capture_output=True)
        bud = [*bh, "bud", "--layers", "--format", "docker", "--runtime", "runc", "--cgroup-manager", "cgroupfs", "--network", "host",
               "--ulimit", f"nofile={hard}:{hard}", "--ulimit", f"nproc={pid_max}:{pid_max}", "-q"]
        small = make_context(work / "ctx2k", 2000)
        large = make_context(work / "ctx20k", 20000, ignored_share=0.9)
        cases = [
            ("full build, 3 stages, 2,000 files", [*pallet, "build", "-q", "--no-cache", "-t", "b", str(small)],
             [*bud, "--no-cache", "-t", "b", str(small)]),
            ("cached rebuild", [*pallet, "build", "-q", "-t", "b", str(small)], [*bud, "-t", "b", str(small)]),
            ("20,000 files, 90 % ignored", [*pallet, "build", "-q", "--no-cache", "-t", "c", str(large)],
             [*bud, "--no-cache", "-t", "c", str(large)]),
        ]
        print(f"load average {os.getloadavg()[0]:.1f}; wall (CPU) medians")
        print(f"{'case':<36} {'pallet':>16} {'buildah':>16} {'ratio':>7}")
        for name, ours, theirs in cases:
            timed(ours, env)
            timed(theirs)  # warm both caches and page caches once
            mine, peer = [], []
            for _round in range(args.rounds):
                mine.append(timed(ours, env))
                peer.append(timed(theirs))
            a, b = (statistics.median(w for w, _ in mine), statistics.median(w for w, _ in peer))
            ca, cb = (statistics.median(c for _, c in mine), statistics.median(c for _, c in peer))
            print(f"{name:<36} {a * 1000:>6.0f} ({ca * 1000:>5.0f}) ms {b * 1000:>6.0f} ({cb * 1000:>5.0f}) ms "
                  f"{a / b:>6.2f}x")
    finally:
        subprocess.run([buildah, "--root", str(work / "bh-root"), "--runroot", str(work / "bh-run"),
                        "--storage-driver", "vfs", "rm", "--all"], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
