"""Containers through the Engine API, driven by the real docker CLI and docker-py."""

from __future__ import annotations

import json

from tests.containers.conftest import container_ids


def test_docker_run_rm_prints_the_output_and_returns_the_exit_code(api):
    result = api.docker("run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2")
    assert (result.returncode, result.stdout, result.stderr) == (0, "out\n", "err\n")
    result = api.docker("run", "--rm", "busybox", "sh", "-c", "exit 3")
    assert result.returncode == 3, result.stderr
    assert container_ids(api.pallet.root) == []


def test_run_detached_then_logs_stop_and_rm_and_the_cli_sees_the_same_container(api):
    result = api.docker("run", "-d", "--name", "web", "--label", "tier=front", "busybox", "sh", "-c",
                        "echo started; echo oops >&2; exec sleep 100")
    assert result.returncode == 0, result.stderr
    cid = result.stdout.strip()
    listed = api.pallet("ps", "--format", "{{.ID}} {{.Names}} {{.State}}", check=True).stdout.split()
    assert listed == [cid[:12], "web", "running"]
    logs = api.docker("logs", "web")
    while logs.stdout != "started\n":  # the shell may not have written yet
        logs = api.docker("logs", "web")
    assert (logs.stdout, logs.stderr) == ("started\n", "oops\n")
    assert api.docker("inspect", "-f", "{{.State.Status}} {{.Name}} {{.Config.Labels.tier}}", "web").stdout == \
        "running /web front\n"
    ps = api.docker("ps", "--format", "{{.Names}} {{.Image}}")
    assert ps.stdout == "web busybox\n"
    assert api.docker("stop", "-t", "1", "web").returncode == 0
    assert api.docker("ps", "-a", "--format", "{{.Names}} {{.State}}").stdout == "web exited\n"
    assert api.docker("rm", "web").returncode == 0
    again = api.docker("rm", "web")
    assert (again.returncode, again.stderr.strip()) == (1, "Error response from daemon: No such container: web")
    assert container_ids(api.pallet.root) == []


def test_a_container_made_by_pallet_run_shows_in_docker_ps(api):
    api.pallet("run", "-d", "--name", "fromcli", "busybox", "sleep", "100", check=True)
    assert api.docker("ps", "--format", "{{.Names}} {{.Status}}").stdout.startswith("fromcli Up")
    assert api.docker("rm", "-f", "fromcli").returncode == 0
    assert api.pallet("ps", "-a", "-q").stdout == ""


def test_a_name_in_use_is_a_409(api):
    assert api.docker("create", "--name", "twice", "busybox", "true").returncode == 0
    result = api.docker("create", "--name", "twice", "busybox", "true")
    assert result.returncode == 1
    assert 'The container name "/twice" is already in use' in result.stderr


def test_docker_rm_link_removes_the_link_and_no_container(api):
    api.pallet("create", "--name", "db", "busybox", "true", check=True)
    api.pallet("create", "--name", "app", "--link", "db:db", "busybox", "true", check=True)
    plain = api.docker("rm", "--link", "db")
    assert plain.returncode == 1 and "Conflict, cannot remove the default link name" in plain.stderr, plain.stderr
    done = api.docker("rm", "--link", "/app/db")
    assert (done.returncode, done.stdout) == (0, "/app/db\n"), done.stderr
    assert api.pallet("inspect", "-f", "{{.HostConfig.Links}}", "app").stdout == "[]\n"
    assert sorted(api.pallet("ps", "-a", "--format", "{{.Names}}").stdout.split()) == ["app", "db"]


def test_docker_py_create_start_wait_logs_rename_kill_restart(api):
    client = api.client()
    container = client.containers.run("busybox", ["sh", "-c", "echo hello; exit 7"], detach=True)
    assert container.wait() == {"StatusCode": 7, "Error": None}
    assert container.logs() == b"hello\n"
    container.rename("renamed")
    container.reload()
    assert container.name == "renamed" and container.status == "exited"
    sleeper = client.containers.run("busybox", ["sleep", "100"], detach=True, name="sleeper")
    assert [c.name for c in client.containers.list()] == ["sleeper"]
    assert {c.name for c in client.containers.list(all=True)} == {"sleeper", "renamed"}
    assert [c.name for c in client.containers.list(all=True, filters={"status": "exited"})] == ["renamed"]
    first_pid = sleeper.attrs["State"]["Pid"]
    sleeper.restart(timeout=0)
    sleeper.reload()
    assert sleeper.status == "running" and sleeper.attrs["State"]["Pid"] != first_pid
    sleeper.kill()
    assert sleeper.wait()["StatusCode"] == 137
    sleeper.remove()
    container.remove()
    assert client.containers.list(all=True) == []


def test_docker_py_logs_stream_follows_until_the_container_exits(api):
    client = api.client()
    container = client.containers.run("busybox", ["sh", "-c", "for i in 1 2 3; do echo line$i; sleep 0.2; done"],
                                      detach=True)
    lines = [chunk for chunk in container.logs(stream=True, follow=True)]
    assert b"".join(lines) == b"line1\nline2\nline3\n"
    container.remove(force=True)


def test_wait_conditions_and_a_client_gone_mid_wait_leaves_the_container_running(api):
    client = api.client()
    container = client.containers.create("busybox", ["sleep", "100"])
    assert container.wait(condition="not-running")["StatusCode"] == 0  # created is not running
    container.start()
    status, _h, body = api.request("POST", f"/containers/{container.id}/wait?condition=bogus")
    assert status == 400
    container.reload()
    assert container.status == "running"
    container.remove(force=True)
    inspect = api.request("GET", f"/containers/{container.id}/json")
    assert inspect[0] == 404 and json.dumps(inspect[2]).startswith('{"message": "No such container')
