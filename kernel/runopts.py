"""Parse ``run``/``create`` flags as Docker does: sizes, -e/--env-file, -v/--mount/--tmpfs, -p/-P, ulimits.

Every function raises :class:`pallet.kernel.errors.UsageError` with Docker's wording for a bad value,
so nothing is created for a command line that cannot work.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from pallet.kernel.errors import UsageError
from pallet.kernel.humanize import parse_bytes

def parse_size(value: str, flag: str) -> int:
    """Docker's RAMInBytes: ``32m``, ``1g``, ``512k``, ``1024`` (binary multiples)."""
    try:
        return parse_bytes(value)
    except ValueError:
        raise UsageError(f"invalid argument \"{value}\" for \"{flag}\" flag: invalid size: '{value}'") from None


def parse_memory(value: str | None, flag: str = "-m, --memory") -> int | None:
    if value is None:
        return None
    size = parse_size(value, flag)
    if 0 < size < 6 * 1024 * 1024:
        raise UsageError("Minimum memory limit allowed is 6MB")
    return size


def parse_memory_swap(value: str | None) -> int | None:
    if value is None:
        return None
    if str(value).strip() == "-1":
        return -1
    return parse_size(value, "--memory-swap")


def parse_cpus(value: str | None) -> int | None:
    """``--cpus 1.5`` -> NanoCpus."""
    if value is None:
        return None
    try:
        cpus = float(value)
        if cpus != cpus or cpus in (float("inf"), float("-inf")):
            raise ValueError(value)   # NaN and infinity are no rational numbers
    except ValueError:
        raise UsageError(f'invalid argument "{value}" for "--cpus" flag: failed to parse {value} as a rational number') from None
    if cpus < 0:
        raise UsageError(f'invalid argument "{value}" for "--cpus" flag: value must be positive')
    ncpu = os.cpu_count() or 1
    if cpus > ncpu:
        raise UsageError(f"range of CPUs is from 0.01 to {ncpu:.2f}, as there are only {ncpu} CPUs available")
    return int(cpus * 1e9)


def _parse_ip(value: str, family: str) -> str:
    """An address of ``family`` (``IPv4`` or ``IPv6``) in its canonical form, or "" when not given."""
    if not value:
        return ""
    import ipaddress

    try:
        return str(getattr(ipaddress, f"{family}Address")(value))
    except ValueError:
        raise UsageError(f'invalid {family} address: "{value}"') from None


def parse_ipv4(value: str) -> str:
    """``--ip``: an IPv4 address, or "" when not given."""
    return _parse_ip(value, "IPv4")


def parse_ipv6(value: str) -> str:
    """``--ip6``: an IPv6 address, or "" when not given."""
    return _parse_ip(value, "IPv6")


def parse_link_local(values) -> list[str]:
    """``--link-local-ip`` (repeatable): addresses as Docker takes them (any that parses, v4 or v6)."""
    import ipaddress

    parsed = []
    for value in values:
        try:
            address = ipaddress.ip_address(value)
        except ValueError:
            raise UsageError(f"invalid link-local IP address: {value}") from None
        if address.is_unspecified:
            raise UsageError(f"invalid link-local IP address: {value}")
        parsed.append(str(address))
    return parsed


NETWORK_KEYS = ("name", "alias", "ip", "ip6", "mac-address", "link-local-ip", "driver-opt", "gw-priority")


def parse_network_spec(value: str) -> tuple[str, dict]:
    """One ``--network``: a name, or Docker's ``name=NET[,alias=A][,ip=…][,ip6=…][,mac-address=…]
    [,link-local-ip=…][,driver-opt=K=V][,gw-priority=N]`` (CSV, repeatable keys): (name, settings)
    with Docker's ``EndpointSettings`` keys (``Aliases``, ``IPAMConfig``, ``MacAddress``, ``DriverOpts``)."""
    if "=" not in value:
        return value, {}
    import csv

    settings: dict = {}
    name = ""
    ipam: dict = {}
    for field in next(csv.reader([value])):
        key, eq, item = field.partition("=")
        key = key.strip().lower()
        if not eq:
            raise UsageError(f"invalid field {field}")
        if key not in NETWORK_KEYS:
            raise UsageError(f"invalid field key {key}")
        if key == "name":
            name = item
        elif key == "alias":
            settings.setdefault("Aliases", []).append(item)
        elif key == "ip":
            ipam["IPv4Address"] = parse_ipv4(item)
        elif key == "ip6":
            ipam["IPv6Address"] = parse_ipv6(item)
        elif key == "link-local-ip":
            ipam.setdefault("LinkLocalIPs", []).extend(parse_link_local([item]))
        elif key == "mac-address":
            settings["MacAddress"] = parse_mac(item)
        elif key == "driver-opt":
            option, eq2, option_value = item.partition("=")
            if not eq2 or not option:
                raise UsageError(f"invalid driver-opt {item!r}: expected KEY=VALUE")
            settings.setdefault("DriverOpts", {})[option] = option_value
        elif key == "gw-priority":
            if not item.lstrip("-").isascii() or not item.lstrip("-").isdigit():
                raise UsageError(f'invalid gw-priority "{item}": strconv.Atoi: parsing "{item}": invalid syntax')
            if int(item) != 0:
                raise UsageError("gw-priority: a container's default gateway is its first network's (pallet "
                                 "does not choose gateways by priority)")
    if not name:
        raise UsageError("network name/id is not specified")
    if ipam:
        settings["IPAMConfig"] = ipam
    return name, settings


_MAC = re.compile(r"^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$")


def parse_mac(value: str) -> str:
    """``--mac-address``: six colon-separated hex octets, or "" when not given."""
    if value and not _MAC.match(value):
        raise UsageError(f"{value} is not a valid mac address")
    return value.lower()


def parse_cpuset(value: str | None, flag: str = "--cpuset-cpus") -> str | None:
    if value is None:
        return None
    if not re.fullmatch(r"\d+(-\d+)?(,\d+(-\d+)?)*", value):
        raise UsageError(f'invalid argument "{value}" for "{flag}" flag: invalid format')
    return value


def parse_blkio_weight(value: int | None) -> int | None:
    if value is not None and value != 0 and not 10 <= value <= 1000:
        raise UsageError(f"Range of blkio weight is from 10 to 1000, got {value}")
    return value


# --- environment ---------------------------------------------------------------------------

def parse_env(pairs, env_files) -> list[str]:
    """-e and --env-file, in Docker's order (files first); ``-e NAME`` copies NAME from the caller's env."""
    result: list[str] = []
    for path in env_files or ():
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise UsageError(f"open {path}: {exc.strerror.lower() if exc.strerror else exc}") from None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise UsageError(f"env file {path} is not valid UTF-8 (byte {exc.start})") from None
        if "\0" in text:
            raise UsageError(f"env file {path} contains a NUL byte (line {text.count(chr(10), 0, text.index(chr(0))) + 1})")
        lines = text.splitlines()
        for line in lines:
            line = line.strip()
            if line and not line.startswith("#"):
                result.extend(_env_item(line))
    for pair in pairs or ():
        result.extend(_env_item(pair))
    return result


def _env_item(item: str) -> list[str]:
    name, sep, _value = item.partition("=")
    if not name or any(c.isspace() for c in name):
        raise UsageError(f'invalid environment variable: "{item}"')
    if sep:
        return [item]
    return [f"{name}={os.environ[name]}"] if name in os.environ else []


def merge_env(image_env: list[str], extra: list[str]) -> list[str]:
    """Later entries replace earlier ones of the same name, keeping first-seen order."""
    merged: dict[str, str] = {}
    for item in list(image_env or []) + list(extra or []):
        name = item.partition("=")[0]
        merged[name] = item
    return list(merged.values())


def parse_labels(pairs) -> dict[str, str]:
    labels = {}
    for pair in pairs or ():
        key, _sep, value = pair.partition("=")
        if not key:
            raise UsageError(f'invalid label "{pair}": empty name')
        labels[key] = value
    return labels


# --- mounts --------------------------------------------------------------------------------

_BIND_OPTS = {"ro", "rw", "z", "Z", "shared", "rshared", "slave", "rslave", "private", "rprivate", "nocopy"}


def parse_volume(spec: str) -> dict:
    """``-v`` -> a Docker ``Mount`` dict (Type bind|volume, Source, Target, ReadOnly, Propagation)."""
    parts = spec.split(":")
    if not spec or len(parts) > 3 or any(p == "" for p in parts):
        raise UsageError(f"invalid volume specification: '{spec}'")
    options: list[str] = []
    if len(parts) == 3 or (len(parts) == 2 and not parts[1].startswith("/") and _is_options(parts[1])):
        options = parts[-1].split(",")
        parts = parts[:-1]
    if len(parts) == 1:
        source, target = "", parts[0]
    else:
        source, target = parts
    if not target.startswith("/"):
        raise UsageError(f"invalid volume specification: '{spec}': invalid mount config for type \"bind\": "
                         f"invalid mount path: '{target}' mount path must be absolute")
    if target == "/":
        raise UsageError(f"invalid volume specification: '{spec}': invalid mount config: destination can't be '/'")
    unknown = [o for o in options if o not in _BIND_OPTS]
    if unknown or ("ro" in options and "rw" in options):
        raise UsageError(f"invalid mode: {','.join(options)}")
    propagation = next((o for o in options if o.endswith(("shared", "slave", "private"))), "rprivate")
    mount = {"Target": os.path.normpath(target), "ReadOnly": "ro" in options, "Propagation": propagation}
    relabel = [o for o in options if o in ("z", "Z")]
    if relabel:
        mount["Relabel"] = relabel[-1]  # SELinux: shared (z) or private (Z) label for the source
    if source.startswith(".") and (source in (".", "..") or source.startswith(("./", "../"))):
        source = os.path.abspath(source)  # Docker CLI 23+: relative to the caller's directory
    if not source:
        mount.update(Type="volume", Source="")
    elif source.startswith("/"):
        mount.update(Type="bind", Source=os.path.normpath(source), CreateSource=True)
    elif re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+", source):
        mount.update(Type="volume", Source=source, NoCopy="nocopy" in options)
    else:
        raise UsageError(f'invalid volume specification: \'{spec}\': "{source}" includes invalid characters for a '
                         'local volume name, only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass '
                         "a host directory, use absolute path")
    return mount


def _is_options(text: str) -> bool:
    return all(o in _BIND_OPTS for o in text.split(","))


def parse_mount(spec: str) -> dict:
    """``--mount type=bind|volume|tmpfs,source=…,target=…`` with every option Docker's CLI knows."""
    fields: dict[str, str] = {}
    for item in _csv_fields(spec):
        key, sep, value = item.partition("=")
        key = key.strip().lower()
        if not key:
            raise UsageError(f"invalid argument \"{spec}\" for \"--mount\" flag: empty field")
        if key == "volume-opt":
            fields.setdefault("volume-opt", "")
            fields["volume-opt"] += ("\0" if fields["volume-opt"] else "") + value
            continue
        fields[key] = value if sep else "true"
    kind = fields.pop("type", "volume")
    if kind in ("npipe", "cluster"):
        raise UsageError(f'invalid argument "{spec}" for "--mount" flag: mount type "{kind}" is not supported '
                         "on Linux containers")
    if kind not in ("bind", "volume", "tmpfs"):
        raise UsageError(f'invalid argument "{spec}" for "--mount" flag: mount type "{kind}" is not supported')
    target = next((fields.pop(k) for k in ("target", "destination", "dst") if k in fields), "")
    source = next((fields.pop(k) for k in ("source", "src") if k in fields), "")
    readonly = any(_bool(fields.pop(k, "false"), spec) for k in ("readonly", "ro"))
    fields.pop("consistency", None)  # macOS-only; Docker ignores it on Linux too
    if not target:
        raise UsageError(f'invalid argument "{spec}" for "--mount" flag: target is required')
    if not target.startswith("/"):
        raise UsageError(f"invalid mount config for type \"{kind}\": invalid mount path: '{target}' mount path must be absolute")
    mount = {"Type": kind, "Source": source, "Target": os.path.normpath(target), "ReadOnly": readonly}
    if kind == "bind":
        if not source:
            raise UsageError('invalid mount config for type "bind": field Source must not be empty')
        if not source.startswith("/"):
            mount["Source"] = os.path.abspath(source)
        propagation = fields.pop("bind-propagation", "rprivate")
        if propagation not in ("shared", "rshared", "slave", "rslave", "private", "rprivate"):
            raise UsageError(f'invalid argument "{spec}" for "--mount" flag: invalid propagation {propagation!r}')
        mount["Propagation"] = propagation
        recursive = fields.pop("bind-recursive", "enabled")
        if _bool(fields.pop("bind-nonrecursive", "false"), spec):
            recursive = "disabled"
        if recursive not in ("enabled", "disabled", "writable", "readonly"):
            raise UsageError(f'invalid argument "{spec}" for "--mount" flag: invalid bind-recursive {recursive!r}')
        if recursive in ("writable", "readonly") and not readonly:
            raise UsageError(f"option 'bind-recursive={recursive}' requires 'readonly' to be specified in "
                             "conjunction")
        if recursive != "enabled":
            mount["BindRecursive"] = recursive
        if fields.pop("bind-create-src", None) is not None:
            mount["CreateSource"] = True
    elif kind == "tmpfs":
        if source:
            raise UsageError('invalid mount config for type "tmpfs": field Source must not be specified')
        options = []
        if "tmpfs-size" in fields:
            options.append(f"size={parse_size(fields.pop('tmpfs-size'), '--mount tmpfs-size')}")
        if "tmpfs-mode" in fields:
            mode = fields.pop("tmpfs-mode")
            if not re.fullmatch(r"[0-7]{1,4}", mode):
                raise UsageError(f'invalid argument "{spec}" for "--mount" flag: invalid tmpfs-mode {mode!r}')
            options.append(f"mode={mode}")
        mount["TmpfsOptions"] = options
    else:
        mount["NoCopy"] = _bool(fields.pop("volume-nocopy", "false"), spec)
        driver_opts = {}
        for opt in filter(None, fields.pop("volume-opt", "").split("\0")):
            key, sep, value = opt.partition("=")
            if not sep:
                raise UsageError(f'invalid argument "{spec}" for "--mount" flag: invalid volume-opt {opt!r}')
            driver_opts[key] = value
        if driver_opts:
            mount["DriverOpts"] = driver_opts
        if "volume-driver" in fields:
            mount["Driver"] = fields.pop("volume-driver")
        if "volume-subpath" in fields:
            subpath = fields.pop("volume-subpath")
            if subpath.startswith("/") or ".." in subpath.split("/"):
                raise UsageError(f"invalid volume-subpath {subpath!r}: must be a relative path inside the volume")
            mount["Subpath"] = subpath
    if fields:
        raise UsageError(f'invalid argument "{spec}" for "--mount" flag: unexpected key \'{next(iter(fields))}\'')
    return mount


def _csv_fields(spec: str) -> list[str]:
    """--mount is CSV: a field may be quoted to hold a comma (``"volume-opt=o=a,b"``)."""
    import csv

    try:
        return next(csv.reader([spec]))
    except (csv.Error, StopIteration):
        raise UsageError(f'invalid argument "{spec}" for "--mount" flag: malformed CSV') from None


def _bool(value: str, spec: str) -> bool:
    lowered = value.lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise UsageError(f'invalid argument "{spec}" for "--mount" flag: invalid boolean value {value!r}')


def parse_tmpfs(spec: str) -> tuple[str, str]:
    """``--tmpfs /run:rw,size=64m`` -> (target, options)."""
    target, _sep, options = spec.partition(":")
    if not target.startswith("/"):
        raise UsageError(f"invalid mount config for type \"tmpfs\": invalid mount path: '{target}' mount path must be absolute")
    return os.path.normpath(target), options


# --- ports ---------------------------------------------------------------------------------

def parse_ports(specs, publish_all: bool, exposed: dict | None) -> dict[str, list[dict]]:
    """-p ``[ip:][hostPort:]containerPort[/proto]`` (ranges allowed) and -P -> Docker's PortBindings."""
    bindings: dict[str, list[dict]] = {}
    for spec in specs or ():
        proto = "tcp"
        body = spec
        if "/" in spec:
            body, proto = spec.rsplit("/", 1)
            if proto not in ("tcp", "udp", "sctp"):
                raise UsageError(f"invalid proto: {proto}")
        if body.startswith("["):  # [ipv6]:host:container
            end = body.find("]")
            ip, rest = body[1:end], body[end + 2:]
            parts = [ip] + rest.split(":")
        else:
            parts = body.split(":")
        if len(parts) == 1:
            ip, host, container = "", "", parts[0]
        elif len(parts) == 2:
            ip, (host, container) = "", parts
        elif len(parts) == 3:
            ip, host, container = parts
        else:
            raise UsageError(f"invalid port specification: \"{spec}\"")
        container_ports = port_range(container, spec)
        host_ports = port_range(host, spec) if host else []
        if host_ports and len(host_ports) != len(container_ports) and len(host_ports) > 1:
            raise UsageError(f"invalid ranges specified for container and host Ports: {container} and {host}")
        for i, port in enumerate(container_ports):
            host_port = str(host_ports[i] if len(host_ports) > 1 else (host_ports[0] if host_ports else ""))
            bindings.setdefault(f"{port}/{proto}", []).append({"HostIp": ip, "HostPort": host_port})
    if publish_all:
        for key in exposed or {}:
            bindings.setdefault(key if "/" in key else f"{key}/tcp", [{"HostIp": "", "HostPort": ""}])
    return bindings


def port_range(text: str, spec: str) -> list[int]:
    start, sep, end = text.partition("-")
    try:
        first, last = int(start), int(end) if sep else int(start)
    except ValueError:
        raise UsageError(f"invalid port specification: \"{spec}\"") from None
    if not (0 < first <= last <= 65535):
        raise UsageError(f"invalid port specification: \"{spec}\"")
    return list(range(first, last + 1))


# --- ulimits -------------------------------------------------------------------------------

def parse_ulimit(spec: str) -> dict:
    """``nofile=1024:2048`` -> {"Name", "Soft", "Hard"}."""
    name, sep, values = spec.partition("=")
    if not sep:
        raise UsageError(f'invalid argument "{spec}" for "--ulimit" flag: invalid ulimit argument')
    soft, _sep, hard = values.partition(":")
    try:
        soft_i = int(soft)
        hard_i = int(hard) if hard else soft_i
    except ValueError:
        raise UsageError(f'invalid argument "{spec}" for "--ulimit" flag: invalid ulimit value') from None
    if soft_i > hard_i:
        raise UsageError(f"ulimit soft limit must be less than or equal to hard limit: {soft_i} > {hard_i}")
    return {"Name": name, "Soft": soft_i, "Hard": hard_i}


def parse_signal(value: str | None) -> int | None:
    """``SIGTERM``, ``TERM``, ``15`` -> 15."""
    import signal

    if value is None or value == "":
        return None
    if (value.isascii() and value.isdigit()):
        number = int(value)
        if 0 < number < 65:
            return number
    else:
        name = value.upper()
        name = name if name.startswith("SIG") else "SIG" + name
        member = getattr(signal.Signals, name, None) if hasattr(signal.Signals, name) else None
        if member is not None:
            return int(member)
    raise UsageError(f"Invalid signal: {value}")
