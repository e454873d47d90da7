"""The same hand-made bundle under runc and crun (through pallet's driver) and under the built-in runtime."""

from __future__ import annotations

import os
import shutil
import signal

import pytest

from pallet.kernel.drivers import DriverContext
from tests.runtime.conftest import exit_code

# Everything here must print the same under every runtime (mount tables differ in detail, so no `mount`).
PROBE = ("echo $$; hostname; grep -E '^(CapEff|CapBnd|CapPrm|Seccomp|NoNewPrivs):' /proc/self/status; "
         "wc -c < /proc/timer_list; ls /sys/firmware | wc -l; ls /dev; ls /sys/fs/cgroup; ulimit -n; id; "
         "ip -o link | cut -d' ' -f2-3; echo x > /proc/sys/kernel/hostname; touch /x && echo rw")


def runtime_cls(name):
    from pallet.plugins.runtime.oci_cli import CrunRuntime, RuncRuntime

    return {"runc": RuncRuntime, "crun": CrunRuntime}[name]


@pytest.fixture(params=["runc", "crun"])
def oci(request, tmp_path):
    if shutil.which(request.param) is None:
        pytest.fail(f"{request.param} is not installed (scripts/setup.sh installs it)")
    runtime = runtime_cls(request.param)(DriverContext(tmp_path / f"{request.param}-state"))
    created: list[str] = []
    try:
        yield runtime, created
    finally:
        for container_id in created:
            runtime.delete(container_id, force=True)


def run_with(runtime, runner, args, **spec):
    container_id = runner.new_id()
    bundle = runner.bundle(container_id, args, **spec)
    out, err = runner.tmp / f"{container_id}.out", runner.tmp / f"{container_id}.err"
    with open(os.devnull) as stdin, open(out, "w") as stdout, open(err, "w") as stderr:
        pid = runtime.run(container_id, bundle, (stdin.fileno(), stdout.fileno(), stderr.fileno()))
    _, status = os.waitpid(pid, 0)
    runtime.delete(container_id)
    return exit_code(status), out.read_text(), err.read_text()


def test_same_bundle_gives_the_same_output(oci, runner):
    runtime, _created = oci
    seccomp = {"defaultAction": "SCMP_ACT_ALLOW",
               "syscalls": [{"names": ["unshare"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}
    theirs = run_with(runtime, runner, ["sh", "-c", PROBE], seccomp=seccomp, noNewPrivileges=True)
    ours = runner.run(["sh", "-c", PROBE], seccomp=seccomp, noNewPrivileges=True)
    assert theirs[0] == 0, theirs[2]
    # crun adds /dev/core and mounts every v1 hierarchy (net_cls, net_prio) it finds
    extra = {"core", "net_cls", "net_prio"} if runtime.binary == "crun" else set()
    their_lines = [line for line in theirs[1].splitlines() if line not in extra]
    assert (ours.status, ours.stdout.splitlines(), ours.stderr) == (theirs[0], their_lines, theirs[2])
    assert "CapEff:\t00000000a80425fb" in ours.stdout


@pytest.mark.parametrize("args,code", [(["false"], 1), (["no-such-command"], 127), (["/etc/passwd"], 126)])
def test_exit_codes_through_the_driver(oci, runner, args, code):
    from pallet.kernel.errors import PalletError

    runtime, _created = oci
    try:
        status = run_with(runtime, runner, args)[0]
    except PalletError as failure:
        status = failure.exit_code
    assert status == code


def test_kill_pause_resume_and_state(oci, runner):
    runtime, created = oci
    container_id = runner.new_id()
    bundle = runner.bundle(container_id, ["sleep", "60"])
    pid = runtime.run(container_id, bundle, (0, 1, 2))
    created.append(container_id)
    assert runtime.state(container_id)["status"] == "running"
    read, write = os.pipe()
    exec_pid = runtime.exec(container_id, {"args": ["sh", "-c", "echo $$; hostname"]}, (0, write, 2))
    os.close(write)
    output = b""
    while chunk := os.read(read, 4096):
        output += chunk
    os.close(read)
    assert os.waitstatus_to_exitcode(os.waitpid(exec_pid, 0)[1]) == 0
    assert output.split()[0] != b"1" and output.split()[1] == b"box"
    runtime.pause(container_id)
    assert runtime.state(container_id)["status"] == "paused"
    runtime.resume(container_id)
    runtime.kill(container_id, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    assert exit_code(status) == 137
    runtime.delete(container_id)
    created.remove(container_id)


def test_runc_run_of_the_same_bundle_gives_the_same_output(runner):
    import subprocess

    if shutil.which("runc") is None:
        pytest.fail("runc is not installed (scripts/setup.sh installs it)")
    container_id = runner.new_id()
    bundle = runner.bundle(container_id, ["sh", "-c", PROBE])
    state = runner.tmp / "runc-run-state"
    try:
        theirs = subprocess.run(["runc", "--root", str(state), "run", "-b", str(bundle), container_id],
                                stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    finally:
        subprocess.run(["runc", "--root", str(state), "delete", "--force", container_id], capture_output=True)
    ours = runner.run(["sh", "-c", PROBE])
    assert (ours.status, ours.stdout, ours.stderr) == (theirs.returncode, theirs.stdout, theirs.stderr)
    assert ours.stdout.startswith("1\nbox\n")


def test_terminal_over_the_console_socket(oci, runner):
    import socket
    import time

    from pallet.plugins.runtime.builtin import receive_console

    runtime, created = oci
    path = str(runner.tmp / f"{runtime.binary}-console.sock")
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(path)
        server.listen(1)
        container_id = runner.new_id()
        bundle = runner.bundle(container_id, ["sh", "-c", "tty; echo hello"], terminal=True)
        pid = runtime.run(container_id, bundle, (0, 1, 2), console_socket=path)
        created.append(container_id)
        master = receive_console(server)
    output = b""
    deadline = time.monotonic() + 10
    while b"hello" not in output and time.monotonic() < deadline:
        output += os.read(master, 4096)
    os.waitpid(pid, 0)
    os.close(master)
    assert output.split() == [b"/dev/pts/0", b"hello"]
