"""overlay2 storage driver: layers as overlayfs lower dirs with short link names, as moby's overlay2.

On disk (``<home>``)::

    l/<SHORT>            -> ../<id>/diff   short names keep the lower list small
    <id>/diff/           the layer's own content (the overlay upper dir while it is mounted)
    <id>/link            SHORT
    <id>/lower           "l/A:l/B:…" parents, nearest first (absent for a base layer)
    <id>/parent          the parent's id (for the fast diff path)
    <id>/work/           overlay work dir
    <id>/merged/         mount point, reference counted across processes (``<id>/mount-count``)

Mounts use the new mount API with one ``lowerdir+`` per layer (see kernel/storage/mounts.py),
so 100+ layers mount without hitting the 4096-byte option string limit. On older kernels
(or with ``--storage-opt overlay2.mount_api=legacy``) it falls back to ``mount(2)`` run
inside the home with relative ``l/SHORT`` paths, as moby does: about 120 layers fit. ``index=off``,
``redirect_dir=off`` and ``metacopy=off`` keep the upper dir a complete, self-describing diff:
that is what lets ``diff``/``changes`` read it directly instead of comparing two trees.
"""

from __future__ import annotations

import base64
import errno
import os
import shutil
import stat
import subprocess
from pathlib import Path
from typing import BinaryIO, Iterator

from pallet.kernel import hookimpl
from pallet.kernel.drivers import Availability, Change, StorageDriver
from pallet.kernel.errors import Conflict, NotFound, PalletError
from pallet.kernel.fsutil import locked
from pallet.kernel.storage.layerids import check_layer_id, leftover_name, refuse_options, sweep_leftovers

OPAQUE_XATTR = "trusted.overlay.opaque"


class Overlay2Driver(StorageDriver):
    description = "overlayfs with per-layer diff dirs"
    parallel_apply = True   # apply_diff writes only the layer's own diff dir: a pull fills layers at once

    @classmethod
    def probe(cls, home=None, options=None):
        from pallet.kernel import host

        if "overlay" not in host.filesystems():
            return Availability.no("overlayfs is not supported by this kernel")
        if os.geteuid() != 0:
            return Availability.no("overlay2 needs root (mounts and trusted.* xattrs)")
        if home is not None:
            fstype, mountpoint = host.filesystem_of(home)
            if fstype in ("overlay", "aufs"):
                return Availability.no(f"{mountpoint} is on {fstype}, which overlayfs cannot use as upper dir")
        return Availability.ok()

    # --- layout -------------------------------------------------------------------------
    def _dir(self, layer_id: str) -> Path:
        return self.home / check_layer_id(layer_id)

    def _read(self, layer_id: str, name: str) -> str | None:
        try:
            return (self._dir(layer_id) / name).read_text().strip()
        except FileNotFoundError:
            return None

    def _lower_dirs(self, layer_id: str) -> list[str]:
        """Absolute short paths of the parents' diff dirs, nearest first."""
        lower = self._read(layer_id, "lower")
        return [str(self.home / part) for part in lower.split(":")] if lower else []

    # --- create / remove ----------------------------------------------------------------
    def create(self, layer_id: str, parent: str | None = None) -> None:
        final = self._dir(layer_id)
        if final.exists():
            raise Conflict(f'layer "{layer_id}" already exists')
        lower = ""
        if parent and not self.exists(parent):
            raise NotFound(f'parent layer "{parent}" does not exist')
        (self.home / "l").mkdir(parents=True, exist_ok=True)
        if parent:
            parent_lower, parent_link = self._read(parent, "lower"), self._read(parent, "link")
            self._ensure_link(parent, parent_link)
            lower = "l/" + parent_link + (":" + parent_lower if parent_lower else "")
        link = base64.b32encode(os.urandom(16)).decode()[:26]
        tmp = self.home / leftover_name("tmp", layer_id)
        try:
            tmp.mkdir(0o700)
            (tmp / "diff").mkdir(0o755)
            (tmp / "link").write_text(link)
            if parent:
                (tmp / "work").mkdir(0o700)
                (tmp / "merged").mkdir(0o700)
                (tmp / "lower").write_text(lower)
                (tmp / "parent").write_text(parent)
            try:
                os.rename(tmp, final)
            except OSError:
                raise Conflict(f'layer "{layer_id}" already exists') from None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        self._ensure_link(layer_id, link)

    def _ensure_link(self, layer_id: str, link: str) -> None:
        """Recreate ``l/LINK`` if a process died between renaming the layer into place and linking it."""
        try:
            os.symlink(f"../{layer_id}/diff", self.home / "l" / link)
        except FileExistsError:
            pass

    def create_rw(self, layer_id: str, parent: str | None = None, opts: dict[str, str] | None = None) -> None:
        refuse_options("overlay2", opts)
        self.create(layer_id, parent)

    def remove(self, layer_id: str) -> None:
        path = self._dir(layer_id)
        if not path.exists():
            return
        link = self._read(layer_id, "link")
        merged = path / "merged"
        if os.path.ismount(merged):
            from pallet.kernel.storage import mounts
            mounts.umount(str(merged), mounts.MNT_DETACH)
        doomed = self.home / leftover_name("rm", layer_id)
        os.rename(path, doomed)
        if link:
            try:
                os.unlink(self.home / "l" / link)
            except FileNotFoundError:
                pass
        shutil.rmtree(doomed)

    def exists(self, layer_id: str) -> bool:
        return (self._dir(layer_id) / "diff").is_dir()

    def layers(self) -> list[str]:
        """The layers, after sweeping what a killed create/remove left (hidden dirs, dangling links)."""
        sweep_leftovers(self.home)
        try:
            names = os.listdir(self.home)
            links = os.listdir(self.home / "l")
        except FileNotFoundError:
            return []
        for link in links:
            if not (self.home / "l" / link).exists():
                os.unlink(self.home / "l" / link)
        return sorted(n for n in names if n != "l" and not n.startswith(".") and (self.home / n / "diff").is_dir())

    # --- mounts -------------------------------------------------------------------------
    def get(self, layer_id: str, mount_label: str = "") -> Path:
        path = self._dir(layer_id)
        if not self.exists(layer_id):
            raise NotFound(f'layer "{layer_id}" does not exist')
        lowers = self._lower_dirs(layer_id)
        if not lowers:
            return path / "diff"  # a base layer needs no mount, as in moby
        merged = path / "merged"
        with locked(path / "mount.lock"):
            count = self._count(path) if os.path.ismount(merged) else 0  # stale after a reboot
            if count == 0:
                self._mount(path, lowers, mount_label)
            (path / "mount-count").write_text(str(count + 1))
        return merged

    def put(self, layer_id: str) -> None:
        path = self._dir(layer_id)
        if not (path / "lower").exists():
            return
        merged = path / "merged"
        with locked(path / "mount.lock"):
            count = self._count(path) - 1
            if count <= 0:
                if os.path.ismount(merged):
                    from pallet.kernel.storage import mounts
                    mounts.umount(str(merged), mounts.MNT_DETACH)
                count = 0
            (path / "mount-count").write_text(str(count))

    @staticmethod
    def _count(path: Path) -> int:
        try:
            return int((path / "mount-count").read_text() or 0)
        except (FileNotFoundError, ValueError):
            return 0

    def _mount(self, path: Path, lowers: list[str], mount_label: str) -> None:
        from pallet.kernel.storage import mounts

        common = [("index", "off"), ("redirect_dir", "off"), ("metacopy", "off")]
        if mount_label:
            common.append(("context", mount_label))
        if self.options.get("overlay2.mount_api", "new") != "legacy":
            options = [("lowerdir+", lower) for lower in lowers]
            options += [("upperdir", str(path / "diff")), ("workdir", str(path / "work")), *common]
            try:
                mounts.mount_fs("overlay", str(path / "merged"), options, source="overlay")
                return
            except OSError as exc:
                old_kernel = exc.errno == errno.ENOSYS or (exc.errno == errno.EINVAL and "lowerdir+" in str(exc))
                if not old_kernel:
                    raise PalletError(f'overlay2: mounting layer "{path.name}" failed: {exc.strerror}') from None
        self._legacy_mount(path, common)

    def _legacy_mount(self, path: Path, common: list[tuple[str, str]]) -> None:
        """mount(2) for kernels before 6.8, run in the home so the option string holds short relative paths."""
        lower = self._read(path.name, "lower")
        data = f"lowerdir={lower},upperdir={path.name}/diff,workdir={path.name}/work," + \
            ",".join(f"{key}={value}" for key, value in common)
        if len(data) >= 4096:
            raise PalletError(f'overlay2: layer "{path.name}" has too many parents for the legacy mount API '
                              "(Linux 6.8+ mounts any depth)")
        proc = subprocess.run(["mount", "-t", "overlay", "overlay", "-o", data, f"{path.name}/merged"],
                              cwd=self.home, capture_output=True, text=True)
        if proc.returncode != 0:
            raise PalletError(f'overlay2: mounting layer "{path.name}" failed: {proc.stderr.strip()}')

    def cleanup(self) -> None:
        """Nothing is held per process: mounts belong to their reference counts on disk."""

    # --- diff from the upper dir --------------------------------------------------------
    def _native(self, layer_id: str, parent: str | None) -> bool:
        return self._read(layer_id, "parent") == parent

    def diff(self, layer_id: str, parent: str | None) -> Iterator[bytes]:
        if not self._native(layer_id, parent):
            return super().diff(layer_id, parent)
        return self._upper_tar(str(self._dir(layer_id) / "diff"), self.id_unshift)

    @staticmethod
    def _upper_tar(upper: str, id_shift=None) -> Iterator[bytes]:
        from pallet.kernel.storage import archive

        writer = archive.TarWriter(id_shift)
        for name, path, st in archive.walk(upper):
            if _is_whiteout(st):
                yield writer.whiteout(name)
                continue
            yield from writer.add(name, path, st)
            if stat.S_ISDIR(st.st_mode) and _is_opaque(path):
                yield writer.opaque(name)
        yield writer.end()

    def changes(self, layer_id: str, parent: str | None) -> list[Change]:
        if not self._native(layer_id, parent):
            return super().changes(layer_id, parent)
        from pallet.kernel.storage import archive

        lowers = self._lower_dirs(layer_id)
        found = []
        for name, path, st in archive.walk(str(self._dir(layer_id) / "diff")):
            if _is_whiteout(st):
                found.append(Change("D", "/" + name))
                continue
            below = _in_lowers(lowers, name)
            found.append(Change("C" if below else "A", "/" + name))
            if below and stat.S_ISDIR(st.st_mode) and _is_opaque(path):
                kept = set(os.listdir(path))
                found += [Change("D", f"/{name}/{child}") for child in _lower_children(lowers, name) - kept]
        found.sort(key=lambda change: change.path)
        return found

    def diff_size(self, layer_id: str, parent: str | None) -> int:
        if not self._native(layer_id, parent):
            return super().diff_size(layer_id, parent)
        from pallet.kernel.storage import archive, naive

        return naive.regular_bytes(st for _name, _path, st in archive.walk(str(self._dir(layer_id) / "diff")))

    def apply_diff(self, layer_id: str, parent: str | None, stream: BinaryIO) -> int:
        from pallet.kernel.storage import archive, naive

        with naive.layer_to_fill(self, layer_id, parent):
            return archive.extract(stream, self._dir(layer_id) / "diff", archive.OverlayWhiteouts(),
                                   self.id_shift)

    # --- reporting ----------------------------------------------------------------------
    def status(self) -> list[tuple[str, str]]:
        from pallet.kernel import host
        from pallet.kernel.storage import mounts

        return [
            ("Home", str(self.home)),
            ("Backing Filesystem", host.filesystem_of(self.home)[0]),
            ("Supports d_type", str(mounts.supports_d_type(str(host.nearest_existing(self.home)))).lower()),
            ("Native Overlay Diff", "true"),
            ("Mount API", "fsopen with lowerdir+"),
        ]

    def metadata(self, layer_id: str) -> dict[str, str]:
        path = self._dir(layer_id)
        if not self.exists(layer_id):
            raise NotFound(f'layer "{layer_id}" does not exist')
        data = {"UpperDir": str(path / "diff")}
        lowers = self._lower_dirs(layer_id)
        if lowers:
            data.update(LowerDir=":".join(os.path.realpath(lower) for lower in lowers),
                        MergedDir=str(path / "merged"), WorkDir=str(path / "work"))
        return data


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _is_opaque(path: str) -> bool:
    try:
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


def _in_lowers(lowers: list[str], name: str) -> bool:
    for lower in lowers:
        try:
            st = os.lstat(lower + "/" + name)
        except (FileNotFoundError, NotADirectoryError):
            continue
        return not _is_whiteout(st)
    return False


def _lower_children(lowers: list[str], name: str) -> set[str]:
    """Names inside directory ``name`` as the lower layers together show it."""
    children: set[str] = set()
    hidden: set[str] = set()
    for lower in lowers:
        directory = lower + "/" + name
        try:
            entries = list(os.scandir(directory))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for entry in entries:
            if entry.name in hidden or entry.name in children:
                continue
            if _is_whiteout(entry.stat(follow_symlinks=False)):
                hidden.add(entry.name)
            else:
                children.add(entry.name)
        if _is_opaque(directory):
            break
    return children


@hookimpl
def pallet_register_storage_drivers(register):
    register("overlay2", Overlay2Driver)
