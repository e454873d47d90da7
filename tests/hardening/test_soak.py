"""Soak: 4 workers for about a minute on one root doing run/rm/commit/load/volume operations in
parallel; afterwards ``system check`` is clean and nothing is left mounted or running."""

from __future__ import annotations

import random
import time
from concurrent.futures import ThreadPoolExecutor

from tests.containers.conftest import container_ids, mounts_under

SECONDS = 60
WORKERS = 4


def _worker(bb, archive: str, index: int, until: float) -> list[str]:
    rng = random.Random(index)
    failures, step = [], 0
    while time.monotonic() < until:
        step += 1
        tag = f"w{index}-{step}"
        op = rng.choice(["run", "detached", "commit", "load", "volume"])
        if op == "run":
            results = [bb("run", "--rm", "busybox", "sh", "-c", "echo ok", timeout=300)]
        elif op == "detached":
            results = [bb("run", "-d", "--name", tag, "busybox", "sleep", "30", timeout=300),
                       bb("rm", "-f", tag, timeout=300)]
        elif op == "commit":
            results = [bb("create", "--name", tag, "busybox", "true", timeout=300),
                       bb("commit", tag, f"soak:{tag}", timeout=300),
                       bb("rm", tag, timeout=300), bb("rmi", f"soak:{tag}", timeout=300)]
        elif op == "load":
            results = [bb("load", "-i", archive, timeout=300)]
        else:
            results = [bb("volume", "create", f"soak-{tag}", timeout=300),
                       bb("volume", "rm", f"soak-{tag}", timeout=300)]
        failures += [f"{op}: {r.returncode} {r.stderr.strip()}" for r in results if r.returncode != 0]
    return failures


def test_four_workers_for_a_minute_leave_a_clean_root(bb, tmp_path):
    archive = tmp_path / "bb.tar"
    bb("save", "-o", str(archive), "busybox", check=True)
    until = time.monotonic() + SECONDS
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        failures = [f for batch in pool.map(lambda i: _worker(bb, str(archive), i, until), range(WORKERS))
                    for f in batch]
    assert failures == []
    assert container_ids(bb.root) == [] and mounts_under(bb.root) == []
    check = bb("system", "check")
    assert (check.returncode, check.stdout) == (0, "no problems found\n"), check.stdout + check.stderr
    assert bb("run", "--rm", "busybox", "true").returncode == 0
