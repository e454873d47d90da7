"""Capabilities profile: Docker's defaults, --cap-add/--cap-drop, ALL, --privileged, non-root users, no-new-privileges."""

from __future__ import annotations

import pytest

from pallet.kernel.errors import UsageError
from tests.security.sec_helpers import base_spec
from pallet.plugins.security.capabilities import (
    DEFAULT_CAPABILITIES, capability_mask, host_capabilities, normalize, resolve_capabilities,
)

ALL_HOST = host_capabilities()


def test_default_set_is_dockers_fourteen_with_the_known_mask():
    assert len(DEFAULT_CAPABILITIES) == 14
    assert f"{capability_mask(DEFAULT_CAPABILITIES):016x}" == "00000000a80425fb"


@pytest.mark.parametrize("given, expected", [("net_admin", "CAP_NET_ADMIN"), ("CAP_SYS_TIME", "CAP_SYS_TIME"),
                                             ("Cap_Chown", "CAP_CHOWN"), ("all", "ALL")])
def test_names_are_accepted_with_and_without_prefix(given, expected):
    assert normalize(given) == expected


def test_unknown_capability_is_a_usage_error_naming_it():
    with pytest.raises(UsageError, match='unknown capability: "CAP_FLY"'):
        resolve_capabilities(["CAP_FLY"], [], False, ALL_HOST)


def test_add_and_drop_change_the_default_set():
    caps = resolve_capabilities(["sys_time"], ["NET_RAW", "cap_mknod"], False, ALL_HOST)
    assert "CAP_SYS_TIME" in caps and "CAP_NET_RAW" not in caps and "CAP_MKNOD" not in caps
    assert len(caps) == 13


def test_drop_all_keeps_only_the_added_ones():
    assert resolve_capabilities(["CHOWN"], ["ALL"], False, ALL_HOST) == ["CAP_CHOWN"]


def test_add_all_minus_drops():
    caps = resolve_capabilities(["ALL"], ["SYS_ADMIN"], False, ALL_HOST)
    assert "CAP_SYS_ADMIN" not in caps and len(caps) == len(ALL_HOST) - 1


def test_privileged_gets_every_capability_the_host_can_grant():
    caps = resolve_capabilities([], ["ALL"], True, ALL_HOST)
    assert caps == ALL_HOST
    with open("/proc/sys/kernel/cap_last_cap") as handle:
        assert len(caps) <= int(handle.read()) + 1


def test_spec_has_five_sets_for_root(secure_spec):
    spec, applied = secure_spec()
    assert "capabilities" in applied
    caps = spec["process"]["capabilities"]
    assert set(caps) == {"bounding", "effective", "permitted", "inheritable", "ambient"}
    assert caps["bounding"] == caps["effective"] == caps["permitted"]
    assert caps["inheritable"] == caps["ambient"] == []
    assert "noNewPrivileges" not in spec["process"]


def test_non_root_user_gets_empty_effective_set_unless_added(secure_spec):
    spec, _ = secure_spec(user="1000")
    caps = spec["process"]["capabilities"]
    assert caps["effective"] == caps["permitted"] == caps["ambient"] == []
    assert len(caps["bounding"]) == 14
    spec, _ = secure_spec(user="1000:1000", cap_add=["NET_BIND_SERVICE"])
    caps = spec["process"]["capabilities"]
    assert caps["effective"] == caps["ambient"] == caps["inheritable"] == ["CAP_NET_BIND_SERVICE"]


def test_resolved_uid_in_spec_wins_over_user_name(secure_spec):
    spec = base_spec()
    spec["process"]["user"] = {"uid": 0, "gid": 0}
    spec, _ = secure_spec(spec=spec, user="admin")
    assert len(spec["process"]["capabilities"]["effective"]) == 14


@pytest.mark.parametrize("opt, value", [("no-new-privileges", True), ("no-new-privileges=true", True),
                                        ("no-new-privileges:true", True), ("no-new-privileges=false", False)])
def test_no_new_privileges_forms(secure_spec, opt, value):
    spec, _ = secure_spec([opt])
    assert spec["process"]["noNewPrivileges"] is value


def test_bad_no_new_privileges_value_is_a_usage_error(secure_spec):
    with pytest.raises(UsageError, match="no-new-privileges=maybe"):
        secure_spec(["no-new-privileges=maybe"])
