"""Soak: 4 workers for about a minute and a half on one root doing run/rm/commit/load/pull/rmi/volume/
network operations in parallel, each leaving one container behind; afterwards ``system check`` is
clean, every surviving container starts, and nothing is left mounted, running or linked."""

from __future__ import annotations

import random
import time
from concurrent.futures import ThreadPoolExecutor

from tests.containers.conftest import container_ids, mounts_under
from tests.registry.conftest import registry  # noqa: F401 (fixture)

SECONDS = 90
WORKERS = 4


def _worker(bb, archive: str, remote: str, index: int, until: float) -> list[str]:
    rng = random.Random(index)
    failures, step = [], 0
    kept = bb("create", "--name", f"soak-keep-{index}", "busybox", "sh", "-c", "echo survived", timeout=300)
    failures += [f"create: {kept.returncode} {kept.stderr.strip()}"] if kept.returncode else []
    while time.monotonic() < until:
        step += 1
        tag = f"w{index}-{step}"
        op = rng.choice(["run", "detached", "commit", "load", "pull", "volume", "network"])
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
        elif op == "pull":  # a pulled tag of its own, then removed again (the layers stay: busybox holds them)
            results = [bb("pull", remote, timeout=300), bb("tag", remote, f"soak-pull:{tag}", timeout=300),
                       bb("rmi", f"soak-pull:{tag}", timeout=300)]
        elif op == "network":
            results = [bb("network", "create", f"soak-{tag}", timeout=300),
                       bb("network", "rm", f"soak-{tag}", timeout=300)]
        else:
            results = [bb("volume", "create", f"soak-{tag}", timeout=300),
                       bb("volume", "rm", f"soak-{tag}", timeout=300)]
        failures += [f"{op}: {r.returncode} {r.stderr.strip()}" for r in results if r.returncode != 0]
    return failures


def test_four_workers_leave_a_clean_root_whose_containers_all_start(bb, registry, tmp_path):
    archive = tmp_path / "bb.tar"
    bb("save", "-o", str(archive), "busybox", check=True)
    remote = f"{registry.host}/soak/busybox:1"
    bb("tag", "busybox", remote, check=True)
    bb("push", remote, check=True)
    until = time.monotonic() + SECONDS
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        failures = [f for batch in pool.map(lambda i: _worker(bb, str(archive), remote, i, until),
                                            range(WORKERS)) for f in batch]
    assert failures == []
    assert sorted(bb("ps", "-a", "--format", "{{.Names}}", check=True).stdout.split()) == \
        [f"soak-keep-{i}" for i in range(WORKERS)]
    assert mounts_under(bb.root) == []
    check = bb("system", "check")
    assert (check.returncode, check.stdout) == (0, "no problems found\n"), check.stdout + check.stderr
    for i in range(WORKERS):  # every survivor starts and runs as made
        started = bb("start", "-a", f"soak-keep-{i}")
        assert (started.returncode, started.stdout) == (0, "survived\n"), started.stderr
        bb("rm", f"soak-keep-{i}", check=True)
    assert container_ids(bb.root) == [] and mounts_under(bb.root) == []
    assert not [n for n in bb("network", "ls", "--format", "{{.Name}}", check=True).stdout.split()
                if n.startswith("soak-")]
    assert bb("run", "--rm", "busybox", "true").returncode == 0
