"""Layer tar extraction: fidelity of what is written, and refusal of every way out of the layer root."""

from __future__ import annotations

import io
import os
import stat
import tarfile

import pytest

from pallet.kernel.errors import PalletError
from pallet.kernel.storage import archive


def make_tar(*members) -> bytes:
    """Members are (TarInfo, data-or-None) pairs or plain TarInfo."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for member in members:
            info, data = member if isinstance(member, tuple) else (member, None)
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def entry(name, kind=tarfile.REGTYPE, **fields):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = fields.pop("mode", 0o755 if kind == tarfile.DIRTYPE else 0o644)
    for key, value in fields.items():
        setattr(info, key, value)
    return info


def test_regular_dirs_links_devices_owners_modes_and_xattrs(scratch):
    xattr = entry("etc/passwd", uid=1000, gid=1001, mode=0o4755, mtime=1_600_000_000)
    xattr.pax_headers = {"SCHILY.xattr.user.note": "hello"}
    data = make_tar(
        entry("etc", tarfile.DIRTYPE, mtime=1_500_000_000),
        (xattr, b"root:x:0:0\n"),
        entry("etc/hard", tarfile.LNKTYPE, linkname="etc/passwd"),
        entry("etc/soft", tarfile.SYMTYPE, linkname="passwd"),
        entry("dev/null", tarfile.CHRTYPE, devmajor=1, devminor=3, mode=0o666),
        entry("dev/sda", tarfile.BLKTYPE, devmajor=8, devminor=0),
        entry("run/fifo", tarfile.FIFOTYPE),
        (entry("big", mode=0o600), os.urandom(3 << 20)),
    )
    root = scratch / "root"
    root.mkdir()
    applied = archive.extract(io.BytesIO(data), root)
    assert applied == 11 + (3 << 20)
    st = os.lstat(root / "etc/passwd")
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1000, 1001, 0o4755)
    assert st.st_mtime == 1_600_000_000
    assert os.getxattr(root / "etc/passwd", "user.note") == b"hello"
    assert os.lstat(root / "etc/hard").st_ino == st.st_ino
    assert os.readlink(root / "etc/soft") == "passwd"
    assert os.lstat(root / "etc").st_mtime == 1_500_000_000
    dev = os.lstat(root / "dev/null")
    assert stat.S_ISCHR(dev.st_mode) and os.major(dev.st_rdev) == 1 and os.minor(dev.st_rdev) == 3
    assert stat.S_ISBLK(os.lstat(root / "dev/sda").st_mode)
    assert stat.S_ISFIFO(os.lstat(root / "run/fifo").st_mode)
    assert (root / "big").stat().st_size == 3 << 20


def test_whiteouts_delete_for_full_tree_layers(scratch):
    root = scratch / "root"
    (root / "gone").mkdir(parents=True)
    (root / "gone/file").write_text("x")
    (root / "opq/sub").mkdir(parents=True)
    (root / "opq/old").write_text("x")
    (root / "opq/sub/old").write_text("x")
    data = make_tar(entry(".wh.gone"), entry("opq", tarfile.DIRTYPE), (entry("opq/new"), b"n"),
                    entry("opq/.wh..wh..opq"), entry("missing/.wh.nothing"))
    archive.extract(io.BytesIO(data), root)
    assert not (root / "gone").exists()
    assert sorted(os.listdir(root / "opq")) == ["new"]
    assert not (root / "missing").exists()


def test_whiteouts_become_overlay_markers(scratch):
    root = scratch / "diff"
    root.mkdir()
    data = make_tar(entry("a/.wh.b"), entry("c", tarfile.DIRTYPE), entry("c/.wh..wh..opq"))
    archive.extract(io.BytesIO(data), root, archive.OverlayWhiteouts())
    st = os.lstat(root / "a/b")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert os.getxattr(root / "c", "trusted.overlay.opaque") == b"y"


@pytest.mark.parametrize("members, escaped", [
    ([entry("../../escaped-dotdot")], "escaped-dotdot"),
    ([entry("/abs-escaped")], "abs-escaped"),
    ([entry("a/../../escaped-mid")], "escaped-mid"),
    ([entry("evil", tarfile.SYMTYPE, linkname="../outside"), entry("evil/escaped-through")], "outside/escaped-through"),
    ([entry("evil", tarfile.SYMTYPE, linkname="a/../../outside"), entry("evil/x", tarfile.DIRTYPE),
      entry("evil/x/escaped")], "outside/x/escaped"),
    ([entry("hard", tarfile.LNKTYPE, linkname="../victim")], "root/hard"),
    ([entry("a", tarfile.DIRTYPE), entry("a/f"), entry("a", tarfile.SYMTYPE, linkname="../outside"),
      entry("a/escaped-after-swap")], "outside/escaped-after-swap"),
])
def test_malicious_entries_are_refused_and_nothing_escapes(scratch, members, escaped):
    root = scratch / "root"
    root.mkdir()
    (scratch / "outside").mkdir()
    (scratch / "victim").write_text("secret")
    data = make_tar(*[(m, b"pwned") if m.type == tarfile.REGTYPE else m for m in members])
    with pytest.raises(PalletError, match='layer entry "'):
        archive.extract(io.BytesIO(data), root)
    assert not (scratch / escaped).exists()
    assert not (scratch.parent / escaped).exists()
    assert (scratch / "victim").read_text() == "secret"


def test_absolute_symlink_is_followed_inside_the_root_only(scratch):
    root = scratch / "root"
    root.mkdir()
    target = scratch / "outside"
    target.mkdir()
    data = make_tar(entry("evil", tarfile.SYMTYPE, linkname=str(target)), (entry("evil/file"), b"x"))
    archive.extract(io.BytesIO(data), root)
    assert not (target / "file").exists()
    assert (root / str(target).lstrip("/") / "file").read_bytes() == b"x"


def test_hard_link_to_missing_target_is_refused(scratch):
    root = scratch / "root"
    root.mkdir()
    with pytest.raises(PalletError, match="hard link target"):
        archive.extract(io.BytesIO(make_tar(entry("h", tarfile.LNKTYPE, linkname="nope"))), root)


def test_truncated_stream_is_an_error(scratch):
    data = make_tar((entry("f"), b"x" * 5000))
    with pytest.raises(PalletError, match="truncated"):
        archive.extract(io.BytesIO(data[:2048]), scratch)


def test_stream_is_read_to_the_end(scratch):
    stream = io.BytesIO(make_tar((entry("f"), b"x")) + b"\0" * 8192)
    archive.extract(stream, scratch)
    assert stream.read() == b""


def test_tar_tree_round_trips(scratch):
    src = scratch / "src"
    (src / "d").mkdir(parents=True)
    (src / "d/f").write_bytes(b"data" * 1000)
    os.link(src / "d/f", src / "d/g")
    os.symlink("f", src / "d/l")
    os.chown(src / "d/f", 7, 8)
    os.setxattr(src / "d/f", "user.k", b"\xff\x00v")
    dst = scratch / "dst"
    dst.mkdir()
    archive.extract(archive.ChunkReader(archive.tar_tree(src)), dst)
    st = os.lstat(dst / "d/f")
    assert (st.st_uid, st.st_gid, st.st_nlink) == (7, 8, 2)
    assert (dst / "d/g").read_bytes() == b"data" * 1000
    assert os.readlink(dst / "d/l") == "f"
    assert os.getxattr(dst / "d/f", "user.k") == b"\xff\x00v"


def snapshot(root):
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            content = open(path, "rb").read() if stat.S_ISREG(st.st_mode) else None
            target = os.readlink(path) if stat.S_ISLNK(st.st_mode) else None
            found[os.path.relpath(path, root)] = (st.st_mode, st.st_uid, st.st_gid, int(st.st_mtime), st.st_nlink,
                                                  content, target)
    return found


@pytest.mark.parametrize("fmt", ["gnu", "posix"])
def test_extraction_matches_gnu_tar(scratch, fmt):
    import subprocess

    src = scratch / "src"
    deep = src / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    (deep / ("f" * 90)).write_bytes(b"long name")
    os.symlink("t" * 150, deep / "longlink")
    os.link(deep / ("f" * 90), src / "hard")
    (src / "setgid").mkdir(mode=0o2775)
    os.chmod(src / "setgid", 0o2775)
    os.chown(src / "setgid", 0, 44)
    (src / "setgid/inherit").write_text("x")
    os.chown(src / "setgid/inherit", 12, 0)
    os.utime(src / "hard", (1_234_567_890, 1_234_567_890))
    layer = scratch / "layer.tar"
    subprocess.run(["tar", f"--format={fmt}", "-C", str(src), "-cf", str(layer), "."], check=True)
    by_tar, by_pallet = scratch / "tar", scratch / "pallet"
    by_tar.mkdir()
    by_pallet.mkdir()
    subprocess.run(["tar", "-C", str(by_tar), "-xf", str(layer)], check=True)
    with open(layer, "rb") as stream:
        archive.extract(stream, by_pallet)
    assert snapshot(by_pallet) == snapshot(by_tar)


@pytest.mark.parametrize("fmt", ["gnu", "posix"])
def test_sparse_members_are_refused_clearly(scratch, fmt):
    import subprocess

    with open(scratch / "sparse", "wb") as handle:
        handle.truncate(1 << 20)
        handle.seek(1 << 20)
        handle.write(b"x")
    layer = scratch / "layer.tar"
    subprocess.run(["tar", "-C", str(scratch), "--sparse", f"--format={fmt}", "-cf", str(layer), "sparse"], check=True)
    (scratch / "out").mkdir()
    with open(layer, "rb") as stream, pytest.raises(PalletError, match="sparse files are not supported"):
        archive.extract(stream, scratch / "out")
