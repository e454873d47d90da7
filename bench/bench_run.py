"""Benchmark ``pallet run --rm --network none busybox true`` against ``runc run`` of the same bundle.

Interleaved rounds (one of each per round), medians and ratios; podman and docker are
measured only when their engines are installed (the docker CLI alone does not count).
Also: RSS of an idle detached container's monitor, and ``pallet ps -a`` with 100 containers; the same
run on each engine's default bridge network, and N concurrent runs, against podman.

    python3 bench/bench_run.py [--rounds 30] [--baseline DIR] [--concurrent 20] [--bridge-rounds 8]

``pallet-engine`` is the same command through the native thin client (``kernel/client.c``, built here as
``scripts/setup.sh`` builds it) with the root's resident engine up (``pallet engine start``);
``pallet-engine-py`` through the stdlib-only Python client (``kernel/launcher.py`` under ``python3 -I -S``),
which the ``pallet`` script runs where no C compiler built the native one; crun runs the same bundle as
runc when it is installed.

``--baseline DIR`` adds another checkout of pallet (say, ``git worktree add DIR main``) as a
contender in the same interleaved rounds, for before/after figures under the same load.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import peers

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


CPU = []  # CPU seconds (user + sys) of the last timed command and its children


def timed(cmd, **kwargs) -> float:
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kwargs)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    CPU[:] = [(after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)]
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, cmd))} failed: {result.stderr.decode().strip()}")
    return elapsed


def make_bundle(root: Path, run_root: Path, bundle: Path) -> None:
    """A pallet container's own bundle (config.json + the mounted rootfs), copied so runc can run it alone."""
    from pallet.kernel import lifecycle
    from pallet.kernel.config import Config
    from pallet.kernel.engine import Engine

    engine = Engine(Config.load(str(root), str(run_root)))
    engine.plugins.load("storage", "network", "security", "runtime")
    record = lifecycle.create(engine, lifecycle.CreateRequest(image="busybox", command=["true"], network="none"))
    run_dir = lifecycle.prepare(engine, record)
    spec = json.loads((run_dir / "config.json").read_text())
    rootfs = bundle / "rootfs"
    shutil.copytree(spec["root"]["path"], rootfs, symlinks=True)
    spec["root"]["path"] = str(rootfs)
    for mount in spec["mounts"]:  # /etc/hosts etc. live in the pallet container's run dir
        if mount["type"] == "bind":
            target = bundle / Path(mount["source"]).name
            shutil.copy(mount["source"], target)
            mount["source"] = str(target)
    spec["linux"]["cgroupsPath"] = f"/pallet-bench/{os.getpid()}"
    (bundle / "config.json").write_text(json.dumps(spec))
    lifecycle.remove(engine, record)


def monitor_rss(pallet, root: Path) -> dict:
    cid = subprocess.run([*pallet, "run", "-d", "--network", "none", "busybox", "sleep", "300"],
                         capture_output=True, text=True, check=True).stdout.strip()
    time.sleep(1.0)  # let the monitor settle into its idle loop
    record = json.loads((root / "containers" / cid / "container.json").read_text())
    pid = record["monitor_pid"]
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    rollup = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:])
    subprocess.run([*pallet, "rm", "-f", cid], capture_output=True, check=True)
    kb = lambda text: int(text.split()[0])  # noqa: E731
    return {"rss": kb(status["VmRSS"]), "anon": kb(status["RssAnon"]), "pss": kb(rollup["Pss"])}


def vm_rss_kb(pid: int | str) -> int:
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return int(status["VmRSS"].split()[0])


def conmon_rss(podman: list[str]) -> int:
    """VmRSS (kB) of podman's conmon for an idle detached container, the peer of pallet's monitor."""
    cid = subprocess.run([*podman, "run", "-d", "--network", "none", *peers.PODMAN_RUN_FLAGS, "busybox", "sleep",
                          "300"], capture_output=True, text=True, check=True).stdout.strip()
    try:
        time.sleep(1.0)
        pid = subprocess.run([*podman, "inspect", "--format", "{{.State.ConmonPid}}", cid],
                             capture_output=True, text=True, check=True).stdout.strip()
        return vm_rss_kb(pid)
    finally:
        subprocess.run([*podman, "rm", "-f", "-t", "0", cid], capture_output=True)


def shim_rss(docker: list[str]) -> int:
    """VmRSS (kB) of containerd-shim-runc-v2 for an idle detached docker container (the container's parent)."""
    cid = subprocess.run([*docker, "run", "-d", "--network", "none", "busybox", "sleep", "300"],
                         capture_output=True, text=True, check=True).stdout.strip()
    try:
        time.sleep(1.0)
        pid = subprocess.run([*docker, "inspect", "--format", "{{.State.Pid}}", cid],
                             capture_output=True, text=True, check=True).stdout.strip()
        shim = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]
        return vm_rss_kb(shim)
    finally:
        subprocess.run([*docker, "rm", "-f", cid], capture_output=True)


def ps_times(commands: dict, root: Path, run_root: Path, count: int = 100) -> dict:
    """Median time of ``pallet ps -a`` with ``count`` containers, per command prefix (shuffled rounds)."""
    from pallet.kernel import lifecycle
    from pallet.kernel.config import Config
    from pallet.kernel.engine import Engine

    engine = Engine(Config.load(str(root), str(run_root)))
    engine.plugins.load("storage", "network", "security", "runtime")
    for i in range(count):
        lifecycle.create(engine, lifecycle.CreateRequest(image="busybox", command=["true"], network="none",
                                                         name=f"ps{i}"))
    times = {name: [] for name in commands}
    for _ in range(9):
        order = list(commands.items())
        random.shuffle(order)
        for name, cmd in order:
            times[name].append(timed([*cmd, "ps", "-a"]))
    for i in range(count):
        subprocess.run([*commands["direct"], "rm", f"ps{i}"], capture_output=True)
    return {name: statistics.median(values) for name, values in times.items()}


def _works(cmd, env) -> str | None:
    """None if ``cmd`` runs here, else the last line of its error."""
    trial = subprocess.run(cmd, capture_output=True, text=True, env=env)
    return None if trial.returncode == 0 else (trial.stderr.strip().splitlines() or ["exit %d" % trial.returncode])[-1]


def bridge(rounds: int, client, podman, env, stack) -> None:
    """``run --rm busybox true`` on each engine's default bridge network (a veth pair, an address, NAT rules).
    Afterwards pallet's bridge and nft table go (``system reset``, at the end), and podman's bridge and the
    iptables tables its CNI plugins made, when they did not exist before."""
    tables = set(subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout.splitlines())
    links = set(Path("/sys/class/net").iterdir())

    def podman_gone() -> None:
        for link in set(Path("/sys/class/net").iterdir()) - links:
            if link.name.startswith("cni-podman"):
                subprocess.run(["ip", "link", "del", link.name], capture_output=True)
        for table in set(subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout.splitlines()) - tables:
            if table.split()[-1] in ("nat", "filter"):
                subprocess.run(["nft", "delete", *table.split()], capture_output=True)

    stack.callback(podman_gone)
    contenders = {"pallet-engine": [*client, "run", "--rm", "--network", "bridge", "busybox", "true"]}
    if podman:
        contenders["podman"] = [*podman, "run", "--rm", "--network", "bridge", *peers.PODMAN_RUN_FLAGS, "busybox", "true"]
    for name, cmd in list(contenders.items()):
        error = _works(cmd, env)
        if error:
            print(f"  bridge: {name} skipped ({error})")
            del contenders[name]
    samples = {name: [] for name in contenders}
    for _ in range(rounds):
        order = list(contenders)
        random.shuffle(order)
        for name in order:
            samples[name].append(timed(contenders[name], env=env))
    medians = {name: statistics.median(values) * 1000 for name, values in samples.items() if values}
    print(f"default bridge network, {rounds} shuffled rounds (median ms):")
    for name, value in medians.items():
        print(f"  {name:14s} {value:7.1f}")
    if len(medians) == 2:
        print(f"  pallet-engine/podman (bridge) = {medians['pallet-engine'] / medians['podman']:.2f}")


def concurrent(count: int, contenders: dict, env, rounds: int = 3) -> None:
    """Total wall time of ``count`` commands started at once, per engine (shuffled order each round)."""
    def burst(cmd) -> float:
        start = time.perf_counter()
        procs = [subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env) for _ in range(count)]
        failed = [p for p in procs if p.wait() != 0]
        elapsed = time.perf_counter() - start
        if failed:
            raise SystemExit(f"{' '.join(cmd)}: {len(failed)} of {count} failed: {failed[0].stderr.read().decode().strip()}")
        return elapsed

    samples = {name: [] for name in contenders}
    for _ in range(rounds):
        order = list(contenders)
        random.shuffle(order)
        for name in order:
            samples[name].append(burst(contenders[name]))
    medians = {name: statistics.median(values) * 1000 for name, values in samples.items()}
    print(f"{count} concurrent run --rm --network none busybox true, {rounds} shuffled rounds (median total ms):")
    for name, value in medians.items():
        print(f"  {name:14s} {value:8.1f}")
    if "podman" in medians:
        for name in ("pallet-engine", "pallet"):
            print(f"  {name}/podman ({count} concurrent) = {medians[name] / medians['podman']:.2f}")


def cleanup(work: Path, root: Path) -> None:
    subprocess.run(["umount", "-R", str(root)], capture_output=True)
    for line in Path("/proc/self/mounts").read_text().splitlines():
        if str(work) in line.split()[1]:
            subprocess.run(["umount", "-l", line.split()[1]], capture_output=True)
    shutil.rmtree(work, ignore_errors=True)
    for base in Path("/sys/fs/cgroup").iterdir():
        for leftover in (base / "pallet-bench" / str(os.getpid()), base / "pallet-bench"):
            try:
                leftover.rmdir()
            except OSError:
                pass  # absent, or another benchmark run still uses the parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--baseline", metavar="DIR", help="another pallet checkout to measure alongside")
    parser.add_argument("--concurrent", type=int, default=20, metavar="N",
                        help="also time N concurrent run --rm, engine up, against podman (0: skip)")
    parser.add_argument("--bridge-rounds", type=int, default=8, metavar="R",
                        help="also time run --rm on the default bridge network, against podman's (0: skip)")
    args = parser.parse_args()
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)  # measure with cached bytecode, as installed pallet runs
    work = Path(tempfile.mkdtemp(prefix="pallet-bench-"))
    root, run_root, bundle = work / "root", work / "run", work / "bundle"
    bundle.mkdir()
    os.environ["PALLET_CONFIG"] = str(work / "pallet.toml")
    (work / "pallet.toml").write_text("")
    pallet = [sys.executable, "-m", "pallet.kernel.cli", "--root", str(root), "--run-root", str(run_root)]
    env = {**os.environ}
    podman = None
    with contextlib.ExitStack() as stack:
        stack.callback(cleanup, work, root)
        # Last before the unmounts: the root's bridge, veths and nft table (the bridge rounds make them).
        stack.callback(subprocess.run, [*pallet, "system", "reset", "-f"], capture_output=True, cwd=REPO)
        subprocess.run([*pallet, "image", "build-busybox"], check=True, capture_output=True, cwd=REPO)
        os.chdir(REPO)
        make_bundle(root, run_root, bundle)
        archive = work / "busybox.tar"
        subprocess.run([*pallet, "save", "-o", str(archive), "busybox"], check=True, capture_output=True)
        skipped = []
        py_client = [sys.executable, "-I", "-S", str(REPO / "kernel" / "launcher.py"), "--root", str(root),
                     "--run-root", str(run_root)]
        subprocess.run(["cc", "-O2", "-o", str(work / "pallet-client"), str(REPO / "kernel" / "client.c")], check=True)
        client = [str(work / "pallet-client"), sys.executable, str(REPO / "kernel" / "launcher.py"), "--root", str(root),
                  "--run-root", str(run_root)]
        subprocess.run([*pallet, "engine", "start"], check=True, capture_output=True, cwd=REPO)
        stack.callback(subprocess.run, [*pallet, "engine", "stop"], capture_output=True, cwd=REPO)
        contenders = {
            "pallet": [*pallet, "run", "--rm", "--network", "none", "busybox", "true"],
            "pallet-engine": [*client, "run", "--rm", "--network", "none", "busybox", "true"],
            "pallet-engine-py": [*py_client, "run", "--rm", "--network", "none", "busybox", "true"],
            "runc": ["runc", "--root", str(work / "runc-state"), "run", "-b", str(bundle), f"bench-{os.getpid()}"],
        }
        crun = ["crun", "--root", str(work / "crun-state"), "run", "-b", str(bundle), f"bench-crun-{os.getpid()}"]
        if shutil.which("crun"):
            trial = subprocess.run(crun, capture_output=True, text=True)
            if trial.returncode == 0:
                contenders["crun"] = crun
            else:
                skipped.append(f"crun (fails here: {' '.join(trial.stderr.strip().splitlines()[-1:])})")
        cwd = {name: REPO for name in contenders}
        if args.baseline:  # run from its own tree: "-m pallet.kernel.cli" imports the checkout in the cwd
            contenders["baseline"], cwd["baseline"] = contenders["pallet"], Path(args.baseline).resolve()
        podman = peers.podman(work, archive)
        stack.callback(peers.podman_cleanup, podman)
        if podman:
            contenders["podman"] = [*podman, "run", "--rm", "--network", "none", *peers.PODMAN_RUN_FLAGS,
                                    "busybox", "true"]
        else:
            skipped.append("podman (not installed: bench/setup-peers.sh)")
        docker = stack.enter_context(peers.docker(work, archive))
        if docker:
            contenders["docker"] = [*docker, "run", "--rm", "--network", "none", "busybox", "true"]
        else:
            skipped.append("docker (dockerd not installed: bench/setup-peers.sh)")
        for name, cmd in contenders.items():  # warm-up: page cache, bytecode
            timed(cmd, env=env, cwd=cwd.get(name))
        samples = {name: [] for name in contenders}
        cpu = {name: [] for name in contenders}
        for _ in range(args.rounds):
            for name, cmd in contenders.items():
                samples[name].append(timed(cmd, env=env, cwd=cwd.get(name)))
                cpu[name].append(CPU[0])
        medians = {name: statistics.median(values) * 1000 for name, values in samples.items()}
        cpu_medians = {name: statistics.median(values) * 1000 for name, values in cpu.items()}
        print(f"start latency, /bin/true, {args.rounds} interleaved rounds (median ms; load average "
              f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs):")
        for name, value in medians.items():
            print(f"  {name:8s} wall {value:7.1f} ({value / medians['runc']:.2f}x runc)   "
                  f"cpu {cpu_medians[name]:6.1f} ({cpu_medians[name] / cpu_medians['runc']:.2f}x runc)")
        for peer in ("baseline", "podman", "docker", "runc", "crun"):
            if peer in medians:
                print(f"  pallet/{peer} = {medians['pallet'] / medians[peer]:.2f}   "
                      f"pallet-engine/{peer} = {medians['pallet-engine'] / medians[peer]:.2f}   "
                      f"pallet-engine-py/{peer} = {medians['pallet-engine-py'] / medians[peer]:.2f}")
        for note in skipped:
            print(f"  skipped: {note}")
        if args.bridge_rounds:
            bridge(args.bridge_rounds, client, podman, env, stack)
        if args.concurrent:
            concurrent(args.concurrent, {"pallet-engine": contenders["pallet-engine"], "pallet": contenders["pallet"],
                                         **({"podman": contenders["podman"]} if podman else {})}, env)
        rss = monitor_rss(pallet, root)
        print(f"idle monitor: RSS {rss['rss'] / 1024:.1f} MB (anon {rss['anon'] / 1024:.1f} MB, "
              f"PSS {rss['pss'] / 1024:.1f} MB)")
        if podman:
            print(f"  conmon (podman): RSS {conmon_rss(podman) / 1024:.1f} MB")
        if docker:
            print(f"  containerd-shim-runc-v2 (docker): RSS {shim_rss(docker) / 1024:.1f} MB")
        ps = ps_times({"direct": pallet, "through the engine": client, "the same, Python client": py_client},
                      root, run_root)
        print("pallet ps -a with 100 containers (median of 9, shuffled): "
              + "; ".join(f"{name} {value * 1000:.0f} ms" for name, value in ps.items()))
        version = {name: [] for name in ("direct", "through the engine", "the same, Python client")}
        for _ in range(15):
            order = list(zip(version, (pallet, client, py_client)))
            random.shuffle(order)
            for name, cmd in order:
                version[name].append(timed([*cmd, "--version"]))
        print("pallet --version (median of 15, shuffled): "
              + "; ".join(f"{name} {statistics.median(values) * 1000:.0f} ms" for name, values in version.items()))
        engine_pid = int((run_root / "engine.pid").read_text())
        print(f"idle engine: RSS {vm_rss_kb(engine_pid) / 1024:.1f} MB")


if __name__ == "__main__":
    main()
