"""Docker's verbs and flags beyond run: update, logs --since/--until, rmi -f of a running image, stats I/O."""

from __future__ import annotations

import json
import os

from tests.containers.conftest import record


def test_update_changes_the_running_containers_cgroup_and_record(bb):
    bb("run", "-d", "--name", "upd", "-m", "64m", "busybox", "sleep", "60", check=True)
    done = bb("update", "-m", "128m", "--memory-swap", "256m", "--cpus", "0.5", "--pids-limit", "50",
              "--restart", "on-failure:2", "upd")
    assert (done.returncode, done.stdout) == (0, "upd\n"), done.stderr
    seen = bb("exec", "upd", "cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/cpu/cpu.cfs_quota_us",
              "/sys/fs/cgroup/pids/pids.max")
    assert seen.stdout.split() == [str(128 << 20), "50000", "50"]
    bb("update", "-m", "32m", "upd", check=True)
    assert bb("exec", "upd", "cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes").stdout == f"{32 << 20}\n"
    host = record(bb, "upd")["HostConfig"]
    assert (host["Memory"], host["PidsLimit"], host["RestartPolicy"]) == (
        32 << 20, 50, {"Name": "on-failure", "MaximumRetryCount": 2})
    nothing = bb("update", "upd")
    assert nothing.returncode == 2 and "one or more flags" in nothing.stderr


def test_logs_since_and_until_keep_the_entries_inside_the_window(bb):
    bb("run", "--name", "talk", "busybox", "sh", "-c", "echo one; sleep 0.2; echo two; sleep 0.2; echo three",
       check=True)
    stamped = bb("logs", "-t", "talk").stdout.splitlines()
    assert [line.split(" ", 1)[1] for line in stamped] == ["one", "two", "three"]
    second = stamped[1].split(" ", 1)[0]
    assert bb("logs", "--since", second, "talk").stdout == "two\nthree\n"
    assert bb("logs", "--until", second, "talk").stdout == "one\n"
    assert bb("logs", "--since", "1h", "--details", "talk").stdout == "one\ntwo\nthree\n"
    assert bb("logs", "--since", "2h", "--until", "1h", "talk").stdout == ""
    bad = bb("logs", "--since", "yesterday", "talk")
    assert bad.returncode == 2 and "failed to parse value as time or duration" in bad.stderr


def test_rmi_force_refuses_the_image_of_a_running_container(bb):
    bb("run", "-d", "--name", "user", "busybox", "sleep", "60", check=True)
    short = record(bb, "user")["Id"][:12]
    result = bb("rmi", "-f", "busybox")
    assert result.returncode == 1
    assert result.error_lines == [f"Error: conflict: unable to delete busybox (cannot be forced) - image is being "
                                  f"used by running container {short}"]
    assert bb("images", "-q").stdout.strip()


def test_stats_counts_the_containers_network_bytes(bb):
    (bb.root.parent / "pallet.toml").write_text(bb.network_config)  # the real default network
    bb("run", "-d", "--name", "net", "busybox", "sleep", "60", check=True)
    gateway = record(bb, "net")["NetworkSettings"]["Gateway"]
    bb("exec", "net", "ping", "-c", "3", "-W", "1", gateway, check=True)
    row = bb("stats", "--no-stream", "--format", "{{.NetIO}}", "net").stdout.strip()
    received, sent = row.split(" / ")
    assert received != "0B" and sent != "0B", row


def _tar(members: list[tuple[str, bytes | None, str | None, int]]) -> bytes:
    """A tar of (name, file content or None, symlink target or None, uid) entries."""
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, content, link, uid in members:
            info = tarfile.TarInfo(name)
            info.uid = uid
            if link is not None:
                info.type, info.linkname = tarfile.SYMTYPE, link
                archive.addfile(info)
            else:
                info.size = len(content)
                archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def test_cp_with_dash_streams_a_tar_both_ways_and_stays_inside_the_root(bb, tmp_path):
    import io
    import subprocess
    import sys
    import tarfile

    from tests.conftest import REPO

    bb("create", "--name", "box", "busybox", "true", check=True)
    base = bb.command()

    def cp(*args, data: bytes = b"") -> subprocess.CompletedProcess:
        return subprocess.run(base + ["cp", *args], input=data, capture_output=True, env=bb.env, cwd=str(REPO))

    out = cp("box:/etc", "-")
    assert out.returncode == 0, out.stderr
    names = tarfile.open(fileobj=io.BytesIO(out.stdout)).getnames()
    assert {"etc", "etc/passwd", "etc/group"} <= set(names)
    archive = _tar([("d/f", b"hi\n", None, 1234), ("d/abs", None, "/etc/passwd", 0)])
    assert cp("-", "box:/tmp", data=archive).returncode == 0
    assert cp("-a", "-", "box:/root", data=archive).returncode == 0
    exported = tarfile.open(fileobj=io.BytesIO(_export(bb, base, REPO)))
    members = {m.name: m for m in exported.getmembers()}
    assert (members["tmp/d/f"].uid, members["root/d/f"].uid) == (0, 1234)
    assert members["tmp/d/abs"].linkname == "/etc/passwd"
    escape = cp("-", "box:/tmp", data=_tar([("x", None, "/", 0), ("x/escaped", b"no\n", None, 0)]))
    assert escape.returncode == 1 and not os.path.exists("/escaped")
    assert not (tmp_path / "escaped").exists()
    notdir = cp("-", "box:/etc/passwd", data=archive)
    assert notdir.returncode == 1 and b'extraction point is not a directory: "/etc/passwd"' in notdir.stderr


def _export(bb, base, repo) -> bytes:
    import subprocess

    return subprocess.run(base + ["export", "box"], capture_output=True, env=bb.env, cwd=str(repo), check=True).stdout


def test_info_has_dockers_fields(bb):
    bb("run", "-d", "--name", "runs", "busybox", "sleep", "60", check=True)
    bb("create", "--name", "made", "busybox", "true", check=True)
    shown = bb("info", "--format", "{{.Containers}} {{.ContainersRunning}} {{.ContainersStopped}} {{.Images}} "
                                   "{{.NCPU}} {{.OSType}} {{.CgroupDriver}} {{.CgroupVersion}}")
    assert shown.stdout.split() == ["2", "1", "1", "1", str(os.cpu_count()), "linux", "cgroupfs", "1"]
    text = bb("info")
    assert text.stdout.startswith("Containers: 2\n Running: 1\n Paused: 0\n Stopped: 1\nImages: 1\n")
    assert f"CPUs: {os.cpu_count()}" in text.stdout and f"Name: {os.uname().nodename}" in text.stdout
    assert bb("version", "-f", "{{.Os}}").stdout == "linux\n"


def test_completion_scripts_and_dynamic_names(bb):
    for shell, marker in (("bash", "complete -o nosort -F _pallet_completion pallet"), ("zsh", "#compdef pallet"),
                          ("fish", "complete --no-files --command pallet")):
        assert marker in bb("completion", shell).stdout
    bb("create", "--name", "comp-box", "busybox", "true", check=True)
    bb("volume", "create", "comp-vol", check=True)

    def complete(words: str) -> list[str]:
        line = f"pallet --root {bb.root} {words}"
        result = bb(env={"_PALLET_COMPLETE": "bash_complete", "COMP_WORDS": line,
                         "COMP_CWORD": str(len(line.split()) - (0 if line.endswith(" ") else 1))})
        return [item.split(",", 1)[1] for item in result.stdout.split()]

    assert complete("rm comp") == ["comp-box"]
    assert complete("run busy") == ["busybox:latest"]
    assert complete("volume inspect comp") == ["comp-vol"]
    assert "comp-box" in complete("start ")


def test_system_df_verbose_lists_each_kind(bb):
    bb("create", "--name", "sized", "-v", "/cache", "busybox", "true", check=True)
    out = bb("system", "df", "-v").stdout
    sections = [line for line in out.splitlines() if line.endswith("usage:") or line.startswith("Build cache")]
    assert sections == ["Images space usage:", "Containers space usage:", "Local Volumes space usage:",
                        "Build cache usage: 0B"]
    image_row = next(line.split() for line in out.splitlines() if line.startswith("busybox"))
    assert image_row[:2] == ["busybox", "latest"] and image_row[-1] == "1"
    container_row = next(line.split() for line in out.splitlines() if line.endswith(" sized"))
    assert container_row[3] == "1"  # one local volume
    anonymous = record(bb, "sized")["HostConfig"]["Mounts"][0]["Source"]
    assert any(line.split()[:2] == [anonymous, "1"] for line in out.splitlines())


def test_sizes_in_ps_and_inspect_and_restart_with_a_signal(bb):
    bb("run", "--name", "sz", "busybox", "sh", "-c", "head -c 100000 /dev/zero > /big", check=True)
    rw, rootfs = bb("inspect", "-s", "-f", "{{.SizeRw}} {{.SizeRootFs}}", "sz").stdout.split()
    assert int(rw) >= 100000 and int(rootfs) > int(rw)
    assert bb("ps", "-a", "-s", "--format", "{{.Size}}").stdout.startswith("100kB (virtual ")
    bb("run", "-d", "--name", "rs", "busybox", "sleep", "60", check=True)
    assert bb("restart", "-s", "KILL", "--timeout", "1", "rs").returncode == 0
    assert record(bb, "rs")["State"]["Running"] is True and record(bb, "rs")["RestartCount"] == 1
    refused = bb("start", "--checkpoint", "c1", "rs")
    assert refused.returncode == 125 and "checkpoint" in refused.stderr


def test_format_table_uses_dockers_headers_and_json_is_one_object_a_line(bb):
    import json

    bb("create", "--name", "tb", "busybox", "true", check=True)
    bb("create", "--name", "tb2", "busybox", "true", check=True)
    table = bb("ps", "-a", "--format", "table {{.ID}}\\t{{.Image}}\\t{{.Names}}").stdout.splitlines()
    assert [cell.strip() for cell in table[0].split("   ") if cell.strip()] == ["CONTAINER ID", "IMAGE", "NAMES"]
    assert len(table) == 3
    assert bb("ps", "-a", "--format", "table").stdout.splitlines()[0].split()[:4] == ["CONTAINER", "ID", "IMAGE",
                                                                                       "COMMAND"]
    lines = bb("images", "--format", "json").stdout.splitlines()
    assert [json.loads(line)["Repository"] for line in lines] == ["busybox"]
    assert sorted(json.loads(line)["Names"] for line in bb("ps", "-a", "--format", "json").stdout.splitlines()) == [
        "tb", "tb2"]


def test_rm_link_drops_the_legacy_link_from_the_parent(bb):
    (bb.root.parent / "pallet.toml").write_text(bb.network_config)  # links need addresses: the default network
    bb("run", "-d", "--name", "web", "busybox", "sleep", "60", check=True)
    bb("create", "--name", "app", "--link", "web:db", "busybox", "sh", "-c", "grep -cw db /etc/hosts", check=True)
    assert bb("rm", "--link", "/app/db").stdout == "/app/db\n"
    assert bb("inspect", "-f", "{{.HostConfig.Links}}", "app").stdout == "[]\n"
    started = bb("start", "-a", "app")
    assert started.stdout == "0\n", started.stderr   # no hosts entry for db any more
    assert record(bb, "web")["State"]["Running"]     # the linked container stays
    again = bb("rm", "-l", "app/db")
    assert (again.returncode, again.stderr) == (1, "Error: No such container: /app/db\n")
    plain = bb("rm", "--link", "web")
    assert (plain.returncode, plain.stderr) == (1, "Error: Conflict, cannot remove the default link name\n")
    orphan = bb("rm", "-l", "nobody/db")
    assert "Cannot get parent /nobody for link name /nobody/db" in orphan.stderr


def test_go_templates_on_volume_inspect_history_version_and_system_df(bb):
    """Docker's documented --format examples, and template functions over each object's fields."""
    bb("volume", "create", "--label", "team=a", "--label", "tier=db", "tv", check=True)
    mountpoint = bb("volume", "inspect", "--format", "{{ .Mountpoint }}", "tv").stdout
    assert mountpoint == f"{bb.root}/volumes/tv/_data\n"
    labels = bb("volume", "inspect", "-f", '{{range $k, $v := .Labels}}{{$k}}={{$v}};{{end}}{{.Driver | upper}} '
                                           '{{if eq .Scope "local"}}here{{end}} {{printf "%q" .Name}}', "tv")
    assert labels.stdout == 'team=a;tier=db;LOCAL here "tv"\n'
    bad = bb("volume", "inspect", "-f", "{{.Name", "tv")
    assert bad.returncode == 1 and "template parsing error" in bad.stderr

    image_id = record(bb, "busybox")["Id"]
    history = bb("history", "--format", "{{.ID}}: {{.CreatedSince}}", "busybox").stdout.splitlines()
    assert history[0].startswith(f"{image_id[7:19]}: ") and history[0].endswith(" ago")
    sized = bb("history", "--no-trunc", "--format", "{{.ID}}|{{truncate .CreatedBy 20}}|{{json .Comment}}",
               "busybox").stdout.splitlines()
    assert sized[0] == f'{image_id}|pallet image build-b|""'

    assert bb("version", "--format", "{{.Server.Version}}").stdout == bb("version", "-f", "{{.Version}}").stdout
    both = json.loads(bb("version", "--format", "{{json .}}").stdout)
    assert both["Client"]["ApiVersion"] == both["Server"]["ApiVersion"] and both["Server"]["Os"] == "linux"
    assert bb("version", "-f", "{{with .Server}}{{.Os}}/{{.Arch}}{{end}}").stdout == f"linux/{both['Server']['Arch']}\n"

    df = bb("system", "df", "--format", "{{.Type}}\\t{{.TotalCount}}").stdout.splitlines()
    assert df[:3] == ["Images\t1", "Containers\t0", "Local Volumes\t1"]
    table = bb("system", "df", "--format", "table {{.Type}}\\t{{.Active}}").stdout.splitlines()
    assert table[0].split() == ["TYPE", "ACTIVE"] and table[1].split() == ["Images", "0"]
    assert bb("system", "df", "--format", "{{if gt .TotalCount 0}}{{lower .Type}}{{end}}").stdout.split() == [
        "images", "local", "volumes"]
