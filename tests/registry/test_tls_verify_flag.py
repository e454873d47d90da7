"""``--tls-verify`` is podman's boolean flag: alone it never takes the next argument as its value, and
``--tls-verify=false`` turns verification off. The registry listens on a non-loopback address inside a
namespace of the test's own (on its ``lo``), so plain HTTP is allowed only when verification is off."""

from __future__ import annotations

import os
import subprocess
import uuid

import pytest

from tests.registry.conftest import _wait_ready

ADDRESS = "10.254.77.1"


@pytest.fixture
def netns_registry(tmp_path):
    """docker-registry on ADDRESS:5000 inside a fresh network namespace; pallet runs there too."""
    name = f"pttls{os.getpid()}{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    proc = handle = None
    try:
        netns = f"/run/netns/{name}"
        for cmd in (["ip", "link", "set", "lo", "up"], ["ip", "addr", "add", f"{ADDRESS}/32", "dev", "lo"]):
            subprocess.run(["nsenter", f"--net={netns}", *cmd], check=True)
        storage, config, log = tmp_path / "storage", tmp_path / "config.yml", tmp_path / "registry.log"
        config.write_text(f"version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {storage}\n"
                          f"http:\n  addr: {ADDRESS}:5000\n  secret: pallet-test-{os.getpid()}\n")
        handle = open(log, "wb")
        proc = subprocess.Popen(["nsenter", f"--net={netns}", "/usr/bin/docker-registry", "serve", str(config)],
                                stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
        ready = subprocess.run(["nsenter", f"--net={netns}", "python3", "-c",
                                "import sys,time,urllib.request\nfor _ in range(200):\n try:\n"
                                f"  urllib.request.urlopen('http://{ADDRESS}:5000/v2/', timeout=1); sys.exit(0)\n"
                                " except OSError: time.sleep(0.05)\nsys.exit(1)"], timeout=30)
        assert ready.returncode == 0, log.read_text()
        yield netns
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=10)
        if handle is not None:
            handle.close()
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def in_netns(rpallet, netns, *args):
    cmd = ["nsenter", f"--net={netns}", *rpallet.command(*args)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=rpallet.env)
    return proc


def test_tls_verify_alone_is_a_flag_and_false_allows_plain_http(netns_registry, rpallet):
    rpallet("image", "build-busybox", check=True)
    target = f"{ADDRESS}:5000/tls/busybox:1"
    rpallet("tag", "busybox", target, check=True)
    # Alone, the flag leaves the name as the positional argument: verification is on, HTTP refused.
    refused = in_netns(rpallet, netns_registry, "push", "--tls-verify", target)
    assert refused.returncode == 1, refused.stderr
    assert f"cannot reach registry {ADDRESS}:5000" in refused.stderr and "--tls-verify=false" in refused.stderr
    assert "invalid" not in refused.stderr
    pushed = in_netns(rpallet, netns_registry, "push", "--tls-verify=false", target)
    assert pushed.returncode == 0, pushed.stderr
    rpallet("rmi", target, check=True)
    again = in_netns(rpallet, netns_registry, "pull", "--tls-verify", target)
    assert again.returncode == 1 and "--tls-verify=false" in again.stderr
    # The last occurrence wins, as with Go's flags.
    pulled = in_netns(rpallet, netns_registry, "pull", "--tls-verify", "--tls-verify=false", target)
    assert pulled.returncode == 0, pulled.stderr
    assert rpallet("image", "inspect", target).returncode == 0
    login = in_netns(rpallet, netns_registry, "login", "--tls-verify=false", "-u", "u", "-p", "p", f"{ADDRESS}:5000")
    assert login.returncode == 0 and "Login Succeeded" in login.stdout, login.stderr
    login = in_netns(rpallet, netns_registry, "login", "--tls-verify", "-u", "u", "-p", "p", f"{ADDRESS}:5000")
    assert login.returncode == 1 and "--tls-verify=false" in login.stderr


@pytest.mark.parametrize("command", [("pull",), ("push",), ("login",), ("image", "sign"), ("image", "verify")])
def test_tls_verify_with_a_value_that_is_no_boolean_is_go_s_error(rpallet, command):
    result = rpallet(*command, "--tls-verify=maybe", "x")
    assert result.returncode == 2
    assert result.error_lines == ['Error: invalid argument "maybe" for "--tls-verify" flag: strconv.ParseBool: '
                                  'parsing "maybe": invalid syntax']
