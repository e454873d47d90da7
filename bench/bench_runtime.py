"""Container start latency: the same `/bin/true` OCI bundle under pallet's built-in runtime, runc and crun.

Run: python3 bench/bench_runtime.py [--runs N]. Each round runs every variant once (interleaved,
so machine noise hits all alike) and prints medians (ms) and ratios to runc and crun.

* ``pallet (new python)``: a fresh interpreter imports the runtime, runs, waits and deletes —
  what a ``pallet run`` process pays, minus the CLI and storage.
* ``pallet (in process)``: the runtime called from an already warm process: the runtime alone.
* ``runc run`` / ``crun run``: the peers on the same bundle (crun in a mount namespace without the
  controller-less cgroup2 mount, which it refuses on hybrid hosts).
* ``python3 -c pass`` and ``python3 import runtime``: where the interpreter's share goes.
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
from plugins.runtime.builtin import PalletRuntime
runtime = PalletRuntime(Path(sys.argv[1]))
pid = runtime.run(sys.argv[2], Path(sys.argv[3]), (0, 1, 2))
os.waitpid(pid, 0)
runtime.delete(sys.argv[2])
"""
IMPORTS = "import plugins.runtime.builtin, kernel.runtime.launch, kernel.runtime.cgroups, kernel.runtime.seccomp"


def timed(argv, **kwargs) -> float:
    start = time.perf_counter()
    subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   check=True, **kwargs)
    return (time.perf_counter() - start) * 1000


def without_cgroup2() -> None:
    from kernel.runtime import linux

    linux.unshare(linux.CLONE_NEWNS)
    linux.mount(None, "/", None, linux.MS_REC | linux.MS_SLAVE)
    linux.umount2("/sys/fs/cgroup/unified", linux.MNT_DETACH)


def main() -> None:
    import ocispec

    from kernel import host
    from plugins.runtime.builtin import PalletRuntime

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="pallet-bench-rt-"))
    os.chmod(work, 0o755)
    try:
        rootfs = ocispec.make_rootfs(work / "rootfs")
        bundle = ocispec.write_bundle(work / "bundle", rootfs, ocispec.spec(["/bin/true"]))
        # Measure what an installed pallet pays: with bytecode caches (this sandbox sets the variable).
        env = dict(os.environ, PYTHONPATH=str(REPO))
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        subprocess.run([sys.executable, "-c", IMPORTS], env=env, check=True)
        in_process = PalletRuntime(work / "state-inproc")
        hybrid = host.cgroup_info().version == "hybrid"
        tag = f"b{os.getpid()}"

        def pallet_new_python(i):
            return timed([sys.executable, "-c", CHILD, str(work / "state"), f"{tag}p{i}", str(bundle)], env=env)

        def pallet_in_process(i):
            start = time.perf_counter()
            with open(os.devnull, "r+") as null:
                pid = in_process.run(f"{tag}i{i}", bundle, (null.fileno(),) * 3)
                os.waitpid(pid, 0)
                in_process.delete(f"{tag}i{i}")
            return (time.perf_counter() - start) * 1000

        variants = {
            "python3 -c pass": lambda i: timed([sys.executable, "-c", "pass"], env=env),
            "python3 import runtime": lambda i: timed([sys.executable, "-c", IMPORTS], env=env),
            "pallet (new python)": pallet_new_python,
            "pallet (in process)": pallet_in_process,
        }
        if shutil.which("runc"):
            variants["runc run"] = lambda i: timed(["runc", "--root", str(work / "runc"), "run", "-b", str(bundle),
                                                    f"{tag}r{i}"])
        if shutil.which("crun"):
            variants["crun run"] = lambda i: timed(["crun", "--root", str(work / "crun"), "run", "-b", str(bundle),
                                                    f"{tag}c{i}"], preexec_fn=without_cgroup2 if hybrid else None)
        samples: dict[str, list[float]] = {name: [] for name in variants}
        for i in range(args.runs):
            for name, run in variants.items():
                samples[name].append(run(i))
        medians = {name: statistics.median(values) for name, values in samples.items()}
        print(f"{'variant':<24} {'median ms':>10} {'x runc':>8} {'x crun':>8}")
        for name, value in medians.items():
            runc = value / medians["runc run"] if "runc run" in medians else float("nan")
            crun = value / medians["crun run"] if "crun run" in medians else float("nan")
            print(f"{name:<24} {value:>10.1f} {runc:>8.2f} {crun:>8.2f}")
        print(f"load average during the run: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
