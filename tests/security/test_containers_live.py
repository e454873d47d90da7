"""End to end through ``pallet run``/``exec``/``cp``: the battery, Docker's profiles, escape classes, landlock."""

from __future__ import annotations

import hashlib
import json
import os
import sys
import uuid
from pathlib import Path

import pytest

from tests.security.sec_helpers import MOBY_SECCOMP
from tests.conftest import Pallet


def _container_ids(root: Path) -> list[str]:
    try:
        return [p.name for p in (root / "containers").iterdir() if len(p.name) == 64]
    except FileNotFoundError:
        return []


@pytest.fixture
def bb(tmp_path):
    """``pallet`` on a private root holding ``busybox:latest``; every container is removed afterwards."""
    pallet = Pallet(tmp_path / "root", tmp_path / "run")
    built = pallet("image", "build-busybox")
    assert built.returncode == 0, built.stderr
    try:
        yield pallet
    finally:
        for cid in _container_ids(pallet.root):
            pallet("rm", "-f", cid, timeout=60)


def status_fields(text: str) -> dict[str, str]:
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)


def test_security_check_passes_for_a_default_container(bb):
    done = bb("security", "check", "--json")
    assert done.returncode == 0, done.stderr + done.stdout
    results = json.loads(done.stdout)
    assert len(results) == 11 and all(r["result"] == "pass" for r in results), results


def test_security_check_privileged_shows_the_openings(bb):
    done = bb("security", "check", "--privileged", "--json")
    assert done.returncode == 0, done.stderr
    opened = {r["id"] for r in json.loads(done.stdout) if r["result"] == "OPEN"}
    assert {"mount", "modules", "userns", "procsys", "hostname", "seccomp"} <= opened


def test_security_check_fails_when_a_hole_is_opened(bb):
    done = bb("security", "check", "--cap-add", "SYS_ADMIN")
    assert done.returncode == 1
    assert "OPEN" in done.stdout and "Error: the container got through some checks" in done.stderr


def test_default_container_status(bb):
    done = bb("run", "--rm", "--network", "none", "busybox", "cat", "/proc/self/status")
    fields = status_fields(done.stdout)
    assert fields["CapEff"].strip() == "00000000a80425fb" and fields["Seccomp"].strip() == "2"
    done = bb("run", "--rm", "--network", "none", "--security-opt", "no-new-privileges", "busybox",
              "cat", "/proc/self/status")
    assert status_fields(done.stdout)["NoNewPrivs"].strip() == "1"


@pytest.mark.parametrize("profile", ["default.json", "fixtures/default-old-format.json"])
def test_dockers_profiles_load_and_deny_unshare(bb, profile):
    done = bb("run", "--rm", "--network", "none", "--security-opt", f"seccomp={MOBY_SECCOMP / profile}",
              "busybox", "sh", "-c", "grep Seccomp: /proc/self/status; unshare -U true && echo UNSHARED")
    assert "Seccomp:\t2" in done.stdout and "UNSHARED" not in done.stdout, done.stderr


def test_seccomp_unconfined_disables_the_filter(bb):
    done = bb("run", "--rm", "--network", "none", "--security-opt", "seccomp=unconfined", "busybox",
              "grep", "Seccomp:", "/proc/self/status")
    assert done.stdout.split() == ["Seccomp:", "0"]


def test_malformed_profile_is_one_error_line(bb, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "NOPE"}]}')
    done = bb("run", "--rm", "--network", "none", "--security-opt", f"seccomp={bad}", "busybox", "true")
    assert done.returncode == 2 and done.error_lines == [
        f'Error: invalid seccomp profile {bad}: syscalls[0].action: unknown action "NOPE"']


def test_no_host_file_descriptor_leaks_into_the_container(bb):
    """CVE-2024-21626 class: every descriptor at exec is stdio, a pipe, a socket or the container's own."""
    done = bb("run", "--rm", "--network", "none", "busybox", "sh", "-c",
              "for fd in /proc/self/fd/*; do readlink $fd; done")
    targets = done.stdout.split()
    assert targets, done.stderr
    assert all(t.startswith(("pipe:", "socket:", "/dev/", "anon_inode:", "/proc/")) for t in targets), targets


def test_exec_gets_the_same_confinement_and_no_leaked_fds(bb):
    name = f"sec-exec-{uuid.uuid4().hex[:8]}"
    started = bb("run", "-d", "--name", name, "--network", "none", "--security-opt", "no-new-privileges",
                 "busybox", "sleep", "60")
    assert started.returncode == 0, started.stderr
    init = status_fields(bb("exec", name, "cat", "/proc/1/status").stdout)
    execd = status_fields(bb("exec", name, "cat", "/proc/self/status").stdout)
    for key in ("CapEff", "CapBnd", "Seccomp", "NoNewPrivs"):
        assert init[key] == execd[key], key
    assert execd["CapEff"].strip() == "00000000a80425fb" and execd["Seccomp"].strip() == "2"
    fds = bb("exec", name, "sh", "-c", "for fd in /proc/self/fd/*; do readlink $fd; done").stdout.split()
    assert fds and all(t.startswith(("pipe:", "socket:", "/dev/", "anon_inode:", "/proc/")) for t in fds), fds


def _digest(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_writing_proc_self_exe_does_not_touch_host_binaries(bb):
    """CVE-2019-5736 class: whatever the container writes through /proc/*/exe stays out of the host."""
    watched = [os.path.realpath(sys.executable), "/bin/busybox"]
    before = [_digest(p) for p in watched]
    name = f"sec-exe-{uuid.uuid4().hex[:8]}"
    assert bb("run", "-d", "--name", name, "--network", "none", "busybox", "sleep", "60").returncode == 0
    script = "for p in /proc/[0-9]*/exe /proc/self/exe; do echo pwned >> $p 2>/dev/null && echo WROTE $p; done; true"
    bb("exec", name, "sh", "-c", script)
    bb("run", "--rm", "--network", "none", "busybox", "sh", "-c", script)
    assert [_digest(p) for p in watched] == before


@pytest.fixture
def host_secret():
    path = Path("/tmp", f"pallet-sec-secret-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    path.write_text("host secret")
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


def test_cp_resolves_symlinks_inside_the_container_only(bb, tmp_path, host_secret):
    name = f"sec-cp-{uuid.uuid4().hex[:8]}"
    planted = f"pallet-sec-cp-{uuid.uuid4().hex[:8]}"
    assert bb("run", "-d", "--name", name, "--network", "none", "busybox", "sh", "-c",
              f"ln -s / /escape && ln -s {host_secret} /leak && sleep 60").returncode == 0
    source = tmp_path / planted
    source.write_text("from host")
    done = bb("cp", str(source), f"{name}:/escape/tmp/")
    assert not Path("/tmp", planted).exists(), "cp wrote through a container symlink onto the host"
    if done.returncode == 0:
        assert bb("exec", name, "cat", f"/tmp/{planted}").stdout == "from host"
    out = tmp_path / "leak"
    bb("cp", f"{name}:/leak", str(out))
    if out.exists() and not out.is_symlink():
        assert out.read_text() != "host secret", "cp followed a container symlink to a host file"


def test_landlock_rules_confine_the_container_process(bb, tmp_path):
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({"paths": [{"path": "/bin", "access": "ro"}, {"path": "/tmp", "access": "rw"},
                                           {"path": "/proc", "access": "ro"}]}))
    done = bb("run", "--rm", "--network", "none", "--security-opt", f"landlock={rules}", "busybox", "sh", "-c",
              "echo ok > /tmp/x && cat /tmp/x; cat /etc/passwd >/dev/null 2>&1 && echo READ-ETC; true")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["ok"], done.stdout


def test_relabel_volume_modes_are_ignored_without_selinux(bb, tmp_path):
    from pallet.plugins.security.selinux import SELinuxProfile

    if SELinuxProfile.probe().available:
        pytest.skip("SELinux is enabled here: :Z would relabel the directory")
    shared = tmp_path / "shared"
    shared.mkdir()
    done = bb("run", "--rm", "--network", "none", "-v", f"{shared}:/d:Z", "busybox", "sh", "-c", "echo hi > /d/f")
    assert done.returncode == 0, done.stderr
    assert (shared / "f").read_text() == "hi\n"


def test_userns_flag_and_remap_rules_through_run(bb, tmp_path):
    (tmp_path / "subid").write_text("pallet:300000:65536\n")
    bb.env["PALLET_CONFIG"] = str(tmp_path / "remap.toml")
    (tmp_path / "remap.toml").write_text(f'[security]\nuserns_remap = "default"\nsubuid_file = "{tmp_path / "subid"}"\n'
                                         f'subgid_file = "{tmp_path / "subid"}"\n')
    done = bb("run", "--rm", "--network", "none", "--privileged", "busybox", "true")
    assert done.returncode == 2 and "--userns=host" in done.stderr
    done = bb("run", "--rm", "--network", "none", "--userns", "private", "busybox", "true")
    assert done.returncode == 2 and 'invalid --userns "private"' in done.stderr
    done = bb("run", "--rm", "--network", "none", "--privileged", "--userns", "host", "busybox",
              "cat", "/proc/self/uid_map")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[:3] == ["0", "0", "4294967295"]
