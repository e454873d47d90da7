"""Registry auth: htpasswd basic auth on the real registry, login/logout, credentials files."""

from __future__ import annotations

import base64
import json
import os
import stat

from tests.images.conftest import snapshot
from tests.registry.conftest import layer_tar, push_with_skopeo, umoci_image


def test_pull_needs_login_then_works(auth_registry, rpallet, tmp_path):
    source = umoci_image(tmp_path, [layer_tar({"secret.txt": b"s\n"})])
    push_with_skopeo(source, auth_registry, "private/img:t")
    name = f"{auth_registry.host}/private/img:t"
    rpallet("image", "build-busybox", check=True)
    before = snapshot(rpallet.root)
    anonymous = rpallet("pull", name)
    assert anonymous.returncode == 1
    assert anonymous.error_lines == [f"Error: unauthorized: registry {auth_registry.host} needs a login "
                                     f"(pallet login {auth_registry.host})"]
    assert snapshot(rpallet.root) == before

    wrong = rpallet("login", "-u", "tester", "--password-stdin", auth_registry.host, input="nope\n")
    assert wrong.returncode == 1 and "incorrect username or password" in wrong.stderr
    assert not (tmp_path / "auth.json").exists()

    ok = rpallet("login", "-u", "tester", "--password-stdin", auth_registry.host, input="s3cret\n", check=True)
    assert "Login Succeeded" in ok.stdout
    auth_file = tmp_path / "auth.json"
    assert stat.S_IMODE(os.stat(auth_file).st_mode) == 0o600
    entry = json.loads(auth_file.read_text())["auths"][auth_registry.host]
    assert base64.b64decode(entry["auth"]).decode() == "tester:s3cret"
    rpallet("pull", name, check=True)
    assert name in rpallet("images", "--format", "{{.Repository}}:{{.Tag}}", check=True).stdout

    out = rpallet("logout", auth_registry.host, check=True).stdout
    assert out.strip() == f"Removing login credentials for {auth_registry.host}"
    assert json.loads(auth_file.read_text())["auths"] == {}
    again = rpallet("logout", auth_registry.host)  # as Docker: not logged in is not a failure
    assert (again.returncode, again.stdout) == (0, f"Not logged in to {auth_registry.host}\n")


def test_wrong_stored_password_fails_cleanly(auth_registry, rpallet, tmp_path):
    entry = base64.b64encode(b"tester:wrong").decode()
    (tmp_path / "auth.json").write_text(json.dumps({"auths": {auth_registry.host: {"auth": entry}}}))
    rpallet("image", "build-busybox", check=True)
    rpallet("tag", "busybox", f"{auth_registry.host}/x/y:z", check=True)
    before = snapshot(rpallet.root)
    result = rpallet("push", f"{auth_registry.host}/x/y:z")
    assert result.returncode == 1
    assert len(result.error_lines) == 1 and "incorrect username or password" in result.stderr
    assert snapshot(rpallet.root) == before


def test_docker_config_json_credentials_are_used(auth_registry, rpallet, tmp_path):
    docker_config = tmp_path / "docker-config"
    docker_config.mkdir()
    entry = base64.b64encode(b"tester:s3cret").decode()
    (docker_config / "config.json").write_text(
        json.dumps({"auths": {f"http://{auth_registry.host}": {"auth": entry}}}))
    rpallet("image", "build-busybox", check=True)
    target = f"{auth_registry.host}/from/docker:cfg"
    rpallet("tag", "busybox", target, check=True)
    rpallet("push", target, check=True)
    assert auth_registry.requests("PUT /v2/from/docker/manifests/cfg")


def test_bearer_token_flow_against_the_real_registry(token_registry, rpallet, tmp_path):
    rpallet("image", "build-busybox", check=True)
    target = f"{token_registry.host}/tok/bb:1"
    rpallet("tag", "busybox", target, check=True)
    before = snapshot(rpallet.root)
    refused = rpallet("push", target)
    assert refused.returncode == 1 and "needs a login" in refused.stderr
    assert snapshot(rpallet.root) == before and token_registry.tokens.refused >= 1

    wrong = rpallet("login", "-u", "tester", "-p", "nope", token_registry.host)
    assert wrong.returncode == 1 and "incorrect username or password" in wrong.stderr
    rpallet("login", "-u", "tester", "-p", "s3cret", token_registry.host, check=True)
    rpallet("push", target, check=True)
    assert "repository:tok/bb:pull,push" in token_registry.tokens.issued
    rpallet("rmi", target, check=True)
    rpallet("rmi", "busybox", check=True)
    rpallet("pull", target, check=True)
    assert "repository:tok/bb:pull" in token_registry.tokens.issued
    # skopeo with the same credentials sees what pallet pushed.
    from tests.registry.conftest import skopeo
    remote = json.loads(skopeo("inspect", "--tls-verify=false", "--creds", "tester:s3cret",
                               f"docker://{target}").stdout)
    ours = json.loads(rpallet("image", "inspect", target, check=True).stdout)[0]
    assert remote["Digest"] == ours["Descriptor"]["digest"]
