"""Pull throughput: pallet vs ``skopeo copy docker://… oci:…`` (and podman when installed) from a local registry.

Builds a ~150 MB, 5-layer image (umoci), pushes it with skopeo to Debian's docker-registry on
a loopback port, then pulls it into an empty store/layout several times, the tools in a new
random order each round, and prints medians, MB/s and ratios (> 1.0 means pallet is faster).
``skopeo copy`` only stores blobs; ``skopeo copy`` + ``umoci unpack`` also extracts, as a pull
does. The limits of the machine are measured in the same rounds: a plain HTTP GET of the same
blobs (``curl --parallel`` to /dev/null: the loopback and the registry) and a ``dd``-style
write of the same uncompressed bytes, synced (the disk). Run it with the interpreter that has
the ``fast-pull`` extra (isal, zstandard) to measure what users get with it; the
``PALLET_GZIP=zlib`` row is the stdlib decoder. Also times gzip decompression of one layer by
each decoder and by a ``gzip -dc`` child.

    python3 bench/bench_pull.py [--mb 150] [--rounds 3] [--driver overlay2]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from peers import PODMAN_FLAGS  # noqa: E402
from tests.registry.conftest import push_with_skopeo, start_registry, stop_registry  # noqa: E402


def make_layer(path: Path, megabytes: int, seed: int) -> None:
    """A tar of files half random (incompressible), half text-like, so gzip gets about 2:1."""
    import io
    import tarfile

    rng = random.Random(seed)
    words = [bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 9))) for _ in range(2000)]
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        written, index = 0, 0
        while written < megabytes * 1_000_000:
            size = rng.choice([4_000, 40_000, 400_000, 2_000_000])
            if index % 2:
                data = rng.randbytes(size)
            else:
                text = b" ".join(rng.choice(words) for _ in range(size // 6))
                data = text[:size]
            info = tarfile.TarInfo(f"layer{seed}/dir{index % 17}/file{index}")
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
            written += len(data)
            index += 1


def timed(argv: list[str], env=None, cwd=REPO) -> float:
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, env=env, cwd=cwd)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {proc.stderr.decode()[-2000:]}")
    return elapsed


def rm_tree(path: Path) -> None:
    if path.exists():
        subprocess.run(["rm", "-rf", "--one-file-system", str(path)], check=True)


def unpack_layer(tar: Path, work: Path, rounds: int) -> None:
    """One uncompressed layer: pallet's safe extraction (what apply_diff runs) vs ``tar -xf``."""
    from pallet.kernel.storage import archive

    ours, theirs = [], []
    for round_ in range(rounds):
        target = work / f"unpack-pallet-{round_}"
        target.mkdir()
        start = time.perf_counter()
        with open(tar, "rb") as handle:
            archive.extract(handle, target)
        ours.append(time.perf_counter() - start)
        rm_tree(target)
        target = work / f"unpack-tar-{round_}"
        target.mkdir()
        theirs.append(timed(["tar", "-xf", str(tar), "-C", str(target)]))
        rm_tree(target)
    a, b = statistics.median(ours), statistics.median(theirs)
    print(f"\nunpack of one {tar.stat().st_size / 1e6:.0f} MB layer: pallet {a:.2f} s, tar -xf {b:.2f} s, "
          f"ratio pallet/tar = {a / b:.2f} (goal <= 1.3)")


def children_cpu() -> float:
    """User + system seconds used so far by waited-for child processes."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def blob_urls(registry_host: str, layout: Path) -> list[str]:
    """The registry URLs of the image's config and layer blobs (what a pull downloads besides the manifest)."""
    import json

    blobs = layout / "blobs" / "sha256"
    index = json.loads((layout / "index.json").read_text())
    manifest = json.loads((blobs / index["manifests"][0]["digest"].split(":")[1]).read_text())
    digests = [manifest["config"]["digest"]] + [layer["digest"] for layer in manifest["layers"]]
    return [f"http://{registry_host}/v2/bench/img/blobs/{digest}" for digest in digests]


def dd_write(target: Path, megabytes: int) -> list[str]:
    """argv writing ``megabytes`` MB to ``target`` and syncing it, the way a layer's files reach the disk."""
    return ["dd", "if=/dev/zero", f"of={target}", "bs=1M", f"count={megabytes}", "conv=fsync", "status=none"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=150, help="total uncompressed size")
    parser.add_argument("--layers", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--driver", default="overlay2", help="pallet storage driver (overlay2, vfs …)")
    parser.add_argument("--dir", default=tempfile.gettempdir())
    parser.add_argument("--baseline", help="another pallet checkout (git worktree add /tmp/base main) in the same rounds")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-pull-", dir=args.dir))
    proc = handle = None
    try:
        print(f"building a {args.mb} MB, {args.layers}-layer image in {work} …", flush=True)
        layout = work / "layout"
        subprocess.run(["umoci", "init", "--layout", str(layout)], check=True)
        subprocess.run(["umoci", "new", "--image", f"{layout}:b"], check=True)
        for i in range(args.layers):
            tar = work / f"layer{i}.tar"
            make_layer(tar, args.mb // args.layers, i)
            subprocess.run(["umoci", "raw", "add-layer", "--image", f"{layout}:b", str(tar)], check=True)
        proc, handle, registry = start_registry(work / "registry")
        push_with_skopeo(f"oci:{layout}:b", registry, "bench/img:b")
        compressed = sum(p.stat().st_size for p in (layout / "blobs" / "sha256").iterdir())
        name = f"{registry.host}/bench/img:b"
        print(f"image: {args.mb} MB uncompressed, {compressed / 1e6:.0f} MB compressed (all blobs)\n", flush=True)

        env = {**os.environ, "PALLET_STORAGE_DRIVER": args.driver}
        no_fsync = ("import os, runpy, sys; from pallet.kernel import fsutil; os.fsync = lambda fd: None; "
                    "fsutil.syncfs = lambda path: None; sys.argv = ['pallet'] + sys.argv[1:]; "
                    "runpy.run_module('pallet.kernel.cli', run_name='__main__')")
        curl = ["curl", "-s", "--parallel", "--parallel-max", "8"]
        for url in blob_urls(registry.host, layout):
            curl += ["-o", "/dev/null", url]

        def pallet(root, argv0=None, extra_env=None, checkout=REPO):
            argv = argv0 or [sys.executable, "-m", "pallet.kernel.cli"]
            return lambda: (timed([*argv, "--root", str(root), "pull", "-q", name],
                                  {**env, "PYTHONPATH": str(checkout), **(extra_env or {})}, checkout),
                            rm_tree(root))[0]

        def pallet_engine(root, extra_env=None):
            """The thin client with the root's resident engine up (started and stopped outside the timing,
            as on a host that runs it), into an empty store."""
            run_env = {**env, "PYTHONPATH": str(REPO), **(extra_env or {})}
            direct = [sys.executable, "-m", "pallet.kernel.cli", "--root", str(root)]
            client = [sys.executable, "-I", "-S", str(REPO / "kernel" / "launcher.py"), "--root", str(root)]

            def run():
                subprocess.run([*direct, "engine", "start"], check=True, capture_output=True, env=run_env, cwd=REPO)
                try:
                    return timed([*client, "pull", "-q", name], run_env)
                finally:
                    subprocess.run([*direct, "engine", "stop"], capture_output=True, env=run_env, cwd=REPO)
                    rm_tree(root)
            return run

        def skopeo(target, unpack=False):
            def run():
                start = time.perf_counter()
                timed(["skopeo", "--insecure-policy", "copy", "-q", "--src-tls-verify=false", f"docker://{name}",
                       f"oci:{target}:b"])
                if unpack:
                    timed(["umoci", "unpack", "--image", f"{target}:b", str(target / "bundle")])
                elapsed = time.perf_counter() - start
                rm_tree(target)
                return elapsed
            return run

        def dd(target):
            return lambda: (timed(dd_write(target, args.mb)), target.unlink())[0]

        tools = {
            "pallet pull": lambda r: pallet(work / f"pallet-{r}"),
            "pallet pull, engine up": lambda r: pallet_engine(work / f"pallet-engine-{r}"),
            "pallet pull, PALLET_GZIP=zlib": lambda r: pallet(work / f"pallet-zlib-{r}", extra_env={"PALLET_GZIP": "zlib"}),
            "pallet pull, fsync off (diag.)": lambda r: pallet(work / f"pallet-nofsync-{r}",
                                                              [sys.executable, "-c", no_fsync]),
            "skopeo copy docker:// oci:": lambda r: skopeo(work / f"skopeo-{r}"),
            "skopeo copy + umoci unpack": lambda r: skopeo(work / f"umoci-{r}", unpack=True),
            "HTTP GET of the blobs (curl)": lambda r: lambda: timed(curl),
            f"dd write {args.mb} MB, fsync": lambda r: dd(work / f"dd-{r}"),
        }
        if args.baseline:
            tools["baseline pallet pull"] = lambda r: pallet(work / f"baseline-{r}",
                                                             checkout=Path(args.baseline).resolve())
        podman = shutil.which("podman")
        if podman:  # private storage, so nothing of the host's podman is touched
            def podman_pull(r):
                store = work / f"podman-{r}"
                prefix = ["podman", *PODMAN_FLAGS, "--root", str(store / "root"), "--runroot", str(store / "run")]

                def run():
                    elapsed = timed([*prefix, "pull", "-q", "--tls-verify=false", name])
                    subprocess.run([*prefix, "system", "reset", "-f"], capture_output=True)
                    rm_tree(store)
                    return elapsed
                return run
            tools["podman pull"] = podman_pull
        results: dict[str, list[float]] = {tool: [] for tool in tools}
        cpu: dict[str, list[float]] = {tool: [] for tool in tools}
        rng = random.Random()
        for round_ in range(args.rounds):
            order = list(tools)
            rng.shuffle(order)
            for tool in order:
                before = children_cpu()
                results[tool].append(tools[tool](round_)())
                cpu[tool].append(children_cpu() - before)
        medians = {tool: statistics.median(times) for tool, times in results.items()}
        base = medians["pallet pull"]
        print(f"{'':37s} {'median':>8s}  {'MB/s':>7s}  {'time / pallet':>13s}  {'CPU s':>6s}")
        for tool, seconds in medians.items():
            print(f"{tool:37s} {seconds:7.2f} s  {args.mb / seconds:7.1f}  {seconds / base:13.2f}  "
                  f"{statistics.median(cpu[tool]):6.2f}")
        print("(MB/s of the uncompressed image; the HTTP GET row moves the compressed bytes; CPU s is user + "
              "system time of the tool's processes, which a machine shared with other work does not distort)")
        if podman:
            ratio = medians["podman pull"] / base
            print(f"ratio podman pull time / pallet time = {ratio:.2f} (both download, verify and unpack)")
        else:
            print("podman pull: not measured (podman is not installed: bench/setup-peers.sh)")
        ratio = medians["skopeo copy docker:// oci:"] / base
        print(f"\nratio skopeo time / pallet time = {ratio:.2f} (>= 1.0: pallet at least as fast; pallet also "
              f"unpacks every layer into {args.driver}, skopeo only stores blobs)")
        engine = medians["pallet pull, engine up"]
        print(f"ratio skopeo time / pallet time with the engine up = {medians['skopeo copy docker:// oci:'] / engine:.2f}"
              + (f", podman pull / pallet with the engine up = {medians['podman pull'] / engine:.2f}" if podman else ""))
        ratio = medians["skopeo copy + umoci unpack"] / base
        print(f"ratio (skopeo copy + umoci unpack) time / pallet time = {ratio:.2f} (the same work: download, "
              "verify, decompress, extract)")

        unpack_layer(work / "layer0.tar", work, args.rounds)
        gzip_decoders(max((layout / "blobs" / "sha256").iterdir(), key=lambda p: p.stat().st_size))
    finally:
        if proc is not None:
            stop_registry(proc, handle)
        rm_tree(work)


def gzip_decoders(blob: Path) -> None:
    """Inflate one layer with each installed decoder, in-process, and with a ``gzip -dc`` child."""
    import importlib

    times = {}
    for label, module in (("zlib", "zlib"), ("isal", "isal.isal_zlib"), ("zlib-ng", "zlib_ng.zlib_ng")):
        try:
            mod = importlib.import_module(module)
        except ImportError:
            continue
        start = time.perf_counter()
        decoder = mod.decompressobj(wbits=31)
        with open(blob, "rb") as handle_in:
            while chunk := handle_in.read(1 << 20):
                decoder.decompress(chunk)
        times[label] = time.perf_counter() - start
    start = time.perf_counter()
    with open(blob, "rb") as handle_in:
        subprocess.run(["gzip", "-dc"], stdin=handle_in, stdout=subprocess.DEVNULL, check=True)
    times["gzip -dc child"] = time.perf_counter() - start
    print(f"\ngzip decode of one {blob.stat().st_size / 1e6:.0f} MB layer: " +
          ", ".join(f"{label} {seconds:.2f} s" for label, seconds in times.items()))


if __name__ == "__main__":
    main()
