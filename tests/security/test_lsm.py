"""AppArmor and SELinux: generation, option parsing, MCS allocation; live parts skip here with the probe's reason."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from pallet.kernel.drivers import DriverContext
from pallet.kernel.errors import PalletError, UsageError
from pallet.kernel.security import split_security_opts, take_relabel_requests
from pallet.plugins.security import apparmor, selinux_labels as sl
from pallet.plugins.security.apparmor import AppArmorProfile
from pallet.plugins.security.selinux import SELinuxProfile, container_labels

from tests.security.sec_helpers import MOBY_APPARMOR

APPARMOR = AppArmorProfile.probe()
SELINUX = SELinuxProfile.probe()


def rule_kinds(text: str) -> set[str]:
    """The kinds of rules a profile body holds: ``network``, ``deny network``, ``deny /sys``, ``signal`` …"""
    body = text[text.index("{") + 1: text.rindex("}")]
    kinds = set()
    for line in body.splitlines():
        line = line.split("#", 1)[0].strip().rstrip(",")
        if not line:
            continue
        words = line.split()
        head = words[:2] if words[0] == "deny" else words[:1]
        target = head[-1]
        if target.startswith("@{PROC}") or target.startswith("/"):
            target = "@{PROC}" if target.startswith("@{PROC}") else "/" + target.split("/")[1]
            head = head[:-1] + [target]
        kinds.add(" ".join(head))
    return kinds


def test_pallet_default_has_the_same_kinds_of_rules_as_docker_default():
    golden = (MOBY_APPARMOR / "default.golden").read_text()
    ours = apparmor.generate(with_includes=False)
    assert rule_kinds(ours) == rule_kinds(golden)
    assert "profile pallet-default flags=(attach_disconnected,mediate_deleted) {" in ours
    for peer in ("unconfined", "runc", "crun", "pallet"):
        assert f"signal (receive) peer={peer}," in ours
    assert ours.count("{") == ours.count("}")


def test_generation_uses_distribution_includes_when_present():
    text = apparmor.generate(with_includes=True)
    assert text.splitlines()[1] == "#include <tunables/global>" and "@{PROC}=/proc/" not in text
    assert "#include <abstractions/base>" in text


@pytest.mark.parametrize("option, privileged, expected", [
    (None, False, "pallet-default"), (None, True, None), ("unconfined", False, None),
    ("my-profile", True, "my-profile"),
])
def test_apparmor_profile_choice(option, privileged, expected):
    assert apparmor.choose_profile(option, privileged) == expected


def test_apparmor_option_validation(tmp_path):
    AppArmorProfile(DriverContext(tmp_path)).validate({"apparmor": "docker-default"})
    with pytest.raises(UsageError):
        AppArmorProfile(DriverContext(tmp_path)).validate({"apparmor": ""})


def test_loaded_profile_listing_is_parsed(tmp_path):
    listing = tmp_path / "profiles"
    listing.write_text("pallet-default (enforce)\n/usr/bin/man (complain)\n")
    assert apparmor.is_loaded("pallet-default", listing) and not apparmor.is_loaded("docker-default", listing)


@pytest.mark.skipif(APPARMOR.available, reason="AppArmor is available on this host")
def test_explicit_apparmor_option_on_a_host_without_it_is_an_error(secure_spec, pallet):
    with pytest.raises(PalletError, match="AppArmor is not enabled in this kernel"):
        secure_spec(["apparmor=pallet-default"])
    spec, applied = secure_spec()
    assert "apparmor" not in applied and "apparmorProfile" not in spec["process"]


@pytest.mark.skipif(not APPARMOR.available, reason=f"AppArmor {APPARMOR}")
def test_pallet_default_loads_and_is_put_in_the_spec(secure_spec):
    spec, applied = secure_spec()
    assert spec["process"]["apparmorProfile"] == "pallet-default" and apparmor.is_loaded("pallet-default")


# --- SELinux ------------------------------------------------------------------------------

def test_label_option_parsing_with_comma_in_level():
    assert sl.parse_option("user:u,role:r,type:t,level:s0:c1,c2") == {
        "user": "u", "role": "r", "type": "t", "level": "s0:c1,c2"}
    assert sl.parse_option("disable") == {"disable": "true"}
    with pytest.raises(UsageError):
        sl.parse_option("colour:blue")
    with pytest.raises(UsageError):
        sl.parse_option("type:")


def test_repeated_label_options_accumulate():
    routed = split_security_opts(["label=type:spc_t", "label=level:s0:c3,c4", "seccomp=unconfined"])
    assert sl.parse_option(routed["selinux"]["label"]) == {"type": "spc_t", "level": "s0:c3,c4"}


def test_container_labels_from_policy_defaults_and_overrides(tmp_path):
    root = tmp_path / "selinux"
    (root / "targeted" / "contexts").mkdir(parents=True)
    (root / "config").write_text("SELINUX=enforcing\nSELINUXTYPE=targeted\n")
    (root / "targeted" / "contexts" / "lxc_contexts").write_text(
        'process = "system_u:system_r:svirt_lxc_net_t:s0"\nfile = "system_u:object_r:svirt_sandbox_file_t:s0"\n')
    contexts = sl.policy_contexts(root)
    proc, mount = container_labels({}, "s0:c5,c9", contexts)
    assert proc == "system_u:system_r:svirt_lxc_net_t:s0:c5,c9"
    assert mount == "system_u:object_r:svirt_sandbox_file_t:s0:c5,c9"
    proc, mount = container_labels({"type": "spc_t", "level": "s0"}, "s0:c5,c9", contexts)
    assert proc == "system_u:system_r:spc_t:s0" and mount.endswith(":s0")
    assert container_labels({"disable": "true"}, "s0:c1,c2", contexts) is None
    assert str(sl.policy_contexts(tmp_path / "absent")[0]) == sl.FALLBACK_PROCESS


def test_selinux_apply_writes_labels_and_allocates_a_pair(tmp_path):
    from pallet.kernel.config import Config
    from pallet.kernel.drivers import SecurityContext
    from pallet.kernel.engine import Engine

    (tmp_path / "empty.toml").touch()
    engine = Engine(Config.load(root=str(tmp_path / "root"), config_path=str(tmp_path / "empty.toml")))
    spec = {"process": {}, "linux": {}}
    profile = SELinuxProfile(engine.driver_context("security", "selinux"))
    profile.apply(spec, SecurityContext(container_id="c1"))
    level = re.search(r":(s0:c\d+,c\d+)$", spec["process"]["selinuxLabel"]).group(1)
    assert spec["linux"]["mountLabel"].endswith(level)
    spec = {"process": {}, "linux": {}}
    profile.apply(spec, SecurityContext(container_id="c2", privileged=True))
    assert "selinuxLabel" not in spec["process"]


def test_mcs_pairs_never_collide_across_processes(tmp_path):
    script = ("import sys; from pallet.plugins.security.selinux_labels import McsAllocator; from pathlib import Path\n"
              "a = McsAllocator(Path(sys.argv[1]))\n"
              "for i in range(40): a.allocate(f'{sys.argv[2]}-{i}')\n")
    procs = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path), f"p{n}"]) for n in range(4)]
    assert all(p.wait(timeout=60) == 0 for p in procs)
    table = sl.McsAllocator(tmp_path).owners()
    assert len(table) == 160 and len(set(table.values())) == 160


def test_mcs_allocation_is_stable_released_and_collected(tmp_path):
    import random

    allocator = sl.McsAllocator(tmp_path)
    first = allocator.allocate("a")
    assert allocator.allocate("a") == first
    allocator.allocate("b")
    allocator.release("a")
    assert set(allocator.owners()) == {"b"}
    allocator.allocate("c", alive={"c"})  # "b" is gone: its pair is collected
    assert set(allocator.owners()) == {"c"}
    # A generator that keeps proposing a used pair must not be believed.
    taken = allocator.owners()["c"]
    a, b = (int(x) for x in re.findall(r"c(\d+)", taken))
    rng = random.Random(1)
    proposals = iter([[a, b], [a, b], [7, 3]])
    rng.sample = lambda population, k: next(proposals)
    assert allocator.allocate("d", rng=rng) == "s0:c3,c7"


def test_relabel_options_are_taken_out_of_bind_mounts():
    spec = {"mounts": [{"destination": "/d", "type": "bind", "source": "/srv/data", "options": ["rbind", "Z"]},
                       {"destination": "/e", "type": "bind", "source": "/srv/e", "options": ["rbind", "ro", "z"]},
                       {"destination": "/proc", "type": "proc", "source": "proc"}]}
    assert take_relabel_requests(spec) == [("/srv/data", "Z"), ("/srv/e", "z")]
    assert spec["mounts"][0]["options"] == ["rbind"] and spec["mounts"][1]["options"] == ["rbind", "ro"]


def test_relabel_targets_shared_and_private_and_refuses_system_dirs(tmp_path):
    mount = sl.Label.parse("system_u:object_r:container_file_t:s0:c1,c2")
    assert str(sl.relabel_target(str(tmp_path), mount, shared=True)) == "system_u:object_r:container_file_t:s0"
    assert str(sl.relabel_target(str(tmp_path), mount, shared=False)) == str(mount)
    with pytest.raises(PalletError, match="refusing to relabel /usr"):
        sl.relabel_target("/usr", mount, shared=True)


@pytest.mark.skipif(SELINUX.available, reason="SELinux is enabled on this host")
def test_explicit_label_option_on_a_host_without_selinux_is_an_error(secure_spec):
    with pytest.raises(PalletError, match="SELinux"):
        secure_spec(["label=type:spc_t"])


@pytest.mark.skipif(not SELINUX.available, reason=f"SELinux {SELINUX}")
def test_relabel_private_bind_mount_live(tmp_path):
    mount = sl.Label.parse("system_u:object_r:container_file_t:s0:c1,c2")
    sl.relabel(str(tmp_path), mount)
    assert subprocess.run(["ls", "-Zd", str(tmp_path)], capture_output=True, text=True).stdout.startswith(str(mount))


@pytest.mark.skipif(APPARMOR.available or SELINUX.available, reason="an LSM is enabled on this host")
def test_turning_an_absent_lsm_off_is_accepted(secure_spec):
    spec, applied = secure_spec(["apparmor=unconfined", "label=disable"])
    assert "apparmor" not in applied and "selinux" not in applied
    assert "apparmorProfile" not in spec["process"] and "selinuxLabel" not in spec["process"]
    with pytest.raises(PalletError, match="SELinux"):
        secure_spec(["label=disable", "label=type:spc_t"])


def test_volume_relabel_mode_reaches_the_selinux_profile_and_not_the_runtime():
    from pallet.kernel.runopts import parse_volume
    from pallet.kernel.spec import user_mount

    spec = {"mounts": [user_mount(parse_volume("/srv/data:/data:ro,Z")), user_mount(parse_volume("/srv/x:/x"))]}
    assert take_relabel_requests(spec) == [("/srv/data", "Z")]
    assert all(o not in ("z", "Z") for m in spec["mounts"] for o in m["options"])
