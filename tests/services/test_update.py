"""``pallet update`` refusals that the kernel makes: one clear line, the container untouched."""

from __future__ import annotations

import json
import os

from tests.services.conftest import eventually, state


def test_a_memory_limit_below_the_usage_is_one_line_and_changes_nothing(bb):
    bb("run", "-d", "--name", "upd-mem", "-m", "64m", "busybox", "sh", "-c",
       "dd if=/dev/zero of=/dev/shm/fill bs=1M count=24 2>/dev/null; touch /tmp/full; exec sleep 1000", check=True)
    assert eventually(lambda: bb("exec", "upd-mem", "test", "-e", "/tmp/full").returncode == 0)
    result = bb("update", "-m", "8m", "upd-mem")
    assert result.returncode == 1 and len(result.error_lines) == 1, result.stderr
    assert "a memory limit of 8MiB is below what the container uses now" in result.stderr
    assert state(bb, "upd-mem")["Running"]
    inspected = bb("inspect", "-f", "{{.HostConfig.Memory}}", "upd-mem", check=True)
    assert inspected.stdout.strip() == str(64 * 1024 * 1024)


def _cgroup_file(cid, controller, name):
    return open(f"/sys/fs/cgroup/{controller}/pallet/{cid}/{name}").read().strip()


def _weights_supported() -> bool:
    from pallet.kernel.cgroups import blkio_weight_supported, hierarchies

    return blkio_weight_supported(*hierarchies())


DISCARDED = "WARNING: Your kernel does not support Block I/O weight or the cgroup is not mounted. Weight discarded."


def _blkio_weight(cid):
    """The weight in the container's cgroup; without a weight file on this host (no BFQ on a kernel past
    CFQ's removal) "discarded", which run and update then said."""
    # without BFQ an older kernel offers blkio.weight; with BFQ, blkio.bfq.weight
    for name in ("blkio.weight", "blkio.bfq.weight"):
        path = f"/sys/fs/cgroup/blkio/pallet/{cid}/{name}"
        if os.path.exists(path):
            return open(path).read().split()[-1]
    assert not _weights_supported(), "the host offers a blkio weight but the container's cgroup has none"
    return "discarded"


def test_update_writes_cpu_shares_cpuset_blkio_weight_and_memory_swap_to_the_cgroup(bb):
    weighted = _weights_supported()
    started = bb("run", "-d", "--name", "upd-live", "-m", "32m", "--memory-swap", "64m", "--cpu-shares", "512",
                 "--cpuset-cpus", "0", "--blkio-weight", "300", "busybox", "sleep", "1000", check=True)
    assert (DISCARDED in started.stderr) == (not weighted), started.stderr
    cid = json.loads(bb("inspect", "upd-live", check=True).stdout)[0]["Id"]
    assert (_cgroup_file(cid, "cpu", "cpu.shares"), _cgroup_file(cid, "cpuset", "cpuset.cpus"),
            _blkio_weight(cid), _cgroup_file(cid, "memory", "memory.memsw.limit_in_bytes")) == \
        ("512", "0", "300" if weighted else "discarded", str(64 << 20))
    result = bb("update", "--cpu-shares", "256", "--cpuset-cpus", "1", "--blkio-weight", "600",
                "--memory-swap", "96m", "upd-live")
    assert (result.returncode, result.stdout) == (0, "upd-live\n"), result.stderr
    assert (DISCARDED in result.stderr) == (not weighted), result.stderr
    assert (_cgroup_file(cid, "cpu", "cpu.shares"), _cgroup_file(cid, "cpuset", "cpuset.cpus"),
            _blkio_weight(cid), _cgroup_file(cid, "memory", "memory.memsw.limit_in_bytes"),
            _cgroup_file(cid, "memory", "memory.limit_in_bytes")) == \
        ("256", "1", "600" if weighted else "discarded", str(96 << 20), str(32 << 20))
    # the process sees its new cpuset at once
    assert bb("exec", "upd-live", "sh", "-c", "grep Cpus_allowed_list /proc/self/status", check=True).stdout.split()[-1] == "1"
    # raising both limits past the old memory+swap, then cutting both below the old limit: v1 wants
    # memory <= memory+swap at every step, so the order of the writes differs and both must work
    bb("update", "-m", "128m", "--memory-swap", "256m", "--cpuset-cpus", "0-1", "upd-live", check=True)
    assert (_cgroup_file(cid, "memory", "memory.limit_in_bytes"), _cgroup_file(cid, "memory", "memory.memsw.limit_in_bytes"),
            _cgroup_file(cid, "cpuset", "cpuset.cpus")) == (str(128 << 20), str(256 << 20), "0-1")
    bb("update", "-m", "16m", "--memory-swap", "24m", "upd-live", check=True)
    assert (_cgroup_file(cid, "memory", "memory.limit_in_bytes"),
            _cgroup_file(cid, "memory", "memory.memsw.limit_in_bytes")) == (str(16 << 20), str(24 << 20))
    host = json.loads(bb("inspect", "upd-live", check=True).stdout)[0]["HostConfig"]
    assert (host["CpuShares"], host["CpusetCpus"], host["BlkioWeight"], host["Memory"], host["MemorySwap"]) == \
        (256, "0-1", 600 if weighted else 0, 16 << 20, 24 << 20)
    # the recorded values are the ones a restart applies again
    bb("restart", "-t", "0", "upd-live", check=True)
    assert (_cgroup_file(cid, "cpu", "cpu.shares"), _blkio_weight(cid),
            _cgroup_file(cid, "memory", "memory.memsw.limit_in_bytes")) == \
        ("256", "600" if weighted else "discarded", str(24 << 20))


def test_update_swap_and_weight_refusals_are_one_line_and_change_nothing(bb):
    bb("run", "-d", "--name", "upd-swap", "-m", "32m", "--memory-swap", "64m", "busybox", "sleep", "1000", check=True)
    for flags, message in ((["--memory-swap", "16m"], "Minimum memoryswap limit should be larger than memory limit"),
                           (["-m", "128m"], "Memory limit should be smaller than already set memoryswap limit, "
                                            "update the memoryswap at the same time"),
                           (["--blkio-weight", "5"], "Range of blkio weight is from 10 to 1000, got 5")):
        result = bb("update", *flags, "upd-swap")
        assert result.returncode in (1, 2) and len(result.error_lines) == 1, result.stderr
        assert message in result.stderr, result.stderr
    host = json.loads(bb("inspect", "upd-swap", check=True).stdout)[0]["HostConfig"]
    assert (host["Memory"], host["MemorySwap"], host["BlkioWeight"]) == (32 << 20, 64 << 20, 0)
    assert state(bb, "upd-swap")["Running"]
    result = bb("run", "-m", "32m", "--memory-swap", "16m", "busybox", "true")
    assert result.returncode == 125 and len(result.error_lines) == 1, result.stderr
    assert "Minimum memoryswap limit should be larger than memory limit" in result.stderr


def test_update_sets_cpus_and_pids_limit_and_minus_one_lifts_the_pids_limit(bb):
    bb("run", "-d", "--name", "upd-pids", "--cpus", "0.5", "--pids-limit", "20", "busybox", "sleep", "1000",
       check=True)
    cid = json.loads(bb("inspect", "upd-pids", check=True).stdout)[0]["Id"]
    assert (_cgroup_file(cid, "cpu", "cpu.cfs_quota_us"), _cgroup_file(cid, "pids", "pids.max")) == ("50000", "20")
    bb("update", "--cpus", "1.5", "--pids-limit", "40", "upd-pids", check=True)
    assert (_cgroup_file(cid, "cpu", "cpu.cfs_quota_us"), _cgroup_file(cid, "cpu", "cpu.cfs_period_us"),
            _cgroup_file(cid, "pids", "pids.max")) == ("150000", "100000", "40")
    bb("update", "--pids-limit", "-1", "upd-pids", check=True)
    assert _cgroup_file(cid, "pids", "pids.max") == "max"
    host = json.loads(bb("inspect", "upd-pids", check=True).stdout)[0]["HostConfig"]
    assert (host["NanoCpus"], host["PidsLimit"]) == (1_500_000_000, None)


def _v2_root(tmp_path, controllers="cpu io memory pids", children=(), root_files=()):
    mount = tmp_path / "unified"
    mount.mkdir(parents=True)
    (mount / "cgroup.controllers").write_text(controllers + "\n")
    for name in root_files:
        (mount / name).write_text("")
    for child, files in children:
        (mount / child).mkdir()
        for name in files:
            (mount / child / name).write_text("default 100\n")
    return mount


def test_the_v2_weight_probe_looks_below_the_root_where_the_weight_files_are(tmp_path):
    from pallet.kernel.cgroups import io_weight_supported

    # iocost's io.weight and BFQ's io.bfq.weight are never on the root group
    assert io_weight_supported(_v2_root(tmp_path / "a", children=[("pallet", ["io.weight"])]), [])
    assert io_weight_supported(_v2_root(tmp_path / "b", children=[("system.slice", ["io.bfq.weight"])]), [])
    # no io controller: no weight, whatever the files say
    assert not io_weight_supported(_v2_root(tmp_path / "c", "cpu memory", children=[("pallet", ["io.weight"])]), [])
    # io not enabled below the root yet: the root's evidence of a provider
    assert io_weight_supported(_v2_root(tmp_path / "d", root_files=["io.cost.qos"]), ["[none] mq-deadline"])
    assert io_weight_supported(_v2_root(tmp_path / "e", children=[("init.scope", [])]),
                               ["[none] mq-deadline kyber bfq\n", "none [mq-deadline]\n"])
    assert not io_weight_supported(_v2_root(tmp_path / "f", children=[("init.scope", ["io.max"])]),
                                   ["[none] mq-deadline kyber\n"])
    assert not io_weight_supported(tmp_path / "absent", ["bfq"])


def test_the_weight_probe_reads_v1_first_then_v2_and_the_devices_schedulers(tmp_path):
    from pallet.kernel.cgroups import blkio_weight_supported

    blkio = tmp_path / "blkio"
    blkio.mkdir()
    mount = _v2_root(tmp_path)
    assert not blkio_weight_supported({"blkio": blkio}, str(mount))   # hybrid: v1's blkio decides
    (blkio / "blkio.bfq.io_serviced").write_text("")
    assert blkio_weight_supported({"blkio": blkio}, str(mount), "weight_device")
    sys_block = tmp_path / "block"
    (sys_block / "vda" / "queue").mkdir(parents=True)
    (sys_block / "vda" / "queue" / "scheduler").write_text("[mq-deadline] kyber none\n")
    assert not blkio_weight_supported({}, str(mount), sys_block=sys_block)
    (sys_block / "vda" / "queue" / "scheduler").write_text("[mq-deadline] kyber bfq none\n")
    assert blkio_weight_supported({}, str(mount), "weight_device", sys_block=sys_block)
    assert not blkio_weight_supported({}, "", sys_block=sys_block)
