"""pause/unpause, top, stats, diff, export, update and resize through the Engine API, by the docker CLI and docker-py."""

from __future__ import annotations

import io
import json
import tarfile
import time
from pathlib import Path

from pallet.kernel.api import stats as api_stats


def _run(api, name: str, *args: str) -> str:
    result = api.docker("run", "-d", "--name", name, *args)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_pause_and_unpause_freeze_the_container_and_refuse_twice(api):
    _run(api, "ops-p", "busybox", "sleep", "100")
    assert api.docker("pause", "ops-p").returncode == 0
    assert api.docker("inspect", "-f", "{{.State.Status}}", "ops-p").stdout == "paused\n"
    again = api.docker("pause", "ops-p")
    assert again.returncode == 1 and "is already paused" in again.stderr
    assert api.docker("unpause", "ops-p").returncode == 0
    assert api.docker("inspect", "-f", "{{.State.Status}}", "ops-p").stdout == "running\n"
    client = api.client()
    container = client.containers.get("ops-p")
    container.pause()
    container.reload()
    assert container.status == "paused"
    container.unpause()
    not_paused = api.request("POST", "/containers/ops-p/unpause")
    assert not_paused[0] == 409 and "is not paused" in not_paused[2]["message"]
    actions = [e["Action"] for e in client.events(since=0, until=int(time.time()) + 1, decode=True,
                                                  filters={"event": ["pause", "unpause"]})]
    assert actions == ["pause", "unpause", "pause", "unpause"]
    assert api.docker("rm", "-f", "ops-p").returncode == 0
    assert api.request("POST", "/containers/ops-p/pause")[0] == 404


def test_top_lists_the_container_processes_with_ps_args(api):
    _run(api, "ops-top", "busybox", "sh", "-c", "sleep 101 & exec sleep 100")
    result = api.docker("top", "ops-top")
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.split()[:3] == ["UID", "PID", "PPID"] and "CMD" in header
    commands = sorted(row.split(None, 7)[-1] for row in rows)
    while commands != ["sleep 100", "sleep 101"]:  # the shell forks the background sleep first, then execs
        commands = sorted(r.split(None, 7)[-1] for r in api.docker("top", "ops-top").stdout.splitlines()[1:])
    top = api.client().containers.get("ops-top").top(ps_args="-o pid,args")
    assert top["Titles"] == ["PID", "COMMAND"]
    assert sorted(p[1] for p in top["Processes"]) == ["sleep 100", "sleep 101"]
    assert api.docker("create", "--name", "ops-idle", "busybox", "true").returncode == 0
    stopped = api.docker("top", "ops-idle")
    assert stopped.returncode == 1 and "is not running" in stopped.stderr
    assert api.docker("rm", "-f", "ops-top", "ops-idle").returncode == 0


def test_stats_no_stream_prints_a_row_and_docker_py_gets_docker_json(api):
    cid = _run(api, "ops-st", "--memory", "64m", "busybox", "sh", "-c", "exec sleep 100")
    result = api.docker("stats", "--no-stream", "--format", "{{.Name}} {{.MemUsage}} {{.PIDs}}", "ops-st")
    assert result.returncode == 0, result.stderr
    name, usage, _slash, limit, pids = result.stdout.split()
    assert (name, limit, pids) == ("ops-st", "64MiB", "1") and usage.endswith("B")
    table = api.docker("stats", "--no-stream")
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[0].split()[:4] == ["CONTAINER", "ID", "NAME", "CPU"]
    assert table.stdout.splitlines()[1].split()[:2] == [cid[:12], "ops-st"]

    container = api.client().containers.get("ops-st")
    once = container.stats(stream=False)
    assert once["id"] == cid and once["name"] == "/ops-st"
    assert once["memory_stats"]["limit"] == 64 << 20 and once["memory_stats"]["usage"] > 0
    assert once["cpu_stats"]["system_cpu_usage"] > once["precpu_stats"]["system_cpu_usage"] > 0
    assert once["pids_stats"]["current"] == 1 and once["cpu_stats"]["online_cpus"] >= 1
    assert "total_inactive_file" in once["memory_stats"]["stats"]  # cgroup v1 here
    shot = container.stats(stream=False, one_shot=True)
    assert shot["precpu_stats"]["cpu_usage"]["total_usage"] == 0 and shot["read"] != api_stats.ZERO_TIME
    stream = container.stats(stream=True, decode=True)
    first, second = next(stream), next(stream)
    assert second["precpu_stats"] == first["cpu_stats"] and second["preread"] == first["read"]
    assert api.docker("rm", "-f", "ops-st").returncode == 0
    for _rest in stream:  # the stream ends once the container is removed
        pass


def test_a_stats_stream_follows_a_container_its_restart_policy_started_again(api):
    """One ``stats?stream=1`` across a restart: samples read after the new start count the new process's
    network traffic and pids (not the first pid's, gone, nor zeros)."""
    from datetime import datetime

    script = "ping -c 2 -W 1 $(ip route | awk '/default/ {print $3}'); sleep 4; exit 1"
    _run(api, "ops-st-rs", "--network", "bridge", "--restart", "always", "busybox", "sh", "-c", script)
    client = api.client()
    container = client.containers.get("ops-st-rs")
    first_pid = container.attrs["State"]["Pid"]
    stream = container.stats(stream=True, decode=True)

    def stamp(text: str) -> float:
        return datetime.fromisoformat(text[:26].rstrip("Z") + "+00:00").timestamp()

    for sample in stream:
        container.reload()
        state = container.attrs["State"]
        if state["Pid"] != first_pid and state["Running"] and stamp(sample["read"]) > stamp(state["StartedAt"]) + 1:
            break   # a sample read a second after the restarted process began
    assert sample["pids_stats"]["current"] >= 1, sample
    assert sample["networks"]["eth0"]["tx_packets"] >= 2, sample.get("networks")
    assert container.attrs["RestartCount"] >= 1
    assert api.docker("rm", "-f", "ops-st-rs").returncode == 0
    for _rest in stream:
        pass


def test_stats_of_a_stopped_container_are_zeros(api):
    client = api.client()
    container = client.containers.create("busybox", ["true"], name="ops-zero")
    sample = container.stats(stream=False)
    assert sample["read"] == api_stats.ZERO_TIME and sample["memory_stats"] == {}
    container.remove()


def test_docker_diff_lists_changes_and_export_tars_the_rootfs(api, tmp_path):
    assert api.docker("run", "--name", "ops-fs", "busybox", "sh", "-c",
                      "mkdir /made && echo hi > /made/file && rm /bin/ls").returncode == 0
    diff = api.docker("diff", "ops-fs")
    assert diff.returncode == 0, diff.stderr
    lines = set(diff.stdout.splitlines())
    assert {"A /made", "A /made/file", "D /bin/ls"} <= lines and "C /bin" in lines
    changes = {c["Path"]: c["Kind"] for c in api.client().api.diff("ops-fs")}
    assert changes["/made"] == 1 and changes["/bin/ls"] == 2 and changes["/bin"] == 0

    out = tmp_path / "fs.tar"
    exported = api.docker("export", "-o", str(out), "ops-fs")
    assert exported.returncode == 0, exported.stderr
    with tarfile.open(out) as tar:
        names = set(tar.getnames())
        assert "made/file" in names and "bin/busybox" in names and "bin/ls" not in names
        assert tar.extractfile("made/file").read() == b"hi\n"
    chunks = b"".join(api.client().containers.get("ops-fs").export())
    with tarfile.open(fileobj=io.BytesIO(chunks)) as tar:
        assert "made/file" in tar.getnames()
    assert api.docker("rm", "ops-fs").returncode == 0
    assert api.request("GET", "/containers/ops-fs/export")[0] == 404


def test_docker_update_changes_limits_live_and_the_restart_policy(api):
    cid = _run(api, "ops-up", "--memory", "64m", "busybox", "sleep", "100")
    result = api.docker("update", "--memory", "96m", "--memory-swap", "192m", "--cpus", "0.5",
                        "--restart", "on-failure:3", "ops-up")
    assert result.returncode == 0, result.stderr
    host = api.client().containers.get("ops-up").attrs["HostConfig"]
    assert (host["Memory"], host["NanoCpus"]) == (96 << 20, 500_000_000)
    assert host["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 3}
    memory = next(Path("/sys/fs/cgroup/memory").glob(f"**/{cid}"))
    assert int((memory / "memory.limit_in_bytes").read_text()) == 96 << 20
    cpu = next(Path("/sys/fs/cgroup/cpu").glob(f"**/{cid}"))
    assert int((cpu / "cpu.cfs_quota_us").read_text()) * 2 == int((cpu / "cpu.cfs_period_us").read_text())
    api.client().api.update_container("ops-up", mem_limit="80m", memswap_limit="192m")
    assert int((memory / "memory.limit_in_bytes").read_text()) == 80 << 20
    bad = api.request("POST", "/containers/ops-up/update", {"NanoCpus": 10**9, "CpuQuota": 50000})
    assert bad[0] == 400 and "Conflicting options" in bad[2]["message"]
    assert api.request("POST", "/containers/ops-up/update", {"Memory": "lots"})[0] == 400
    # a weight this host cannot apply is dropped with dockerd's warning, not recorded as if it held
    from pallet.kernel.cgroups import WEIGHT_DISCARDED, blkio_weight_supported, hierarchies

    status, _headers, body = api.request("POST", "/containers/ops-up/update", {"BlkioWeight": 300})
    weighted = blkio_weight_supported(*hierarchies())
    assert (status, body["Warnings"]) == (200, [] if weighted else [WEIGHT_DISCARDED])
    assert api.client().containers.get("ops-up").attrs["HostConfig"]["BlkioWeight"] == (300 if weighted else 0)
    created = api.request("POST", "/containers/create?name=ops-weight", {"Image": "busybox", "Cmd": ["true"],
                                                                        "HostConfig": {"BlkioWeight": 200}})
    assert (created[0], created[2]["Warnings"]) == (201, [] if weighted else [WEIGHT_DISCARDED])
    assert api.client().containers.get("ops-weight").attrs["HostConfig"]["BlkioWeight"] == (200 if weighted else 0)
    assert api.docker("rm", "-f", "ops-up", "ops-weight").returncode == 0


def test_resize_sets_the_window_size_of_a_tty_container(api):
    _run(api, "ops-tty", "-t", "busybox", "sh", "-c", "while true; do stty size; sleep 0.1; done")
    client = api.client()
    client.api.resize("ops-tty", height=33, width=101)
    logs = b""
    while b"33 101" not in logs:
        logs = client.containers.get("ops-tty").logs()
    assert api.request("POST", "/containers/ops-tty/resize?h=x&w=80")[0] == 400
    assert api.docker("rm", "-f", "ops-tty").returncode == 0
    assert api.docker("create", "--name", "ops-notty", "busybox", "true").returncode == 0
    assert api.request("POST", "/containers/ops-notty/resize?h=10&w=10")[0] == 409
    assert api.docker("rm", "ops-notty").returncode == 0


def test_stats_read_cgroup_v2_files(tmp_path):
    (tmp_path / "cpu.stat").write_text("usage_usec 2500\nuser_usec 2000\nsystem_usec 500\n"
                                       "nr_periods 4\nnr_throttled 1\nthrottled_usec 7\n")
    (tmp_path / "memory.current").write_text("4096\n")
    (tmp_path / "memory.max").write_text("max\n")
    (tmp_path / "memory.stat").write_text("anon 1024\nfile 2048\ninactive_file 512\n")
    (tmp_path / "io.stat").write_text("8:0 rbytes=100 wbytes=200 rios=3 wios=4 dbytes=0 dios=0\n")
    (tmp_path / "pids.current").write_text("2\n")
    (tmp_path / "pids.max").write_text("max\n")
    counters = api_stats.cgroup_v2(tmp_path)
    assert counters["cpu_stats"]["cpu_usage"] == {"total_usage": 2_500_000, "usage_in_kernelmode": 500_000,
                                                  "usage_in_usermode": 2_000_000}
    assert counters["cpu_stats"]["throttling_data"] == {"periods": 4, "throttled_periods": 1, "throttled_time": 7000}
    assert counters["memory_stats"] == {"usage": 4096, "limit": api_stats.host_memory(),
                                        "stats": {"anon": 1024, "file": 2048, "inactive_file": 512}}
    assert counters["blkio_stats"]["io_service_bytes_recursive"] == [
        {"major": 8, "minor": 0, "op": "read", "value": 100}, {"major": 8, "minor": 0, "op": "write", "value": 200}]
    assert counters["pids_stats"] == {"current": 2}
    (tmp_path / "memory.max").write_text("1048576\n")
    assert api_stats.cgroup_v2(tmp_path)["memory_stats"]["limit"] == 1 << 20
    json.dumps(counters)


def test_system_cpu_usage_and_network_counters_parse_proc(tmp_path):
    hz = __import__("os").sysconf("SC_CLK_TCK")
    assert api_stats.system_cpu_usage("cpu  10 0 5 100 0 0 0 0 0 0\ncpu0 1 2 3\n") == 115 * 1_000_000_000 // hz
    (tmp_path / "7" / "net").mkdir(parents=True)
    (tmp_path / "7" / "net" / "dev").write_text(
        "Inter-|   Receive\n face |bytes packets errs drop fifo frame compressed multicast|bytes ...\n"
        "    lo: 50 1 0 0 0 0 0 0 50 1 0 0 0 0 0 0\n"
        "  eth0: 900 9 1 2 0 0 0 0 300 3 4 5 0 0 0 0\n")
    assert api_stats.networks(7, tmp_path) == {"eth0": {
        "rx_bytes": 900, "rx_packets": 9, "rx_errors": 1, "rx_dropped": 2,
        "tx_bytes": 300, "tx_packets": 3, "tx_errors": 4, "tx_dropped": 5}}


def test_console_size_at_create_is_the_pty_size_from_the_start(api):
    status, _h, body = api.request("POST", "/containers/create?name=ops-cs", {
        "Image": "busybox", "Cmd": ["stty", "size"], "Tty": True, "HostConfig": {"ConsoleSize": [21, 71]}})
    assert status == 201, body
    client = api.client()
    container = client.containers.get("ops-cs")
    container.start()
    assert container.wait()["StatusCode"] == 0
    assert container.logs() == b"21 71\r\n"
    container.remove()
