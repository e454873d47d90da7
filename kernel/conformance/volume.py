"""The volume conformance kit: what every volume driver must do for ``pallet volume`` and ``run -v``.

Collected when ``--pallet-volume-driver NAME`` is given (``pallet plugins check volume NAME``);
a test module may ``from pallet.kernel.conformance.volume import *`` and override the
``volume_driver_name`` fixture. ``--pallet-volume-opt K=V`` are the ``-o`` options every test's
volume is created with (for a driver that needs some, e.g. a size). The layout it checks is the
one ``docs/plugins.md`` specifies: volume ``NAME`` lives in ``<home>/NAME/``, where the core
keeps ``volume.json`` and the driver everything else.
"""

from __future__ import annotations

import os

import pytest

from pallet.kernel.conformance import harness


@pytest.fixture
def volume_driver_name(request) -> str:
    return harness.driver_name(request, "volume")


@pytest.fixture
def volume_options(request) -> dict[str, str]:
    return harness.options(request, "volume")


@pytest.fixture
def volume_home(request):
    with harness.home(request, "volume") as home:
        yield home


@pytest.fixture
def volumes(volume_driver_name, volume_home):
    """A fresh driver on its own volumes home; every volume it still lists is removed afterwards."""
    home = os.path.join(volume_home, "volumes")
    instance = harness.open_for_kit("volume", volume_driver_name, home, {})
    try:
        yield instance
    finally:
        for name in instance.list():
            instance.unmount(name, "kit")
            instance.remove(name)


def write(path, rel, data: bytes):
    with open(os.path.join(path, rel), "wb") as handle:
        handle.write(data)


def test_create_list_path_remove(volumes, volume_options, volume_home):
    volumes.create("vol1", dict(volume_options))
    assert "vol1" in volumes.list(), f"list() does not name a created volume: {volumes.list()}"
    path = str(volumes.path("vol1"))
    home = os.path.join(volume_home, "volumes")
    assert os.path.realpath(path).startswith(os.path.realpath(os.path.join(home, "vol1")) + os.sep), \
        f"path() is {path}; a volume's data lives inside <home>/vol1/ (e.g. <home>/vol1/_data)"
    assert not os.path.exists(os.path.join(home, "vol1", "volume.json")), \
        "the driver wrote volume.json, which is the core's record"
    volumes.remove("vol1")
    assert "vol1" not in volumes.list(), f"list() still names a removed volume: {volumes.list()}"
    assert not os.path.exists(path), f"remove() left the volume's data at {path}"


def test_list_names_only_the_volumes_of_this_driver(volumes, volume_options, volume_home):
    home = os.path.join(volume_home, "volumes")
    os.makedirs(os.path.join(home, "other", "_data"))  # a volume of another driver in the shared home
    with open(os.path.join(home, "other", "volume.json"), "w") as handle:
        handle.write('{"name": "other", "driver": "another"}')
    volumes.create("mine", dict(volume_options))
    assert sorted(volumes.list()) == ["mine"], f"list() must name only this driver's volumes: {volumes.list()}"


def test_create_is_idempotent(volumes, volume_options):
    volumes.create("again", dict(volume_options))
    path = volumes.mount("again", "c1")
    write(path, "kept", b"data")
    volumes.unmount("again", "c1")
    volumes.create("again", dict(volume_options))
    assert volumes.list().count("again") == 1, f"a second create() listed the volume twice: {volumes.list()}"
    path = volumes.mount("again", "c1")
    try:
        assert os.path.exists(os.path.join(path, "kept")), "a second create() of an existing volume lost its data"
    finally:
        volumes.unmount("again", "c1")


def test_data_persists_across_mounts(volumes, volume_options):
    volumes.create("data", dict(volume_options))
    first = str(volumes.mount("data", "c1"))
    assert os.path.isdir(first), f"mount() returned {first}, which is not a directory"
    os.makedirs(os.path.join(first, "sub"))
    write(first, "sub/file", b"persisted")
    os.chmod(os.path.join(first, "sub/file"), 0o640)
    os.chown(os.path.join(first, "sub/file"), 1000, 1000)
    volumes.unmount("data", "c1")
    second = str(volumes.mount("data", "c2"))
    try:
        with open(os.path.join(second, "sub/file"), "rb") as handle:
            assert handle.read() == b"persisted", "data written through one mount is not there at the next"
        st = os.stat(os.path.join(second, "sub/file"))
        assert (st.st_mode & 0o7777, st.st_uid, st.st_gid) == (0o640, 1000, 1000), \
            f"mode/owner not kept: mode {st.st_mode & 0o7777:#o}, owner {st.st_uid}:{st.st_gid}, want 0o640, 1000:1000"
    finally:
        volumes.unmount("data", "c2")


def test_path_is_where_mount_puts_the_data(volumes, volume_options):
    volumes.create("where", dict(volume_options))
    mounted = volumes.mount("where", "c1")
    try:
        assert os.path.realpath(mounted) == os.path.realpath(volumes.path("where")), \
            f"mount() returned {mounted} but path() (volume inspect's Mountpoint) is {volumes.path('where')}"
    finally:
        volumes.unmount("where", "c1")


def test_unmount_and_remove_are_idempotent(volumes, volume_options, volume_home):
    volumes.create("twice", dict(volume_options))
    volumes.mount("twice", "c1")
    volumes.unmount("twice", "c1")
    volumes.unmount("twice", "c1")  # a second unmount (after a crash, a retry) is not an error
    volumes.remove("twice")
    volumes.remove("twice")  # nor is removing a volume that is gone
    assert not harness.mounts_under(volume_home), f"mounts left: {harness.mounts_under(volume_home)}"


def test_unknown_option_is_a_usage_error(volumes, volume_options):
    from pallet.kernel.errors import UsageError

    harness.raises_documented(UsageError, volumes.create, "badopt", {**volume_options, "no-such-option": "1"},
                              what="create() with an -o option the driver does not know")
    assert "badopt" not in volumes.list(), "a create() refused for its options left a volume behind"


def test_rename_moves_the_data_or_declines(volumes, volume_options):
    volumes.create("before", dict(volume_options))
    path = volumes.mount("before", "c1")
    write(path, "kept", b"moved")
    volumes.unmount("before", "c1")
    if not volumes.rename("before", "after"):
        assert "before" in volumes.list(), "rename() returned False (declined) but the volume is gone"
        return  # the core falls back to a copy and a remove
    assert sorted(volumes.list()) == ["after"], f"after rename() list() is {volumes.list()}, want ['after']"
    path = volumes.mount("after", "c1")
    try:
        with open(os.path.join(path, "kept"), "rb") as handle:
            assert handle.read() == b"moved", "rename() did not move the data to the new name"
    finally:
        volumes.unmount("after", "c1")
