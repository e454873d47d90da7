"""Bad input and faults: one clear error line, the right exit code, nothing created or left mounted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.containers.conftest import container_ids, mounts_under, record


def test_nonexistent_image_is_an_error_and_creates_nothing(bb):
    never = bb("run", "--rm", "--pull", "never", "nosuchimage", "true")
    assert (never.returncode, never.error_lines) == (125, ["Error: No such image: nosuchimage"])
    # Default --pull missing tries a pull first, as Docker does; here no registry is reachable.
    missing = bb("run", "--rm", "nosuchimage", "true")
    assert missing.returncode == 125
    assert missing.error_lines[0] == "Unable to find image 'nosuchimage:latest' locally"
    assert len(missing.error_lines) == 2 and missing.error_lines[1].startswith("Error: ")
    assert container_ids(bb.root) == []


def test_missing_command_is_127_and_not_executable_is_126(bb):
    missing = bb("run", "--rm", "busybox", "/no/such/cmd")
    assert missing.returncode == 127
    assert missing.error_lines == ['Error: exec: "/no/such/cmd": no such file or directory'] or \
        "not found" in missing.stderr or "no such file" in missing.stderr
    not_exec = bb("run", "--rm", "busybox", "/etc/passwd")
    assert not_exec.returncode == 126
    assert len(not_exec.error_lines) == 1 and "permission denied" in not_exec.stderr
    assert container_ids(bb.root) == []
    assert mounts_under(bb.root) == []


def test_missing_command_without_rm_leaves_an_exited_container_and_no_mount(bb):
    result = bb("run", "--name", "bad", "busybox", "nosuchcmd")
    assert result.returncode == 127
    assert record(bb, "bad")["State"]["ExitCode"] == 127
    assert mounts_under(bb.root) == []


@pytest.mark.parametrize("spec", ["/a:b", "/a:/b:xyz", ":/b", "/a:/b:ro:rw", "a b:/c"])
def test_bad_volume_spec_is_a_usage_error(bb, spec):
    result = bb("run", "--rm", "-v", spec, "busybox", "true")
    assert result.returncode == 125, result.stderr  # Docker's code for run's own failures
    assert len(result.error_lines) == 1 and result.stderr.startswith("Error: invalid")
    assert container_ids(bb.root) == []


def test_bind_mount_of_missing_source_is_refused(bb, tmp_path):
    result = bb("run", "--rm", "--mount", f"type=bind,source={tmp_path}/nope,target=/x", "busybox", "true")
    assert result.returncode == 125
    assert "bind source path does not exist" in result.stderr


@pytest.mark.parametrize("value", ["32x", "lots", "-5m", "1.2.3g"])
def test_bad_memory_value_is_a_usage_error(bb, value):
    result = bb("run", "--rm", "-m", value, "busybox", "true")
    assert result.returncode == 125
    assert result.error_lines == [f"Error: invalid argument \"{value}\" for \"-m, --memory\" flag: invalid size: '{value}'"]
    assert container_ids(bb.root) == []


def test_memory_below_docker_minimum_is_refused(bb):
    result = bb("run", "--rm", "-m", "1m", "busybox", "true")
    assert result.returncode == 125 and "Minimum memory limit allowed is 6MB" in result.stderr


def test_duplicate_name_is_a_conflict(bb):
    bb("create", "--name", "dup", "busybox", "true", check=True)
    result = bb("run", "--name", "dup", "busybox", "true")
    assert result.returncode == 125
    assert len(result.error_lines) == 1 and 'The container name "/dup" is already in use' in result.stderr
    assert len(container_ids(bb.root)) == 1


def test_rm_of_running_container_needs_force(bb):
    bb("run", "-d", "--name", "busy", "busybox", "sleep", "60", check=True)
    result = bb("rm", "busy")
    assert result.returncode == 1
    assert "You cannot remove a running container" in result.stderr
    assert record(bb, "busy")["State"]["Running"] is True
    assert bb("rm", "-f", "busy").returncode == 0
    assert container_ids(bb.root) == [] and mounts_under(bb.root) == []


def test_exec_into_stopped_container_is_refused(bb):
    bb("run", "--name", "done", "busybox", "true", check=True)
    result = bb("exec", "done", "echo", "hi")
    assert result.returncode == 125
    assert result.error_lines == [f"Error: Container {record(bb, 'done')['Id']} is not running"]


def test_unknown_container_uses_dockers_message(bb):
    for command in (["stop", "ghost"], ["rm", "ghost"], ["logs", "ghost"], ["inspect", "ghost"]):
        result = bb(*command)
        assert result.returncode == 1
        assert "No such container: ghost" in result.stderr or "No such object: ghost" in result.stderr


def test_killing_the_monitor_then_ps_and_rm_recover(bb):
    bb("run", "-d", "--name", "orphan", "busybox", "sleep", "300", check=True)
    info = record(bb, "orphan")
    import json
    data = json.loads((bb.root / "containers" / info["Id"] / "container.json").read_text())
    os.kill(data["monitor_pid"], signal.SIGKILL)
    deadline = time.monotonic() + 10
    while os.path.exists(f"/proc/{data['monitor_pid']}") and time.monotonic() < deadline:
        with open(f"/proc/{data['monitor_pid']}/stat") as handle:
            if handle.read().rsplit(")", 1)[1].split()[0] == "Z":
                break
        time.sleep(0.05)
    # Nobody supervises the container now: the next command stops it and records the exit
    # (tests/hardening/test_unsupervised.py has the details).
    ps = bb("ps", "-a", "--format", "{{.Names}} {{.State}}")
    assert ps.stdout == "orphan exited\n"
    assert record(bb, "orphan")["State"]["ExitCode"] == 137
    assert mounts_under(bb.root) == []
    assert bb("rm", "orphan").returncode == 0
    assert container_ids(bb.root) == [] and mounts_under(bb.root) == []
    assert not os.path.exists(f"/sys/fs/cgroup/memory/pallet/{info['Id']}")


def test_twenty_parallel_run_rm_all_succeed(bb):
    def one(i):
        return bb("run", "--rm", "--name", f"par{i}", "busybox", "echo", f"n{i}", timeout=120)

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(one, range(20)))
    for i, result in enumerate(results):
        assert (result.returncode, result.stdout) == (0, f"n{i}\n"), result.stderr
    assert container_ids(bb.root) == []
    assert bb("ps", "-a", "-q").stdout == ""
    assert mounts_under(bb.root) == []


def test_after_a_reboot_a_reused_pid_is_not_mistaken_for_the_container(bb):
    """Simulate a reboot: the record says running, but its pid now belongs to another process."""
    import json

    bb("create", "--name", "stale", "busybox", "true", check=True)
    path = bb.root / "containers" / record(bb, "stale")["Id"] / "container.json"
    data = json.loads(path.read_text())
    data.update(status="running", pid=os.getpid(), pid_start_time=1, monitor_pid=1, monitor_start_time=1)
    path.write_text(json.dumps(data))
    assert bb("ps", "-a", "--format", "{{.Names}} {{.Status}}").stdout.startswith("stale Exited (255)")
    assert bb("rm", "stale").returncode == 0
    assert container_ids(bb.root) == []
