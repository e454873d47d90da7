"""A container's network sandbox and the /etc/hosts, /etc/hostname, /etc/resolv.conf files it sees.

For ``--network none`` pallet lets the runtime create the network namespace (the spec lists
``network`` without a path; the runtime brings ``lo`` up). That saves an unshare, a bind mount
and its cleanup on every start. Drivers that must configure the namespace before the container
starts (bridge, overlay) get a *sandbox*: a namespace bind-mounted at ``<run_root>/netns/<id>``.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import struct
from pathlib import Path

from pallet.kernel.errors import PalletError
from pallet.kernel.fsutil import atomic_write

SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1


def sandbox_path(run_root: Path, cid: str) -> Path:
    return Path(run_root) / "netns" / cid


def create_sandbox(run_root: Path, cid: str) -> Path:
    """Make a new network namespace with ``lo`` up, pinned by a bind mount; the caller stays in its own."""
    from pallet.kernel import linux

    path = sandbox_path(run_root, cid)
    path.parent.mkdir(parents=True, exist_ok=True)
    # An interrupted start can leave the file still a mount point of the old namespace: opening it
    # to touch it is then EACCES (nsfs). Unmount and remove it first.
    remove_sandbox(run_root, cid)
    path.touch()
    original = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        linux.unshare(linux.CLONE_NEWNET)
        try:
            linux.mount("/proc/thread-self/ns/net", str(path), None, linux.MS_BIND)
            _loopback_up()
        finally:
            linux.setns(original, linux.CLONE_NEWNET)
    except OSError as exc:
        remove_sandbox(run_root, cid)
        raise PalletError(f"cannot create network sandbox: {exc}") from None
    finally:
        os.close(original)
    return path


def _loopback_up() -> None:
    import socket  # only sandboxes need it, not every "run"

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(sock, SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | IFF_UP))


def remove_sandbox(run_root: Path, cid: str) -> None:
    """Unmount and delete the sandbox; missing is fine (idempotent, also after a crash)."""
    from pallet.kernel import linux

    path = sandbox_path(run_root, cid)
    if not path.exists():
        return
    try:
        linux.umount2(str(path), linux.MNT_DETACH)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOENT):
            raise PalletError(f"cannot unmount network sandbox {path}: {exc.strerror}") from None
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def in_netns(path: str, func):
    """Run ``func`` in a helper thread that entered the namespace at ``path``; return its result.

    setns(2) changes only the calling thread, and a socket keeps the namespace it was made in, so
    this is how to get sockets inside a sandbox without forking (pyroute2's NetNS forks a helper).
    """
    import threading

    from pallet.kernel import linux

    result: dict = {}

    def work():
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                linux.setns(fd, linux.CLONE_NEWNET)
            finally:
                os.close(fd)
            result["value"] = func()
        except BaseException as exc:
            result["error"] = exc

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    return result["value"]


# --- /etc files ----------------------------------------------------------------------------

def write_etc_files(run_dir: Path, hostname: str, network_mode: str, net: dict, extra_hosts: list[str] = (),
                    dns: dict | None = None) -> dict[str, Path]:
    """Write hosts, hostname, resolv.conf for the container; return {container path: host file}.

    ``extra_hosts`` are resolved ``ip\tnames`` lines (--add-host, --link); ``dns`` holds the
    --dns/--dns-search/--dns-option lists (``servers``, ``search``, ``options``).
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    if network_mode == "host":
        hosts = _read("/etc/hosts") or _default_hosts()
    else:
        hosts = _default_hosts()
        for address in net.get("addresses", []):
            hosts += f"{address.split('/')[0]}\t{hostname}\n"
        for line in net.get("extra_hosts", []):
            hosts += line.rstrip("\n") + "\n"
    hosts += "".join(line + "\n" for line in extra_hosts)
    resolv = net.get("resolv_conf") or _resolv_conf(network_mode, net.get("dns_servers") or [])
    files = {
        "/etc/hostname": (run_dir / "hostname", hostname + "\n"),
        "/etc/hosts": (run_dir / "hosts", hosts),
        "/etc/resolv.conf": (run_dir / "resolv.conf", override_resolv_conf(resolv, dns or {})),
    }
    for _dest, (path, text) in files.items():
        atomic_write(path, text.encode(), durable=False)  # the run dir does not outlive a reboot
    return {dest: path for dest, (path, _text) in files.items()}


EMBEDDED_DNS = "127.0.0.11"


def override_resolv_conf(text: str, dns: dict) -> str:
    """Docker's --dns/--dns-search/--dns-option: each given list replaces the lines of its kind.

    The embedded DNS of a user-defined network stays the only nameserver (names of other
    containers resolve only there); it forwards everything else to the host's resolvers.
    """
    servers, search, options = dns.get("servers") or [], dns.get("search") or [], dns.get("options") or []
    if not (servers or search or options):
        return text
    lines = text.splitlines()
    kept_servers = [line for line in lines if line.split()[:1] == ["nameserver"]]
    embedded = any(line.split()[1:2] == [EMBEDDED_DNS] for line in kept_servers)
    if servers and not embedded:
        kept_servers = [f"nameserver {server}" for server in servers]
    search_lines = [line for line in lines if line.split()[:1] in (["search"], ["domain"])]
    if search:
        search_lines = [] if search == ["."] else [f"search {' '.join(search)}"]
    option_lines = [line for line in lines if line.split()[:1] == ["options"]]
    if options:
        option_lines = [f"options {' '.join(options)}"]
    others = [line for line in lines if line.split()[:1] not in (["nameserver"], ["search"], ["domain"], ["options"])]
    return "\n".join(others + kept_servers + search_lines + option_lines) + "\n"


def _default_hosts() -> str:
    return ("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
            "fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n")


def _resolv_conf(network_mode: str, dns_servers: list[str]) -> str:
    host = _read("/etc/resolv.conf")
    if network_mode == "host":
        return host
    if dns_servers:
        lines = [f"nameserver {s}" for s in dns_servers]
        lines += [line for line in host.splitlines() if line.startswith(("search", "options"))]
        return "\n".join(lines) + "\n"
    # As Docker: drop loopback resolvers the container cannot reach, fall back to public ones.
    kept = [line for line in host.splitlines()
            if not re.match(r"^\s*nameserver\s+(127\.|::1\b)", line)]
    if not any(line.strip().startswith("nameserver") for line in kept):
        kept += ["nameserver 8.8.8.8", "nameserver 8.8.4.4"]
    return "\n".join(kept) + "\n"


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""
