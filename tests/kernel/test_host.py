"""Host detection for `pallet info`: cgroup version from the mount table, filesystem of a path."""

import pytest

from pallet.kernel import host

V1 = "cgroup /sys/fs/cgroup/memory cgroup rw,relatime,memory 0 0\ncgroup /sys/fs/cgroup/pids cgroup rw,pids 0 0\n"
V2 = "cgroup2 /sys/fs/cgroup cgroup2 rw,nsdelegate 0 0\n"
SYSTEMD = "cgroup /sys/fs/cgroup/systemd cgroup rw,xattr,name=systemd 0 0\n"


@pytest.mark.parametrize("table, version, v1", [
    (V1 + SYSTEMD, "1", ["memory", "pids"]),
    (V2, "2", []),
    (V1 + V2.replace("/sys/fs/cgroup ", "/sys/fs/cgroup/unified "), "hybrid", ["memory", "pids"]),
])
def test_cgroup_version_is_read_from_the_mount_table(tmp_path, table, version, v1):
    mounts = tmp_path / "mounts"
    mounts.write_text(table)
    info = host.cgroup_info(str(mounts))
    assert info.version == version
    assert sorted(info.v1) == v1


def test_filesystem_of_a_missing_path_is_its_nearest_ancestors(tmp_path):
    fstype, mountpoint = host.filesystem_of(tmp_path / "not" / "yet")
    assert (fstype, mountpoint) == host.filesystem_of(tmp_path)
    assert fstype
