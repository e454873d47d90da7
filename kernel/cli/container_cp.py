"""``pallet cp``: copy files between a container (as it sees its files, bind mounts included) and the host.

Paths inside the container are resolved in its own view (:class:`pallet.kernel.rootpath.ContainerView`):
the rootfs with the bind mounts of its last spec over it — ``/etc/hostname``, volumes, ``-v``
binds. What is copied in is written by file descriptor below the one mount that holds the path
(``openat2(RESOLVE_IN_ROOT)``, then ``*at`` calls that never follow a symlink), so neither a
symlink in the container nor one it swaps in meanwhile can make a copy land outside it.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import sys
from pathlib import Path

import click

from pallet.kernel.cli.container_ops import _store, mounted_rootfs
from pallet.kernel.errors import PalletError, UsageError


def _split_container_path(arg: str):
    if arg.startswith(("/", ".")) or ":" not in arg:
        return None, arg
    name, _sep, path = arg.partition(":")
    return name, path


@click.command("cp")
@click.option("-L", "--follow-link", is_flag=True, help="Always follow symbol link in SRC_PATH.")
@click.option("-a", "--archive", is_flag=True, help="Archive mode (copy all uid/gid information).")
@click.option("-q", "--quiet", is_flag=True, help="Suppress progress output (pallet prints none).")
@click.argument("src")
@click.argument("dest")
@click.pass_obj
def cp(engine, follow_link, archive, quiet, src, dest):
    """Copy files between a container and the host (CONTAINER:SRC DEST or SRC CONTAINER:DEST).

    ``-`` as DEST writes a tar of SRC to stdout; ``-`` as SRC extracts a tar from stdin into
    DEST, a directory. Paths inside the container are resolved as the container sees them: a
    symlink can never lead outside its root filesystem, and a path under a bind mount or volume
    is its source on the host.
    """
    src_name, src_path = _split_container_path(src)
    dest_name, dest_path = _split_container_path(dest)
    if dest == "-" and src_name is not None:
        record = _store(engine).get(src_name)
        with mounted_rootfs(engine, record) as rootfs:
            source = _source(container_view(engine, record, rootfs), src_name, src_path, follow_link)
            _tar_to_stdout(source, _inner_name(src_path, source))
        return
    if src == "-" and dest_name is not None:
        record = _store(engine).get(dest_name)
        with mounted_rootfs(engine, record) as rootfs:
            view = container_view(engine, record, rootfs)
            if not view.host(view.resolve(dest_path)).is_dir():
                raise PalletError(f'extraction point is not a directory: "{dest_path}"')
            shift = engine.storage.id_shift
            _untar_into(view, dest_path, shift(0, 0) if shift else (0, 0), keep_owner=archive)
        return
    if (src_name is None) == (dest_name is None):
        raise UsageError("copying between containers or between host paths is not supported; "
                         "use CONTAINER:PATH for exactly one side")
    if src_name is not None:
        record = _store(engine).get(src_name)
        with mounted_rootfs(engine, record) as rootfs:
            source = _source(container_view(engine, record, rootfs), src_name, src_path, follow_link)
            target = Path(dest_path)
            if target.is_dir():
                target = target / _inner_name(src_path, source)
            if source.is_dir() and not source.is_symlink():
                shutil.copytree(source, target, symlinks=True, dirs_exist_ok=True)
            else:
                shutil.copy2(source, target, follow_symlinks=False)
        return
    record = _store(engine).get(dest_name)
    source = Path(src_path)
    if not source.exists():
        raise PalletError(f"lstat {src_path}: no such file or directory")
    with mounted_rootfs(engine, record) as rootfs:
        view = container_view(engine, record, rootfs)
        if record.host_config.get("ReadonlyRootfs") and view.locate(view.resolve(dest_path))[2] is None:
            raise PalletError("container rootfs is marked read-only")
        resolved = view.resolve(dest_path)
        if view.host(resolved).is_dir():
            dest_path = "/" + "/".join([*resolved, source.name])
        elif not dest_path.endswith("/"):
            # As Docker: a symlink at the destination is followed inside the container's view, so
            # ``cp FILE ctr:/link`` writes the file the link names instead of replacing the link.
            dest_path = "/" + "/".join(resolved)
        shift = engine.storage.id_shift  # a userns-remapped home: "root" is the container's root
        _copy_into(view, source, dest_path, shift(0, 0) if shift else None)


def _bind_mounts(engine, record) -> list[tuple[str, str, bool]]:
    """(destination, host source, read-only) of the container's bind mounts.

    From its last spec: /etc/hostname, /etc/hosts and /etc/resolv.conf, volumes and ``-v`` binds
    live there, not in the rootfs (which holds empty placeholders under them). A container that
    never started has no spec: its ``-v``/``--mount`` binds of host paths, from its record.
    """
    try:
        spec = json.loads((_store(engine).run_dir(record.id) / "config.json").read_text())
    except (OSError, ValueError):
        return [(m["Target"], m["Source"], bool(m.get("ReadOnly")))
                for m in record.host_config.get("Mounts") or []
                if isinstance(m, dict) and m.get("Type") == "bind" and m.get("Source") and m.get("Target")]
    return [(os.path.normpath(m["destination"]), m["source"], "ro" in (m.get("options") or []))
            for m in spec.get("mounts") or []
            if isinstance(m, dict) and m.get("type") == "bind" and m.get("source") and m.get("destination")]


def container_view(engine, record, rootfs: Path):
    from pallet.kernel.rootpath import ContainerView

    return ContainerView(rootfs, _bind_mounts(engine, record))


def _source(view, name: str, path: str, follow_last: bool) -> Path:
    """Host path of ``path`` as the container sees it (inside a bind's source when a bind covers it)."""
    source = view.host(view.resolve(path, follow_last=follow_last))
    if not source.exists() and not source.is_symlink():
        raise PalletError(f"Could not find the file {path} in container {name}")
    return source


def _inner_name(path: str, source: Path) -> str:
    """The name a copy takes: the container path's last component (a bind's source may be named ``_data``)."""
    return os.path.basename(os.path.normpath("/" + path)) or source.name


def _tar_to_stdout(source: Path, name: str) -> None:
    import tarfile

    with tarfile.open(fileobj=sys.stdout.buffer, mode="w|", format=tarfile.PAX_FORMAT) as archive:
        archive.add(str(source), arcname=name, recursive=True)
    sys.stdout.buffer.flush()


def _untar_into(view, dest_path: str, owner: tuple[int, int], keep_owner: bool, stream=None, check=None,
                what: str = "on stdin") -> None:
    """Extract a tar (stdin's, or ``stream``) into ``dest_path`` in the container: first into a private
    directory (tarfile's ``tar`` filter refuses members that would land outside it, through links too),
    then, once ``check(staging)`` has raised nothing, placed by the same in-view copy as ``cp``. Files
    belong to the container's root unless ``keep_owner`` (-a). The Engine API's archive PUT uses it too."""
    import tarfile
    import tempfile

    with tempfile.TemporaryDirectory(prefix="pallet-cp-") as staging:
        try:
            with tarfile.open(fileobj=stream or sys.stdin.buffer, mode="r|*") as archive:
                archive.extractall(staging, filter="tar")
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise UsageError(f"invalid tar archive {what}: {exc}", exit_code=1) from None  # bad input, not usage
        if check is not None:
            check(Path(staging))
        for child in sorted(Path(staging).iterdir()):
            _copy_into(view, child, dest_path.rstrip("/") + "/" + child.name, owner, keep_owner)


def _copy_into(view, source: Path, dest_path: str, owner: tuple[int, int] | None = None,
               keep_owner: bool = False) -> None:
    """Copy a host tree to ``dest_path`` in the container's view, each entry written through a file
    descriptor of its parent directory opened below the mount that holds it (never by path).

    As Docker, what is copied in belongs to the container's root: ``owner`` when that is not host root;
    ``keep_owner`` (``cp -a``) keeps each source file's uid and gid instead.
    """
    def chown(st, *, fd=None, name=None, dir_fd=None) -> None:
        if owner is None and not keep_owner:
            return
        ids = (st.st_uid, st.st_gid) if keep_owner else owner
        if fd is not None:
            os.fchown(fd, *ids)
        else:
            os.chown(name, *ids, dir_fd=dir_fd, follow_symlinks=False)

    def place(src: Path, inner: str) -> None:
        parts = view.resolve(inner, follow_last=False)
        if not parts:
            raise PalletError(f"cannot copy {src} over the container's root directory")
        _root, _rest, bind, readonly = view.locate(parts)
        if readonly:
            raise PalletError(f"mounted volume is marked read-only: {bind}")
        st = src.lstat()
        name = parts[-1]
        try:
            parent = view.open(parts[:-1], os.O_RDONLY | os.O_DIRECTORY)
        except OSError as exc:
            raise PalletError(f"cannot copy to {inner}: {exc.strerror}") from None
        try:
            if src.is_symlink():
                _remove_entry(parent, name)
                os.symlink(os.readlink(src), name, dir_fd=parent)
                chown(st, name=name, dir_fd=parent)
                return
            if src.is_dir():
                try:
                    os.mkdir(name, 0o700, dir_fd=parent)
                except FileExistsError:
                    pass
                for child in sorted(src.iterdir()):
                    place(child, "/" + "/".join(parts) + "/" + child.name)
                # A symlink to a directory there is followed, in the container's view, as it is for children.
                fd = _open_or_fail(view, view.resolve("/" + "/".join(parts)), os.O_RDONLY | os.O_DIRECTORY, inner)
            else:
                if not stat.S_ISREG(st.st_mode):
                    raise PalletError(f"cannot copy {src}: not a regular file, directory or symlink")
                if _is_symlink_at(parent, name):
                    os.unlink(name, dir_fd=parent)
                try:
                    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC,
                                 0o600, dir_fd=parent)
                except OSError as exc:
                    raise PalletError(f"cannot copy to {inner}: {exc.strerror}") from None
                with open(src, "rb") as reader, os.fdopen(os.dup(fd), "wb") as writer:
                    shutil.copyfileobj(reader, writer, 1 << 20)
            try:
                chown(st, fd=fd)
                os.fchmod(fd, st.st_mode & 0o7777)   # after chown, which clears setuid/setgid
                os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))
            finally:
                os.close(fd)
        finally:
            os.close(parent)

    place(source, dest_path)


def _open_or_fail(view, parts: list[str], flags: int, inner: str) -> int:
    try:
        return view.open(parts, flags)
    except NotADirectoryError:
        raise PalletError(f"cannot overwrite non-directory {inner} with directory") from None
    except OSError as exc:
        raise PalletError(f"cannot copy to {inner}: {exc.strerror}") from None


def _is_symlink_at(dir_fd: int, name: str) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except FileNotFoundError:
        return False


def _remove_entry(dir_fd: int, name: str) -> None:
    """Make room for a symlink: an existing file or link goes (a directory is an error, as in Docker)."""
    try:
        os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass
    except IsADirectoryError:
        raise PalletError(f"cannot overwrite directory {name} with non-directory") from None
