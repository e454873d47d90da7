"""Pure parts of the runtime: generated cffi module, mount options, path resolution, capabilities, plans."""

from __future__ import annotations

import os

import pytest

from pallet.kernel import linux
from pallet.plugins.runtime.builtin import caps, init, rootfs


def test_generated_ffi_module_matches_its_declarations(tmp_path):
    from pallet.kernel import ffi_build

    ffi_build.build(tmp_path / "_ffi.py")
    assert (tmp_path / "_ffi.py").read_text() == ffi_build.TARGET.read_text(), \
        "run python3 -m pallet.kernel.ffi_build"


def test_mount_options_split_into_flags_propagation_and_data():
    flags, propagation, data = rootfs.parse_options(["nosuid", "rbind", "ro", "rprivate", "mode=755", "size=1m"])
    assert flags == linux.MS_NOSUID | linux.MS_BIND | linux.MS_REC | linux.MS_RDONLY
    assert propagation == linux.MS_PRIVATE | linux.MS_REC
    assert data == "mode=755,size=1m"
    assert rootfs.parse_options(["ro", "rw"])[0] == 0


def test_secure_join_keeps_symlinks_inside_the_rootfs(tmp_path):
    (tmp_path / "etc").mkdir()
    os.symlink("/etc", tmp_path / "abs")
    os.symlink("../../../../etc", tmp_path / "up")
    os.symlink("loop", tmp_path / "loop")
    assert rootfs.secure_join(str(tmp_path), "/abs/passwd") == str(tmp_path / "etc" / "passwd")
    assert rootfs.secure_join(str(tmp_path), "up/x") == str(tmp_path / "etc" / "x")
    assert rootfs.secure_join(str(tmp_path), "/../../x") == str(tmp_path / "x")
    with pytest.raises(OSError):
        rootfs.secure_join(str(tmp_path), "/loop")


def test_capability_masks():
    from tests.runtime.ocispec import DOCKER_CAPS

    assert caps.mask(DOCKER_CAPS) == 0xA80425FB
    assert caps.mask(["CAP_SYS_ADMIN", "net_admin", "CAP_FUTURE_THING"]) == (1 << 21) | (1 << 12)
    assert caps.masks(None) is None
    assert caps.masks({"bounding": ["CAP_KILL"]})["effective"] == 0


def test_rlimits_are_clamped_and_unknown_ones_refused():
    import resource

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    plan = init.plan_process({"args": ["x"], "rlimits": [{"type": "RLIMIT_NOFILE", "soft": 10 ** 9, "hard": 10 ** 9}]})
    assert plan.rlimits == [(resource.RLIMIT_NOFILE, hard, hard)]
    with pytest.raises(init.ContainerStartError, match="unknown rlimit"):
        init.plan_process({"args": ["x"], "rlimits": [{"type": "RLIMIT_NOPE", "soft": 1, "hard": 1}]})
    with pytest.raises(init.ContainerStartError, match="process.args is empty"):
        init.plan_process({"args": []})


def test_bundle_plan_resolves_rootfs_mounts_and_devices(tmp_path):
    spec = {"root": {"path": "rootfs", "readonly": True},
            "mounts": [{"destination": "/data", "type": "bind", "source": "data", "options": ["rbind", "ro"]},
                       {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m"]}],
            "linux": {"devices": [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229}],
                      "maskedPaths": ["/proc/kcore"], "rootfsPropagation": "rprivate"}}
    plan = rootfs.plan_mounts(spec, str(tmp_path))
    assert plan.rootfs == str(tmp_path / "rootfs") and plan.readonly
    assert plan.propagation == linux.MS_PRIVATE | linux.MS_REC
    bind, tmpfs = plan.mounts
    assert bind.source == str(tmp_path / "data") and bind.is_bind and bind.flags & linux.MS_RDONLY
    assert (tmpfs.type, tmpfs.data) == ("tmpfs", "size=1m")
    assert [d.path for d in plan.devices][-1] == "/dev/fuse"
    assert len(plan.devices) == len(rootfs.DEFAULT_DEVICES) + 1


def test_find_executable_follows_path(tmp_path):
    (tmp_path / "bin").mkdir()
    tool = tmp_path / "bin" / "tool"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    (tmp_path / "bin" / "data").write_text("")
    assert init.find_executable("tool", [f"PATH=/nowhere:{tmp_path}/bin"]) == str(tool)
    with pytest.raises(init.ContainerStartError) as failure:
        init.find_executable("data", [f"PATH={tmp_path}/bin"])
    assert failure.value.exit_code == 127
