"""The storage conformance kit: what every storage driver must do (moby's graphtest, as pytest tests).

Collected by the ``pallet.kernel.conformance.pytest_plugin`` when ``--pallet-storage-driver`` is
given; a test module may also ``from pallet.kernel.conformance.storage import *`` and override
the ``storage_driver_name`` fixture (pallet's own tests do, parametrised over its drivers; a
scaffolded vendor distribution does, naming its driver). Assertion messages say what the
driver did wrong, since a vendor reads them first; modes are printed in octal.
"""

from __future__ import annotations

import errno
import io
import os
import stat
import struct
import tarfile
import threading

import pytest

from pallet.kernel.conformance import harness

# --- fixtures -----------------------------------------------------------------------------


@pytest.fixture
def storage_driver_name(request) -> str:
    return harness.driver_name(request, "storage")


def load_driver_class(name: str):
    """A registered driver's class, or ``module:Class``."""
    return harness.load_driver_class("storage", name)


mounts_under = harness.mounts_under


@pytest.fixture
def storage_home(request):
    with harness.home(request, "storage") as home:
        yield home


@pytest.fixture
def driver(request, storage_driver_name, storage_home):
    """A fresh driver instance in its own home; every layer is removed afterwards."""
    home = os.path.join(storage_home, storage_driver_name.replace(":", "_"))
    instance = harness.open_for_kit("storage", storage_driver_name, home, harness.options(request, "storage"))
    try:
        yield instance
    finally:
        for layer in reversed(instance.layers()):
            instance.remove(layer)
        instance.cleanup()


# --- helpers ------------------------------------------------------------------------------

def tar_of(*members) -> io.BytesIO:
    """An uncompressed layer tar; members are ``(name, kind, options)``."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, opts in members:
            info = tarfile.TarInfo(name)
            info.type = kind
            info.mode = opts.get("mode", 0o755 if kind == tarfile.DIRTYPE else 0o644)
            info.uid, info.gid = opts.get("uid", 0), opts.get("gid", 0)
            info.mtime = opts.get("mtime", 1_700_000_000)
            info.linkname = opts.get("linkname", "")
            info.devmajor, info.devminor = opts.get("dev", (0, 0))
            info.pax_headers = {f"SCHILY.xattr.{key}": value.decode("utf-8", "surrogateescape")
                                for key, value in opts.get("xattrs", {}).items()}
            data = opts.get("data")
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    buf.seek(0)
    return buf


def D(name, **opts):  # noqa: N802 - short constructors keep the layer tables readable
    return (name, tarfile.DIRTYPE, opts)


def F(name, data=b"", **opts):  # noqa: N802
    return (name, tarfile.REGTYPE, {**opts, "data": data})


def L(name, kind, **opts):  # noqa: N802
    return (name, kind, opts)


BASE = [D("etc"), F("etc/hostname", b"base\n"), F("etc/passwd", b"root:x:0:0\n"), D("etc/opq"),
        F("etc/opq/old", b"old"), D("etc/opq/sub"), F("etc/opq/sub/deep", b"deep"), D("bin"),
        F("bin/tool", b"#!/bin/sh\n", mode=0o755), D("var"), F("var/gone", b"bye")]


class Mounted:
    """``driver.get`` … ``put`` as a context manager returning the root as a string."""

    def __init__(self, driver, layer_id):
        self.driver, self.layer_id = driver, layer_id

    def __enter__(self) -> str:
        return str(self.driver.get(self.layer_id))

    def __exit__(self, *exc):
        self.driver.put(self.layer_id)


def base_layer(driver, layer_id="base"):
    driver.apply_diff(layer_id, None, tar_of(*BASE))
    return layer_id


def read(root, rel) -> bytes:
    with open(os.path.join(root, rel), "rb") as handle:
        return handle.read()


def xattrs(path: str) -> dict[str, bytes]:
    """The extended attributes of ``path`` (not followed), without overlayfs' own."""
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EPERM):
            return {}
        raise
    return {name: os.getxattr(path, name, follow_symlinks=False) for name in sorted(names)
            if not name.startswith("trusted.overlay.")}


def show(entry) -> str:
    """One ``tree`` entry for a message: the mode in octal."""
    if not isinstance(entry, tuple) or len(entry) < 6:
        return repr(entry)
    _kind, mode, uid, gid, detail, attrs = entry
    detail = detail if not isinstance(detail, bytes) or len(detail) < 40 else detail[:40] + b"..."
    return f"(mode {mode:#o}, owner {uid}:{gid}, {detail!r}, xattrs {sorted(attrs)})"


def tree(root: str) -> dict[str, tuple]:
    """Everything observable about a tree: kind, mode, owner, content or target, xattrs, link groups."""
    result, inodes = {}, {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            st = os.lstat(path)
            if stat.S_ISREG(st.st_mode):
                detail = read(root, rel)
                inodes.setdefault(st.st_ino, []).append(rel)
            elif stat.S_ISLNK(st.st_mode):
                detail = os.readlink(path)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                detail = (os.major(st.st_rdev), os.minor(st.st_rdev))
            else:
                detail = None
            result[rel] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, detail,
                           xattrs(path))
    result["<hard links>"] = sorted(sorted(group) for group in inodes.values() if len(group) > 1)
    return result


# --- the suite ----------------------------------------------------------------------------

def test_create_and_remove(driver):
    driver.create("empty")
    assert driver.exists("empty"), "exists() is False right after create()"
    assert "empty" in driver.layers(), "layers() does not list a created layer"
    with Mounted(driver, "empty") as root:
        assert os.path.isdir(root), f"get() returned {root}, which is not a directory"
        assert os.listdir(root) == [], f"a new base layer is not empty: {os.listdir(root)}"
    driver.remove("empty")
    assert not driver.exists("empty"), "exists() is still True after remove()"
    assert "empty" not in driver.layers(), "layers() still lists a removed layer"
    driver.remove("empty")  # removing a missing layer is not an error


def test_parent_child_isolation(driver):
    base_layer(driver)
    driver.create_rw("child", "base")
    with Mounted(driver, "child") as root:
        assert read(root, "etc/hostname") == b"base\n", "the child does not see its parent's files"
        with open(os.path.join(root, "etc/hostname"), "wb") as handle:
            handle.write(b"child\n")
        with open(os.path.join(root, "new"), "wb") as handle:
            handle.write(b"x")
        os.unlink(os.path.join(root, "var/gone"))
    with Mounted(driver, "base") as root:
        assert read(root, "etc/hostname") == b"base\n", "writing in the child changed the parent's file"
        assert not os.path.exists(os.path.join(root, "new")), "a file created in the child appeared in the parent"
        assert os.path.exists(os.path.join(root, "var/gone")), "deleting in the child deleted the parent's file"
    driver.create_rw("sibling", "base")
    with Mounted(driver, "sibling") as root:
        assert read(root, "etc/hostname") == b"base\n", "a sibling layer sees another child's change"
    with Mounted(driver, "child") as root:
        assert read(root, "etc/hostname") == b"child\n", "the child's change did not persist across put/get"


def test_whiteouts_and_opaque_dirs(driver):
    base_layer(driver)
    driver.apply_diff("top", "base", tar_of(
        D("var"), F("var/.wh.gone"), D("etc"), D("etc/opq"), F("etc/opq/new", b"new"), F("etc/opq/.wh..wh..opq")))
    with Mounted(driver, "top") as root:
        assert not os.path.lexists(os.path.join(root, "var/gone")), "a .wh. whiteout did not hide the file"
        assert sorted(os.listdir(os.path.join(root, "etc/opq"))) == ["new"], (
            f"an opaque dir still shows lower entries: {sorted(os.listdir(os.path.join(root, 'etc/opq')))}")
        assert not any(name.startswith(".wh.") for name in os.listdir(os.path.join(root, "var"))), \
            "whiteout files are visible in the mounted layer"
    with Mounted(driver, "base") as root:
        assert read(root, "var/gone") == b"bye", "a whiteout in the child removed the parent's file"
        assert os.path.exists(os.path.join(root, "etc/opq/sub/deep")), "an opaque dir in the child emptied the parent"


def test_hard_links(driver):
    driver.apply_diff("base", None, tar_of(D("d"), F("d/a", b"shared"), L("d/b", tarfile.LNKTYPE, linkname="d/a")))
    driver.create_rw("child", "base")
    for layer in ("base", "child"):
        with Mounted(driver, layer) as root:
            a, b = os.lstat(os.path.join(root, "d/a")), os.lstat(os.path.join(root, "d/b"))
            assert a.st_ino == b.st_ino, f"hard link d/b is not the same inode as d/a in layer {layer}"
            assert read(root, "d/b") == b"shared"


def test_symlinks(driver):
    driver.apply_diff("base", None, tar_of(
        D("d"), F("d/target", b"t"), L("d/rel", tarfile.SYMTYPE, linkname="target"),
        L("d/abs", tarfile.SYMTYPE, linkname="/d/target"), L("d/dangling", tarfile.SYMTYPE, linkname="/nowhere")))
    driver.create_rw("child", "base")
    with Mounted(driver, "child") as root:
        for name, target in (("rel", "target"), ("abs", "/d/target"), ("dangling", "/nowhere")):
            path = os.path.join(root, "d", name)
            assert os.path.islink(path), f"d/{name} is not a symlink"
            assert os.readlink(path) == target, f"d/{name} points to {os.readlink(path)!r}, not {target!r}"


def test_special_files(driver):
    driver.apply_diff("base", None, tar_of(
        D("dev"), L("dev/null", tarfile.CHRTYPE, dev=(1, 3), mode=0o666), L("dev/loop9", tarfile.BLKTYPE, dev=(7, 9)),
        L("dev/pipe", tarfile.FIFOTYPE, mode=0o600)))
    driver.create_rw("child", "base")
    with Mounted(driver, "child") as root:
        null = os.lstat(os.path.join(root, "dev/null"))
        assert stat.S_ISCHR(null.st_mode) and (os.major(null.st_rdev), os.minor(null.st_rdev)) == (1, 3), \
            "char device dev/null (1,3) was not preserved"
        loop = os.lstat(os.path.join(root, "dev/loop9"))
        assert stat.S_ISBLK(loop.st_mode) and os.minor(loop.st_rdev) == 9, "block device was not preserved"
        assert stat.S_ISFIFO(os.lstat(os.path.join(root, "dev/pipe")).st_mode), "fifo was not preserved"


def test_permissions_and_ownership(driver):
    driver.apply_diff("base", None, tar_of(
        D("home", mode=0o755), D("home/user", mode=0o700, uid=1000, gid=1000),
        F("home/user/secret", b"s", mode=0o600, uid=1000, gid=1000), F("suid", b"x", mode=0o4755),
        F("sgid", b"x", mode=0o2711, gid=50), D("tmp", mode=0o1777)))
    driver.create_rw("child", "base")
    with Mounted(driver, "child") as root:
        def meta(rel):
            st = os.lstat(os.path.join(root, rel))
            return stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid

        def shown(rel):
            mode, uid, gid = meta(rel)
            return f"mode {mode:#o}, owner {uid}:{gid}"

        assert meta("home/user") == (0o700, 1000, 1000), f"home/user: {shown('home/user')}, want mode 0o700, owner 1000:1000"
        assert meta("home/user/secret") == (0o600, 1000, 1000), \
            f"home/user/secret: {shown('home/user/secret')}, want mode 0o600, owner 1000:1000"
        assert meta("suid") == (0o4755, 0, 0), f"setuid file: {shown('suid')}, want mode 0o4755, owner 0:0"
        assert meta("sgid") == (0o2711, 0, 50), f"setgid file: {shown('sgid')}, want mode 0o2711, owner 0:50"
        assert meta("tmp")[0] == 0o1777, f"sticky dir: {shown('tmp')}, want mode 0o1777"


CHILD = [D("etc"), F("etc/hostname", b"changed\n"), F("etc/.wh.passwd"), D("new"), F("new/file", b"n" * 3000),
         L("new/link", tarfile.SYMTYPE, linkname="file"), L("new/hard", tarfile.LNKTYPE, linkname="new/file")]


def test_apply_diff_then_diff_round_trip(driver):
    base_layer(driver)
    applied = driver.apply_diff("child", "base", tar_of(*CHILD))
    assert applied == len(b"changed\n") + 3000, f"apply_diff returned {applied}, not the bytes of content"
    produced = b"".join(driver.diff("child", "base"))
    with tarfile.open(fileobj=io.BytesIO(produced)) as tar:
        names = {member.name.rstrip("/") for member in tar.getmembers()}
    expected = {name for name, _kind, _opts in CHILD}
    assert names == expected, f"diff() entries differ from what was applied: extra {sorted(names - expected)}, " \
                              f"missing {sorted(expected - names)}"
    driver.apply_diff("again", "base", io.BytesIO(produced))
    with Mounted(driver, "child") as first, Mounted(driver, "again") as second:
        left, right = tree(first), tree(second)
        assert left == right, "applying diff() output on the same parent does not give the same tree: " + \
            "; ".join(f"{k}: {show(left.get(k))} became {show(right.get(k))}"
                      for k in sorted(set(left) | set(right)) if left.get(k) != right.get(k))
        assert not os.path.lexists(os.path.join(second, "etc/passwd")), "a deletion did not survive the round trip"


def test_changes(driver):
    base_layer(driver)
    driver.create_rw("child", "base")
    with Mounted(driver, "child") as root:
        with open(os.path.join(root, "etc/hostname"), "wb") as handle:
            handle.write(b"modified-content\n")
        with open(os.path.join(root, "added"), "wb") as handle:
            handle.write(b"a")
        os.unlink(os.path.join(root, "var/gone"))
    found = {(change.kind, change.path) for change in driver.changes("child", "base")}
    for expected in (("C", "/etc/hostname"), ("A", "/added"), ("D", "/var/gone")):
        assert expected in found, f"changes() misses {expected}: got {sorted(found)}"
    unexpected = {c for c in found if c[1] not in ("/etc", "/var", "/etc/hostname", "/added", "/var/gone")}
    assert not unexpected, f"changes() reports paths that did not change: {sorted(unexpected)}"


def test_diff_size(driver):
    base_layer(driver)
    driver.apply_diff("child", "base", tar_of(D("data"), F("data/a", b"a" * 1000), F("data/b", b"b" * 2345),
                                              L("data/c", tarfile.LNKTYPE, linkname="data/a")))
    size = driver.diff_size("child", "base")
    assert size == 3345, f"diff_size() is {size}; the layer adds 3345 bytes (hard links count once)"


def test_many_layers(driver):
    depth = 105
    parent = base_layer(driver)
    for index in range(depth):
        layer = f"layer{index:03d}"
        driver.apply_diff(layer, parent, tar_of(D("stack"), F(f"stack/{index:03d}", str(index).encode())))
        parent = layer
    with Mounted(driver, parent) as root:
        names = os.listdir(os.path.join(root, "stack"))
        assert len(names) == depth, f"the top of {depth} layers shows {len(names)} of their files"
        assert read(root, "etc/hostname") == b"base\n", "the bottom layer is not visible through 105 layers"


def test_concurrent_mounts_are_reference_counted(driver, storage_home):
    base_layer(driver)
    driver.create_rw("child", "base")
    first = str(driver.get("child"))
    second = str(driver.get("child"))
    try:
        assert first == second, f"two get() calls returned different roots: {first} {second}"
    finally:
        driver.put("child")
    assert read(first, "etc/hostname") == b"base\n", "one put() after two get() calls released the mount"
    driver.put("child")
    errors = []

    def worker():
        try:
            for _ in range(15):
                with Mounted(driver, "child") as root:
                    if read(root, "etc/hostname") != b"base\n":
                        errors.append("content wrong while another thread holds the layer")
        except Exception as exc:  # reported below, with the thread's view
            errors.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, f"concurrent get/put failed: {errors[:3]}"
    assert not mounts_under(storage_home), f"balanced get/put left mounts: {mounts_under(storage_home)}"


def test_cleanup_leaves_nothing_mounted(driver, storage_home):
    base_layer(driver)
    for name in ("c1", "c2"):
        driver.create_rw(name, "base")
        driver.get(name)
        driver.put(name)
    driver.get("c1")
    driver.remove("c1")  # removing a mounted layer must release it
    driver.remove("c2")
    driver.remove("base")
    driver.cleanup()
    assert driver.layers() == [], f"layers left after removing all: {driver.layers()}"
    assert not mounts_under(storage_home), f"mounts left after removing every layer: {mounts_under(storage_home)}"


def test_apply_diff_refuses_escapes(driver, storage_home):
    from pallet.kernel.errors import PalletError

    driver.create("base")
    marker = os.path.join(os.path.dirname(storage_home), f"escaped-{os.getpid()}")
    with pytest.raises(PalletError):
        driver.apply_diff("base", None, tar_of(F(f"../../../../../../{marker.lstrip('/')}", b"x")))
    assert not os.path.exists(marker), "a ../ entry was written outside the layer"


def test_status_and_metadata_are_reportable(driver):
    driver.create("base")
    rows = driver.status()
    assert isinstance(rows, list) and all(
        isinstance(row, tuple) and len(row) == 2 and all(isinstance(cell, str) for cell in row) for row in rows), \
        f"status() must return a list of (name, value) string pairs for pallet info, got {rows!r}"
    meta = driver.metadata("base")
    assert isinstance(meta, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()), \
        f"metadata() must return a dict of strings for inspect, got {meta!r}"


# security.capability, VFS_CAP_REVISION_2 with the effective bit: cap_net_bind_service (10) permitted.
NET_BIND_SERVICE_CAP = struct.pack("<IIIII", 0x02000001, 1 << 10, 0, 0, 0)


def skip_without_xattrs(driver):
    """Skip, naming the limit, when the filesystem under the driver's layers has no extended attributes at all."""
    driver.create_rw("xattr-probe", None)
    try:
        with Mounted(driver, "xattr-probe") as root:
            probe = os.path.join(root, "probe")
            with open(probe, "wb"):
                pass
            try:
                os.setxattr(probe, "user.pallet.probe", b"1")
            except OSError as exc:
                if exc.errno != errno.ENOTSUP:
                    raise
                pytest.skip(f"the filesystem under this driver's layers has no extended attributes ({exc.strerror}): "
                            "file capabilities and xattrs in images are lost")
    finally:
        driver.remove("xattr-probe")


def test_xattrs_and_file_capabilities(driver):
    skip_without_xattrs(driver)
    driver.apply_diff("base", None, tar_of(
        D("bin"), F("bin/ping", b"\x7fELF", mode=0o755, xattrs={"security.capability": NET_BIND_SERVICE_CAP}),
        F("tagged", b"t", xattrs={"user.pallet.kit": b"value-1"}),
        D("dir", xattrs={"user.pallet.dir": b"d"})))
    driver.create_rw("child", "base")
    for layer in ("base", "child"):
        with Mounted(driver, layer) as root:
            found = xattrs(os.path.join(root, "bin/ping"))
            assert found.get("security.capability") == NET_BIND_SERVICE_CAP, \
                f"layer {layer}: the file capability (security.capability) of bin/ping was not kept: {found}"
            assert xattrs(os.path.join(root, "tagged")).get("user.pallet.kit") == b"value-1", \
                f"layer {layer}: the user.* xattr of a file was not kept: {xattrs(os.path.join(root, 'tagged'))}"
            assert xattrs(os.path.join(root, "dir")).get("user.pallet.dir") == b"d", \
                f"layer {layer}: the user.* xattr of a directory was not kept"
    with Mounted(driver, "child") as root:
        os.setxattr(os.path.join(root, "tagged"), "user.pallet.kit", b"changed")
    produced = b"".join(driver.diff("child", "base"))
    with tarfile.open(fileobj=io.BytesIO(produced)) as tar:
        headers = {m.name: m.pax_headers for m in tar.getmembers()}
    assert headers.get("tagged", {}).get("SCHILY.xattr.user.pallet.kit") == "changed", \
        f"diff() does not carry a changed xattr as SCHILY.xattr.*: {headers.get('tagged')}"


BAD_IDS = ["", "../escape", "a/b", ".hidden", "x" * 200]


def test_documented_errors(driver):
    from pallet.kernel.errors import Conflict, NotFound, UsageError

    driver.create("base")
    harness.raises_documented(Conflict, driver.create, "base", what="create() of a layer that exists")
    harness.raises_documented(Conflict, driver.create_rw, "base", None, what="create_rw() of a layer that exists")
    harness.raises_documented(NotFound, driver.get, "missing", what="get() of a missing layer")
    harness.raises_documented(NotFound, driver.create, "orphan", "missing", what="create() on a missing parent")
    assert not driver.exists("orphan"), "a create() refused for its missing parent left the layer behind"
    harness.raises_documented(UsageError, driver.create_rw, "opts", "base", {"no-such-option": "1"},
                              what="create_rw() with an option the driver does not know")
    assert not driver.exists("opts"), "a create_rw() refused for its options left the layer behind"
    for bad in BAD_IDS:
        harness.raises_documented(UsageError, driver.create, bad, what=f"create() of the bad layer id {bad!r}")
    assert driver.exists("base") and not driver.exists("missing")
    driver.remove("missing")  # removing a missing layer is not an error
