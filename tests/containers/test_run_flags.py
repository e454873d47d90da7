"""docker 28's ``run`` flags, each observed from inside the container (namespaces, /etc files, limits, cgroups)."""

from __future__ import annotations

import os
import resource

from tests.containers.conftest import record


def test_hosts_dns_sysctl_ulimit_shm_groups_and_domainname_are_seen_inside(bb):
    result = bb("run", "--rm", "--add-host", "db.local:10.1.2.3", "--add-host", "v6=[::1]", "--dns", "9.9.9.9",
                "--dns-search", "example.com", "--dns-option", "ndots:2", "--sysctl", "net.ipv4.ip_forward=1",
                "--sysctl", "kernel.shmmax=123456", "--ulimit", "nofile=500:600", "--shm-size", "8m",
                "--group-add", "123", "--group-add", "nobody", "--domainname", "dom.ain", "busybox", "sh", "-c",
                "grep -E 'db.local|v6' /etc/hosts; cat /etc/resolv.conf; cat /proc/sys/net/ipv4/ip_forward "
                "/proc/sys/kernel/shmmax /proc/sys/kernel/domainname; grep 'open files' /proc/self/limits; "
                "df -k /dev/shm | tail -1; grep Groups /proc/self/status")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:2] == ["10.1.2.3\tdb.local", "::1\tv6"]
    assert lines[2:5] == ["nameserver 9.9.9.9", "search example.com", "options ndots:2"]
    assert lines[5:8] == ["1", "123456", "dom.ain"]
    assert lines[8].split()[3:5] == ["500", "600"]
    assert lines[9].split()[1] == "8192"
    assert lines[10].split()[1:] == ["123", "65534"]


def test_ulimit_above_the_hosts_hard_limit_is_capped_with_a_warning(bb):
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    result = bb("run", "--rm", "--ulimit", f"nofile={hard + 1}:{hard + 1}", "busybox", "sh", "-c", "ulimit -Hn")
    assert (result.returncode, result.stdout) == (0, f"{hard}\n")
    assert result.error_lines == [f"WARNING: --ulimit nofile={hard + 1}:{hard + 1} is capped at this host's hard "
                                  f"limit {hard} (raising it needs CAP_SYS_RESOURCE)"]


def test_init_is_pid_1_and_reaps_orphaned_zombies(bb):
    # The orphan's parent exits at once; the orphan is re-parented to PID 1, which must reap it.
    script = "sh -c 'sleep 0.2 & exit 0'; sleep 1; ps -o pid,stat,comm | grep -c ' Z ' || true; cat /proc/1/cmdline"
    result = bb("run", "--rm", "--init", "busybox", "sh", "-c", script)
    assert result.returncode == 0, result.stderr
    zombies, cmdline = result.stdout.split("\n", 1)
    assert zombies == "0"
    assert cmdline.split("\0")[:3] == ["/sbin/docker-init", "--", "sh"]


def test_pid_and_ipc_container_mode_share_the_donors_namespaces_and_shm(bb):
    donor = bb("run", "-d", "--name", "donor", "--ipc", "shareable", "--shm-size", "16m", "busybox", "sh", "-c",
               "echo hi > /dev/shm/note; sleep 60")
    assert donor.returncode == 0, donor.stderr
    pid = record(bb, "donor")["State"]["Pid"]
    result = bb("run", "--rm", "--pid", "container:donor", "--ipc", "container:donor", "busybox", "sh", "-c",
                "stat -L -c %i /proc/self/ns/pid /proc/self/ns/ipc; cat /dev/shm/note; cat /proc/1/cmdline")
    assert result.returncode == 0, result.stderr
    pid_ino, ipc_ino, note, cmdline = result.stdout.splitlines()
    assert int(pid_ino) == os.stat(f"/proc/{pid}/ns/pid").st_ino
    assert int(ipc_ino) == os.stat(f"/proc/{pid}/ns/ipc").st_ino
    assert note == "hi"
    assert cmdline == "sleep\x0060\x00"  # PID 1 of the shared namespace is the donor's (its sh exec'd sleep)
    private = bb("run", "--rm", "--ipc", "container:donor", "busybox", "true")
    assert private.returncode == 0
    bb("run", "-d", "--name", "plain", "busybox", "sleep", "60", check=True)
    refused = bb("run", "--rm", "--ipc", "container:plain", "busybox", "true")
    assert refused.returncode == 125 and "cannot join IPC of a non-shareable container plain" in refused.stderr


def test_host_uts_and_cgroup_namespaces(bb):
    result = bb("run", "--rm", "--uts", "host", "--cgroupns", "host", "--pid", "host", "busybox", "sh", "-c",
                "hostname; stat -L -c %i /proc/self/ns/cgroup /proc/self/ns/pid")
    assert result.returncode == 0, result.stderr
    hostname, cgroup_ino, pid_ino = result.stdout.splitlines()
    assert hostname == os.uname().nodename
    assert int(cgroup_ino) == os.stat("/proc/self/ns/cgroup").st_ino
    assert int(pid_ino) == os.stat("/proc/self/ns/pid").st_ino


def test_devices_and_device_cgroup_rules(bb):
    result = bb("run", "--rm", "--device", "/dev/fuse", "--device", "/dev/loop-control:/dev/lc:r",
                "--device-cgroup-rule", "c 10:229 rwm", "busybox", "sh", "-c",
                "ls -l /dev/fuse /dev/lc | awk '{print $1, $5, $6, $NF}'; "
                "echo x > /dev/lc 2>/dev/null && echo written || echo denied")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["crw------- 10, 229 /dev/fuse", "crw------- 10, 237 /dev/lc", "denied"]
    missing = bb("run", "--rm", "--device", "/dev/nothing-here", "busybox", "true")
    assert missing.returncode == 125 and 'adding custom device "/dev/nothing-here"' in missing.stderr


def test_memory_cpu_and_block_io_limits_reach_the_cgroup(bb):
    script = ("cd /sys/fs/cgroup; cat memory/memory.soft_limit_in_bytes memory/memory.swappiness "
              "cpu/cpu.cfs_period_us cpu/cpu.cfs_quota_us cpu/cpu.rt_period_us cpu/cpu.rt_runtime_us "
              "blkio/blkio.throttle.read_bps_device blkio/blkio.throttle.write_iops_device cpuset/cpuset.mems; "
              "grep oom_kill_disable memory/memory.oom_control")
    disk = next(f"/dev/{d}" for d in sorted(os.listdir("/sys/block")) if os.path.exists(f"/dev/{d}")
                and not d.startswith(("loop", "zram", "ram")))
    st = os.stat(disk)
    numbers = f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
    result = bb("run", "--rm", "-m", "64m", "--memory-reservation", "32m", "--oom-kill-disable",
                "--memory-swappiness", "10", "--cpu-period", "50000", "--cpu-quota", "25000",
                "--cpu-rt-period", "100000", "--cpu-rt-runtime", "1000", "--device-read-bps", f"{disk}:1mb",
                "--device-write-iops", f"{disk}:100", "--cpuset-mems", "0", "busybox", "sh", "-c", script)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [str(32 << 20), "10", "50000", "25000", "100000", "1000",
                                          f"{numbers} {1 << 20}", f"{numbers} 100", "0", "oom_kill_disable 1"]


def test_link_gives_hosts_entry_and_dockers_variables(bb):
    (bb.root.parent / "pallet.toml").write_text(bb.network_config)  # the real default network
    bb("run", "-d", "--name", "web", "--expose", "80", "-e", "SECRET=s", "busybox", "sleep", "60", check=True)
    address = record(bb, "web")["NetworkSettings"]["IPAddress"]
    result = bb("run", "--rm", "--name", "app", "--link", "web:db", "busybox", "sh", "-c",
                "grep -w db /etc/hosts; env | grep ^DB_ | sort")
    assert result.returncode == 0, result.stderr
    short = record(bb, "web")["Id"][:12]
    assert result.stdout.splitlines() == [
        f"{address}\tdb {short} web", "DB_ENV_SECRET=s", "DB_NAME=/app/db", f"DB_PORT=tcp://{address}:80",
        f"DB_PORT_80_TCP=tcp://{address}:80", f"DB_PORT_80_TCP_ADDR={address}", "DB_PORT_80_TCP_PORT=80",
        "DB_PORT_80_TCP_PROTO=tcp"]
    gateway = bb("run", "--rm", "--add-host", "host.docker.internal:host-gateway", "busybox", "grep",
                 "host.docker.internal", "/etc/hosts")
    assert gateway.stdout.split() == [record(bb, "web")["NetworkSettings"]["Gateway"], "host.docker.internal"]
    missing = bb("run", "--rm", "--link", "nobody:x", "busybox", "true")
    assert missing.returncode == 125 and "nobody" in missing.stderr


def test_volumes_from_copies_the_mounts_with_their_mode(bb, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    bb("create", "--name", "store", "-v", f"{data}:/data", "-v", "/cache", "busybox", "true", check=True)
    result = bb("run", "--rm", "--volumes-from", "store:ro", "busybox", "sh", "-c",
                "touch /data/x 2>/dev/null || echo ro; echo c > /cache/y 2>/dev/null || echo cache-ro")
    assert result.stdout.splitlines() == ["ro", "cache-ro"], result.stderr
    written = bb("run", "--rm", "--volumes-from", "store", "busybox", "sh", "-c", "echo w > /data/x")
    assert written.returncode == 0 and (data / "x").read_text() == "w\n"


def test_relative_bind_source_is_taken_from_the_callers_directory(bb, tmp_path):
    from tests.conftest import REPO

    (tmp_path / "rel").mkdir()
    (tmp_path / "rel" / "f").write_text("relative\n")
    source = os.path.relpath(tmp_path / "rel", REPO)  # the CLI runs in the checkout
    assert source.startswith("../")
    result = bb("run", "--rm", "-v", f"{source}:/r:ro", "--mount", f"type=bind,src={source},dst=/m",
                "busybox", "cat", "/r/f", "/m/f")
    assert result.stdout == "relative\nrelative\n", result.stderr


def test_mount_bind_propagation_rshared_is_a_shared_mount_inside(bb, tmp_path):
    (tmp_path / "src").mkdir()
    script = "grep ' /m ' /proc/self/mountinfo"
    shared = bb("run", "--rm", "--mount", f"type=bind,src={tmp_path / 'src'},dst=/m,bind-propagation=rshared",
                "busybox", "sh", "-c", script)
    assert shared.returncode == 0, shared.stderr
    fields = shared.stdout.split(" - ")[0].split()
    assert any(f.startswith("shared:") for f in fields[6:]), shared.stdout
    private = bb("run", "--rm", "--mount", f"type=bind,src={tmp_path / 'src'},dst=/m", "busybox", "sh", "-c", script)
    assert not any(f.startswith(("shared:", "master:")) for f in private.stdout.split(" - ")[0].split()[6:])


def test_mount_volume_nocopy_leaves_a_new_volume_empty_over_the_images_files(bb):
    bb("run", "--name", "maker", "busybox", "sh", "-c", "mkdir /data && echo x > /data/f", check=True)
    bb("commit", "maker", "withdata", check=True)
    empty = bb("run", "--rm", "--mount", "type=volume,src=nc,dst=/data,volume-nocopy", "withdata", "ls", "-A", "/data")
    assert (empty.returncode, empty.stdout) == (0, ""), empty.stderr
    mountpoint = bb("volume", "inspect", "-f", "{{.Mountpoint}}", "nc").stdout.strip()
    assert os.listdir(mountpoint) == []
    copied = bb("run", "--rm", "--mount", "type=volume,src=cp,dst=/data", "withdata", "cat", "/data/f")
    assert copied.stdout == "x\n", copied.stderr


def test_cidfile_attach_expose_labels_and_go_style_booleans(bb, tmp_path):
    cidfile = tmp_path / "cid"
    labels = tmp_path / "labels"
    labels.write_text("# comment\nteam=a\nowner=file\n")
    result = bb("run", "--rm=false", "--name", "ca", "--cidfile", str(cidfile), "-a", "stderr", "--expose",
                "7000-7001/udp", "--label-file", str(labels), "-l", "owner=flag", "--sig-proxy=false", "busybox",
                "sh", "-c", "echo out; echo err >&2")
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "err\n")
    info = record(bb, "ca")
    assert cidfile.read_text() == info["Id"]
    assert {"7000/udp", "7001/udp"} <= set(info["Config"]["ExposedPorts"])
    assert {k: info["Config"]["Labels"][k] for k in ("team", "owner")} == {"team": "a", "owner": "flag"}
    again = bb("run", "--rm", "--cidfile", str(cidfile), "busybox", "true")
    assert again.returncode == 125 and "Container ID file found" in again.stderr
    assert bb("logs", "ca").stdout == "out\n"  # the log keeps what -a did not show


def test_refused_flags_say_why_in_one_line(bb):
    cases = [
        (["--gpus", "all"], 125, 'could not select device driver "" with capabilities: [[gpu]]'),
        (["--io-maxiops", "5"], 125, "Invalid QoS settings: linux does not support Maximum IO Bandwidth or Maximum IO IOps"),
        (["--sysctl", "kernel.panic=1"], 125, "sysctl 'kernel.panic=1' is not allowed"),
        (["--network", "host", "--sysctl", "net.ipv4.ip_forward=1"], 125,
         "sysctl 'net.ipv4.ip_forward' is not allowed in host network namespace"),
        (["--rm", "--restart", "always"], 125, "Conflicting options: --restart and --rm"),
        (["-d", "-a", "stdout"], 125, "Conflicting options: -a and -d"),
        (["--pid", "bogus"], 125, "--pid: invalid PID mode: bogus"),
        (["--log-driver", "none", "--log-opt", "tag=x"], 125, "unknown log opt 'tag' for none log driver"),
        (["--platform", "linux/arm64"], 125, "image with reference busybox was found but its platform (linux/amd64) "
                                           "does not match the specified platform (linux/arm64)"),
        (["--rm=maybe"], 125, 'invalid argument "maybe" for "--rm" flag: strconv.ParseBool: parsing "maybe": invalid syntax'),
        (["--bogus"], 125, "unknown flag: --bogus"),
    ]
    for flags, code, message in cases:
        result = bb("run", *flags, "busybox", "true")
        assert (result.returncode, result.error_lines[0]) == (code, f"Error: {message}"), flags
    assert bb("ps", "-aq").stdout == ""


def test_health_restart_log_and_storage_flags_are_recorded(bb):
    bb("create", "--name", "rec", "--health-cmd", "true", "--health-interval", "1m30s", "--health-retries", "3",
       "--restart", "on-failure:5", "--log-driver", "none", "--annotation", "org.example/a=b", "--init",
       "--kernel-memory", "10m", "busybox", "true", check=True)
    info = record(bb, "rec")
    assert info["Config"]["Healthcheck"] == {"Test": ["CMD-SHELL", "true"], "Interval": 90_000_000_000,
                                             "Timeout": 0, "StartPeriod": 0, "StartInterval": 0, "Retries": 3}
    assert info["HostConfig"]["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 5}
    assert info["HostConfig"]["LogConfig"] == {"Type": "none", "Config": {}}
    bb("start", "-a", "rec", check=True)
    logs = bb("logs", "rec")
    assert logs.returncode == 1 and logs.error_lines == ["Error: configured logging driver does not support reading"]
    disabled = bb("create", "--no-healthcheck", "busybox", "true", check=True).stdout.strip()
    assert record(bb, disabled)["Config"]["Healthcheck"] == {"Test": ["NONE"]}
    refused = bb("create", "--storage-opt", "size=1g", "busybox", "true")
    assert refused.returncode == 125
    assert refused.error_lines == ['Error: storage option "size" is not supported by the overlay2 driver']
    assert len(bb("ps", "-aq").stdout.split()) == 2  # the refused one left nothing


def test_the_flags_bundle_runs_under_runc_too(bb):
    result = bb("run", "--rm", "--runtime", "runc", "--init", "--device", "/dev/fuse", "--sysctl",
                "kernel.shmmax=99999", "--shm-size", "4m", "--uts", "host", "--group-add", "55", "busybox", "sh", "-c",
                "tr '\\0' '\\n' < /proc/1/cmdline | head -1; ls /dev/fuse; cat /proc/sys/kernel/shmmax; "
                "df -k /dev/shm | tail -1 | awk '{print $2}'; hostname; grep Groups /proc/self/status | cut -f2")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["/sbin/docker-init", "/dev/fuse", "99999", "4096", os.uname().nodename, "55"]


def test_dockers_small_behaviours_rm_f_missing_and_lowercase_booleans(bb):
    assert bb("rm", "-f", "never-was").returncode == 0
    assert bb("rm", "never-was").returncode == 1
    bb("run", "-d", "--name", "up", "busybox", "sleep", "60", check=True)
    assert bb("inspect", "-f", "{{.State.Running}}", "up").stdout == "true\n"
    assert bb("inspect", "-f", "{{.Config.Cmd}} {{json .Config.Cmd}} {{.Nope}}", "up").stdout == (
        '[sleep 60] ["sleep","60"] <no value>\n')
    bad = bb("ps", "--format", "{{.Names")
    assert (bad.returncode, bad.error_lines) == (1, ["Error: template parsing error: template: :1: unclosed action"])
    assert bb("ps", "--filter", "status=foo").error_lines == ["Error: invalid filter 'status=foo'"]
    assert bb("ps", "--format", "{{if eq .State \"running\"}}{{upper .Names}}{{end}}").stdout == "UP\n"
    unknown = bb("ps", "--bogus")
    assert (unknown.returncode, unknown.error_lines) == (2, ["Error: unknown flag: --bogus", "See 'pallet ps --help'."])
    logout = bb("logout", "never.example")
    assert (logout.returncode, logout.stdout) == (0, "Not logged in to never.example\n")


def test_use_api_socket_binds_the_serve_socket_where_docker_clients_look(bb):
    import socket

    missing = bb("run", "--rm", "--use-api-socket", "busybox", "true")
    assert missing.returncode == 125 and "no Engine API socket at" in missing.stderr
    bb.run_root.mkdir(parents=True, exist_ok=True)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(str(bb.run_root / "pallet.sock"))
        server.listen(1)
        result = bb("run", "--rm", "--use-api-socket", "busybox", "sh", "-c", "test -S /var/run/docker.sock && echo s")
    assert (result.returncode, result.stdout) == (0, "s\n"), result.stderr
