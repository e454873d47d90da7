"""What a container takes from other containers and the host when it starts: the namespaces it joins
(--pid/--ipc container:NAME), legacy --link entries and variables, --add-host lines, DNS overrides."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field

from pallet.kernel.errors import Conflict, PalletError


@dataclass
class StartLinks:
    """Resolved at start, handed to the spec builder and the /etc writer."""

    namespaces: dict[str, str] = field(default_factory=dict)  # OCI type ("pid", "ipc") -> path to join
    shm_source: str = ""            # a host path bound at /dev/shm (--ipc host / container:NAME)
    hosts: list[str] = field(default_factory=list)            # "ip\tnames" lines for /etc/hosts
    env: list[str] = field(default_factory=list)              # --link variables (the container's own win)
    dns: dict = field(default_factory=dict)


def resolve(engine, record, net: dict, refresh) -> StartLinks:
    """``refresh`` is :func:`pallet.kernel.lifecycle.refresh` (passed in: lifecycle is this module's caller)."""
    from pallet.kernel.containers import ContainerStore

    host = record.host_config
    store = ContainerStore(engine)
    links = StartLinks(dns={"servers": host.get("Dns") or [], "search": host.get("DnsSearch") or [],
                            "options": host.get("DnsOptions") or []})
    for key, nstype in (("PidMode", "pid"), ("IpcMode", "ipc"), ("UTSMode", "uts")):
        mode = host.get(key) or ""
        if mode.startswith("container:"):
            other = _running(engine, store, refresh, mode.partition(":")[2], f"join the {nstype.upper()} namespace of")
            links.namespaces[nstype] = f"/proc/{other.pid}/ns/{nstype}"
            if nstype == "ipc":
                if other.host_config.get("IpcMode") != "shareable":
                    raise Conflict(f"cannot join IPC of a non-shareable container {other.name} "
                                   "(hint: run it with --ipc shareable)")
                links.shm_source = str(shm_path(store, other.id))
    if host.get("IpcMode") == "host":
        links.shm_source = "/dev/shm"
    elif host.get("IpcMode") == "shareable":
        mount_shareable_shm(store, record)
        links.shm_source = str(shm_path(store, record.id))
    for line in host.get("ExtraHosts") or []:
        name, _sep, address = line.partition(":")
        if address == "host-gateway":
            address = host_gateway(engine, record, net)
        links.hosts.append(f"{address}\t{name}")
    for link in host.get("Links") or []:
        cid, _sep, alias = link.partition(":")
        other = _running(engine, store, refresh, cid, "link to")
        address = (other.network or {}).get("IPAddress")
        if not address:
            raise Conflict(f"Cannot link to /{other.name}, as it does not belong to a network with addresses")
        names = [alias] + [n for n in (other.short_id, other.name) if n != alias]
        links.hosts.append(f"{address}\t{' '.join(names)}")
        links.env += link_env(alias, record.name, other, address)
    return links


def remove_link(store, name: str) -> None:
    """Docker's ``rm --link /PARENT/ALIAS``: drop the link from the parent's record; the parent's next
    start has no hosts entry or variables for it (the linked container stays). ``store`` is the
    :class:`pallet.kernel.containers.ContainerStore`."""
    from pallet.kernel.errors import NotFound

    full = "/" + name.lstrip("/")
    parent_name, _sep, alias = full.rpartition("/")
    if not parent_name:
        raise Conflict("Conflict, cannot remove the default link name")
    try:
        parent = store.get(parent_name)
    except NotFound:
        raise NotFound(f"Cannot get parent {parent_name} for link name {full}") from None
    with store.lock():
        fresh = store.load(parent.id)
        links = fresh.host_config.get("Links") or []
        kept = [entry for entry in links if entry.partition(":")[2] != alias]
        if len(kept) == len(links):
            raise NotFound(f"No such container: {full}")
        fresh.host_config["Links"] = kept
        store.save(fresh)


def shm_path(store, cid: str):
    """A --ipc shareable container's /dev/shm: a tmpfs on the host, so that others can bind the same one."""
    return store.run_dir(cid) / "shm"


def mount_shareable_shm(store, record) -> None:
    from pallet.kernel import linux
    from pallet.kernel.spec_linux import DEFAULT_SHM

    path = shm_path(store, record.id)
    path.mkdir(exist_ok=True)
    if not os.path.ismount(path):
        size = record.host_config.get("ShmSize") or DEFAULT_SHM
        linux.mount("shm", str(path), "tmpfs", linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC,
                    f"mode=1777,size={size // 1024}k")


def unmount_shareable_shm(store, record) -> None:
    from pallet.kernel import linux

    path = shm_path(store, record.id)
    if os.path.ismount(path):
        linux.umount2(str(path), linux.MNT_DETACH)
    with contextlib.suppress(OSError):
        path.rmdir()


def _running(engine, store, refresh, cid: str, verb: str):
    try:
        other = refresh(engine, store.load(cid))
    except PalletError:
        raise PalletError(f"cannot {verb} container {cid[:12]}: it was removed") from None
    if other.status != "running":
        raise Conflict(f"cannot {verb} a non running container: {other.name}")
    return other


def host_gateway(engine, record, net: dict) -> str:
    """``host-gateway``: ``[network] host_gateway_ip`` from the config, else the container's gateway
    (the host's side of its bridge), else loopback when it shares the host's network."""
    configured = engine.config.section("network").get("host_gateway_ip")
    if configured:
        return configured
    if net.get("Gateway"):
        return net["Gateway"]
    if record.network_mode == "host":
        return "127.0.0.1"
    raise PalletError("--add-host host-gateway: the container's network has no gateway to the host "
                      "(set [network] host_gateway_ip in the config)")


def link_env(alias: str, own_name: str, other, address: str) -> list[str]:
    """Docker's legacy link variables: ALIAS_NAME, ALIAS_PORT[_N_PROTO[_ADDR|_PORT|_PROTO]], ALIAS_ENV_*."""
    prefix = alias.upper().replace("-", "_").replace(".", "_")
    env = [f"{prefix}_NAME=/{own_name}/{alias}"]
    ports = sorted(other.config.get("ExposedPorts") or {},
                   key=lambda p: (int(p.partition("/")[0]), p.partition("/")[2]))
    for position, port in enumerate(ports):
        number, _sep, proto = port.partition("/")
        proto = proto or "tcp"
        url = f"{proto}://{address}:{number}"
        if position == 0:
            env.append(f"{prefix}_PORT={url}")
        key = f"{prefix}_PORT_{number}_{proto.upper()}"
        env += [f"{key}={url}", f"{key}_ADDR={address}", f"{key}_PORT={number}", f"{key}_PROTO={proto}"]
    for item in other.config.get("Env") or []:
        name, sep, value = item.partition("=")
        if sep and name not in ("HOME", "PATH", "HOSTNAME"):
            env.append(f"{prefix}_ENV_{name}={value}")
    return env
