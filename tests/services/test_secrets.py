"""Secrets without swarm: encrypted at rest, read-only on a tmpfs at /run/secrets, absent from every output."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

from tests.containers.conftest import bb, record  # noqa: F401  (the fixture)

VALUE = "pallet-test-secret-0f3c9a7e"


def _grep_tree(path, needle: bytes) -> list[str]:
    """Files under ``path`` holding ``needle`` (what ``grep -r`` would find, mount points included)."""
    hits = []
    for base, _dirs, files in os.walk(path):
        for name in files:
            full = os.path.join(base, name)
            try:
                if not os.path.islink(full) and stat.S_ISREG(os.lstat(full).st_mode):
                    with open(full, "rb") as handle:
                        if needle in handle.read():
                            hits.append(full)
            except OSError:
                continue
    return hits


def _raw(bb, *args) -> bytes:
    cmd = [sys.executable, "-m", "pallet.kernel.cli", "--root", str(bb.root), "--run-root", str(bb.run_root), *args]
    return subprocess.run(cmd, capture_output=True, env=bb.env, check=True).stdout


def test_secret_is_stored_encrypted_0600_and_never_shown(bb):
    created = bb("secret", "create", "db-pass", "-", input=VALUE, check=True).stdout.strip()
    assert len(created) == 25
    data = bb.root / "secrets" / created / "data"
    assert stat.S_IMODE(data.stat().st_mode) == 0o600
    assert stat.S_IMODE(data.parent.stat().st_mode) == 0o700
    key = bb.root.parent / "secrets.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and key.stat().st_size == 32
    assert not _grep_tree(bb.root, VALUE.encode())
    listing = bb("secret", "ls", check=True).stdout
    assert listing.splitlines()[0].split() == ["ID", "NAME", "DRIVER", "CREATED", "UPDATED"]
    assert "db-pass" in listing and VALUE not in listing
    shown = json.loads(bb("secret", "inspect", "db-pass", check=True).stdout)[0]
    assert shown["ID"] == created and shown["Spec"]["Name"] == "db-pass" and VALUE not in json.dumps(shown)
    again = bb("secret", "create", "db-pass", "-", input="other")
    assert again.returncode == 1 and again.error_lines == ['Error: secret "db-pass" already exists']


def test_secret_cannot_be_read_without_its_key(bb):
    bb("secret", "create", "k", "-", input=VALUE, check=True)
    (bb.root.parent / "secrets.key").rename(bb.root.parent / "moved.key")
    result = bb("run", "--rm", "--secret", "k", "busybox", "true")
    assert result.returncode == 125
    assert len(result.error_lines) == 1 and "secrets key" in result.error_lines[0] and "missing" in result.error_lines[0]


def test_run_secret_is_a_read_only_tmpfs_file_with_its_owner_and_mode(bb):
    bb("secret", "create", "db-pass", "-", input=VALUE, check=True)
    script = ("cat /run/secrets/db-pass; echo; stat -c '%u %g %a' /run/secrets/db-pass /run/secrets/other; "
              "grep ' /run/secrets ' /proc/mounts; echo x > /run/secrets/db-pass && echo WRITABLE")
    result = bb("run", "--rm", "--secret", "db-pass", "--secret", "source=db-pass,target=other,uid=1000,gid=50,mode=0400",
                "busybox", "sh", "-c", script)
    lines = result.stdout.splitlines()
    assert lines[0] == VALUE
    assert lines[1:3] == ["0 0 444", "1000 50 400"]
    assert lines[3].split()[2] == "tmpfs" and lines[3].split()[3].startswith("ro,")
    assert "WRITABLE" not in result.stdout and "Read-only file system" in result.stderr


def test_secret_is_absent_from_layers_outputs_and_the_run_root(bb, tmp_path):
    needle = VALUE.encode()
    bb("secret", "create", "db-pass", "-", input=VALUE, check=True)
    bb("run", "-d", "--name", "svc", "--secret", "db-pass", "busybox", "sh", "-c",
       "echo started; sleep 300", check=True)
    assert bb("exec", "svc", "cat", "/run/secrets/db-pass", check=True).stdout == VALUE
    assert not _grep_tree(bb.run_root, needle), "plaintext under the run root"
    assert not _grep_tree(bb.root, needle), "plaintext in the store"
    for args in (("inspect", "svc"), ("ps", "-a", "--no-trunc"), ("logs", "svc"), ("diff", "svc"),
                 ("secret", "inspect", "db-pass"), ("secret", "ls")):
        assert needle not in _raw(bb, *args), args
    assert needle not in _raw(bb, "export", "svc")
    bb("commit", "svc", "snap:1", check=True)
    assert needle not in _raw(bb, "save", "snap:1")
    with open("/proc/self/mountinfo") as handle:
        assert not [line for line in handle if str(bb.run_root) in line and "/secrets" in line]
    bb("rm", "-f", "svc", check=True)
    bb("rmi", "snap:1", check=True)


def test_a_missing_secret_fails_run_in_one_line_and_rm_refuses_one_in_use(bb):
    result = bb("run", "--rm", "--secret", "nope", "busybox", "true")
    assert result.returncode == 125 and result.error_lines == ["Error: secret not found: nope"]
    bb("secret", "create", "used", "-", input=VALUE, check=True)
    bb("create", "--name", "holder", "--secret", "used", "busybox", "true", check=True)
    refused = bb("secret", "rm", "used")
    assert refused.returncode == 1
    assert refused.error_lines == ["Error: secret used is in use by the following containers: holder"]
    assert json.loads(bb("secret", "inspect", "used", check=True).stdout)[0]["Containers"] == ["holder"]
    bb("rm", "holder", check=True)
    assert bb("secret", "rm", "used", check=True).stdout.strip() == "used"
    assert bb("secret", "ls", "-q", check=True).stdout == ""
    for bad, line in ((("run", "--rm", "--secret", "x,target=a/b", "busybox", "true"),
                       'Error: invalid --secret "x,target=a/b": the target must be a file name in /run/secrets'),
                      (("secret", "create", "e", "/nonexistent/file"),
                       "Error: secret create: cannot read /nonexistent/file: No such file or directory")):
        result = bb(*bad)
        assert result.error_lines == [line], result.stderr


def test_a_restarted_container_gets_its_secret_again(bb):
    from tests.services.conftest import eventually, state

    bb("secret", "create", "again", "-", input=VALUE, check=True)
    bb("run", "-d", "--name", "flaky", "--restart", "on-failure:1", "--secret", "again", "busybox", "sh", "-c",
       "cat /run/secrets/again; echo; exit 3", check=True)
    # RestartCount counts a restart when it is decided, before the container runs again (as Docker's does):
    # "1 and not running" also holds in between, so wait for the second run's line too (CI read the log there).
    def logged():
        return bb("logs", "flaky", check=True).stdout.splitlines()

    assert eventually(lambda: len(logged()) >= 2 and state(bb, "flaky")["RestartCount"] == 1
                      and not state(bb, "flaky")["Running"])
    assert logged() == [VALUE, VALUE]
    assert not _grep_tree(bb.run_root, VALUE.encode())
