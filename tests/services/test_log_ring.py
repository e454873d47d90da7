"""``--log-opt mode=non-blocking`` for json-file: a log file slower than the output never holds the container.

The slow sink is real: the root lives on an ext4 loop file system that the test freezes
(``fsfreeze``), so every write to the container's log file waits in the kernel until the thaw. In
Docker's default ``blocking`` mode the container's writes to stdout stall with it; in
``non-blocking`` mode the container runs on and the oldest lines are dropped past ``max-buffer-size``.
"""

from __future__ import annotations

import contextlib
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.conftest import Pallet, teardown_networks
from tests.containers.conftest import cleanup_root
from tests.services.conftest import eventually, state

LINES = 200_000   # seq's 1.29 MB against a 256 KiB buffer
SCRIPT = ("while [ ! -e /signal/go ]; do sleep 0.05; done; seq 1 %d; touch /signal/done; "
          "while [ ! -e /signal/end ]; do sleep 0.05; done" % LINES)


def _run(*cmd: str) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def frozen_fs(tmp_path):
    """``(pallet, freeze, thaw)``: a busybox root on its own ext4 loop file system."""
    image, mount = tmp_path / "logfs.img", tmp_path / "logfs"
    subprocess.run(["truncate", "-s", "160M", str(image)], check=True)
    _run("mkfs.ext4", "-q", "-F", str(image))
    loop = _run("losetup", "-f", "--show", str(image))
    mount.mkdir()
    pallet = None
    try:
        _run("mount", loop, str(mount))
        (mount / "p").mkdir()
        pallet = Pallet(mount / "p" / "root", tmp_path / "run")
        pallet.bridge = "pr" + uuid.uuid4().hex[:8]
        (mount / "p" / "pallet.toml").write_text(f'[network]\nbridge_name = "{pallet.bridge}"\n'
                                                 '[containers]\ndefault_network = "none"\n')
        pallet("image", "build-busybox", check=True)

        def thaw():
            subprocess.run(["fsfreeze", "-u", str(mount)], capture_output=True)

        yield pallet, lambda: _run("fsfreeze", "-f", str(mount)), thaw
    finally:
        subprocess.run(["fsfreeze", "-u", str(mount)], capture_output=True)
        leaks = cleanup_root(pallet) if pallet is not None else []
        if pallet is not None:
            teardown_networks(pallet)
        subprocess.run(["umount", str(mount)], capture_output=True)
        subprocess.run(["losetup", "-d", loop], capture_output=True)
        assert not leaks, f"left behind: {leaks}"
        assert str(mount) not in Path("/proc/self/mounts").read_text()


def _blocked_writing_stdout(pid: int) -> bool:
    """A process of the container sleeps in write(1, …): its pipe is full and nobody drains it."""
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        with contextlib.suppress(OSError):
            stat = Path(f"/proc/{child}/stat").read_text()
            if stat.rsplit(")", 1)[1].split()[0] == "S" and Path(f"/proc/{child}/syscall").read_text().startswith("1 0x1 "):
                return True
    return False


def _numbers(text: str) -> list[int]:
    return [int(line) for line in text.splitlines()]


def test_non_blocking_mode_runs_on_past_a_frozen_log_file_and_keeps_the_newest_lines(frozen_fs, tmp_path):
    pallet, freeze, thaw = frozen_fs
    signal = tmp_path / "signal"
    signal.mkdir()
    pallet("run", "-d", "--name", "ring-nb", "-v", f"{signal}:/signal", "--log-opt", "mode=non-blocking",
           "--log-opt", "max-buffer-size=256k", "busybox", "sh", "-c", SCRIPT, check=True)
    freeze()
    try:
        (signal / "go").touch()
        # the whole output is written while no byte of it can reach the log file
        assert eventually(lambda: (signal / "done").exists(), timeout=90), "the container was held by its log"
    finally:
        thaw()
    (signal / "end").touch()
    assert pallet("wait", "ring-nb", check=True, timeout=90).stdout.strip() == "0"
    logs = pallet("logs", "ring-nb", check=True)
    kept = _numbers(logs.stdout)
    # the oldest lines were dropped, whole (no line spliced from two), the newest kept, in order
    assert kept[-1] == LINES and len(kept) < LINES // 2, len(kept)
    assert all(a < b for a, b in zip(kept, kept[1:]))
    size = len(logs.stdout)
    # the ring (256 KiB) plus at most the one chunk the writer held when the disk froze and one read
    assert 128 * 1024 < size <= 256 * 1024 + 2 * 65536, size
    tail = next(i for i in range(len(kept) - 1, 0, -1) if kept[i - 1] != kept[i] - 1)
    assert sum(len(str(n)) + 1 for n in kept[tail:]) > 128 * 1024   # the newest lines form one unbroken run
    assert state(pallet, "ring-nb")["ExitCode"] == 0


def test_blocking_mode_holds_the_container_until_the_log_file_takes_its_lines(frozen_fs, tmp_path):
    pallet, freeze, thaw = frozen_fs
    signal = tmp_path / "signal"
    signal.mkdir()
    pallet("run", "-d", "--name", "ring-b", "-v", f"{signal}:/signal", "busybox", "sh", "-c", SCRIPT, check=True)
    pid = state(pallet, "ring-b")["Pid"]
    freeze()
    try:
        (signal / "go").touch()
        assert eventually(lambda: _blocked_writing_stdout(pid), timeout=60)
        assert not (signal / "done").exists()
    finally:
        thaw()
    assert eventually(lambda: (signal / "done").exists(), timeout=90)
    (signal / "end").touch()
    assert pallet("wait", "ring-b", check=True, timeout=90).stdout.strip() == "0"
    assert _numbers(pallet("logs", "ring-b", check=True).stdout) == list(range(1, LINES + 1))
