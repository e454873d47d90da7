"""Defect 9: when ``run``, ``start -a``, ``exec`` or ``wait`` fail in pallet itself, the exit status
does not look like the container's: 125 for an engine error, 126 (cannot invoke), 127 (not found),
as Docker's. Other commands keep 1, and 2 for usage errors."""

from __future__ import annotations

import pytest


@pytest.fixture
def ready(bb):
    """A running container ``up``, a stopped one ``done`` (exit 3), and created ones that cannot run."""
    bb("run", "-d", "--name", "up", "busybox", "sleep", "300", check=True)
    bb("run", "--name", "done", "busybox", "sh", "-c", "exit 3")
    bb("create", "--name", "missing", "busybox", "/no/such", check=True)
    bb("create", "--name", "notexec", "busybox", "/etc/passwd", check=True)
    bb("create", "--name", "three", "busybox", "sh", "-c", "exit 3", check=True)
    return bb


CASES = [
    (["run", "--rm", "--pull", "never", "nosuchimage", "true"], 125, "No such image: nosuchimage"),
    (["run", "--no-such-flag", "busybox"], 125, "unknown flag: --no-such-flag"),
    (["run", "--rm", "-m", "lots", "busybox", "true"], 125, "invalid size"),
    (["run", "--rm", "busybox", "/no/such"], 127, "no such file or directory"),
    (["run", "--rm", "busybox", "/etc/passwd"], 126, "permission denied"),
    (["start", "-a", "nosuch"], 125, "No such container: nosuch"),
    (["start", "-a", "--no-such-flag", "three"], 125, "unknown flag: --no-such-flag"),
    (["start", "-a", "missing"], 127, "no such file or directory"),
    (["start", "-a", "notexec"], 126, "permission denied"),
    (["exec", "nosuch", "true"], 125, "No such container: nosuch"),
    (["exec", "done", "true"], 125, "is not running"),
    (["exec", "--no-such-flag", "up", "true"], 125, "unknown flag: --no-such-flag"),
    (["exec", "-u", "nosuchuser", "up", "true"], 125, "unable to find user nosuchuser"),
    (["exec", "up", "/no/such"], 127, "no such file or directory"),
    (["exec", "up", "/etc/passwd"], 126, "permission denied"),
    (["wait", "nosuch"], 125, "No such container: nosuch"),
    (["wait", "--no-such-flag", "done"], 125, "unknown flag: --no-such-flag"),
    (["wait", "--condition", "gone", "done"], 125, "Invalid value for '--condition'"),
    (["rm", "nosuch"], 1, "No such container: nosuch"),
    (["logs", "nosuch"], 1, "No such container: nosuch"),
    (["ps", "--no-such-flag"], 2, "unknown flag: --no-such-flag"),
]


def test_pallets_own_failures_have_dockers_exit_codes(ready):
    # One root for every case (each is one command): the failures are checked together.
    wrong = []
    for args, code, message in CASES:
        result = ready(*args)
        if result.returncode != code or not result.error_lines or message not in result.error_lines[0]:
            wrong.append((args, result.returncode, result.stderr))
    assert wrong == []


def test_the_containers_own_exit_codes_pass_through(ready):
    assert ready("run", "--rm", "busybox", "sh", "-c", "exit 3").returncode == 3
    assert ready("start", "-a", "three").returncode == 3
    assert ready("exec", "up", "sh", "-c", "exit 4").returncode == 4
    waited = ready("wait", "done")
    assert (waited.returncode, waited.stdout) == (0, "3\n")   # wait prints the code; its own status is 0
