"""``pallet serve``'s HTTP side: versions, Docker's headers and errors, the socket's mode, SIGTERM."""

from __future__ import annotations

import grp
import os
import stat

from tests.api.conftest import start_server, stop_server


def test_docker_cli_sees_a_1_47_server(api):
    result = api.docker("version", "--format", "{{.Server.APIVersion}} {{.Server.MinAPIVersion}} {{.Server.Os}}")
    assert (result.returncode, result.stdout.strip()) == (0, "1.47 1.24 linux"), result.stderr
    result = api.docker("info", "--format", "{{.OSType}} {{.ServerVersion}} {{.Containers}}")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[0] == "linux" and result.stdout.split()[2] == "0"


def test_every_response_carries_dockers_headers_on_every_version(api):
    for path in ("/_ping", "/v1.24/_ping", "/v1.44/_ping", "/v1.47/_ping"):
        status, headers, body = api.request("GET", path)
        assert (status, body) == (200, "OK")
        assert headers["Api-Version"] == "1.47" and headers["Ostype"] == "linux"
        assert headers["Server"].startswith("Pallet/")
    status, headers, body = api.request("HEAD", "/_ping")
    assert status == 200 and headers["Api-Version"] == "1.47"
    status, _headers, body = api.request("GET", "/version")
    assert (status, body["ApiVersion"], body["MinAPIVersion"]) == (200, "1.47", "1.24")


def test_a_path_version_out_of_range_is_a_400_in_dockers_words(api):
    status, _h, body = api.request("GET", "/v1.12/version")
    assert status == 400
    assert body == {"message": "client version 1.12 is too old. Minimum supported API version is 1.24, "
                               "please upgrade your client to a newer version"}
    status, _h, body = api.request("GET", "/v1.99/info")
    assert (status, body["message"]) == (400, "client version 1.99 is too new. Maximum supported API version is 1.47")


def test_errors_are_json_messages_with_dockers_codes(api):
    assert api.request("GET", "/v1.44/containers/nope/json")[::2] == (404, {"message": "No such container: nope"})
    status, headers, body = api.request("POST", "/containers/create", b"{not json")
    assert status == 400 and body["message"].startswith("invalid JSON")
    assert headers["Content-Type"] == "application/json"
    assert api.request("POST", "/containers/create", {"Image": 5})[0] == 400
    assert api.request("POST", "/containers/create", {"Image": "no-such-image"})[::2] == (
        404, {"message": "No such image: no-such-image"})
    assert api.request("GET", "/no/such/route")[::2] == (404, {"message": "page not found"})
    status, _h, body = api.request("GET", "/v1.44/swarm")
    assert status == 503 and body["message"].startswith("This node is not a swarm manager")
    assert api.request("GET", "/services")[0] == 503


def test_a_huge_body_is_refused_and_the_server_keeps_serving(api):
    status, _h, body = api.request("POST", "/containers/create", b"[" + b" " * (5 << 20) + b"]")
    assert status == 413 and "larger than" in body["message"]
    assert api.request("GET", "/_ping")[0] == 200


def test_the_socket_is_0660_and_sigterm_removes_it(bb, tmp_path):
    server = start_server(bb, tmp_path / "api.sock")
    try:
        mode = os.stat(server.socket).st_mode
        assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o660
        assert os.stat(server.socket).st_gid == grp.getgrnam("pallet").gr_gid  # scripts/setup.sh makes the group
    finally:
        assert stop_server(server) == 0
    assert not server.socket.exists()


def test_the_socket_path_appears_only_once_it_accepts_and_replaces_a_stale_one(tmp_path):
    """CI once connected in the moment between bind and listen (ECONNREFUSED): the path is now renamed in
    after listen(), so whoever sees it can connect; a stale socket file from a killed server is replaced."""
    import socket

    from pallet.kernel.api.server import _unix_listener

    path = tmp_path / "api.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()   # a dead server's file: connecting to it is refused
    listener = _unix_listener(str(path))
    try:
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client.connect(str(path))   # no accept() yet: the backlog takes it
        client.close()
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o660
        assert sorted(os.listdir(tmp_path)) == ["api.sock"]   # no temporary name left beside it
    finally:
        listener.close()


def test_plain_tcp_is_refused_without_tls(bb, tmp_path):
    result = bb("serve", "-H", "tcp://127.0.0.1:23750")
    assert result.returncode == 2
    assert result.error_lines == ["Error: -H tcp://127.0.0.1:23750: TCP needs --tlsverify with --tlscacert/--tlscert/"
                                  "--tlskey (or --insecure-tcp, which lets anyone who can connect control this host)"]


def test_socket_activation_serves_on_systemds_fd_and_timeout_exits_when_idle(bb, tmp_path):
    import socket
    import subprocess
    import sys

    from tests.api.conftest import UnixConnection
    from tests.conftest import REPO

    path = tmp_path / "activated.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(16)
    command = (f"LISTEN_PID=$$ LISTEN_FDS=1 exec {sys.executable} -m pallet.kernel.cli --root {bb.root} "
               f"--run-root {bb.run_root} serve -H fd:// --timeout 1")
    # systemd's convention: the first passed socket is fd 3 (dup'ed there in the child only).
    process = subprocess.Popen(["sh", "-c", command], cwd=str(REPO), env=bb.env, pass_fds=[3],
                               preexec_fn=lambda: os.dup2(listener.fileno(), 3), stderr=subprocess.DEVNULL)
    try:
        connection = UnixConnection(str(path))
        connection.request("GET", "/_ping")
        response = connection.getresponse()
        assert (response.status, response.read()) == (200, b"OK")
        connection.close()
        assert process.wait(60) == 0  # idle for a second: it exits, systemd would start it again
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        listener.close()


def test_events_since_through_docker_cli_and_docker_py(api):
    import json
    import time

    start = time.time()
    assert api.docker("run", "--rm", "--name", "evented", "busybox", "true").returncode == 0
    until = str(time.time() + 1)
    result = api.docker("events", "--since", str(start), "--until", until, "--filter", "container=evented",
                        "--format", "{{.Type}} {{.Action}} {{.Actor.Attributes.name}}")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "container create evented" in lines and "container start evented" in lines
    assert "container destroy evented" in lines
    client = api.client()
    seen = list(client.events(since=start, until=time.time() + 1, decode=True, filters={"event": "die"}))
    assert [e["Actor"]["Attributes"]["name"] for e in seen] == ["evented"]
    assert json.dumps(seen[0]["Actor"]["Attributes"]["exitCode"]) == '"0"'
    assert api.request("GET", "/events?filters=%7B%22bogus%22%3A%5B%22x%22%5D%7D")[0] == 400


def _engine_running(bb, timeout: float = 60) -> dict:
    import json
    import time

    deadline = time.monotonic() + timeout
    while True:
        state = json.loads(bb("engine", "status", "--format", "json", check=True).stdout)
        if state["running"] or time.monotonic() > deadline:
            return state
        time.sleep(0.05)


def test_serve_runs_the_engine_beside_it_and_it_ends_with_the_server_even_killed(bb, tmp_path):
    import json
    import signal
    import time

    server = start_server(bb, tmp_path / "api.sock", engine=True)
    try:
        state = _engine_running(bb)
        assert state["running"], state
        with open(f"/proc/{state['pid']}/stat") as handle:
            assert int(handle.read().rpartition(")")[2].split()[1]) == server.process.pid
        # A detached container's exit is recorded through it (its log pump hands the exit over).
        client = server.client()
        container = client.containers.run("busybox", ["sh", "-c", "exit 5"], detach=True, network_mode="none")
        assert container.wait()["StatusCode"] == 5
        container.remove()
        server.process.send_signal(signal.SIGKILL)   # no clean-up of its own: the engine's death signal
        server.process.wait()
        deadline = time.monotonic() + 60
        while json.loads(bb("engine", "status", "--format", "json", check=True).stdout)["running"] \
                and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not json.loads(bb("engine", "status", "--format", "json", check=True).stdout)["running"]
        assert not os.path.exists(f"/proc/{state['pid']}/stat") or \
            open(f"/proc/{state['pid']}/stat").read().rpartition(")")[2].split()[0] == "Z"
    finally:
        stop_server(server)
        (tmp_path / "api.sock").unlink(missing_ok=True)


def test_serve_no_engine_runs_none(bb, tmp_path):
    server = start_server(bb, tmp_path / "api.sock")
    try:
        assert server.request("GET", "/_ping")[0] == 200
        assert not _engine_running(bb, timeout=0)["running"]
    finally:
        stop_server(server)
