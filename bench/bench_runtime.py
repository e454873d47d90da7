"""Container start latency: the same `/bin/true` OCI bundle under pallet's built-in runtime, runc and crun.

Run: python3 bench/bench_runtime.py [--runs N]. Each round runs every variant once (interleaved,
so machine noise hits all alike) and prints medians (ms) and ratios to runc and crun.

* ``pallet (new python)``: a fresh interpreter imports the runtime, runs, waits and deletes —
  what a ``pallet run`` process pays, minus the CLI and storage.
* ``pallet (in process)``: the runtime called from an already warm process: the runtime alone.
* ``runc run`` / ``crun run``: the peers on the same bundle (crun in a mount namespace without the
  controller-less cgroup2 mount, which it refuses on hybrid hosts).
* ``python3 -c pass`` and ``python3 import runtime``: where the interpreter's share goes.

Every runtime runs two bundles: ``plain`` (namespaces, mounts, masked paths, 14 capabilities,
cgroups) and ``seccomp`` (the same plus Docker's default seccomp profile, as a default container
has; pallet compiles it once and caches the BPF, runc and crun compile it at every start).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests" / "runtime")]

CHILD = """
import os, sys
from pathlib import Path
from pallet.kernel.drivers import DriverContext
from pallet.plugins.runtime.builtin import PalletRuntime
runtime = PalletRuntime(DriverContext(Path(sys.argv[1])))
pid = runtime.run(sys.argv[2], Path(sys.argv[3]), (0, 1, 2))
os.waitpid(pid, 0)
runtime.delete(sys.argv[2])
"""
IMPORTS = "import pallet.plugins.runtime.builtin, pallet.plugins.runtime.builtin.launch, pallet.kernel.cgroups, pallet.plugins.runtime.builtin.seccomp"


def timed(argv, **kwargs) -> float:
    start = time.perf_counter()
    subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   check=True, **kwargs)
    return (time.perf_counter() - start) * 1000


def without_cgroup2() -> None:
    from pallet.kernel import linux

    linux.unshare(linux.CLONE_NEWNS)
    linux.mount(None, "/", None, linux.MS_REC | linux.MS_SLAVE)
    linux.umount2("/sys/fs/cgroup/unified", linux.MNT_DETACH)


def main() -> None:
    import ocispec

    from pallet.kernel import host
    from pallet.plugins.runtime.builtin import PalletRuntime
    from pallet.kernel.drivers import DriverContext

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="pallet-bench-rt-"))
    os.chmod(work, 0o755)
    try:
        rootfs = ocispec.make_rootfs(work / "rootfs")
        bundles = {"plain": ocispec.write_bundle(work / "plain", rootfs, ocispec.spec(["/bin/true"]))}
        profile = REPO.parent / "shared" / "testdata" / "moby-profiles" / "seccomp" / "default.json"
        if profile.exists():
            from test_seccomp import docker_to_oci

            import json

            oci = docker_to_oci(json.loads(profile.read_text()), ocispec.DOCKER_CAPS)
            bundles["seccomp"] = ocispec.write_bundle(work / "seccomp", rootfs, ocispec.spec(["/bin/true"], seccomp=oci))
        # Measure what an installed pallet pays: with bytecode caches (this sandbox sets the variable).
        env = dict(os.environ, PYTHONPATH=str(REPO))
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        subprocess.run([sys.executable, "-c", IMPORTS], env=env, check=True)
        in_process = PalletRuntime(DriverContext(work / "state-inproc"))
        hybrid = host.cgroup_info().version == "hybrid"
        tag = f"b{os.getpid()}"

        def pallet_new_python(bundle):
            return lambda i: timed([sys.executable, "-c", CHILD, str(work / "state"), f"{tag}p{i}", str(bundle)],
                                   env=env)

        def pallet_in_process(bundle):
            def run(i):
                start = time.perf_counter()
                with open(os.devnull, "r+") as null:
                    pid = in_process.run(f"{tag}i{i}", bundle, (null.fileno(),) * 3)
                    os.waitpid(pid, 0)
                    in_process.delete(f"{tag}i{i}")
                return (time.perf_counter() - start) * 1000
            return run

        def peer(tool, bundle, preexec=None):
            return lambda i: timed([tool, "--root", str(work / tool), "run", "-b", str(bundle), f"{tag}{tool}{i}"],
                                   preexec_fn=preexec)

        variants = {
            "python3 -c pass": lambda i: timed([sys.executable, "-c", "pass"], env=env),
            "python3 import runtime": lambda i: timed([sys.executable, "-c", IMPORTS], env=env),
        }
        for label, bundle in bundles.items():
            variants[f"pallet new python {label}"] = pallet_new_python(bundle)
            variants[f"pallet in process {label}"] = pallet_in_process(bundle)
            if shutil.which("runc"):
                variants[f"runc run {label}"] = peer("runc", bundle)
            if shutil.which("crun"):
                variants[f"crun run {label}"] = peer("crun", bundle, without_cgroup2 if hybrid else None)
        samples: dict[str, list[float]] = {name: [] for name in variants}
        for i in range(args.runs):
            for name, run in variants.items():
                samples[name].append(run(i))
        medians = {name: statistics.median(values) for name, values in samples.items()}
        print(f"{'variant':<30} {'median ms':>10} {'x runc':>8} {'x crun':>8}")
        for name, value in medians.items():
            label = name.rsplit(" ", 1)[-1]
            runc, crun = medians.get(f"runc run {label}"), medians.get(f"crun run {label}")
            print(f"{name:<30} {value:>10.1f} {value / runc if runc else float('nan'):>8.2f} "
                  f"{value / crun if crun else float('nan'):>8.2f}")
        print(f"load average during the run: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
