"""``pallet update`` refusals that the kernel makes: one clear line, the container untouched."""

from __future__ import annotations

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
