"""seccomp: Docker-format profiles (default, old format, fixtures) to OCI, pallet's default, option handling."""

from __future__ import annotations

import json

import pytest

from pallet.kernel.errors import PalletError, UsageError
from pallet.plugins.security import seccomp_format
from pallet.plugins.security.capabilities import DEFAULT_CAPABILITIES
from pallet.plugins.security.seccomp_default import default_profile
from tests.security.sec_helpers import MOBY_SECCOMP, seccomp_decision

AMD64 = ("SCMP_ARCH_X86_64", "amd64")
CLONE_THREAD_FLAGS = 0x3D0F00  # what glibc's pthread_create passes
CLONE_NEWUSER = 0x10000000

# (call, args, capabilities beyond the defaults) -> must be decided the same by Docker's and pallet's defaults.
CASES = [
    ("read", (), ()), ("openat", (), ()), ("execve", (), ()), ("getrandom", (), ()),
    ("unshare", (CLONE_NEWUSER,), ()), ("unshare", (CLONE_NEWUSER,), ("CAP_SYS_ADMIN",)),
    ("setns", (), ()), ("keyctl", (), ()), ("add_key", (), ()), ("request_key", (), ()),
    ("personality", (0,), ()), ("personality", (0xFFFFFFFF,), ()), ("personality", (0x0400000,), ()),
    ("clone", (CLONE_THREAD_FLAGS,), ()), ("clone", (CLONE_NEWUSER,), ()), ("clone", (CLONE_NEWUSER,), ("CAP_SYS_ADMIN",)),
    ("clone3", (), ()), ("clone3", (), ("CAP_SYS_ADMIN",)),
    ("mount", (), ()), ("mount", (), ("CAP_SYS_ADMIN",)), ("umount2", (), ()), ("pivot_root", (), ()),
    ("reboot", (), ()), ("reboot", (), ("CAP_SYS_BOOT",)), ("kexec_load", (), ("CAP_SYS_BOOT",)),
    ("init_module", (), ()), ("init_module", (), ("CAP_SYS_MODULE",)), ("bpf", (), ()), ("perf_event_open", (), ()),
    ("ptrace", (), ()), ("chroot", (), ()), ("swapon", (), ()), ("settimeofday", (), ()),
    ("settimeofday", (), ("CAP_SYS_TIME",)), ("socket", (2,), ()), ("socket", (38,), ()), ("socket", (40,), ()),
    ("open_by_handle_at", (), ()), ("userfaultfd", (), ()), ("io_uring_setup", (), ()), ("arch_prctl", (), ()),
    ("acct", (), ()), ("syslog", (), ()), ("vhangup", (), ()), ("iopl", (), ()), ("mbind", (), ()),
]


def decide(profile: dict, name: str, args, extra_caps) -> tuple[str, int | None]:
    caps = list(DEFAULT_CAPABILITIES) + list(extra_caps)
    oci = seccomp_format.to_oci(profile, caps, arch=AMD64, release="6.18.0", actions_avail=None)
    return seccomp_decision(oci, name, args)


@pytest.mark.parametrize("name, args, extra_caps", CASES)
def test_pallet_default_decides_like_dockers(name, args, extra_caps):
    docker = seccomp_format.load(str(MOBY_SECCOMP / "default.json"))
    assert decide(default_profile(), name, args, extra_caps) == decide(docker, name, args, extra_caps)


def test_clone3_is_enosys_and_unshare_eperm_in_default():
    profile = default_profile()
    assert decide(profile, "clone3", (), ()) == ("SCMP_ACT_ERRNO", 38)
    assert decide(profile, "unshare", (CLONE_NEWUSER,), ()) == ("SCMP_ACT_ERRNO", 1)
    assert decide(profile, "clone", (CLONE_THREAD_FLAGS,), ())[0] == "SCMP_ACT_ALLOW"


def test_dockers_default_converts_for_this_architecture():
    oci = seccomp_format.to_oci(seccomp_format.load(str(MOBY_SECCOMP / "default.json")), DEFAULT_CAPABILITIES, arch=AMD64)
    assert oci["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    assert oci["defaultAction"] == "SCMP_ACT_ERRNO" and oci["defaultErrnoRet"] == 1
    for rule in oci["syscalls"]:
        assert set(rule) <= {"names", "action", "errnoRet", "args"}
    assert not any("s390_runtime_instr" in r["names"] for r in oci["syscalls"])
    assert any("arch_prctl" in r["names"] for r in oci["syscalls"])


def test_old_format_with_architectures_and_single_names():
    oci = seccomp_format.to_oci(seccomp_format.load(str(MOBY_SECCOMP / "fixtures" / "default-old-format.json")),
                                DEFAULT_CAPABILITIES, arch=AMD64)
    assert oci["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    assert all(len(rule["names"]) == 1 for rule in oci["syscalls"])
    assert seccomp_decision(oci, "accept", ())[0] == "SCMP_ACT_ALLOW"


def test_conditional_include_follows_capabilities():
    profile = seccomp_format.load(str(MOBY_SECCOMP / "fixtures" / "conditional_include.json"))
    plain = seccomp_format.to_oci(profile, DEFAULT_CAPABILITIES, arch=AMD64)
    admin = seccomp_format.to_oci(profile, [*DEFAULT_CAPABILITIES, "CAP_SYS_ADMIN", "CAP_SYSLOG"], arch=AMD64)
    assert seccomp_decision(plain, "syslog", ())[0] == "SCMP_ACT_ERRNO"
    assert seccomp_decision(plain, "ptrace", ())[0] == "SCMP_ACT_ALLOW"
    assert seccomp_decision(admin, "syslog", ())[0] == "SCMP_ACT_ALLOW"
    assert seccomp_decision(admin, "ptrace", ())[0] == "SCMP_ACT_ERRNO"


def test_example_fixture_keeps_errno_and_masked_args():
    oci = seccomp_format.to_oci(seccomp_format.load(str(MOBY_SECCOMP / "fixtures" / "example.json")), [], arch=AMD64)
    assert seccomp_decision(oci, "syslog", ()) == ("SCMP_ACT_ERRNO", 12345)
    assert seccomp_decision(oci, "clone", (CLONE_NEWUSER,))[0] == "SCMP_ACT_ERRNO"
    assert seccomp_decision(oci, "clone", (CLONE_THREAD_FLAGS,))[0] == "SCMP_ACT_ALLOW"


def test_min_kernel_include_and_exclude():
    profile = {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["new_call"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "5.10"}},
        {"names": ["old_call"], "action": "SCMP_ACT_ALLOW", "excludes": {"minKernel": "5.10"}}]}
    old = seccomp_format.to_oci(profile, [], arch=AMD64, release="4.19.0-23-amd64")
    new = seccomp_format.to_oci(profile, [], arch=AMD64, release="6.18.0")
    assert [r["names"] for r in old["syscalls"]] == [["old_call"]]
    assert [r["names"] for r in new["syscalls"]] == [["new_call"]]


def test_unknown_syscall_names_are_kept_for_the_runtime_to_skip():
    profile = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["no_such_call"], "action": "SCMP_ACT_ERRNO"}]}
    assert seccomp_format.to_oci(profile, [], arch=AMD64)["syscalls"][0]["names"] == ["no_such_call"]


@pytest.mark.parametrize("profile, field", [
    ({"syscalls": []}, "defaultAction"),
    ({"defaultAction": "SCMP_ACT_MAYBE"}, "defaultAction"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": {"names": []}}, "syscalls"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "ALLOW"}]}, "syscalls[0].action"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": "read", "action": "SCMP_ACT_ALLOW"}]}, "syscalls[0].names"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"name": "read", "names": ["read"], "action": "SCMP_ACT_ALLOW"}]}, "syscalls[0]"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW",
                                                       "args": [{"index": 7, "value": 1, "op": "SCMP_CMP_EQ"}]}]}, "syscalls[0].args[0].index"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW",
                                                       "args": [{"index": 0, "value": 1, "op": "EQUALS"}]}]}, "syscalls[0].args[0].op"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW",
                                                       "includes": {"minKernel": "five"}}]}, "syscalls[0].includes.minKernel"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64"],
      "archMap": [{"architecture": "SCMP_ARCH_X86_64"}]}, "architectures"),
    ({"defaultAction": "SCMP_ACT_NOTIFY"}, "listenerPath"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "flags": ["SECCOMP_FILTER_FLAG_FAST"]}, "flags[0]"),
])
def test_malformed_profile_is_one_line_naming_the_field(profile, field):
    with pytest.raises(UsageError) as err:
        seccomp_format.to_oci(profile, [], source="p.json", arch=AMD64)
    message = str(err.value)
    assert "\n" not in message and f"p.json: {field}:" in message


def test_action_missing_from_kernel_is_refused():
    profile = {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_LOG"}]}
    with pytest.raises(PalletError, match="SCMP_ACT_LOG is not supported"):
        seccomp_format.to_oci(profile, [], arch=AMD64, actions_avail={"allow", "errno"})


def test_every_action_this_kernel_lists_is_accepted():
    avail = seccomp_format.available_actions()
    for action, kernel_name in seccomp_format.ACTIONS.items():
        if kernel_name in avail:
            profile = {"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/x.sock",
                       "syscalls": [{"names": ["read"], "action": action}]}
            assert seccomp_format.to_oci(profile, [], arch=AMD64)["syscalls"][0]["action"] == action


def test_unreadable_or_non_json_profile_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(UsageError, match="bad.json is not valid JSON"):
        seccomp_format.load(str(bad))
    with pytest.raises(UsageError, match="does not exist"):
        seccomp_format.load(str(tmp_path / "missing.json"))


def test_option_forms_and_precedence(secure_spec, tmp_path):
    spec, _ = secure_spec()
    assert spec["linux"]["seccomp"]["defaultAction"] == "SCMP_ACT_ERRNO"
    spec, _ = secure_spec(["seccomp=unconfined"])
    assert "seccomp" not in spec["linux"]
    spec, _ = secure_spec(["seccomp:" + str(MOBY_SECCOMP / "fixtures" / "example.json")])
    assert len(spec["linux"]["seccomp"]["syscalls"]) == 4
    spec, _ = secure_spec(["seccomp=" + str(MOBY_SECCOMP / "default.json")], privileged=True)
    assert "seccomp" not in spec["linux"]


def test_cap_add_sys_admin_opens_mount_in_the_filter(secure_spec):
    spec, _ = secure_spec(cap_add=["SYS_ADMIN"])
    assert seccomp_decision(spec["linux"]["seccomp"], "mount", ())[0] == "SCMP_ACT_ALLOW"
    spec, _ = secure_spec()
    assert seccomp_decision(spec["linux"]["seccomp"], "mount", ())[0] == "SCMP_ACT_ERRNO"


def test_host_default_profile_from_config(pallet, tmp_path):
    from pallet.kernel.config import Config
    from pallet.kernel.drivers import SecurityContext
    from pallet.kernel.engine import Engine
    from pallet.kernel.security import apply_profiles
    from tests.security.sec_helpers import base_spec

    config = tmp_path / "pallet.toml"
    config.write_text(f'[security]\nseccomp_profile = "{MOBY_SECCOMP / "fixtures" / "example.json"}"\n')
    engine = Engine(Config.load(root=str(tmp_path / "root"), config_path=str(config)))
    spec = base_spec()
    apply_profiles(engine, spec, SecurityContext(settings=engine.config.section("security")), [])
    assert seccomp_decision(spec["linux"]["seccomp"], "syslog", ()) == ("SCMP_ACT_ERRNO", 12345)
    spec = base_spec()
    apply_profiles(engine, spec, SecurityContext(settings=engine.config.section("security")), ["seccomp=unconfined"])
    assert "seccomp" not in spec["linux"]
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "mine.json").write_text(json.dumps(
        {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["uname"], "action": "SCMP_ACT_ERRNO", "errnoRet": 7}]}))
    config.write_text('[security]\nseccomp_profile = "profiles/mine.json"\n')
    engine = Engine(Config.load(root=str(tmp_path / "root"), config_path=str(config)))
    spec = base_spec()
    apply_profiles(engine, spec, SecurityContext(settings=engine.config.section("security")), [])
    assert seccomp_decision(spec["linux"]["seccomp"], "uname", ()) == ("SCMP_ACT_ERRNO", 7)


def test_cli_prints_the_default_profile_that_loads_back(pallet, tmp_path):
    done = pallet("security", "seccomp", "default")
    assert done.returncode == 0, done.stderr
    path = tmp_path / "mine.json"
    path.write_text(done.stdout)
    assert json.loads(done.stdout) == default_profile()
    assert seccomp_format.to_oci(seccomp_format.load(str(path)), DEFAULT_CAPABILITIES)["defaultAction"] == "SCMP_ACT_ERRNO"


def test_cli_convert_shows_the_filter_for_this_host(pallet, tmp_path):
    done = pallet("security", "seccomp", "convert", "--cap-add", "SYS_ADMIN")
    assert done.returncode == 0, done.stderr
    oci = json.loads(done.stdout)
    assert seccomp_decision(oci, "mount", ())[0] == "SCMP_ACT_ALLOW"
    done = pallet("security", "seccomp", "convert", str(MOBY_SECCOMP / "default.json"))
    assert seccomp_decision(json.loads(done.stdout), "mount", ())[0] == "SCMP_ACT_ERRNO"
    bad = tmp_path / "bad.json"
    bad.write_text('{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW", '
                   '"args": [{"index": 9, "value": 0, "op": "SCMP_CMP_EQ"}]}]}')
    done = pallet("security", "seccomp", "convert", str(bad))
    assert done.returncode == 2 and done.error_lines == [
        f"Error: invalid seccomp profile {bad}: syscalls[0].args[0].index: expected an integer from 0 to 5, got 9"]
