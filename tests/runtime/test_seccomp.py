"""OCI seccomp -> libseccomp: rule translation, unknown names, and Docker's real default profile in a container."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import pytest

from tests.runtime.ocispec import DOCKER_CAPS

MOBY_DEFAULT = Path(__file__).resolve().parents[3] / "shared" / "testdata" / "moby-profiles" / "seccomp" / "default.json"
ARCH = {"x86_64": "SCMP_ARCH_X86_64", "aarch64": "SCMP_ARCH_AARCH64"}[platform.machine()]


def docker_to_oci(profile: dict, caps: list[str]) -> dict:
    """Just enough of Docker's profile resolution for the test (plugins/security/seccomp_format.py is the real one)."""
    arches = next((m["subArchitectures"] + [m["architecture"]] for m in profile.get("archMap", [])
                   if m["architecture"] == ARCH), [ARCH])
    rules = []
    for rule in profile["syscalls"]:
        includes, excludes = rule.get("includes") or {}, rule.get("excludes") or {}
        if includes.get("caps") and not set(includes["caps"]) <= set(caps):
            continue
        if includes.get("arches") and ARCH.removeprefix("SCMP_ARCH_").lower() not in includes["arches"] \
                and "amd64" not in includes["arches"]:
            continue
        if excludes.get("caps") and set(excludes["caps"]) & set(caps):
            continue
        rules.append({k: rule[k] for k in ("names", "action", "args", "errnoRet") if k in rule})
    return {"defaultAction": profile["defaultAction"], "defaultErrnoRet": profile.get("defaultErrnoRet"),
            "architectures": arches, "syscalls": rules}


def test_actions_translate_to_libseccomp_values():
    from pallet.plugins.runtime.builtin import seccomp

    assert seccomp.action("SCMP_ACT_ERRNO", 38) == 0x00050026
    assert seccomp.action("SCMP_ACT_ERRNO", None, 1) == 0x00050001
    assert seccomp.action("SCMP_ACT_ALLOW") == 0x7FFF0000
    assert seccomp.action("SCMP_ACT_KILL_PROCESS") == 0x80000000
    with pytest.raises(seccomp.SeccompError, match="unknown seccomp action"):
        seccomp.action("SCMP_ACT_EXPLODE")


def test_unknown_syscall_names_are_skipped_and_bad_operators_refused():
    from pallet.plugins.runtime.builtin import seccomp

    filt = seccomp.Filter.from_oci({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["getpid", "not_a_syscall"], "action": "SCMP_ACT_ERRNO"}]})
    assert filt.skipped == ["not_a_syscall"]
    with pytest.raises(seccomp.SeccompError, match="unknown seccomp operator"):
        seccomp.Filter.from_oci({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["personality"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": 1, "op": "BAD"}]}]})
    with pytest.raises(seccomp.SeccompError, match="unknown seccomp architecture"):
        seccomp.Filter.from_oci({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_PDP11"]})


def test_dockers_default_profile_in_a_container(runner):
    profile = docker_to_oci(json.loads(MOBY_DEFAULT.read_text()), DOCKER_CAPS)
    script = ("grep '^Seccomp:' /proc/self/status; unshare -U true || echo unshare-denied; "
              "mount -t tmpfs none /mnt || echo mount-denied; ls / | wc -l")
    result = runner.run(["sh", "-c", script], seccomp=profile)
    assert result.status == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:3] == ["Seccomp:\t2", "unshare-denied", "mount-denied"]
    assert int(lines[3]) > 3
    assert "Operation not permitted" in result.stderr


def test_compiled_programs_are_cached_by_content(tmp_path):
    from pallet.plugins.runtime.builtin import seccomp

    config = {"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_LOG"],
              "syscalls": [{"names": ["unshare"], "action": "SCMP_ACT_ERRNO"}]}
    first = seccomp.compile_oci(config, tmp_path)
    cached = list(tmp_path.iterdir())
    assert len(cached) == 1 and cached[0].read_bytes().endswith(b"\0" + first.code)
    assert first.code == seccomp.Filter.from_oci(config).export() and first.flags == 2
    profile = cached[0].read_bytes().partition(b"\0")[0]
    cached[0].write_bytes(profile + b"\0garbage")  # not a multiple of 8 bytes: recompiled, not loaded
    assert seccomp.compile_oci(config, tmp_path).code == first.code
    # a file of that name holding another profile's program (a CRC collision) is not used either
    allow_all = seccomp.Filter.from_oci({"defaultAction": "SCMP_ACT_ALLOW"}).export()
    cached[0].write_bytes(profile.replace(b"unshare", b"unshard") + b"\0" + allow_all)
    assert seccomp.compile_oci(config, tmp_path).code == first.code
    assert cached[0].read_bytes() == profile + b"\0" + first.code
    other = seccomp.compile_oci(dict(config, defaultErrnoRet=38), tmp_path)
    assert len(list(tmp_path.iterdir())) == 2 and other.code != first.code


def test_landlock_annotation_with_dockers_seccomp_profile(runner):
    from pallet.kernel import host

    if host.landlock_abi() <= 0:
        pytest.skip("Landlock is not enabled in this kernel")
    profile = docker_to_oci(json.loads(MOBY_DEFAULT.read_text()), DOCKER_CAPS)
    rules = {"paths": [{"path": "/", "access": "ro"}]}
    result = runner.run(["sh", "-c", "head -1 /etc/passwd; touch /tmp/x || echo write-denied"], seccomp=profile,
                        annotations={"run.pallet.landlock": json.dumps(rules)})
    assert result.status == 0, result.stderr
    assert result.stdout.splitlines() == ["root:x:0:0:root:/root:/bin/sh", "write-denied"]
    assert "Permission denied" in result.stderr
