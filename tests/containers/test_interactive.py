"""``run -it`` and ``exec -it`` through a real pseudo-terminal: window size, input, Ctrl-C, exit code."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import termios
import time

from tests.conftest import REPO


def spawn(pallet, *args, rows=33, cols=91):
    """Run pallet with a pty as its terminal; return (pid, master fd)."""
    argv = pallet.command(*args)  # the direct CLI, or the thin client in engine mode (PALLET_TEST_ENGINE=1)
    pid, master = pty.fork()
    if pid == 0:
        os.chdir(REPO)
        os.execve(argv[0], argv, pallet.env)
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


def test_ctrl_p_ctrl_q_detaches_and_attach_comes_back(bb):
    from tests.containers.conftest import record

    pid, master = spawn(bb, "run", "-it", "--name", "det", "busybox", "sh")
    read_until(master, "#")
    os.write(master, b"echo one-$((1+1))\r")
    read_until(master, "one-2")
    os.write(master, b"\x10\x11")  # Docker's default detach keys: Ctrl-P Ctrl-Q
    assert finish(pid, master) == 0
    assert record(bb, "det")["State"]["Running"] is True
    pid, master = spawn(bb, "attach", "--detach-keys", "ctrl-a,d", "det")
    os.write(master, b"echo two-$((2+2))\r")
    read_until(master, "two-4")
    os.write(master, b"\x01d")
    assert finish(pid, master) == 0
    assert record(bb, "det")["State"]["Running"] is True
    pid, master = spawn(bb, "attach", "det")
    os.write(master, b"exit 6\r")
    assert finish(pid, master) == 6
    assert record(bb, "det")["State"]["ExitCode"] == 6
    stopped = bb("attach", "det")
    assert stopped.returncode == 125 and "You cannot attach to a stopped container" in stopped.stderr


def test_run_it_detach_keys_override_the_default(bb):
    from tests.containers.conftest import record

    pid, master = spawn(bb, "run", "-it", "--detach-keys", "ctrl-x,y", "--name", "keys", "busybox", "sh")
    read_until(master, "#")
    os.write(master, b"\x10\x11echo still-$((3+3))\r")   # Ctrl-P Ctrl-Q are just keys now
    read_until(master, "still-6")
    os.write(master, b"\x18y")
    assert finish(pid, master) == 0
    assert record(bb, "keys")["State"]["Running"] is True


def test_stats_on_a_terminal_redraws_the_table_in_place(bb):
    import signal

    bb("run", "-d", "--name", "busy", "busybox", "sleep", "100", check=True)
    pid, master = spawn(bb, "stats", "busy")
    frames = read_until(master, "\x1b[2J\x1b[H", timeout=20)
    frames += read_until(master, "\x1b[2J\x1b[H", timeout=20)
    frames += read_until(master, "busy")
    os.kill(pid, signal.SIGINT)
    assert finish(pid, master) == 130
    drawn = frames.split("\x1b[2J\x1b[H")
    assert len(drawn) >= 3 and drawn[0] == ""   # every frame starts on a cleared screen, the first too
    for frame in drawn[1:-1]:
        lines = frame.strip().splitlines()
        assert lines[0].split()[:3] == ["CONTAINER", "ID", "NAME"] and lines[1].split()[1] == "busy"
    piped = bb("stats", "--no-stream", "busy", check=True)
    assert "\x1b" not in piped.stdout and piped.stdout.splitlines()[1].split()[1] == "busy"


def test_attach_without_a_tty_streams_output_until_the_exit(bb):
    bb("run", "-d", "--name", "ticker", "busybox", "sh", "-c", "sleep 1; echo out; echo err >&2; exit 5",
       check=True)
    result = bb("attach", "ticker")
    assert (result.returncode, result.stdout, result.stderr) == (5, "out\n", "err\n")


def test_detach_matcher_holds_a_prefix_and_releases_it_when_the_sequence_breaks():
    from pallet.kernel.attach import DetachMatcher, key_sequence

    assert key_sequence(None) == b"\x10\x11" and key_sequence("ctrl-a,d") == b"\x01d"
    matcher = DetachMatcher(b"\x10\x11")
    assert matcher.feed(b"ab\x10") == (b"ab", False)
    assert matcher.feed(b"x") == (b"\x10x", False)
    assert matcher.feed(b"\x10\x10") == (b"\x10", False)
    assert matcher.feed(b"\x11rest") == (b"", True)
