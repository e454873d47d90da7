"""``pallet plugins ls`` lists the six security profiles with the availability their probes find."""

from __future__ import annotations

import json

from pallet.kernel.plugins import PluginManager


def test_all_six_security_profiles_are_listed_truthfully(pallet):
    done = pallet("plugins", "ls", "--kind", "security", "--json")
    assert done.returncode == 0, done.stderr
    rows = {row["Name"]: row for row in json.loads(done.stdout)}
    assert set(rows) == {"capabilities", "seccomp", "apparmor", "selinux", "userns", "landlock"}
    manager = PluginManager()
    for name, row in rows.items():
        record = manager.driver("security", name)
        assert row["Availability"] == str(record.availability()), name
    assert rows["capabilities"]["Status"] == rows["seccomp"]["Status"] == "available"
