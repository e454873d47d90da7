"""Defect 10: read-only binds are recursive, and ``cp`` sees the container's view of its files."""

from __future__ import annotations


def test_readonly_rbind_makes_submounts_readonly(bb):
    # The host's / carries /proc, /sys and /dev/shm as submounts: each must be read-only under /host.
    result = bb("run", "--rm", "-v", "/:/host:ro", "busybox", "sh", "-c",
                "touch /host/dev/shm/pallet-d10 2>&1; echo rc=$?; touch /host/pallet-d10 2>&1; echo rc=$?;"
                " grep -E ' /host(/proc|/sys|/dev/shm) ' /proc/self/mountinfo")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "Read-only file system" in lines[0] and lines[1] == "rc=1", result.stdout
    assert "Read-only file system" in lines[2] and lines[3] == "rc=1", result.stdout
    submounts = lines[4:]
    assert len(submounts) >= 3, result.stdout
    for line in submounts:
        assert line.split()[5].split(",")[0] == "ro", line
