"""Landlock: rules parsing, the spec annotation, and real confinement of a forked child of the test process."""

from __future__ import annotations

import json
import os
import socket

import pytest

from pallet.kernel import host
from pallet.kernel.errors import UsageError
from pallet.plugins.runtime.builtin import landlock as enforce
from pallet.plugins.security import landlock

needs_landlock = pytest.mark.skipif(host.landlock_abi() <= 0, reason="Landlock is not enabled in this kernel")


def in_child(body) -> int:
    """Run ``body()`` in a forked child; its return value (an int) becomes the exit status we return."""
    pid = os.fork()
    if pid == 0:
        code = 99
        try:
            code = body()
        except BaseException:
            import traceback
            traceback.print_exc()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_rules_parse_shorthands_and_lists():
    rules = landlock.parse_rules({"paths": [{"path": "/usr", "access": "ro"},
                                            {"path": "/tmp", "access": ["read_file", "make_dir", "read_file"]}],
                                  "net": {"connect_tcp": [443]}})
    assert rules["paths"][0]["access"] == ["execute", "read_file", "read_dir"]
    assert rules["paths"][1]["access"] == ["read_file", "make_dir"]
    assert rules["net"] == {"bind_tcp": [], "connect_tcp": [443]}


@pytest.mark.parametrize("data, field", [
    ({"paths": [{"path": "usr"}]}, "paths[0].path"),
    ({"paths": [{"path": "/usr", "access": ["fly"]}]}, "paths[0].access"),
    ({"paths": [{"path": "/usr", "access": "rwx"}]}, "paths[0].access"),
    ({"net": {"connect_tcp": [70000]}}, "net.connect_tcp"),
    ({"files": []}, "files"),
])
def test_bad_rules_name_the_field(data, field):
    with pytest.raises(UsageError) as err:
        landlock.parse_rules(data, "x.json")
    assert f"x.json: {field}:" in str(err.value)


def test_toml_rules_become_the_spec_annotation(secure_spec, tmp_path):
    rules = tmp_path / "rules.toml"
    rules.write_text('[[paths]]\npath = "/usr"\naccess = "ro"\n[[paths]]\npath = "/tmp"\naccess = "rw"\n')
    spec, applied = secure_spec([f"landlock={rules}"])
    assert "landlock" in applied
    stored = json.loads(spec["annotations"][landlock.ANNOTATION])
    assert stored["paths"][0] == {"path": "/usr", "access": ["execute", "read_file", "read_dir"]}
    spec, applied = secure_spec()
    assert "landlock" not in applied and "annotations" not in spec


@needs_landlock
def test_restrict_self_denies_reads_outside_the_allowed_paths(tmp_path):
    allowed, denied = tmp_path / "allowed", tmp_path / "denied"
    for place in (allowed, denied):
        place.mkdir()
        (place / "file").write_text("data")

    def body():
        enforce.restrict_self(landlock.parse_rules({"paths": [{"path": str(allowed), "access": "rw"}]}))
        if (allowed / "file").read_text() != "data":
            return 2
        (allowed / "new").write_text("made")
        try:
            (denied / "file").read_text()
        except PermissionError:
            return 0
        return 1

    assert in_child(body) == 0
    assert (allowed / "new").read_text() == "made"
    assert (denied / "file").read_text() == "data"  # the test process itself stays unconfined


@needs_landlock
def test_read_only_rule_blocks_writes_and_file_rule_allows_one_file(tmp_path):
    (tmp_path / "ro").mkdir()
    single = tmp_path / "single.txt"
    single.write_text("one")

    def body():
        enforce.restrict_self({"paths": [{"path": str(tmp_path / "ro"), "access": ["read_dir", "read_file"]},
                                          {"path": str(single), "access": "rw"}]})
        try:
            (tmp_path / "ro" / "x").write_text("no")
            return 1
        except PermissionError:
            pass
        return 0 if single.read_text() == "one" else 3

    assert in_child(body) == 0


@needs_landlock
@pytest.mark.skipif(host.landlock_abi() < enforce.NET_ABI, reason="Landlock ABI below 4: no TCP port rules")
def test_tcp_connect_is_limited_to_listed_ports():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    port = server.getsockname()[1]
    try:
        def body():
            enforce.restrict_self({"paths": [], "net": {"bind_tcp": [], "connect_tcp": [port + 1 if port < 65535 else 1]}})
            # A raw address: name resolution would import codecs, and no file may be read any more.
            with socket.socket() as client:
                try:
                    client.connect(("127.0.0.1", port))
                    return 1
                except PermissionError:
                    return 0

        assert in_child(body) == 0
        socket.create_connection(("127.0.0.1", port), timeout=5).close()  # still reachable from here
    finally:
        server.close()


@needs_landlock
def test_missing_path_fails_loudly(tmp_path):
    def body():
        try:
            enforce.restrict_self({"paths": [{"path": str(tmp_path / "absent"), "access": ["read_file"]}]})
        except OSError as exc:
            return 0 if "absent" in str(exc) else 2
        return 1

    assert in_child(body) == 0
