"""Storage backends side by side (overlay2, btrfs, zfs, vfs) and migration throughput between them.

Provisions what the drivers need (a btrfs filesystem on a loop device, a zfs-fuse pool on a
file vdev), runs bench_storage's container create+mount and copy-up measurements on each
driver, then times ``pallet storage migrate`` of an image of 5,000 small files plus 100 MB
along overlay2 -> btrfs -> zfs -> vfs, and prints both tables. Everything is removed at the end.

    python3 bench/bench_backends.py [--sizes 1000,5000] [--rounds 5] [--migrate-files 5000]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))


def sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {result.stderr.strip()}")
    return result


@contextlib.contextmanager
def btrfs_filesystem(base: Path):
    image, mountpoint = base / "btrfs.img", base / "btrfs"
    mountpoint.mkdir()
    sh("truncate", "-s", "2G", str(image))
    sh("mkfs.btrfs", "-q", str(image))
    loop = sh("losetup", "-f", "--show", str(image)).stdout.strip()
    try:
        sh("mount", loop, str(mountpoint))
        try:
            yield mountpoint
        finally:
            sh("umount", str(mountpoint), check=False)
    finally:
        sh("losetup", "-d", loop, check=False)


@contextlib.contextmanager
def zfs_pool(base: Path):
    daemon = None
    if sh("zpool", "list", "-H", check=False).returncode != 0:
        daemon = subprocess.Popen(["zfs-fuse", "--no-daemon", "--pidfile", str(base / "zfs.pid"), "--no-kstat-mount"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 20
        while sh("zpool", "list", "-H", check=False).returncode != 0:
            if daemon.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("zfs-fuse did not start")
            time.sleep(0.1)
    name = f"benchpallet{os.getpid()}"
    sh("truncate", "-s", "2G", str(base / "vdev"))
    sh("zpool", "create", "-m", str(base / "zfs"), name, str(base / "vdev"))
    try:
        yield name, base / "zfs"
    finally:
        for dataset in reversed(sh("zfs", "list", "-H", "-o", "name", "-r", name, check=False).stdout.split()):
            sh("zfs", "unmount", dataset, check=False)
        for _ in range(50):
            if sh("zpool", "destroy", "-f", name, check=False).returncode == 0:
                break
            time.sleep(0.2)
        if daemon is not None:
            daemon.terminate()
            daemon.wait(timeout=30)


def image_tarball(path: Path, files: int, big_mb: int) -> int:
    """A rootfs tarball of ``files`` small files and one ``big_mb`` file; returns its content bytes."""
    total = 0
    with tarfile.open(path, "w") as tar:
        for index in range(files):
            info = tarfile.TarInfo(f"usr/share/d{index % 100:02d}/f{index}")
            data = os.urandom(100 + index % 900)
            info.size = len(data)
            total += info.size
            tar.addfile(info, io.BytesIO(data))
        info = tarfile.TarInfo("big.bin")
        info.size = big_mb << 20
        total += info.size
        tar.addfile(info, io.BytesIO(os.urandom(info.size)))
    return total


def pallet(root: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "pallet.kernel.cli", "--root", str(root), *args]
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=str(REPO), timeout=1800,
                            env={**os.environ, **(env or {})})
    if result.returncode != 0:
        raise RuntimeError(f"pallet {' '.join(args)}: {result.stderr.strip()}")
    return result


def bench_migration(root: Path, chain: list[tuple[str, list[str]]], files: int, big_mb: int, work: Path) -> list:
    tarball = work / "image.tar"
    content = image_tarball(tarball, files, big_mb)
    first, first_opts = chain[0]
    pallet(root, "--storage-driver", first, *first_opts, "import", str(tarball), "bench:1")
    rows = []
    previous = first
    for target, opts in chain[1:]:
        start = time.perf_counter()
        out = pallet(root, *opts, "storage", "migrate", "--to", target).stdout
        wall = time.perf_counter() - start
        reported = re.search(r"\(([\d.]+) MB/s\)", out)
        rows.append((f"{previous} -> {target}", content / 1e6, wall, content / 1e6 / wall,
                     float(reported.group(1)) if reported else 0.0))
        previous = target
    return rows


def main() -> None:
    from bench_storage import bench_driver

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,5000")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--migrate-files", type=int, default=5000)
    parser.add_argument("--migrate-big-mb", type=int, default=100)
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    work = Path(tempfile.mkdtemp(prefix=f"bench-backends-{os.getpid()}-"))
    try:
        with btrfs_filesystem(work) as btrfs_mnt, zfs_pool(work) as (pool, pool_mnt):
            sh("zfs", "create", f"{pool}/drivers")
            homes = {"overlay2": work / "ov", "vfs": work / "vfs", "btrfs": btrfs_mnt / "drivers",
                     "zfs": work / "zfs-home"}
            options = {"zfs": {"zfs.fsname": f"{pool}/drivers"}}
            table = {}
            for name in ("overlay2", "btrfs", "zfs", "vfs"):
                homes[name].mkdir(parents=True, exist_ok=True)
                table[name] = bench_driver(name, str(homes[name] / name), options.get(name, {}), sizes, args.rounds)
            columns = [f"create+mount ({files} files)" for files in sizes] + ["copy-up 100 MB"]
            print(f"{'driver':<10}" + "".join(f"{column:>28}" for column in columns) + "   (ms, median)")
            for name, row in table.items():
                if "error" in row:
                    print(f"{name:<10}  unavailable: {row['error']}")
                    continue
                print(f"{name:<10}" + "".join(f"{row[column]:28.1f}" for column in columns))
            base = table.get("vfs", {})
            for name, row in table.items():
                if name != "vfs" and "error" not in row and "error" not in base:
                    small, large = row[columns[0]], row[columns[len(sizes) - 1]]
                    print(f"{name}: {large / small:.2f}x from {sizes[0]} to {sizes[-1]} files "
                          f"(vfs {base[columns[len(sizes) - 1]] / base[columns[0]]:.2f}x); "
                          f"{base[columns[len(sizes) - 1]] / large:.0f}x faster than vfs at {sizes[-1]} files")
            # Migration: one root on btrfs (overlay2 and vfs work there too), then onto the zfs pool.
            sh("zfs", "create", f"{pool}/migrate")
            zfs_opt = ["--storage-opt", f"zfs.fsname={pool}/migrate"]
            chain = [("overlay2", []), ("btrfs", []), ("zfs", zfs_opt), ("vfs", [])]
            rows = bench_migration(btrfs_mnt / "root", chain, args.migrate_files, args.migrate_big_mb, work)
            print(f"\nmigration of one image ({args.migrate_files} files + {args.migrate_big_mb} MB), "
                  "every layer verified:")
            print(f"{'move':<22}{'MB':>8}{'seconds':>10}{'MB/s (wall)':>14}{'MB/s (copy)':>14}")
            for move, megabytes, wall, rate, reported in rows:
                print(f"{move:<22}{megabytes:8.1f}{wall:10.2f}{rate:14.1f}{reported:14.1f}")
            shutil.rmtree(btrfs_mnt / "root", ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
