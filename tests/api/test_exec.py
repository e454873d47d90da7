"""``docker exec`` and docker-py's ``exec_run`` through the API: frames, TTY, stdin, exit codes."""

from __future__ import annotations


def test_docker_exec_separates_the_streams_and_returns_the_exit_code(api):
    assert api.docker("run", "-d", "--name", "ex", "busybox", "sleep", "100").returncode == 0
    result = api.docker("exec", "ex", "sh", "-c", "echo out; echo err >&2; echo pid=$$; exit 4")
    assert (result.returncode, result.stdout, result.stderr) == (4, "out\npid=2\n", "err\n")
    tty = api.docker("exec", "-t", "ex", "sh", "-c", "test -t 1 && echo a-tty")
    assert (tty.returncode, tty.stdout.strip()) == (0, "a-tty"), tty.stderr
    piped = api.docker("exec", "-i", "ex", "sh", "-c", "tr a-z A-Z", input="typed\n")
    assert (piped.returncode, piped.stdout) == (0, "TYPED\n"), piped.stderr
    missing = api.docker("exec", "nope", "true")
    assert (missing.returncode, missing.stderr.strip()) == (1, "Error response from daemon: No such container: nope")
    assert api.docker("rm", "-f", "ex").returncode == 0


def test_exec_in_a_stopped_container_is_a_409(api):
    assert api.docker("create", "--name", "idle", "busybox", "true").returncode == 0
    result = api.docker("exec", "idle", "true")
    assert result.returncode == 1 and "is not running" in result.stderr


def test_docker_py_exec_run_with_demux_and_inspect(api):
    client = api.client()
    container = client.containers.run("busybox", ["sleep", "100"], detach=True)
    code, (out, err) = container.exec_run(["sh", "-c", "echo to-out; echo to-err >&2; exit 2"], demux=True)
    assert (code, out, err) == (2, b"to-out\n", b"to-err\n")
    code, output = container.exec_run(["env"], environment={"GREETING": "hi"}, workdir="/tmp", user="1000")
    assert code == 0 and b"GREETING=hi" in output
    code, output = container.exec_run(["sh", "-c", "id -u; pwd"], user="1000", workdir="/tmp")
    assert (code, output) == (0, b"1000\n/tmp\n")
    exec_id = client.api.exec_create(container.id, ["true"])["Id"]
    client.api.exec_start(exec_id)
    assert client.api.exec_inspect(exec_id)["ExitCode"] == 0
    container.remove(force=True)


def test_exec_resize_sets_the_window_size_of_the_exec_tty(api):
    client = api.client()
    container = client.containers.run("busybox", ["sleep", "100"], detach=True, name="ex-size")
    before = client.api.exec_create(container.id, ["stty", "size"], tty=True)["Id"]
    client.api.exec_resize(before, height=20, width=70)  # before the start, as the docker CLI may send it
    assert client.api.exec_start(before, tty=True) == b"20 70\r\n"
    looping = client.api.exec_create(container.id, ["sh", "-c", "while true; do stty size; sleep 0.1; done"],
                                     tty=True)["Id"]
    output = client.api.exec_start(looping, stream=True, tty=True)
    client.api.exec_resize(looping, height=33, width=101)
    seen = b""
    for chunk in output:
        seen += chunk
        if b"33 101" in seen:
            break
    assert b"33 101" in seen
    status, _h, body = api.request("POST", f"/exec/{looping}/resize?h=x&w=1")
    assert status == 400
    assert api.request("POST", "/exec/nope/resize?h=1&w=1")[0] == 404
    container.remove(force=True)
