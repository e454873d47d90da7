"""Unpack speed: pallet's safe layer extraction vs GNU ``tar -xf`` of the same uncompressed layer.

Builds a synthetic layer (many small files in nested dirs, some medium and large files,
symlinks and hard links), then extracts it alternately with both tools, several rounds,
into fresh dirs on the same filesystem, and prints the medians and their ratio.

    python3 bench/bench_unpack.py [--files 20000] [--rounds 5] [--dir /tmp]
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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pallet.kernel.storage import archive  # noqa: E402


def build_layer(work: Path, files: int) -> Path:
    src = work / "src"
    rng = os.urandom
    for index in range(files):
        directory = src / f"usr/share/d{index % 200:03d}/s{index % 7}"
        directory.mkdir(parents=True, exist_ok=True)
        (directory / f"f{index}.txt").write_bytes(rng(64 + (index * 37) % 4000))
    (src / "usr/lib").mkdir(parents=True)
    for index in range(40):
        (src / f"usr/lib/lib{index}.so").write_bytes(rng(256 * 1024))
    (src / "usr/lib/big.bin").write_bytes(rng(64 << 20))
    for index in range(200):
        os.symlink(f"../share/d{index:03d}", src / f"usr/lib/link{index}")
        os.link(src / f"usr/lib/lib{index % 40}.so", src / f"usr/lib/hard{index}.so")
    layer = work / "layer.tar"
    subprocess.run(["tar", "-C", str(src), "-cf", str(layer), "."], check=True)
    shutil.rmtree(src)
    return layer


def timed(action) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--dir", default="/tmp")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-unpack-", dir=args.dir))
    try:
        layer = build_layer(work, args.files)
        size_mb = layer.stat().st_size / 1e6
        tar_times, pallet_times = [], []
        for round_ in range(args.rounds):
            for name, times in (("tar", tar_times), ("pallet", pallet_times)):
                target = work / f"{name}-{round_}"
                target.mkdir()
                subprocess.run(["sync"], check=True)
                if name == "tar":
                    times.append(timed(lambda: subprocess.run(
                        ["tar", "-C", str(target), "--same-owner", "-p", "-xf", str(layer)], check=True)))
                else:
                    def run():
                        with open(layer, "rb", buffering=1 << 20) as stream:
                            archive.extract(stream, target)
                    times.append(timed(run))
                shutil.rmtree(target)
        tar_median, pallet_median = statistics.median(tar_times), statistics.median(pallet_times)
        print(f"layer: {size_mb:.0f} MB, {args.files} small files + 40 libs + 64 MB file + 400 links")
        print(f"{'tool':<8} {'median s':>9} {'MB/s':>8}   rounds")
        for name, times, median in (("tar -xf", tar_times, tar_median), ("pallet", pallet_times, pallet_median)):
            print(f"{name:<8} {median:9.3f} {size_mb / median:8.0f}   " + " ".join(f"{t:.3f}" for t in times))
        print(f"ratio pallet/tar: {pallet_median / tar_median:.2f}x (goal <= 1.30x)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
