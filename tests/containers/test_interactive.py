"""``run -it`` and ``exec -it`` through a real pseudo-terminal: window size, input, Ctrl-C, exit code."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import sys
import termios
import time

from tests.conftest import REPO


def spawn(pallet, *args, rows=33, cols=91):
    """Run pallet with a pty as its terminal; return (pid, master fd)."""
    pid, master = pty.fork()
    if pid == 0:
        os.chdir(REPO)
        os.execve(sys.executable, [sys.executable, "-m", "pallet.kernel.cli", "--root", str(pallet.root), "--run-root",
                                   str(pallet.run_root), *args], pallet.env)
    fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    return pid, master


def read_until(master, text: str, timeout: float = 20) -> str:
    seen = b""
    deadline = time.monotonic() + timeout
    while text.encode() not in seen:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"did not see {text!r} in {seen!r}"
        ready, _, _ = select.select([master], [], [], remaining)
        if ready:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
    assert text.encode() in seen, f"did not see {text!r} in {seen!r}"
    return seen.decode(errors="replace")


def finish(pid, master) -> int:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with_status = os.waitpid(pid, os.WNOHANG)
        if with_status[0]:
            os.close(master)
            return os.waitstatus_to_exitcode(with_status[1])
        try:
            os.read(master, 4096)
        except OSError:
            pass
        time.sleep(0.05)
    os.kill(pid, 9)
    raise AssertionError("pallet did not exit")


def test_run_it_has_a_tty_with_our_window_size_and_ctrl_c_reaches_the_container(bb):
    pid, master = spawn(bb, "run", "--rm", "-it", "busybox", "sh")
    read_until(master, "#")
    os.write(master, b"tty; stty size; echo $((6*7))\r")
    out = read_until(master, "42\r\n")
    assert "/dev/pts/" in out and "33 91" in out
    os.write(master, b"sleep 100\r")
    time.sleep(0.5)
    os.write(master, b"\x03")  # Ctrl-C: the container's terminal turns it into SIGINT for sleep
    os.write(master, b"echo after-$((1+1))\r")
    read_until(master, "after-2", timeout=10)
    fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 20, 70, 0, 0))
    os.kill(pid, 28)  # SIGWINCH, as a terminal emulator sends on resize
    time.sleep(0.3)
    os.write(master, b"stty size\r")
    read_until(master, "20 70")
    os.write(master, b"exit 3\r")
    assert finish(pid, master) == 3


def test_exec_it_into_a_running_container(bb):
    bb("run", "-d", "--name", "ex", "busybox", "sleep", "100", check=True)
    pid, master = spawn(bb, "exec", "-it", "ex", "sh")
    read_until(master, "#")
    os.write(master, b"tty; echo seen-$(ps | grep -c '[s]leep 100')\r")
    out = read_until(master, "seen-1")
    assert "/dev/pts/" in out
    os.write(master, b"exit 4\r")
    assert finish(pid, master) == 4
