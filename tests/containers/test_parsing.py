"""Pure parts: Docker's size, volume, mount, port and env parsing; user lookup; in-root path resolution."""

from __future__ import annotations

import os

import pytest

from pallet.kernel import runopts, spec
from pallet.kernel.errors import PalletError, UsageError
from pallet.kernel.rootpath import resolve_in_root


@pytest.mark.parametrize("text,size", [("32m", 32 << 20), ("1g", 1 << 30), ("512k", 512 << 10), ("1024", 1024),
                                        ("1.5g", int(1.5 * (1 << 30))), ("64MiB", 64 << 20), ("10mb", 10 << 20)])
def test_sizes_parse_like_docker(text, size):
    assert runopts.parse_size(text, "-m") == size


def test_volume_specs():
    assert runopts.parse_volume("/a:/b:ro") == {"Target": "/b", "ReadOnly": True, "Propagation": "rprivate",
                                                "Type": "bind", "Source": "/a", "CreateSource": True}
    named = runopts.parse_volume("data:/srv/data")
    assert (named["Type"], named["Source"], named["ReadOnly"]) == ("volume", "data", False)
    anonymous = runopts.parse_volume("/cache")
    assert (anonymous["Type"], anonymous["Source"], anonymous["Target"]) == ("volume", "", "/cache")
    assert runopts.parse_volume("/a:/b:rshared,rw")["Propagation"] == "rshared"
    with pytest.raises(UsageError, match="destination can't be '/'"):
        runopts.parse_volume("/a:/")


def test_mount_specs():
    assert runopts.parse_mount("type=bind,src=/a,dst=/b,readonly") == {
        "Type": "bind", "Source": "/a", "Target": "/b", "ReadOnly": True, "Propagation": "rprivate"}
    assert runopts.parse_mount("type=tmpfs,target=/t,tmpfs-size=64m,tmpfs-mode=1777")["TmpfsOptions"] == [
        f"size={64 << 20}", "mode=1777"]
    for bad in ("type=nfs,target=/x", "type=bind,target=/x", "type=tmpfs,source=/a,target=/x",
                "type=bind,source=/a,target=rel", "type=bind,source=/a,target=/x,colour=red"):
        with pytest.raises(UsageError):
            runopts.parse_mount(bad)


def test_port_specs_and_publish_all():
    bindings = runopts.parse_ports(["8080:80", "127.0.0.1::53/udp", "9000-9001:7000-7001", "443"], True,
                                   {"22/tcp": {}})
    assert bindings == {
        "80/tcp": [{"HostIp": "", "HostPort": "8080"}],
        "53/udp": [{"HostIp": "127.0.0.1", "HostPort": ""}],
        "7000/tcp": [{"HostIp": "", "HostPort": "9000"}],
        "7001/tcp": [{"HostIp": "", "HostPort": "9001"}],
        "443/tcp": [{"HostIp": "", "HostPort": ""}],
        "22/tcp": [{"HostIp": "", "HostPort": ""}],
    }
    for bad in ("80/icmp", "x:80", "70000", "1:2:3:4"):
        with pytest.raises(UsageError):
            runopts.parse_ports([bad], False, {})


def test_env_flags_files_and_passthrough(tmp_path, monkeypatch):
    monkeypatch.setenv("FROM_HOST", "h")
    monkeypatch.delenv("NOT_SET", raising=False)
    env_file = tmp_path / "e"
    env_file.write_text("A=1\n\n# c\nB=2\n")
    assert runopts.parse_env(["C=3", "FROM_HOST", "NOT_SET"], [str(env_file)]) == ["A=1", "B=2", "C=3", "FROM_HOST=h"]
    assert runopts.merge_env(["PATH=/bin", "A=1"], ["A=2", "B=3"]) == ["PATH=/bin", "A=2", "B=3"]
    with pytest.raises(UsageError):
        runopts.parse_env(["=x"], [])


def test_signals_and_ulimits():
    assert runopts.parse_signal("SIGTERM") == 15 and runopts.parse_signal("kill") == 9 and runopts.parse_signal("10") == 10
    with pytest.raises(UsageError):
        runopts.parse_signal("SIGNOPE")
    assert runopts.parse_ulimit("nofile=10:20") == {"Name": "nofile", "Soft": 10, "Hard": 20}
    with pytest.raises(UsageError):
        runopts.parse_ulimit("nofile=20:10")


@pytest.fixture
def rootfs(tmp_path):
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n")
    (root / "etc" / "group").write_text("root:x:0:\napp:x:1000:\nstaff:x:50:app,other\nwheel:x:10:app\n")
    return root


def test_users_and_groups_come_from_the_image(rootfs):
    assert spec.resolve_user(rootfs, "app") == {"uid": 1000, "gid": 1000, "additional_gids": [10, 50],
                                                "home": "/home/app"}
    assert spec.resolve_user(rootfs, "app:staff")["gid"] == 50
    assert spec.resolve_user(rootfs, "4242:99") == {"uid": 4242, "gid": 99, "additional_gids": [], "home": "/"}
    assert spec.resolve_user(rootfs, "")["uid"] == 0
    with pytest.raises(PalletError, match="unable to find user ghost"):
        spec.resolve_user(rootfs, "ghost")
    with pytest.raises(PalletError, match="unable to find group nogroup"):
        spec.resolve_user(rootfs, "app:nogroup")


def test_a_symlinked_passwd_cannot_point_at_the_hosts(rootfs):
    (rootfs / "etc" / "passwd").unlink()
    os.symlink("/etc/passwd", rootfs / "etc" / "passwd")  # absolute: resolved inside the rootfs
    with pytest.raises(PalletError, match="unable to find user daemon"):
        spec.resolve_user(rootfs, "daemon")


def test_paths_resolve_inside_the_root(tmp_path):
    root = tmp_path / "r"
    (root / "a" / "b").mkdir(parents=True)
    os.symlink("/a", root / "abs")
    os.symlink("../../../../..", root / "a" / "up")
    os.symlink("loop2", root / "loop1")
    os.symlink("loop1", root / "loop2")
    assert resolve_in_root(root, "/abs/b") == root / "a" / "b"
    assert resolve_in_root(root, "/a/up/etc/shadow") == root / "etc" / "shadow"
    assert resolve_in_root(root, "../../x") == root / "x"
    assert resolve_in_root(root, "/abs", follow_last=False) == root / "abs"
    with pytest.raises(PalletError, match="too many levels"):
        resolve_in_root(root, "/loop1")


def test_default_spec_resources_and_masks():
    res = spec.resources({"Memory": 64 << 20, "NanoCpus": 1_500_000_000, "CpuShares": 512, "PidsLimit": 20,
                          "BlkioWeight": 300, "CpusetCpus": "0"}, privileged=False)
    assert res["memory"]["limit"] == 64 << 20
    assert res["cpu"] == {"period": 100000, "quota": 150000, "shares": 512, "cpus": "0"}
    assert res["pids"] == {"limit": 20} and res["blockIO"] == {"weight": 300}
    assert res["devices"][0] == {"allow": False, "access": "rwm"}
    assert spec.resources({}, privileged=True)["devices"] == [{"allow": True, "access": "rwm"}]
    with pytest.raises(UsageError):
        spec.resources({"MemorySwap": 1 << 30}, privileged=False)
