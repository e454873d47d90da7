"""``pallet run``: the main job, what a default container looks like inside, and run's flags."""

from __future__ import annotations

import json
import os
import socket

from tests.containers.conftest import container_ids, record


def test_run_rm_echo_hello_prints_hello_and_leaves_no_container(bb):
    (bb.root.parent / "pallet.toml").write_text(bb.network_config)  # the real default network
    result = bb("run", "--rm", "busybox", "echo", "hello")
    assert (result.returncode, result.stdout, result.stderr) == (0, "hello\n", ""), result.stderr
    assert container_ids(bb.root) == []
    netns = bb.run_root / "netns"
    assert not netns.exists() or os.listdir(netns) == []
    assert os.path.exists(f"/sys/class/net/{bb.bridge}")  # it did run on the bridge


def test_default_container_is_confined_like_dockers(bb):
    script = ("echo pid=$$; hostname; grep -E '^(CapEff|Seccomp):' /proc/self/status; "
              "echo kcore=$(cat /proc/kcore 2>/dev/null | wc -c); "
              "mount -t tmpfs none /mnt 2>/dev/null && echo mounted || echo mount-denied")
    result = bb("run", "--name", "conf", "busybox", "sh", "-c", script)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split("\n")
    cid = record(bb, "conf")["Id"]
    assert lines[0] == "pid=1"
    assert lines[1] == cid[:12]
    assert "CapEff:\t00000000a80425fb" in lines
    assert "Seccomp:\t2" in lines
    assert "kcore=0" in lines
    assert "mount-denied" in lines


def test_exit_code_of_run_is_the_containers(bb):
    assert bb("run", "--rm", "busybox", "sh", "-c", "exit 42").returncode == 42


def test_env_workdir_user_entrypoint_and_hostname_flags(bb, tmp_path):
    env_file = tmp_path / "env"
    env_file.write_text("# comment\nFROM_FILE=1\nOVER=file\n")
    result = bb("run", "--rm", "-e", "A=b c", "--env-file", str(env_file), "-e", "OVER=flag", "-w", "/work/dir",
                "-u", "nobody", "-h", "myhost", "--entrypoint", "sh", "busybox", "-c",
                'echo "$A|$FROM_FILE|$OVER|$(pwd)|$(id -u):$(id -g)|$(hostname)|$HOSTNAME"')
    assert result.returncode == 0, result.stderr
    assert result.stdout == "b c|1|flag|/work/dir|65534:65534|myhost|myhost\n"
    numeric = bb("run", "--rm", "-u", "1234:55", "busybox", "sh", "-c", "echo $(id -u):$(id -g)")
    assert numeric.stdout == "1234:55\n"


def test_bind_mounts_read_only_and_read_write_and_tmpfs(bb, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "in.txt").write_text("from host\n")
    result = bb("run", "--rm", "-v", f"{data}:/data", "-v", f"{data}:/ro:ro", "--tmpfs", "/scratch",
                "--mount", f"type=bind,source={data},target=/m,readonly", "busybox", "sh", "-c",
                "cat /data/in.txt; echo new > /data/out.txt; touch /ro/x 2>/dev/null || echo ro-denied; "
                "touch /m/x 2>/dev/null || echo m-denied; grep ' /scratch ' /proc/mounts | cut -d' ' -f3")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "from host\nro-denied\nm-denied\ntmpfs\n"
    assert (data / "out.txt").read_text() == "new\n"


def test_read_only_rootfs(bb):
    result = bb("run", "--rm", "--read-only", "busybox", "sh", "-c", "touch /x 2>/dev/null || echo denied")
    assert result.stdout == "denied\n"


def test_network_none_has_only_loopback_and_host_shares_the_hosts(bb):
    none = bb("run", "--rm", "--network", "none", "busybox", "ls", "/sys/class/net")
    assert none.stdout.split() == ["lo"]
    before = os.listdir("/sys/class/net")
    host = bb("run", "--rm", "--network", "host", "busybox", "sh", "-c", "hostname; ls /sys/class/net")
    lines = host.stdout.split()
    assert lines[0] == socket.gethostname()
    # Other tests create links meanwhile: compare with what existed both before and after.
    assert set(before) & set(os.listdir("/sys/class/net")) <= set(lines[1:])


def test_unknown_network_is_refused_before_anything_is_created(bb):
    result = bb("run", "--rm", "--network", "nosuchnet", "busybox", "true")
    assert result.returncode == 125
    assert result.error_lines == ["Error: network nosuchnet not found"]
    assert container_ids(bb.root) == []


def test_memory_limit_oom_kill_is_137_and_reported(bb):
    result = bb("run", "--name", "oom", "-m", "32m", "busybox", "sh", "-c",
                "x=$(head -c 100000000 /dev/zero | tr '\\0' a); echo survived")
    assert result.returncode == 137
    state = record(bb, "oom")["State"]
    assert state["OOMKilled"] is True and state["ExitCode"] == 137


def test_pids_limit_stops_a_fork_bomb(bb):
    bomb = "n=0; while true; do sleep 30 & n=$((n+1)); echo $n; done"
    result = bb("run", "--rm", "--pids-limit", "10", "busybox", "sh", "-c", bomb, timeout=60)
    assert "can't fork" in result.stderr
    assert int(result.stdout.split()[-1]) < 10  # the shell itself is one of the ten


def test_resource_flags_reach_the_cgroup(bb):
    bb("run", "-d", "--name", "res", "--cpus", "0.5", "--cpu-shares", "512", "--memory", "64m",
       "--pids-limit", "50", "busybox", "sleep", "30", check=True)
    cid = record(bb, "res")["Id"]
    cg = f"/sys/fs/cgroup/%s/pallet/{cid}/%s"
    assert open(cg % ("memory", "memory.limit_in_bytes")).read().strip() == str(64 << 20)
    assert open(cg % ("cpu", "cpu.cfs_quota_us")).read().strip() == "50000"
    assert open(cg % ("cpu", "cpu.shares")).read().strip() == "512"
    assert open(cg % ("pids", "pids.max")).read().strip() == "50"
    bb("rm", "-f", "res", check=True)
    assert not os.path.exists(cg % ("memory", ""))


def test_labels_ports_and_inspect(bb):
    bb("create", "--name", "lab", "-l", "a=b", "-p", "127.0.0.1:8080:80", "-p", "53/udp", "busybox", "true",
       check=True)
    info = record(bb, "lab")
    assert info["Config"]["Labels"] == {"a": "b"}
    assert info["HostConfig"]["PortBindings"] == {
        "80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}], "53/udp": [{"HostIp": "", "HostPort": ""}]}
    assert info["State"]["Status"] == "created"
    fmt = bb("ps", "-a", "--filter", "label=a=b", "--format", "{{.Names}} {{.Status}}")
    assert fmt.stdout == "lab Created\n"
    bb("create", "--name", "lab2", "busybox", "true", check=True)
    lines = bb("ps", "-a", "--format", "json").stdout.splitlines()
    assert sorted(json.loads(line)["Names"] for line in lines) == ["lab", "lab2"]  # JSON lines, as Docker 23+


def test_named_volume_persists_and_starts_with_the_images_content(bb):
    first = bb("run", "--rm", "-v", "vol1:/etc", "busybox", "sh", "-c", "ls /etc/passwd && echo kept > /etc/mine")
    assert first.returncode == 0, first.stderr
    second = bb("run", "--rm", "-v", "vol1:/data", "busybox", "cat", "/data/mine")
    assert second.stdout == "kept\n"
    assert bb("volume", "rm", "vol1").returncode == 0


def test_anonymous_volume_goes_with_rm_v(bb):
    bb("run", "--name", "anon", "-v", "/scratch", "busybox", "sh", "-c", "echo x > /scratch/f", check=True)
    volume = record(bb, "anon")["Mounts"][0]["Source"]
    assert len(volume) == 64
    assert volume in bb("volume", "ls", "-q").stdout.split()
    assert bb("rm", "-v", "anon").returncode == 0
    assert volume not in bb("volume", "ls", "-q").stdout.split()


def test_mount_flag_tmpfs_and_volume_forms(bb):
    result = bb("run", "--rm", "--mount", "type=tmpfs,target=/t,tmpfs-size=1m", "--mount",
                "type=volume,source=mvol,target=/v", "busybox", "sh", "-c",
                "grep ' /t ' /proc/mounts | grep -o 'size=[0-9]*k'; echo hi > /v/f && cat /v/f")
    assert result.stdout == "size=1024k\nhi\n", result.stderr
    assert bb("volume", "rm", "mvol").returncode == 0


def test_rlimits_are_capped_at_the_callers_hard_limit(bb):
    import resource

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    result = bb("run", "--rm", "--ulimit", "nofile=1000000:1000000", "busybox", "sh", "-c", "ulimit -n")
    expected = 1000000 if hard == resource.RLIM_INFINITY else min(1000000, hard)
    assert result.stdout == f"{expected}\n"
    assert bb("run", "--rm", "busybox", "sh", "-c", "ulimit -n").stdout == "1024\n"


def test_port_lists_the_published_ports(bb):
    bb("create", "--name", "pp", "-p", "127.0.0.1:8080:80", "-p", "9000:90/udp", "busybox", "true", check=True)
    assert bb("port", "pp").stdout == "80/tcp -> 127.0.0.1:8080\n90/udp -> 0.0.0.0:9000\n"
    assert bb("port", "pp", "80").stdout == "127.0.0.1:8080\n"
    missing = bb("port", "pp", "81")
    assert missing.returncode == 1 and "No public port '81/tcp' published for pp" in missing.stderr


def test_network_container_mode_shares_the_other_containers_namespace(bb):
    bb("run", "-d", "--name", "owner", "busybox", "sleep", "100", check=True)
    theirs = bb("exec", "owner", "readlink", "/proc/self/ns/net").stdout
    ours = bb("run", "--rm", "--network", "container:owner", "busybox", "readlink", "/proc/self/ns/net")
    assert ours.returncode == 0 and ours.stdout == theirs and theirs.startswith("net:[")
    assert bb("run", "--rm", "--network", "container:ghost", "busybox", "true").error_lines == [
        "Error: No such container: ghost"]
    bb("stop", "-t", "0", "owner", check=True)
    stopped = bb("run", "--rm", "--network", "container:owner", "busybox", "true")
    assert stopped.returncode == 125 and "cannot join network of a non running container" in stopped.stderr
    assert container_ids(bb.root) == [record(bb, "owner")["Id"]]


def test_run_pulls_a_missing_image_from_a_local_oci_layout(bb, tmp_path):
    layout = tmp_path / "layout"
    assert bb("push", "busybox", f"oci:{layout}:bb").returncode == 0
    fresh = type(bb)(tmp_path / "root2", tmp_path / "run2", env={"PALLET_CONFIG": str(tmp_path / "pallet.toml")})
    result = fresh("run", "--rm", f"oci:{layout}:bb", "echo", "pulled")
    assert (result.returncode, result.stdout) == (0, "pulled\n"), result.stderr
    assert result.stderr == f"Unable to find image 'oci:{layout}:bb' locally\n"
    assert fresh("images", "-q").stdout.strip()



def test_logs_follow_of_a_container_that_never_started_returns(bb):
    result = bb("run", "-d", "--name", "never", "busybox", "nosuchcmd")
    assert result.returncode == 127
    follow = bb("logs", "-f", "never", timeout=30)
    assert follow.returncode == 0
    status = bb("ps", "-a", "--format", "{{.Status}}").stdout.strip()
    assert status.startswith("Exited (127) ") and "years" not in status


def test_a_run_leaves_no_warming_thread_behind_its_start(bb):
    """The attached run's warming ends when the runtime starts the container: the CLI that waits for
    the container beside it is single-threaded again."""
    import os
    import subprocess
    import time

    from tests.conftest import REPO

    proc = subprocess.Popen(bb.command("run", "--rm", "--name", "warm-probe", "--network", "none", "busybox",
                                       "sleep", "60", engine=False),
                            env=bb.env, cwd=str(REPO), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while bb("inspect", "-f", "{{.State.Running}}", "warm-probe").stdout.strip() != "true":
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.poll() else "slow"
            time.sleep(0.05)
        assert os.listdir(f"/proc/{proc.pid}/task") == [str(proc.pid)]
    finally:
        bb("kill", "warm-probe")
        proc.wait(timeout=60)
