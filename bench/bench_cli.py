"""CLI start-up: `pallet --version`, `--help` and `plugins ls` against bare Python and the peers' --version.

Run: python3 bench/bench_cli.py [--runs N]. Prints medians (ms) and ratios; the goal for
--version and --help is under 150 ms. Commands are interleaved so machine noise hits all alike.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time


# An installed pallet has byte-compiled modules; PYTHONDONTWRITEBYTECODE (set in some sandboxes)
# would make every run compile from source, so it is dropped and one warm-up run writes the caches.
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def measure(commands: dict[str, list[str]], runs: int) -> dict[str, float]:
    samples: dict[str, list[float]] = {name: [] for name in commands}
    for argv in commands.values():
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False, env=ENV)
    for _ in range(runs):
        for name, argv in commands.items():
            start = time.perf_counter()
            subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False, env=ENV)
            samples[name].append((time.perf_counter() - start) * 1000)
    return {name: statistics.median(values) for name, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    pallet = shutil.which("pallet")
    if pallet is None:
        sys.exit("pallet is not installed (scripts/setup.sh)")
    # The console script as installed; pyenv shims add their own start-up, so use the real path.
    real = subprocess.run([sys.executable, "-c", "import shutil,sys,os;print(os.path.join(os.path.dirname(sys.executable),'pallet'))"],
                          capture_output=True, text=True).stdout.strip()
    pallet = real if shutil.which(real) else pallet
    commands = {
        "python3 -c pass": [sys.executable, "-c", "pass"],
        "pallet --version": [pallet, "--version"],
        "pallet --help": [pallet, "--help"],
        "pallet plugins ls": [pallet, "plugins", "ls"],
    }
    for peer in ("runc", "crun", "podman", "docker"):
        if shutil.which(peer):
            commands[f"{peer} --version"] = [peer, "--version"]
    medians = measure(commands, args.runs)
    base = medians["python3 -c pass"]
    print(f"{'command':<22} {'median ms':>10} {'x python':>9}")
    for name, value in medians.items():
        print(f"{name:<22} {value:>10.1f} {value / base:>9.2f}")
    for name in ("pallet --version", "pallet --help"):
        verdict = "ok" if medians[name] < 150 else "OVER BUDGET"
        print(f"{name}: {medians[name]:.1f} ms (budget 150 ms) {verdict}")


if __name__ == "__main__":
    main()
