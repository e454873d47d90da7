"""Pull throughput: pallet vs ``skopeo copy docker://… oci:…`` (and podman when installed) from a local registry.

Builds a ~150 MB, 5-layer image (umoci), pushes it with skopeo to Debian's docker-registry on
a loopback port, then pulls it into an empty store/layout several times, alternating tools,
and prints medians, MB/s and ratios (> 1.0 means pallet is faster). ``skopeo copy`` only
stores blobs; ``skopeo copy`` + ``umoci unpack`` also extracts, as a pull does. Also times gzip
decompression of one layer in-process (zlib) vs a ``gzip -dc`` child, which decided the
decoder pallet uses.

    python3 bench/bench_pull.py [--mb 150] [--rounds 3] [--driver vfs]
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
import zlib
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


def timed(argv: list[str], env=None) -> float:
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, env=env, cwd=REPO)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=150, help="total uncompressed size")
    parser.add_argument("--layers", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--driver", default="vfs", help="pallet storage driver (vfs, overlay2 …)")
    parser.add_argument("--dir", default=tempfile.gettempdir())
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
        results: dict[str, list[float]] = {"pallet pull": [], "skopeo copy docker:// oci:": [],
                                           "pallet pull, fsync off (diagnostic)": [],
                                           "skopeo copy + umoci unpack": []}
        no_fsync = ("import os, runpy, sys; os.fsync = lambda fd: None; sys.argv = ['pallet'] + sys.argv[1:]; "
                    "runpy.run_module('pallet.kernel.cli', run_name='__main__')")
        podman = shutil.which("podman")
        if podman:
            results["podman pull"] = []
        for round_ in range(args.rounds):
            root = work / f"pallet-root-{round_}"
            results["pallet pull"].append(timed(
                [sys.executable, "-m", "pallet.kernel.cli", "--root", str(root), "pull", "-q", name], env))
            rm_tree(root)
            target = work / f"skopeo-{round_}"
            results["skopeo copy docker:// oci:"].append(timed(
                ["skopeo", "--insecure-policy", "copy", "-q", "--src-tls-verify=false", f"docker://{name}",
                 f"oci:{target}:b"]))
            rm_tree(target)
            target = work / f"umoci-{round_}"
            start = time.perf_counter()
            timed(["skopeo", "--insecure-policy", "copy", "-q", "--src-tls-verify=false", f"docker://{name}",
                   f"oci:{target}:b"])
            timed(["umoci", "unpack", "--image", f"{target}:b", str(target / "bundle")])
            results["skopeo copy + umoci unpack"].append(time.perf_counter() - start)
            rm_tree(target)
            root = work / f"pallet-nofsync-{round_}"
            results["pallet pull, fsync off (diagnostic)"].append(timed(
                [sys.executable, "-c", no_fsync, "--root", str(root), "pull", "-q", name], {**env, "PYTHONPATH": str(REPO)}))
            rm_tree(root)
            if podman:  # private storage, so nothing of the host's podman is touched
                store = work / f"podman-{round_}"
                prefix = ["podman", *PODMAN_FLAGS, "--root", str(store / "root"), "--runroot", str(store / "run")]
                results["podman pull"].append(timed([*prefix, "pull", "-q", "--tls-verify=false", name]))
                subprocess.run([*prefix, "system", "reset", "-f"], capture_output=True)
                rm_tree(store)
        medians = {tool: statistics.median(times) for tool, times in results.items()}
        for tool, seconds in medians.items():
            print(f"{tool:37s} {seconds:7.2f} s  {args.mb / seconds:7.1f} MB/s (uncompressed)")
        if podman:
            ratio = medians["podman pull"] / medians["pallet pull"]
            print(f"ratio podman pull time / pallet time = {ratio:.2f} (both download, verify and unpack)")
        else:
            print("podman pull: not measured (podman is not installed: bench/setup-peers.sh)")
        ratio = medians["skopeo copy docker:// oci:"] / medians["pallet pull"]
        print(f"\nratio skopeo time / pallet time = {ratio:.2f} (>= 1.0: pallet at least as fast; pallet also "
              f"unpacks every layer into {args.driver}, skopeo only stores blobs)")
        ratio = medians["skopeo copy + umoci unpack"] / medians["pallet pull"]
        print(f"ratio (skopeo copy + umoci unpack) time / pallet time = {ratio:.2f} (the same work: download, "
              "verify, decompress, extract)")

        unpack_layer(work / "layer0.tar", work, args.rounds)

        blob = max((layout / "blobs" / "sha256").iterdir(), key=lambda p: p.stat().st_size)
        start = time.perf_counter()
        decoder = zlib.decompressobj(wbits=31)
        with open(blob, "rb") as handle_in:
            while chunk := handle_in.read(1 << 20):
                decoder.decompress(chunk)
        in_process = time.perf_counter() - start
        start = time.perf_counter()
        with open(blob, "rb") as handle_in:
            subprocess.run(["gzip", "-dc"], stdin=handle_in, stdout=subprocess.DEVNULL, check=True)
        child = time.perf_counter() - start
        print(f"\ngzip decode of one {blob.stat().st_size / 1e6:.0f} MB layer: zlib in-process {in_process:.2f} s, "
              f"gzip -dc child {child:.2f} s (the child runs beside the tar extraction on the other core)")
    finally:
        if proc is not None:
            stop_registry(proc, handle)
        rm_tree(work)


if __name__ == "__main__":
    main()
