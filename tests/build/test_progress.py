"""``--progress``: the live view on a terminal (run under a real pty), BuildKit's plain numbered lines
otherwise, and how each shows a cached and a failed step."""

from __future__ import annotations

import fcntl
import os
import re
import struct
import subprocess
import termios
import threading

from tests.build.conftest import assert_nothing_left, write_context
from tests.conftest import REPO

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
DOCKERFILE = "FROM busybox\nRUN echo tty-step > /t\nCMD [\"cat\", \"/t\"]\n"


def under_pty(pallet, *args: str) -> tuple[int, str, str]:
    """Run ``pallet ARGS`` with stderr on a pty (200 columns), stdout on a pipe: (code, stdout, terminal text)."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
    env = {k: v for k, v in pallet.env.items() if k not in ("NO_COLOR", "FORCE_COLOR", "COLUMNS", "LINES")}
    env["TERM"] = "xterm-256color"
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every writer of the pty is gone
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain)
    try:
        proc = subprocess.Popen(pallet.command(*args), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=slave, cwd=str(REPO), env=env)
        os.close(slave)
        slave = -1
        reader.start()
        stdout, _ = proc.communicate(timeout=120)
        reader.join(timeout=30)
    finally:
        if slave >= 0:
            os.close(slave)
        os.close(master)
    return proc.returncode, stdout.decode(), b"".join(chunks).decode(errors="replace")


def final_rows(terminal: str) -> dict[int, str]:
    """Each step's row as the live view last drew it (the view redraws every row on each change)."""
    rows = {}
    for line in ANSI.sub("", terminal).replace("\r", "\n").split("\n"):
        match = re.match(r"=> #(\d+) (.*)$", line.strip())
        if match:
            rows[int(match.group(1))] = match.group(2)
    return rows


def test_tty_progress_is_a_live_view_with_cached_steps(build):
    context = write_context(build.tmp / "tty", {"Dockerfile": DOCKERFILE})
    code, stdout, terminal = under_pty(build.pallet, "build", "--progress", "tty", "-t", "tty", str(context))
    assert code == 0, terminal
    assert "\x1b[?25l" in terminal and "\x1b[34m=> #1" in terminal  # cursor hidden, rows drawn in colour
    rows = final_rows(terminal)
    assert re.fullmatch(r"\[stage-0 1/3\] FROM busybox  \d+\.\ds", rows[1])
    assert re.fullmatch(r"\[stage-0 2/3\] RUN echo tty-step > /t  \d+\.\ds", rows[2])
    assert rows[3].startswith('[stage-0 3/3] CMD ["cat", "/t"]')
    assert "Successfully built" in terminal and "Successfully tagged tty:latest" in terminal
    assert stdout.startswith("sha256:") and "\x1b" not in stdout   # the id on stdout, not in the view
    code, _stdout, terminal = under_pty(build.pallet, "build", "--progress", "tty", str(context))
    assert code == 0 and final_rows(terminal)[2] == "[stage-0 2/3] RUN echo tty-step > /t  CACHED"
    # auto on a terminal is the live view too
    code, _stdout, terminal = under_pty(build.pallet, "build", str(context))
    assert code == 0 and "\x1b[?25l" in terminal and final_rows(terminal)[2].endswith("CACHED")
    assert build.pallet("run", "--rm", "tty", check=True).stdout == "tty-step\n"


def test_tty_progress_marks_the_failed_step_and_prints_its_output_after_the_view(build):
    context = write_context(build.tmp / "fails", {"Dockerfile": "FROM busybox\nRUN echo about to fail; exit 3\n"})
    code, stdout, terminal = under_pty(build.pallet, "build", "--progress", "tty", str(context))
    assert code == 1 and stdout == ""
    assert final_rows(terminal)[2] == "[stage-0 2/2] RUN echo about to fail; exit 3  ERROR"
    plain = ANSI.sub("", terminal).replace("\r", "")
    tail = plain[plain.rindex("ERROR"):].splitlines()  # after the view's last frame
    assert tail[-2:] == ["  > about to fail", "Error: Dockerfile:2: RUN echo about to fail; exit 3 returned a non-zero "
                                              "code: 3"]
    assert_nothing_left(build.pallet)


def test_plain_progress_on_a_terminal_and_auto_on_a_pipe_are_numbered_lines(build):
    context = write_context(build.tmp / "plain", {"Dockerfile": DOCKERFILE})
    code, _stdout, terminal = under_pty(build.pallet, "build", "--progress", "plain", str(context))
    assert code == 0 and "\x1b" not in terminal
    lines = terminal.replace("\r", "").splitlines()
    assert lines[:2] == ["#1 [stage-0 1/3] FROM busybox", "#1 DONE 0.0s"]
    assert lines[2] == "#2 [stage-0 2/3] RUN echo tty-step > /t"
    assert re.fullmatch(r"#2 DONE \d+\.\ds", lines[3])
    piped = subprocess.run(build.pallet.command("build", str(context)), capture_output=True, text=True,
                           cwd=str(REPO), env=build.pallet.env)
    assert piped.returncode == 0 and "\x1b" not in piped.stderr
    assert "#2 [stage-0 2/3] RUN echo tty-step > /t\n#2 CACHED\n" in piped.stderr
    failed = build("FROM busybox\nRUN echo about to fail; exit 3\n", {}, check=False)
    assert "#2 0." in failed.stderr and "#2 ERROR: exit code: 3\n  > about to fail\n" in failed.stderr
