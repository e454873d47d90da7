"""Storage drivers side by side: container layer create+mount time vs image size, and copy-up cost.

For each driver an image layer of N small files is applied (N = 1,000 and 5,000 by default),
then a container's read-write layer is created on it and mounted, several times (median).
Copy-up: a 100 MB file in the image, opened for append in the container layer (one byte).
O(1) drivers (overlay2, btrfs) show the same create+mount time for both sizes; vfs grows.

    python3 bench/bench_storage.py [--drivers overlay2,vfs] [--home /tmp] [--sizes 1000,5000]
        [--home-for btrfs=/mnt/btrfs] [--opt zfs:zfs.fsname=pool/pallet] [--rounds 5]
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import sys
import tarfile
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def image_tar(files: int, big_mb: int) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for index in range(files):
            info = tarfile.TarInfo(f"usr/share/d{index % 100:02d}/f{index}")
            data = b"x" * (100 + index % 900)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        if big_mb:
            info = tarfile.TarInfo("big.bin")
            info.size = big_mb << 20
            tar.addfile(info, io.BytesIO(b"\0" * info.size))
    buf.seek(0)
    return buf


def bench_driver(name: str, home: str, options: dict, sizes: list[int], rounds: int) -> dict:
    from pallet.kernel.drivers import DriverContext
    from pallet.kernel.errors import Unavailable
    from pallet.kernel.plugins import PluginManager

    try:
        driver = PluginManager().open("storage", name, DriverContext(home, options))
    except Unavailable as exc:
        return {"error": str(exc)}
    result = {}
    try:
        for files in sizes:
            image = f"img{files}"
            driver.apply_diff(image, None, image_tar(files, 0))
            driver.create(image + "top", image)  # a parent, so overlay2 really mounts
            times = []
            for round_ in range(rounds):
                cid = f"c{files}-{round_}"
                start = time.perf_counter()
                driver.create_rw(cid, image + "top")
                driver.get(cid)
                times.append(time.perf_counter() - start)
                driver.put(cid)
                driver.remove(cid)
            result[f"create+mount ({files} files)"] = statistics.median(times) * 1000
        driver.apply_diff("bigimg", None, image_tar(10, 100))
        driver.create_rw("bigc", "bigimg")
        root = driver.get("bigc")
        start = time.perf_counter()
        with open(os.path.join(root, "big.bin"), "ab") as handle:
            handle.write(b"!")
            os.fsync(handle.fileno())
        result["copy-up 100 MB"] = (time.perf_counter() - start) * 1000
        driver.put("bigc")
    finally:
        for layer in reversed(driver.layers()):
            driver.remove(layer)
        driver.cleanup()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--drivers", default="overlay2,vfs")
    parser.add_argument("--home", default="/tmp", help="where driver homes are made (default /tmp)")
    parser.add_argument("--home-for", action="append", default=[], metavar="DRIVER=DIR")
    parser.add_argument("--opt", action="append", default=[], metavar="DRIVER:KEY=VALUE")
    parser.add_argument("--sizes", default="1000,5000")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    homes = dict(item.split("=", 1) for item in args.home_for)
    table = {}
    for name in args.drivers.split(","):
        options = {}
        for item in args.opt:
            driver, _, pair = item.partition(":")
            if driver == name:
                key, _, value = pair.partition("=")
                options[key] = value
        work = tempfile.mkdtemp(prefix=f"bench-storage-{name}-", dir=homes.get(name, args.home))
        try:
            table[name] = bench_driver(name, os.path.join(work, name), options, sizes, args.rounds)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    columns = [f"create+mount ({files} files)" for files in sizes] + ["copy-up 100 MB"]
    print(f"{'driver':<10}" + "".join(f"{column:>28}" for column in columns) + "   (ms, median)")
    for name, row in table.items():
        if "error" in row:
            print(f"{name:<10}  unavailable: {row['error']}")
            continue
        print(f"{name:<10}" + "".join(f"{row[column]:28.1f}" for column in columns))
    if "vfs" in table and "error" not in table["vfs"]:
        for name, row in table.items():
            if name != "vfs" and "error" not in row:
                ratio = table["vfs"][columns[-2]] / row[columns[-2]]
                print(f"{name}: container layer {ratio:.0f}x faster than vfs at {sizes[-1]} files")


if __name__ == "__main__":
    main()
