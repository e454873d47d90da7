"""Profiles enforced for real: specs built by the security plugins, run under runc with an in-container probe."""

from __future__ import annotations

import os
import shutil

import pytest

from tests.security.sec_helpers import MOBY_SECCOMP
from tests.security.sec_helpers import run_probe


def test_default_container_is_confined_like_dockers(secure_spec, runc):
    spec, _ = secure_spec()
    seen = run_probe(runc, spec)
    assert seen["CapEff"] == "00000000a80425fb" and seen["CapBnd"] == "00000000a80425fb"
    assert seen["CapInh"] == seen["CapAmb"] == "0000000000000000"
    assert seen["Seccomp"] == "2" and seen["NoNewPrivs"] == "0"
    assert seen["unshare_user"] == "EPERM"
    assert seen["keyctl"] == "EPERM"
    assert seen["clone3"] == "ENOSYS"
    assert seen["mount"] == "EPERM"
    assert seen["personality_query"] == 0 and seen["personality_bad"] == "EPERM"
    assert seen["chroot"] == "EFAULT"  # allowed: CAP_SYS_CHROOT is a default capability


def test_no_new_privileges_is_set(secure_spec, runc):
    spec, _ = secure_spec(["no-new-privileges"])
    assert run_probe(runc, spec)["NoNewPrivs"] == "1"


@pytest.mark.parametrize("profile", ["default.json", "fixtures/default-old-format.json"])
def test_dockers_profiles_load_and_deny(secure_spec, runc, profile):
    spec, _ = secure_spec([f"seccomp={MOBY_SECCOMP / profile}"])
    seen = run_probe(runc, spec)
    assert seen["Seccomp"] == "2" and seen["unshare_user"] == "EPERM" and seen["mount"] == "EPERM"


def test_unconfined_and_privileged_open_up(secure_spec, runc):
    spec, _ = secure_spec(["seccomp=unconfined"])
    seen = run_probe(runc, spec)
    assert seen["Seccomp"] == "0" and seen["unshare_user"] == 0 and seen["CapEff"] == "00000000a80425fb"
    spec, _ = secure_spec(privileged=True)
    seen = run_probe(runc, spec)
    assert seen["Seccomp"] == "0" and seen["mount"] == "EFAULT"
    with open("/proc/self/status") as handle:
        host_bounding = next(line.split()[1] for line in handle if line.startswith("CapBnd:"))
    assert seen["CapEff"] == host_bounding


def test_cap_drop_and_add_reach_the_process(secure_spec, runc):
    spec, _ = secure_spec(cap_drop=["ALL"], cap_add=["CAP_SYS_ADMIN"])
    seen = run_probe(runc, spec)
    assert seen["CapEff"] == f"{1 << 21:016x}"
    assert seen["mount"] == "EFAULT" and seen["clone3"] == "EINVAL"  # SYS_ADMIN opens both in the filter
    assert seen["chroot"] == "EPERM"  # CAP_SYS_CHROOT dropped: filtered out


def test_non_root_user_has_only_added_capabilities(secure_spec, runc):
    spec, _ = secure_spec(user="1000")
    seen = run_probe(runc, spec)
    assert seen["CapEff"] == seen["CapPrm"] == "0000000000000000"
    spec, _ = secure_spec(user="1000", cap_add=["NET_BIND_SERVICE"])
    seen = run_probe(runc, spec)
    assert seen["CapEff"] == seen["CapAmb"] == f"{1 << 10:016x}"


def give_file_capability(path, number: int) -> None:
    """Write a ``security.capability`` xattr (vfs_cap_data revision 2, effective bit) granting one capability."""
    import struct

    low, high = (1 << number) & 0xFFFFFFFF, (1 << number) >> 32
    os.setxattr(path, "security.capability", struct.pack("<IIIII", 0x02000000 | 1, low, 0, high, 0))


@pytest.mark.parametrize("nnp, expected", [(False, f"{1 << 10:016x}"), (True, "0000000000000000")])
def test_file_capabilities_work_for_non_root_unless_no_new_privileges(secure_spec, runc, nnp, expected):
    tool = runc.base / "bundle" / "rootfs" / "opt" / "busybox"
    tool.parent.mkdir()
    shutil.copy("/bin/busybox", tool)
    give_file_capability(tool, 10)  # CAP_NET_BIND_SERVICE, one of the defaults in the bounding set
    spec, _ = secure_spec(["no-new-privileges"] if nnp else [], user="1000")
    spec["process"]["args"] = ["/opt/busybox", "awk", "/^CapEff:/ {print $2}", "/proc/self/status"]
    done = runc.run(spec)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == expected


@pytest.mark.parametrize("cap_add", [[], ["SYS_ADMIN"]])
def test_pallet_default_answers_like_dockers_default_live(secure_spec, runc, cap_add):
    calls = ("unshare_user", "keyctl", "clone3", "personality_query", "personality_bad", "mount", "chroot")
    spec, _ = secure_spec(cap_add=cap_add)
    ours = run_probe(runc, spec)
    spec, _ = secure_spec([f"seccomp={MOBY_SECCOMP / 'default.json'}"], cap_add=cap_add)
    dockers = run_probe(runc, spec)
    assert {c: ours[c] for c in calls} == {c: dockers[c] for c in calls}
