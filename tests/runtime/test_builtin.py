"""The built-in runtime runs hand-made OCI bundles for real: namespaces, rootfs, security, exit codes."""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from pathlib import Path

import pytest

SECCOMP_DENY_UNSHARE = {
    "defaultAction": "SCMP_ACT_ALLOW",
    "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
    "syscalls": [{"names": ["unshare", "no_such_syscall_here"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}],
}


def status_field(text: str, name: str) -> str:
    return next(line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith(name + ":"))


def test_pid1_is_the_command_and_hostname_is_set(runner):
    result = runner.run(["sh", "-c", "echo $$; hostname; cat /proc/1/cmdline | tr '\\0' ' '"], hostname="c0ffee")
    assert result.status == 0, result.stderr
    assert result.stdout.split("\n")[:3] == ["1", "c0ffee", "sh -c echo $$; hostname; cat /proc/1/cmdline | tr '\\0' ' ' "]


def test_default_capabilities_are_dockers_fourteen(runner):
    result = runner.run(["cat", "/proc/self/status"])
    assert status_field(result.stdout, "CapEff") == "00000000a80425fb"
    assert status_field(result.stdout, "CapBnd") == "00000000a80425fb"
    assert status_field(result.stdout, "Seccomp") == "0"


def test_non_root_user_and_groups(runner):
    result = runner.run(["sh", "-c", "id; grep CapEff /proc/self/status"],
                        user={"uid": 65534, "gid": 65534, "additionalGids": [1, 2]})
    assert result.stdout.splitlines()[0] == "uid=65534(nobody) gid=65534(nobody) groups=1,2"
    assert status_field(result.stdout, "CapEff") == "0000000000000000"


def test_seccomp_filter_denies_unshare_and_skips_unknown_names(runner):
    result = runner.run(["sh", "-c", "grep '^Seccomp:' /proc/self/status; unshare -U true; echo rc=$?"],
                        seccomp=SECCOMP_DENY_UNSHARE)
    assert status_field(result.stdout, "Seccomp") == "2"
    assert "rc=1" in result.stdout
    assert "Operation not permitted" in result.stderr


def test_seccomp_with_no_new_privileges(runner):
    result = runner.run(["sh", "-c", "grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status; unshare -U true"],
                        seccomp=SECCOMP_DENY_UNSHARE, noNewPrivileges=True)
    assert status_field(result.stdout, "Seccomp") == "2"
    assert status_field(result.stdout, "NoNewPrivs") == "1"
    assert result.status == 1


def test_masked_and_readonly_paths(runner):
    script = ("wc -c < /proc/timer_list; ls /sys/firmware | wc -l; "
              "echo x > /proc/sys/kernel/hostname || echo ro-ok; mount -t tmpfs none /mnt || echo mount-denied")
    result = runner.run(["sh", "-c", script])
    assert result.stdout.split() == ["0", "0", "ro-ok", "mount-denied"], result.stderr
    assert "Read-only file system" in result.stderr


def test_readonly_rootfs(runner):
    result = runner.run(["sh", "-c", "touch /x"], root={"path": "rootfs", "readonly": True})
    assert result.status == 1
    assert "Read-only file system" in result.stderr


def test_minimal_dev_and_loopback_up(runner):
    result = runner.run(["sh", "-c", "ls /dev; ip link show lo; ip link | grep -c '^[0-9]'"])
    names = set(result.stdout.split())
    assert {"null", "zero", "full", "random", "urandom", "tty", "ptmx", "pts", "shm", "mqueue"} <= names
    assert "<LOOPBACK,UP,LOWER_UP>" in result.stdout
    assert result.stdout.split()[-1] == "1"  # only lo in a new network namespace


def test_rlimit_is_clamped_to_our_hard_limit(runner):
    import resource

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    limits = [{"type": "RLIMIT_NOFILE", "hard": 1048576, "soft": 1048576}]
    result = runner.run(["sh", "-c", "ulimit -n; ulimit -Hn"], rlimits=limits)
    assert result.stdout.split() == [str(hard), str(hard)]


@pytest.mark.parametrize("args,code,message", [
    (["true"], 0, ""),
    (["false"], 1, ""),
    (["/etc/passwd"], 126, 'exec: "/etc/passwd": permission denied'),
    (["/etc"], 126, 'exec: "/etc": is a directory'),
    (["no-such-command"], 127, 'exec: "no-such-command": executable file not found in $PATH'),
    (["/no/such/file"], 127, 'exec: "/no/such/file": stat /no/such/file: no such file or directory'),
])
def test_exit_codes(runner, args, code, message):
    result = runner.run(args)
    assert (result.status, result.stderr) == (code, message)


def test_killed_container_exits_137(runner):
    container_id, pid, _out, _err = runner.start(["sleep", "60"])
    assert runner.runtime.alive(container_id)
    runner.runtime.kill(container_id, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    assert os.WTERMSIG(status) == signal.SIGKILL
    assert not runner.runtime.alive(container_id)


def test_memory_limit_oom_kill_is_detected(runner):
    from pallet.kernel.cgroups import Cgroup

    seen = {}

    def look(container_id):
        seen["oom"] = Cgroup.from_dirs(runner.runtime.state(container_id).cgroup).oom_killed()

    limit = 32 * 1024 * 1024
    result = runner.run(["dd", "if=/dev/zero", "of=/dev/null", "bs=100M", "count=1"], before_delete=look,
                        resources={"memory": {"limit": limit, "swap": limit}})
    assert result.status == 137
    assert seen["oom"] is True


def test_pids_limit_stops_a_fork_bomb(runner):
    # The inner shell forks until the kernel refuses, then dies; the outer one reports the count.
    script = ("sh -c 'while true; do sleep 30 & done'; "
              "read n < /sys/fs/cgroup/pids/pids.current; echo $n; kill -9 -1")
    result = runner.run(["sh", "-c", script], resources={"pids": {"limit": 10}})
    assert 5 <= int(result.stdout.split()[0]) <= 10
    assert "can't fork" in result.stderr


def test_cgroup_removed_and_nothing_mounted_after_delete(runner):
    container_id, pid, _out, _err = runner.start(["sleep", "60"])
    dirs = runner.runtime.state(container_id).cgroup
    assert dirs and all(Path(d).is_dir() for d in dirs.values())
    assert set(Path(dirs["memory"], "cgroup.procs").read_text().split()) == {str(pid)}
    runner.runtime.delete(container_id, force=True)
    os.waitpid(pid, 0)
    assert not any(Path(d).exists() for d in dirs.values())
    assert not (runner.runtime.state_dir / container_id).exists()
    assert str(runner.tmp) not in Path("/proc/self/mountinfo").read_text()


def test_exec_joins_the_running_container(runner):
    container_id, pid, _out, _err = runner.start(["sleep", "60"], hostname="joined")
    read, write = os.pipe()
    exec_pid = runner.runtime.exec(
        container_id, {"args": ["sh", "-c", "echo $$; hostname; cat /proc/1/cmdline; echo; grep CapEff /proc/self/status"]},
        (0, write, 2))
    os.close(write)
    output = b""
    while chunk := os.read(read, 4096):
        output += chunk
    os.close(read)
    _, status = os.waitpid(exec_pid, 0)
    lines = output.decode().splitlines()
    assert status == 0
    assert lines[0] != "1" and lines[1] == "joined" and lines[2].startswith("sleep")
    assert lines[3].split()[1] == "00000000a80425fb"
    cgroup = Path(runner.runtime.state(container_id).cgroup["pids"])
    assert cgroup.is_dir()


def test_pause_and_resume_freeze_the_cgroup(runner):
    container_id, _pid, _out, _err = runner.start(["sleep", "60"])
    freezer = Path(runner.runtime.state(container_id).cgroup["freezer"], "freezer.state")
    runner.runtime.pause(container_id)
    assert freezer.read_text().strip() == "FROZEN"
    runner.runtime.resume(container_id)
    assert freezer.read_text().strip() == "THAWED"


def test_terminal_master_is_sent_over_the_console_socket(runner):
    from pallet.plugins.runtime.builtin import receive_console

    path = str(runner.tmp / "console.sock")
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(path)
        server.listen(1)
        container_id = runner.new_id()
        bundle = runner.bundle(container_id, ["sh", "-c", "tty; stty size; echo hello"], terminal=True,
                               consoleSize={"height": 33, "width": 101})
        pid = runner.runtime.run(container_id, bundle, (0, 1, 2), console_socket=path)
        master = receive_console(server)
    output = b""
    deadline = time.monotonic() + 10
    while b"hello" not in output and time.monotonic() < deadline:
        output += os.read(master, 4096)
    os.waitpid(pid, 0)
    os.close(master)
    assert output.split() == [b"/dev/pts/0", b"33", b"101", b"hello"]


def test_user_namespace_with_mappings(runner):
    namespaces = [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount", "cgroup", "user")]
    mapping = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    result = runner.run(["sh", "-c", "id -u; cat /proc/self/uid_map; stat -c %u /proc/self/exe 2>/dev/null; echo $$"],
                        namespaces=namespaces, uidMappings=mapping, gidMappings=mapping)
    assert result.status == 0, result.stderr
    assert result.stdout.split()[:4] == ["0", "0", "100000", "65536"]
    assert result.stdout.split()[-1] == "1"


def test_sysctl_is_written_in_the_container(runner):
    result = runner.run(["cat", "/proc/sys/net/ipv4/ip_forward"], sysctl={"net.ipv4.ip_forward": "1"})
    assert result.stdout.strip() == "1"
    assert Path("/proc/sys/net/ipv4/ip_forward").read_text().strip() in ("0", "1")


def test_ambient_capabilities_survive_a_non_root_user(runner):
    capabilities = {k: ["CAP_NET_BIND_SERVICE"] for k in ("bounding", "effective", "permitted", "inheritable", "ambient")}
    result = runner.run(["grep", "-E", "^Cap(Eff|Amb):", "/proc/self/status"], capabilities=capabilities,
                        user={"uid": 1000, "gid": 1000})
    assert result.stdout.split() == ["CapEff:", "0000000000000400", "CapAmb:", "0000000000000400"]


def test_apparmor_profile_on_a_kernel_without_apparmor_is_a_clear_error(runner):
    if os.path.isdir("/sys/kernel/security/apparmor"):
        pytest.skip("AppArmor is enabled here: the live profile test is tests/security/test_lsm.py")
    result = runner.run(["true"], apparmorProfile="docker-default")
    assert result.status == 125
    assert result.stderr == "AppArmor profile 'docker-default' was requested but AppArmor is not enabled in this kernel"


def test_joining_namespaces_by_path(runner):
    ours = {ns: os.readlink(f"/proc/self/ns/{ns}") for ns in ("net", "ipc", "pid_for_children")}
    first, first_pid, _out, _err = runner.start(["sleep", "60"], hostname="first")
    namespaces = [{"type": "mount"}, {"type": "uts"}, {"type": "cgroup"},
                  {"type": "network", "path": f"/proc/{first_pid}/ns/net"},
                  {"type": "ipc", "path": f"/proc/{first_pid}/ns/ipc"},
                  {"type": "pid", "path": f"/proc/{first_pid}/ns/pid"}]
    result = runner.run(["sh", "-c", "readlink /proc/self/ns/net; readlink /proc/self/ns/ipc; cat /proc/1/cmdline; echo; echo $$"],
                        namespaces=namespaces)
    assert result.status == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:2] == [os.readlink(f"/proc/{first_pid}/ns/net"), os.readlink(f"/proc/{first_pid}/ns/ipc")]
    assert lines[2].startswith("sleep") and lines[3] != "1"
    # and the caller came back to its own namespaces
    assert {ns: os.readlink(f"/proc/self/ns/{ns}") for ns in ours} == ours


def test_privileged_gets_every_capability_this_host_allows(runner):
    from pallet.kernel import linux
    from pallet.plugins.runtime.builtin import caps

    everything = {k: ["CAP_" + name for name in caps.NAMES] for k in ("bounding", "effective", "permitted")}
    result = runner.run(["grep", "^CapEff:", "/proc/self/status"], capabilities=everything)
    assert result.status == 0, result.stderr
    assert int(result.stdout.split()[1], 16) == linux.capget()[1]


def test_signals_are_not_ignored_or_blocked_in_the_container(runner):
    import signal as sig

    sig.pthread_sigmask(sig.SIG_BLOCK, [sig.SIGUSR1])
    try:
        result = runner.run(["grep", "-E", "^Sig(Blk|Ign):", "/proc/self/status"])
    finally:
        sig.pthread_sigmask(sig.SIG_UNBLOCK, [sig.SIGUSR1])
    assert result.stdout.split() == ["SigBlk:", "0000000000000000", "SigIgn:", "0000000000000000"]


def test_stdio_may_be_any_permutation_of_fds(runner):
    import subprocess

    script = "import os, sys; sys.path.insert(0, %r); " % str(Path(__file__).parent)
    script += (
        "from pathlib import Path; import ocispec; from pallet.plugins.runtime.builtin import PalletRuntime; "
        "from pallet.kernel.drivers import DriverContext; "
        "b = ocispec.write_bundle(Path(%r), Path(%r), ocispec.spec(['sh', '-c', 'echo out; echo err >&2'])); "
        "rt = PalletRuntime(DriverContext(Path(%r))); pid = rt.run(%r, b, (0, 2, 1)); os.waitpid(pid, 0); rt.delete(%r)"
    ) % (str(runner.tmp / "perm"), str(runner.rootfs), str(runner.tmp / "perm-state"), runner.new_id(), runner.ids[-1])
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                          cwd=str(Path(__file__).resolve().parents[2]))
    assert (proc.stdout, proc.stderr) == ("err\n", "out\n")


def test_oom_score_adj_and_cgroup_namespace(runner):
    result = runner.run(["sh", "-c", "cat /proc/self/oom_score_adj; grep memory /proc/self/cgroup"], oomScoreAdj=500)
    score, memory = result.stdout.split()
    assert score == "500" and memory.endswith(":memory:/")  # the container sees its cgroup as the root


def test_exec_with_a_terminal(runner):
    from pallet.plugins.runtime.builtin import receive_console

    container_id, _pid, _out, _err = runner.start(["sleep", "60"])
    path = str(runner.tmp / "exec-console.sock")
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(path)
        server.listen(1)
        exec_pid = runner.runtime.exec(container_id, {"args": ["sh", "-c", "tty; echo done"], "terminal": True},
                                       (0, 1, 2), console_socket=path)
        master = receive_console(server)
    output = b""
    deadline = time.monotonic() + 10
    while b"done" not in output and time.monotonic() < deadline:
        output += os.read(master, 4096)
    os.waitpid(exec_pid, 0)
    os.close(master)
    assert output.split() == [b"/dev/pts/0", b"done"]


@pytest.mark.timeout(120)
def test_run_while_other_python_threads_are_busy(runner):
    import threading

    stop = threading.Event()

    def spin():
        while not stop.is_set():
            sum(range(100))

    threads = [threading.Thread(target=spin) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        results = [runner.run(["sh", "-c", "echo $$"]) for _ in range(5)]
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert [(r.status, r.stdout) for r in results] == [(0, "1\n")] * 5


def test_failed_start_leaves_no_state_or_cgroup(runner):
    result = runner.run(["no-such-command"])
    assert result.status == 127
    container_id = runner.ids[-1]
    assert not (runner.runtime.state_dir / container_id).exists()
    assert not any(Path(f"/sys/fs/cgroup/{c}/pallet/{container_id}").exists() for c in ("memory", "pids", "cpu"))


def test_delete_cleans_up_a_start_that_died_half_way(runner):
    from pallet.kernel.cgroups import Cgroup
    from pallet.plugins.runtime.builtin import RuntimeState

    container_id = runner.new_id()
    group = Cgroup.for_spec(container_id, {})
    group.create()  # as if the caller was killed between creating the cgroup and starting the process
    runner.runtime._save(RuntimeState(container_id, 0, 0, str(runner.tmp), group.dirs()))
    assert not runner.runtime.alive(container_id)
    runner.runtime.delete(container_id)
    assert not any(Path(d).exists() for d in group.dirs().values())


def test_joining_a_namespace_that_does_not_exist_is_a_clear_error(runner):
    namespaces = [{"type": "mount"}, {"type": "network", "path": "/run/no-such-netns"}]
    result = runner.run(["true"], namespaces=namespaces)
    assert (result.status, result.stderr) == (125, "cannot open /run/no-such-netns: No such file or directory")
    assert not (runner.runtime.state_dir / runner.ids[-1]).exists()


@pytest.mark.parametrize("propagation", ["rshared", "rslave", "rprivate"])
def test_rootfs_propagation(runner, propagation):
    result = runner.run(["awk", "$5 == \"/\"", "/proc/self/mountinfo"],
                        linux_rootfsPropagation=propagation)
    assert result.status == 0, result.stderr
    assert ("shared:" in result.stdout) == (propagation == "rshared")


def test_a_mount_that_fails_is_reported_with_the_operation(runner):
    result = runner.run(["true"], mounts=[{"destination": "/x", "type": "nosuchfs", "source": "none"}])
    assert result.status == 125
    assert result.stderr.startswith("container init failed: mount nosuchfs on ")
    assert result.stderr.endswith("/x: No such device")


def test_cpu_quota_throttles_a_busy_loop(runner):
    script = "i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done; cat /sys/fs/cgroup/cpu/cpu.stat"
    result = runner.run(["sh", "-c", script], resources={"cpu": {"quota": 10000, "period": 100000}})
    stats = dict(line.split() for line in result.stdout.splitlines())
    assert int(stats["nr_throttled"]) > 0


def test_exec_into_a_user_namespaced_container(runner):
    namespaces = [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount", "cgroup", "user")]
    mapping = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    container_id, pid, _out, _err = runner.start(["sleep", "60"], namespaces=namespaces, uidMappings=mapping,
                                                 gidMappings=mapping)
    read, write = os.pipe()
    exec_pid = runner.runtime.exec(container_id, {"args": ["sh", "-c", "id -u; cat /proc/self/uid_map"],
                                                  "user": {"uid": 1000, "gid": 1000}}, (0, write, 2))
    os.close(write)
    output = b""
    while chunk := os.read(read, 4096):
        output += chunk
    os.close(read)
    assert os.waitstatus_to_exitcode(os.waitpid(exec_pid, 0)[1]) == 0
    assert output.decode().split() == ["1000", "0", "100000", "65536"]
