"""userns profile: run containers in a user namespace mapped onto subordinate IDs (``[security] userns_remap``).

Configuration (``/etc/pallet/pallet.toml``)::

    [security]
    userns_remap = "default"        # or "USER" / "USER:GROUP"; "default" means the user "pallet"
    subuid_file = "/etc/subuid"     # optional, where the ranges are read
    subgid_file = "/etc/subgid"

``pallet security userns setup`` writes a ``pallet`` entry into both files. A container
opts out with ``--userns=host``. The engine keeps a per-remap storage home
``<root>/<uid>.<gid>/<driver>/`` whose layers are unpacked ID-shifted and diffed back: the
profile answers ``SecurityProfile.storage_mapping`` with the configured :class:`IdMapping`, and
its ``prepare_files`` lets the remapped root reach its rootfs.
docs/security.md says why this and not idmapped mounts.
"""

from __future__ import annotations

import grp
import os
import pwd
from pathlib import Path

from pallet.kernel import hookimpl
from pallet.kernel.drivers import Availability, FilesContext, IdMapping, SecurityProfile
from pallet.kernel.errors import PalletError, UsageError
from pallet.plugins.security.subids import DEFAULT_REMAP_USER, IdRange, read_ranges

def parse_remap(value: str) -> tuple[str, str]:
    """``default`` -> ``("pallet", "pallet")``; ``USER[:GROUP]`` -> names (GROUP defaults to USER)."""
    value = value.strip()
    if value == "default":
        return DEFAULT_REMAP_USER, DEFAULT_REMAP_USER
    user, _, group = value.partition(":")
    if not user:
        raise UsageError(f'invalid userns_remap "{value}": expected default or USER[:GROUP]')
    return user, group or user


def mappings(ranges: list[IdRange]) -> list[dict]:
    """OCI ``uidMappings``/``gidMappings``: the ranges laid end to end from container ID 0."""
    out, inside = [], 0
    for item in ranges:
        out.append({"containerID": inside, "hostID": item.start, "size": item.count})
        inside += item.count
    return out


def remap_ids(settings: dict) -> tuple[list[dict], list[dict]] | None:
    """``(uid mappings, gid mappings)`` for the configured remap, or None when remapping is off."""
    value = settings.get("userns_remap")
    if not value:
        return None
    user, group = parse_remap(str(value))
    uid = _lookup(pwd.getpwnam, user, "pw_uid")
    gid = _lookup(grp.getgrnam, group, "gr_gid")
    subuid = Path(settings.get("subuid_file", "/etc/subuid"))
    subgid = Path(settings.get("subgid_file", "/etc/subgid"))
    uids, gids = read_ranges(subuid, user, uid), read_ranges(subgid, group, gid)
    for ranges, path, name in ((uids, subuid, user), (gids, subgid, group)):
        if not ranges:
            hint = ' (run "pallet security userns setup")' if name == DEFAULT_REMAP_USER else ""
            raise PalletError(f'userns_remap: {path} has no subordinate range for "{name}"{hint}')
    return mappings(uids), mappings(gids)


def _lookup(getter, name: str, attr: str) -> int | None:
    try:
        return getattr(getter(name), attr)
    except KeyError:
        return int(name) if name.isdigit() else None


def open_paths(spec: dict, owned: list[Path]) -> None:
    """Let the container's root (an unprivileged host UID) reach its rootfs and bind sources.

    The runtime prepares the rootfs inside the new user namespace, where host-root-owned 0700
    directories are closed to it. As Docker does for ``userns-remap``, directories pallet owns
    (under ``owned``: its root and run root) on the way get search permission for others
    (0711: no listing); any other closed directory on the way is an error naming it.
    """
    root = (spec.get("root") or {}).get("path")
    paths = [Path(root)] if root else []
    paths += [Path(m["source"]) for m in spec.get("mounts") or []
              if m.get("type") == "bind" or "bind" in (m.get("options") or []) or "rbind" in (m.get("options") or [])]
    owned = [p.resolve() for p in owned]
    for path in paths:
        for parent in Path(os.path.realpath(path)).parents:
            st = parent.stat()
            if st.st_mode & 0o001:
                continue
            if any(parent == base or base in parent.parents for base in owned):
                os.chmod(parent, (st.st_mode & 0o7777) | 0o011)
            else:
                raise PalletError(f"userns_remap: {parent} (mode {st.st_mode & 0o777:o}) must be searchable by "
                                  'others for the remapped root to reach the container\'s files; run "chmod o+x '
                                  f'{parent}"')


def prepare_files(spec: dict, ctx: FilesContext) -> None:
    """Before a remapped container starts: the rootfs top belongs to its root, and its paths are open.

    The layers below are ID-shifted already (the per-remap storage home); the container's own
    top directory was made by the storage driver as host root.
    """
    if not (spec.get("linux") or {}).get("uidMappings"):
        return
    mapping = ctx.mapping
    root = (spec.get("root") or {}).get("path")
    if root and mapping is not None and spec["linux"]["uidMappings"] == mapping.uid_map:
        st = os.stat(root)
        if (st.st_uid, st.st_gid) != mapping.shift(0, 0):
            os.chown(root, *mapping.shift(0, 0))
            os.chmod(root, st.st_mode & 0o7777)  # chown clears setuid/setgid bits
    open_paths(spec, [Path(ctx.root), Path(ctx.run_root)])


def _bind_sysfs(spec: dict) -> None:
    """sysfs can only be mounted by the user namespace owning the network namespace; a container
    joining one made outside (pallet's sandbox, ``--network host``) gets the host's /sys bound
    instead (what the built-in runtime falls back to; runc needs it said in the spec)."""
    for mount in spec.get("mounts") or []:
        if mount.get("type") == "sysfs":
            options = [o for o in mount.get("options") or [] if o in ("ro", "nosuid", "nodev", "noexec")]
            mount.update(type="bind", source="/sys", options=["rbind", *options])


class UsernsProfile(SecurityProfile):
    description = "user namespace ID remapping ([security] userns_remap)"
    order = 5

    @classmethod
    def probe(cls, home=None, options=None):
        if not os.path.exists("/proc/self/ns/user"):
            return Availability.no("user namespaces are not supported by this kernel")
        try:
            with open("/proc/sys/user/max_user_namespaces") as handle:
                if int(handle.read()) == 0:
                    return Availability.no("user namespaces are disabled (user.max_user_namespaces = 0)")
        except OSError:
            pass
        return Availability.ok()

    @classmethod
    def storage_mapping(cls, settings):
        maps = remap_ids(settings)
        return None if maps is None else IdMapping(*maps)

    def prepare_files(self, spec, ctx):
        prepare_files(spec, ctx)

    def validate(self, options):
        if options:
            raise UsageError('user namespaces are configured with [security] userns_remap and --userns, '
                             'not --security-opt')

    def apply(self, spec, ctx):
        if ctx.userns not in ("", "host"):
            raise UsageError(f'invalid --userns "{ctx.userns}": only "host" is supported')
        maps = None if ctx.userns == "host" else remap_ids(ctx.settings)
        if maps is None:
            return
        if ctx.privileged:
            raise UsageError("privileged mode is incompatible with user namespaces; run it with --userns=host")
        linux = spec.setdefault("linux", {})
        namespaces = [ns for ns in linux.get("namespaces", []) if ns.get("type") != "user"]
        linux["namespaces"] = [{"type": "user"}, *namespaces]
        linux["uidMappings"], linux["gidMappings"] = maps
        if not any(ns.get("type") == "network" and not ns.get("path") for ns in namespaces):
            _bind_sysfs(spec)


@hookimpl
def pallet_register_security_profiles(register):
    register("userns", UsernsProfile)


@hookimpl
def pallet_register_commands(cli):
    from pallet.plugins.security.userns_cli import userns

    cli.plugin_group("security").add_command(userns)
