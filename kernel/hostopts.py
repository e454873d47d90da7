"""Parse the host-facing flags of ``run``/``create`` as Docker does: extra hosts, DNS, links, devices,
block-IO devices, namespace modes and sysctls (values in Docker's ``HostConfig`` shapes)."""

from __future__ import annotations

import re

from pallet.kernel.errors import UsageError
from pallet.kernel.runopts import parse_size


# --- hosts, DNS, links ---------------------------------------------------------------------

def parse_extra_host(spec: str) -> str:
    """``--add-host name:ip`` (or ``name=ip``, Docker 25+); ``host-gateway`` is resolved at start."""
    import ipaddress

    name, sep, address = spec.partition("=") if "=" in spec else spec.partition(":")
    address = address.strip("[]")
    if not sep or not name or not address:
        raise UsageError(f'invalid argument "{spec}" for "--add-host" flag: bad format for add-host: "{spec}"')
    if address != "host-gateway":
        try:
            ipaddress.ip_address(address)
        except ValueError:
            raise UsageError(f'invalid argument "{spec}" for "--add-host" flag: invalid IP address in add-host: '
                             f'"{address}"') from None
    return f"{name}:{address}"


def parse_dns(values) -> list[str]:
    import ipaddress

    for value in values or ():
        try:
            ipaddress.ip_address(value)
        except ValueError:
            raise UsageError(f'invalid argument "{value}" for "--dns" flag: ip address is not correctly formatted: '
                             f'{value}') from None
    return list(values or ())


def parse_dns_search(values) -> list[str]:
    for value in values or ():
        if value != "." and not re.fullmatch(r"[A-Za-z0-9.-]+", value) or len(value) > 255:
            raise UsageError(f'invalid argument "{value}" for "--dns-search" flag: {value} is not a valid domain')
    return list(values or ())


def parse_link(spec: str) -> str:
    """``--link name[:alias]`` -> ``name:alias`` (Docker keeps links as ``/name:/me/alias`` strings)."""
    name, _sep, alias = spec.partition(":")
    if not name:
        raise UsageError(f'invalid argument "{spec}" for "--link" flag: bad format for links: {spec}')
    return f"{name}:{alias or name}"


# --- devices -------------------------------------------------------------------------------

_DEVICE_MODE = re.compile(r"^[rwm]{1,3}$")


def parse_device(spec: str) -> dict:
    """``--device /dev/x[:/dev/y][:rwm]`` -> Docker's DeviceMapping (relative paths are refused)."""
    parts = spec.split(":")
    mode = "rwm"
    if len(parts) > 1 and _DEVICE_MODE.match(parts[-1]):
        mode = parts.pop()
    if len(parts) > 2 or not parts[0]:
        raise UsageError(f'invalid argument "{spec}" for "--device" flag: bad format for path: {spec}')
    host = parts[0]
    container = parts[1] if len(parts) == 2 else host
    for path in (host, container):
        if not path.startswith("/"):
            raise UsageError(f'invalid argument "{spec}" for "--device" flag: {path} is not an absolute path')
    return {"PathOnHost": host, "PathInContainer": container, "CgroupPermissions": mode}


_CGROUP_RULE = re.compile(r"^([acb]) ([0-9]+|\*):([0-9]+|\*) ([rwm]{1,3})$")


def parse_device_cgroup_rule(rule: str) -> str:
    """``c 13:* rwm`` (type a|b|c, major/minor number or ``*``, access)."""
    if not _CGROUP_RULE.match(rule):
        raise UsageError(f'invalid argument "{rule}" for "--device-cgroup-rule" flag: invalid device cgroup format '
                         f"'{rule}'")
    return rule


def parse_weight_device(spec: str) -> dict:
    """``--blkio-weight-device /dev/sda:200``."""
    path, sep, weight = spec.rpartition(":")
    if not sep or not path.startswith("/") or not (weight.isascii() and weight.isdigit()) or not 10 <= int(weight) <= 1000:
        raise UsageError(f'invalid argument "{spec}" for "--blkio-weight-device" flag: invalid weight for device: '
                         f"{spec}")
    return {"Path": path, "Weight": int(weight)}


def parse_throttle_device(spec: str, flag: str, sizes: bool) -> dict:
    """``--device-read-bps /dev/sda:1mb`` (a size) or ``--device-read-iops /dev/sda:1000`` (a number)."""
    path, sep, rate = spec.rpartition(":")
    if not sep or not path.startswith("/"):
        raise UsageError(f'invalid argument "{spec}" for "{flag}" flag: bad format: {spec}')
    if sizes:
        value = parse_size(rate, flag)
    elif (rate.isascii() and rate.isdigit()):
        value = int(rate)
    else:
        raise UsageError(f'invalid argument "{spec}" for "{flag}" flag: invalid rate for device: {spec}. '
                         "The correct format is <device-path>:<number>. Number must be a positive integer")
    return {"Path": path, "Rate": value}


# --- namespaces, sysctls -------------------------------------------------------------------

NAMESPACE_MODES = {
    "--pid": ("", "host", "private"),
    "--ipc": ("", "host", "private", "shareable", "none"),
    "--uts": ("", "host", "private"),
    "--cgroupns": ("", "host", "private"),
}


def parse_namespace_mode(value: str, flag: str) -> str:
    """``host``, ``private``, ``container:NAME`` (not for --cgroupns; for --uts as podman has it, which
    pods use), or "" for the default."""
    value = value or ""
    if value in NAMESPACE_MODES[flag]:
        return value
    if value.startswith("container:") and value.partition(":")[2] and flag in ("--pid", "--ipc", "--uts"):
        return value
    raise UsageError(f"--{flag.lstrip('-')}: invalid {flag.lstrip('-').upper()} mode: {value}")


# The sysctls a container's own namespaces scope (moby's ValidateSysctl), so --sysctl can set them.
_IPC_SYSCTLS = {"kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall", "kernel.shmmax",
                "kernel.shmmni", "kernel.shm_rmid_forced"}


def parse_sysctl(spec: str) -> tuple[str, str]:
    key, sep, value = spec.partition("=")
    key = key.strip().replace("/", ".")
    if not sep or not key:
        raise UsageError(f'invalid argument "{spec}" for "--sysctl" flag: sysctl \'{spec}\' is not allowed')
    if not (key in _IPC_SYSCTLS or key.startswith(("fs.mqueue.", "net.")) or key in ("kernel.domainname",
                                                                                      "kernel.hostname")):
        raise UsageError(f"sysctl '{spec}' is not allowed")
    return key, value


def check_sysctls(sysctls: dict, network_mode: str, ipc_mode: str, uts_mode: str) -> None:
    """A sysctl of a namespace the container shares with the host would change the host (moby refuses it)."""
    for key in sysctls:
        if key.startswith("net.") and network_mode == "host":
            raise UsageError(f"sysctl '{key}' is not allowed in host network namespace")
        if (key in _IPC_SYSCTLS or key.startswith("fs.mqueue.")) and ipc_mode == "host":
            raise UsageError(f"sysctl '{key}' is not allowed in host IPC namespace")
        if key in ("kernel.domainname", "kernel.hostname"):
            raise UsageError(f"sysctl '{key}' is not allowed: use --hostname / --domainname")
