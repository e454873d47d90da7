"""Push, login and authenticated pulls through the API, against a real docker-registry with htpasswd auth."""

from __future__ import annotations

import base64
import json

import pytest

from tests.registry.conftest import auth_registry, registry  # noqa: F401  (docker-registry on loopback)


def _auth(registry, password=None) -> dict:  # noqa: F811
    return {"username": registry.user, "password": password or registry.password, "serveraddress": registry.host}


def test_docker_login_then_push_to_an_htpasswd_registry(api, auth_registry):  # noqa: F811
    bad = api.docker("login", "-u", "tester", "--password-stdin", auth_registry.host, input="wrong\n")
    assert bad.returncode == 1
    assert f"login attempt to http://{auth_registry.host}/v2/ failed with status: 401 Unauthorized" in bad.stderr
    login = api.docker("login", "-u", "tester", "--password-stdin", auth_registry.host, input="s3cret\n")
    assert login.returncode == 0, login.stderr
    assert "Login Succeeded" in login.stdout
    stored = json.loads((api.socket.parent / "docker-config" / "config.json").read_text())
    assert auth_registry.host in stored["auths"]   # the CLI keeps the credentials; the server stores none
    target = f"{auth_registry.host}/lib/bb:1"
    assert api.docker("tag", "busybox", target).returncode == 0
    pushed = api.docker("push", target)
    assert pushed.returncode == 0, pushed.stderr
    assert "The push refers to repository" in pushed.stdout and "1: digest: sha256:" in pushed.stdout
    assert auth_registry.requests(r"PUT /v2/lib/bb/manifests/1")
    again = api.docker("push", target)   # every blob is there now
    assert again.returncode == 0 and "Layer already exists" in again.stdout, again.stdout + again.stderr


def test_docker_py_push_streams_progress_and_aux_digest(api, registry):  # noqa: F811
    import docker

    client = api.client()
    client.images.get("busybox").tag(f"{registry.host}/lib/py", "2")
    events = list(client.images.push(f"{registry.host}/lib/py", tag="2", stream=True, decode=True))
    assert events[0] == {"status": f"The push refers to repository [{registry.host}/lib/py]"}
    assert any(e.get("status") == "Pushed" and e.get("id") for e in events)
    aux = [e["aux"] for e in events if "aux" in e]
    local = client.images.get(f"{registry.host}/lib/py:2")
    assert aux[0]["Tag"] == "2" and aux[0]["Digest"].startswith("sha256:") and aux[0]["Size"] > 0
    assert f"{registry.host}/lib/py@{aux[0]['Digest']}" in local.attrs["RepoDigests"]
    with pytest.raises(docker.errors.NotFound) as missing:
        client.images.push(f"{registry.host}/lib/none", tag="x")
    assert missing.value.explanation == f"An image does not exist locally with the tag: {registry.host}/lib/none"


def test_push_without_a_tag_sends_every_tag_of_the_repository(api, registry):  # noqa: F811
    for tag in ("a", "b"):
        assert api.docker("tag", "busybox", f"{registry.host}/lib/all:{tag}").returncode == 0
    pushed = api.docker("push", "--all-tags", f"{registry.host}/lib/all")
    assert pushed.returncode == 0, pushed.stderr
    assert "a: digest:" in pushed.stdout and "b: digest:" in pushed.stdout
    assert len(registry.requests(r"PUT /v2/lib/all/manifests/")) == 2


def test_docker_py_pull_with_auth_config_and_wrong_credentials(api, auth_registry):  # noqa: F811
    import docker

    client = api.client()
    repo = f"{auth_registry.host}/lib/private"
    client.images.get("busybox").tag(repo, "1")
    list(client.images.push(repo, tag="1", stream=True, decode=True, auth_config=_auth(auth_registry)))
    client.images.remove(f"{repo}:1")
    with pytest.raises(docker.errors.APIError) as refused:
        client.images.pull(repo, tag="1", auth_config=_auth(auth_registry, "wrong"))
    assert refused.value.status_code == 401
    assert "unauthorized" in refused.value.explanation and "UNAUTHORIZED" in refused.value.explanation
    with pytest.raises(docker.errors.APIError) as anonymous:
        client.images.pull(repo, tag="1")
    assert anonymous.value.status_code == 401
    image = client.images.pull(repo, tag="1", auth_config=_auth(auth_registry))
    assert f"{repo}:1" in image.tags
    assert api.pallet("run", "--rm", f"{repo}:1", "echo", "private").stdout == "private\n"


def test_bad_registry_headers_are_a_400(api):
    for header in ("not base64!", base64.urlsafe_b64encode(b"[1, 2").decode()):
        status, _headers, body = api.request("POST", "/images/create?fromImage=x&tag=1",
                                             headers={"X-Registry-Auth": header})
        assert status == 400 and body["message"] == "invalid X-Registry-Auth header: not base64-encoded JSON"
    status, _headers, body = api.request("POST", "/auth", body={"username": "u"})
    assert (status, body["message"]) == (400, "username and password are required")


def test_build_from_an_image_of_an_htpasswd_registry_with_x_registry_config(api, auth_registry, tmp_path):  # noqa: F811
    import docker

    base = f"{auth_registry.host}/lib/base:1"
    pushed = api.pallet("push", "busybox", base, env={"PALLET_AUTH_FILE": str(tmp_path / "none.json")})
    assert pushed.returncode == 1 and "unauthorized" in pushed.stderr   # the registry does want credentials
    client = api.client()
    client.images.get("busybox").tag(base)
    list(client.images.push(base, stream=True, decode=True, auth_config=_auth(auth_registry)))
    client.images.remove(base)
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Dockerfile").write_text(f'FROM {base}\nCMD ["echo", "built-on-private"]\n')
    refused = io_build(client, context)
    assert isinstance(refused, docker.errors.BuildError) and "unauthorized" in str(refused)
    login = api.docker("login", "-u", "tester", "--password-stdin", auth_registry.host, input="s3cret\n")
    assert login.returncode == 0, login.stderr
    built = api.docker("build", "-t", "private-built:1", str(context))   # the CLI sends X-Registry-Config
    assert built.returncode == 0, built.stderr
    assert auth_registry.requests(r"GET /v2/lib/base/manifests/1")
    run = api.docker("run", "--rm", "private-built:1")
    assert (run.returncode, run.stdout) == (0, "built-on-private\n"), run.stderr


def io_build(client, context):
    """docker-py's build without credentials: the BuildError it raises (its config file has none for the registry)."""
    import docker

    try:
        client.images.build(path=str(context), tag="private-built:0")
    except docker.errors.BuildError as exc:
        return exc
    return None
