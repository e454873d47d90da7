"""The ``linux`` parts of a container's OCI spec that HostConfig's namespace, device and block-IO fields decide.

Everything here goes through the standard spec (``linux.namespaces`` paths, ``linux.devices``,
``linux.resources``), so pallet's runtime and runc carry out the same bundle.
"""

from __future__ import annotations

import os
import stat

from pallet.kernel.errors import PalletError

DEFAULT_SHM = 64 << 20


def namespaces(host: dict, network_mode: str, netns_path: str | None, links) -> list[dict]:
    """--pid/--ipc/--uts/--cgroupns: ``host`` leaves the namespace out (the host's is used), ``container:``
    joins by path (resolved in :mod:`pallet.kernel.runlinks`), anything else gets a new one."""
    joined = links.namespaces if links is not None else {}
    result = [{"type": "mount"}]
    for nstype, key in (("pid", "PidMode"), ("ipc", "IpcMode"), ("uts", "UTSMode")):
        if host.get(key) == "host":
            continue
        result.append({"type": nstype, "path": joined[nstype]} if nstype in joined else {"type": nstype})
    if os.path.exists("/proc/self/ns/cgroup") and host.get("CgroupnsMode") != "host":
        result.append({"type": "cgroup"})
    if network_mode != "host":
        result.append({"type": "network", "path": netns_path} if netns_path else {"type": "network"})
    return result


def shm_mount(mounts: list[dict], host: dict, links) -> list[dict]:
    """/dev/shm: --shm-size for a private one, the host's or another container's for --ipc host|container:,
    none at all for --ipc none."""
    mode = host.get("IpcMode") or ""
    source = links.shm_source if links is not None else ""
    result = []
    for mount in mounts:
        if mount["destination"] != "/dev/shm":
            result.append(mount)
        elif mode == "none":
            continue
        elif source:
            result.append({"destination": "/dev/shm", "type": "bind", "source": source, "options": ["rbind", "rprivate"]})
        else:
            size = host.get("ShmSize") or DEFAULT_SHM
            options = [o for o in mount["options"] if not o.startswith("size=")] + [f"size={size // 1024}k"]
            result.append({**mount, "options": options})
    return result


def devices(mappings: list[dict]) -> list[tuple[dict, dict]]:
    """--device: (OCI ``linux.devices`` entry, cgroup allow rule) for each node; a directory adds the
    devices under it, as Docker does."""
    result = []
    for mapping in mappings:
        host_path, target, access = mapping["PathOnHost"], mapping["PathInContainer"], mapping["CgroupPermissions"]
        try:
            st = os.stat(host_path)
        except OSError as exc:
            raise PalletError(f"error gathering device information while adding custom device \"{host_path}\": "
                              f"{(exc.strerror or str(exc)).lower()}") from None
        if stat.S_ISDIR(st.st_mode):
            for base, _dirs, files in os.walk(host_path):
                for name in sorted(files):
                    path = os.path.join(base, name)
                    node = _node(path, os.path.join(target, os.path.relpath(path, host_path)), access)
                    if node is not None:
                        result.append(node)
            continue
        node = _node(host_path, target, access)
        if node is None:
            raise PalletError(f"error gathering device information while adding custom device \"{host_path}\": "
                              "not a device node")
        result.append(node)
    return result


def _node(host_path: str, target: str, access: str) -> tuple[dict, dict] | None:
    try:
        st = os.stat(host_path)
    except OSError:
        return None
    if stat.S_ISCHR(st.st_mode):
        kind = "c"
    elif stat.S_ISBLK(st.st_mode):
        kind = "b"
    else:
        return None
    major, minor = os.major(st.st_rdev), os.minor(st.st_rdev)
    device = {"path": target, "type": kind, "major": major, "minor": minor, "fileMode": stat.S_IMODE(st.st_mode),
              "uid": st.st_uid, "gid": st.st_gid}
    return device, {"allow": True, "type": kind, "major": major, "minor": minor, "access": access}


def cgroup_rule(rule: str) -> dict:
    """``c 13:* rwm`` -> an OCI ``linux.resources.devices`` allow entry (``*`` is any: no number)."""
    kind, numbers, access = rule.split(" ")
    major, minor = numbers.split(":")
    entry = {"allow": True, "type": kind, "access": access}
    if major != "*":
        entry["major"] = int(major)
    if minor != "*":
        entry["minor"] = int(minor)
    return entry


def block_io(host: dict) -> dict:
    """--blkio-weight[-device] and --device-{read,write}-{bps,iops} -> OCI ``linux.resources.blockIO``."""
    result: dict = {}
    if host.get("BlkioWeight"):
        result["weight"] = host["BlkioWeight"]
    weights = [{**block_device(d["Path"]), "weight": d["Weight"]} for d in host.get("BlkioWeightDevice") or []]
    if weights:
        result["weightDevice"] = weights
    for key, field_name in (("BlkioDeviceReadBps", "throttleReadBpsDevice"),
                            ("BlkioDeviceWriteBps", "throttleWriteBpsDevice"),
                            ("BlkioDeviceReadIOps", "throttleReadIOPSDevice"),
                            ("BlkioDeviceWriteIOps", "throttleWriteIOPSDevice")):
        entries = [{**block_device(d["Path"]), "rate": d["Rate"]} for d in host.get(key) or []]
        if entries:
            result[field_name] = entries
    return result


def block_device(path: str) -> dict:
    try:
        st = os.stat(path)
    except OSError as exc:
        raise PalletError(f"{path}: {(exc.strerror or str(exc)).lower()}") from None
    if not stat.S_ISBLK(st.st_mode):
        raise PalletError(f"{path} is not a block device")
    return {"major": os.major(st.st_rdev), "minor": os.minor(st.st_rdev)}
