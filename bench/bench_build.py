"""Benchmark ``pallet build`` against Debian's ``buildah bud`` on the same Dockerfiles and contexts.

Three figures, interleaved rounds (one pallet, one buildah per round), medians and ratios:

1. full build (no cache) of a 3-stage, 15-step Dockerfile on busybox with a 2,000-file context;
2. the fully cached rebuild of it;
3. a 20,000-file context whose ``.dockerignore`` excludes 90 %: a build that copies the rest;
4. the time to the first step on that context (and on it with nothing ignored): from the command's
   start to the first RUN's step line and to its output, for pallet, buildah and ``docker build``
   against a private dockerd (its classic builder: the CLI has no buildx here), which sends the
   whole context before any step.

buildah runs as the tests run it: its own root, vfs, runc, cgroupfs, ``--layers`` (its layer cache).

    python3 bench/bench_build.py [--rounds 5] [--only builds|first-step]
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


FIRST_STEP = "FROM busybox\nRUN echo first-step-$((1+1))\nCOPY . /ctx/\n"
HEADER = ("#2 [", "STEP 2/3: RUN", "Step 2/3 : RUN")   # pallet, buildah, docker's classic builder


def first_step(cmd, env=None) -> tuple[float, float]:
    """(seconds to the first RUN's step line, seconds to its output) of ``cmd``, which then runs to its end."""
    import selectors

    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=str(REPO), env=env)
    header = output = None
    seen = []
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        pending = b""
        while output is None:
            sel.select()
            data = os.read(proc.stdout.fileno(), 65536)
            if not data:
                break
            now = time.perf_counter() - start
            pending += data
            *lines, pending = pending.split(b"\n")
            for line in lines:
                text = line.decode(errors="replace")
                seen.append(text)
                if header is None and text.startswith(HEADER):
                    header = now
                if "first-step-2" in text and "$((" not in text:
                    output = now
                    break
    proc.stdout.read()
    if proc.wait() != 0 or header is None or output is None:
        raise SystemExit(f"{' '.join(map(str, cmd))} failed: " + "\n".join(seen[-20:]))
    proc.stdout.close()
    return header, output


def bench_first_step(work: Path, pallet, env, bud, busybox_tar: Path, rounds: int) -> None:
    import peers

    contexts = []
    for name, share in (("90 % ignored", 0.9), ("nothing ignored", 0.0)):
        root = make_context(work / f"first-{int(share * 100)}", 20000, ignored_share=share)
        (root / "Dockerfile").write_text(FIRST_STEP)
        contexts.append((name, root))
    with peers.docker(work, busybox_tar) as docker:
        tools = [("pallet", lambda ctx: ([*pallet, "build", "--progress", "plain", "--no-cache", str(ctx)], env)),
                 ("buildah", lambda ctx: ([*[a for a in bud if a != "-q"], "--no-cache", str(ctx)], None))]
        if docker is not None:
            denv = {**os.environ, "DOCKER_BUILDKIT": "0"}
            tools.append(("docker build", lambda ctx: ([*docker, "build", "--no-cache", "--network", "host",
                                                         str(ctx)], denv)))
        print(f"\ntime to the first step, 20,000-file context; load average {os.getloadavg()[0]:.1f}; "
              f"medians of {rounds}: step line / its output")
        print(f"{'context':<18} " + " ".join(f"{name:>22}" for name, _ in tools))
        for label, ctx in contexts:
            results = {name: [] for name, _ in tools}
            for name, make in tools:  # warm once: page cache, bytecode, the daemons' image
                first_step(*make(ctx))
            for round_ in range(rounds):  # the order rotates: none always runs just after docker's daemon work
                shift = round_ % len(tools)
                for name, make in tools[shift:] + tools[:shift]:
                    results[name].append(first_step(*make(ctx)))
            cells = []
            for name, _ in tools:
                head = statistics.median(h for h, _ in results[name])
                out = statistics.median(o for _, o in results[name])
                cells.append(f"{head * 1000:>8.0f} / {out * 1000:>6.0f} ms")
            print(f"{label:<18} " + " ".join(f"{c:>22}" for c in cells))
            base = statistics.median(o for _, o in results["pallet"])
            print(f"{'':<18} " + " ".join(f"{statistics.median(o for _, o in results[n]) / base:>21.2f}x"
                                         for n, _ in tools))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--only", choices=["builds", "first-step"], default=None)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO / "bench"))
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
        if args.only != "builds":
            bench_first_step(work, pallet, env, bud, work / "busybox.tar", args.rounds)
        if args.only == "first-step":
            return
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
