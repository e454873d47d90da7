"""`pallet plugins ls` and `pallet info` over the built-ins, and over broken third-party plugins."""

import json

BUILTINS = {
    "storage": {"overlay2", "btrfs", "zfs", "devicemapper", "vfs"},
    "network": {"bridge", "host", "none", "overlay"},
    "security": {"capabilities", "seccomp", "apparmor", "selinux"},
    "registry": {"docker", "oci", "docker-archive", "dir"},
}


def rows_by_name(pallet, *args, env=None):
    result = pallet("plugins", "ls", "--json", *args, env=env)
    assert result.returncode == 0, result.stderr
    return {(row["Kind"], row["Name"]): row for row in json.loads(result.stdout)}


def test_every_builtin_is_listed_with_kind_origin_and_version(pallet):
    from pallet.kernel import __version__

    rows = rows_by_name(pallet)
    for kind, names in BUILTINS.items():
        for name in names:
            row = rows[(kind, name)]
            assert row["Origin"] == "built-in"
            assert row["Distribution"] == "pallet"
            assert row["Version"] == __version__


def test_missing_kernel_features_are_reported_with_their_reason(pallet):
    rows = rows_by_name(pallet)
    expected = {
        ("storage", "devicemapper"): "device-mapper is not supported by this kernel",
        ("security", "apparmor"): "AppArmor is not enabled in this kernel",
        ("security", "selinux"): "SELinux is not enabled in this kernel",
    }
    for key, reason in expected.items():
        assert rows[key]["Status"] == "unavailable"
        assert reason in rows[key]["Reason"]


def test_features_this_host_has_are_available(pallet):
    rows = rows_by_name(pallet)
    for key in [("storage", "overlay2"), ("storage", "vfs"), ("network", "host"), ("network", "none"),
                ("security", "capabilities"), ("security", "seccomp")]:
        assert rows[key]["Status"] == "available", rows[key]


def test_kind_filter_limits_the_listing(pallet):
    rows = rows_by_name(pallet, "--kind", "security")
    assert {kind for kind, _ in rows} == {"security"}
    assert BUILTINS["security"] <= {name for _, name in rows}


def test_disabled_plugins_are_not_loaded_and_say_why(pallet):
    rows = rows_by_name(pallet, env={"PALLET_DISABLE_PLUGINS": "zfs, bridge"})
    assert rows[("storage", "zfs")]["Status"] == "disabled"
    assert rows[("network", "bridge")]["Status"] == "disabled"
    assert "PALLET_DISABLE_PLUGINS" in rows[("storage", "zfs")]["Reason"]
    assert rows[("storage", "vfs")]["Status"] == "available"


def test_selecting_a_disabled_driver_is_a_clear_error(pallet):
    result = pallet("--storage-driver", "zfs", "storage", "status", env={"PALLET_DISABLE_PLUGINS": "zfs"})
    assert result.returncode == 1
    assert result.error_lines == [
        'Error: storage driver "zfs" cannot be used: plugin "zfs" (pallet.storage, from pallet 0.1.0) '
        "is disabled: disabled by PALLET_DISABLE_PLUGINS"
    ]


def test_broken_plugins_are_listed_and_the_rest_keeps_working(pallet, broken_site):
    env = {"PYTHONPATH": str(broken_site)}
    result = pallet("plugins", "ls", "--json", env=env)
    assert result.returncode == 0, result.stderr
    rows = {row["Name"]: row for row in json.loads(result.stdout)}
    assert rows["explodefs"]["Status"] == "broken"
    assert "vendor module exploded on import" in rows["explodefs"]["Reason"]
    assert rows["explodefs"]["Distribution"] == "pallet-broken-example"
    assert rows["explodefs"]["Origin"] == "third-party"
    assert rows["badsig"]["Status"] == "broken" and "not_in_spec" in rows["badsig"]["Reason"]
    assert rows["unknownhook"]["Status"] == "broken" and "pallet_frobnicate" in rows["unknownhook"]["Reason"]
    assert rows["overlay2"]["Status"] == "available"
    # one warning per broken plugin, naming it and its distribution
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 3
    assert all("pallet-broken-example 0.3.0" in line for line in warnings)


def test_info_succeeds_and_names_broken_plugins(pallet, broken_site):
    result = pallet("info", "--json", env={"PYTHONPATH": str(broken_site)})
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    broken = {b["Name"]: b for b in data["BrokenPlugins"]}
    assert set(broken) == {"explodefs", "badsig", "unknownhook"}
    assert data["Plugins"]["storage"]["broken"] == 2


def test_selecting_a_broken_driver_fails_with_one_line(pallet, broken_site):
    result = pallet("--storage-driver", "explodefs", "storage", "status", env={"PYTHONPATH": str(broken_site)})
    assert result.returncode == 1
    errors = [line for line in result.error_lines if line.startswith("Error:")]
    assert len(errors) == 1
    assert 'storage driver "explodefs" cannot be used' in errors[0]
    assert "vendor module exploded on import" in errors[0]
    assert "Traceback" not in result.stderr


def test_a_driver_row_names_its_entry_point(pallet):
    rows = rows_by_name(pallet)
    assert rows[("ipam", "cluster")]["EntryPoint"] == "overlay"
    assert rows[("ipam", "default")]["EntryPoint"] == "default-ipam"
    assert rows[("volume", "local")]["Group"] == "pallet.storage"
    table = pallet("plugins", "ls", "--kind", "ipam").stdout.splitlines()
    assert table[0].split() == ["NAME", "KIND", "ENTRYPOINT", "ORIGIN", "DISTRIBUTION", "VERSION", "AVAILABILITY"]
    assert ["cluster", "ipam", "overlay"] in [line.split()[:3] for line in table[1:]]


def test_a_disabled_entry_point_is_one_row_and_its_drivers_are_gone(pallet):
    pallet("plugins", "ls", check=True)  # a first listing remembers what each entry point registers
    rows = rows_by_name(pallet, env={"PALLET_DISABLE_PLUGINS": "overlay,local"})
    overlay = [row for row in rows.values() if row["EntryPoint"] == "overlay"]
    assert len(overlay) == 1, overlay
    assert (overlay[0]["Name"], overlay[0]["Kind"], overlay[0]["Status"]) == ("overlay", "ipam,network", "disabled")
    assert ("ipam", "cluster") not in rows and ("network", "overlay") not in rows
    assert rows[("volume", "local")]["Status"] == "disabled"
    only_volumes = rows_by_name(pallet, "--kind", "volume", env={"PALLET_DISABLE_PLUGINS": "local"})
    assert list(only_volumes) == [("volume", "local")] and only_volumes[("volume", "local")]["Status"] == "disabled"
