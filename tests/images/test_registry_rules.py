"""Registry client rules that need no network: when plain HTTP is allowed, challenge parsing, credentials files."""

from __future__ import annotations

import base64
import json
import os
import stat

import pytest

from pallet.kernel.config import Config
from pallet.kernel.images import auth
from pallet.kernel.images.registry import RegistryClient, is_loopback, parse_challenge


def _config(insecure=()):
    return Config(file={"registries": {"insecure": list(insecure)}})


@pytest.mark.parametrize("host, expected", [
    ("localhost:5000", True), ("127.0.0.1:5000", True), ("127.8.9.10", True), ("[::1]:5000", True),
    ("registry.example:5000", False), ("10.0.0.1:5000", False), ("docker.io", False),
])
def test_plain_http_only_for_loopback_by_default(host, expected):
    assert is_loopback(host) is expected
    assert RegistryClient(_config(), host, credentials=("u", "p")).insecure is expected


def test_insecure_list_and_tls_verify_false_allow_plain_http():
    assert RegistryClient(_config(["registry.example:5000"]), "registry.example:5000", credentials=("u", "p")).insecure
    assert RegistryClient(_config(), "registry.example:5000", tls_verify=False, credentials=("u", "p")).insecure


def test_bearer_challenge_is_parsed():
    scheme, params = parse_challenge('Bearer realm="https://auth.example/token",service="registry.example",'
                                     'scope="repository:a/b:pull,push"')
    assert scheme == "bearer"
    assert params == {"realm": "https://auth.example/token", "service": "registry.example",
                      "scope": "repository:a/b:pull,push"}
    assert parse_challenge('Basic realm="x"') == ("basic", {"realm": "x"})


def test_credentials_round_trip_with_0600(tmp_path, monkeypatch):
    monkeypatch.setenv("PALLET_AUTH_FILE", str(tmp_path / "auth.json"))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    assert auth.lookup("registry.example") is None
    auth.store_credentials("https://registry.example/", "me", "pw:with:colons")
    assert stat.S_IMODE(os.stat(tmp_path / "auth.json").st_mode) == 0o600
    assert auth.lookup("registry.example") == ("me", "pw:with:colons")
    assert auth.remove_credentials("registry.example")
    assert auth.lookup("registry.example") is None
    (tmp_path / "docker").mkdir()
    (tmp_path / "docker" / "config.json").write_text(json.dumps(
        {"auths": {"https://index.docker.io/v1/": {"auth": base64.b64encode(b"hub:secret").decode()}}}))
    assert auth.lookup("docker.io") == ("hub", "secret")
