"""cni network driver: a network described by a CNI conflist, built by the plugin binaries it names.

Pallet is the CNI *runtime* here (spec up to 1.0.0): for each container it runs the conflist's
plugins in order with ``CNI_COMMAND=ADD`` and the ``CNI_*`` environment, feeding each one the
previous one's result as ``prevResult``; the last result is cached under
``<home>/results/`` and handed back, unchanged, to ``DEL`` and ``CHECK``, which run the plugins in
reverse order. Addresses come from the conflist's own IPAM plugin (e.g. ``host-local``), so the
driver sets ``own_ipam`` and the core reserves nothing. Published ports (``-p``) become the
``portMappings`` runtime capability, which the ``portmap`` plugin turns into its own nft/iptables
rules; nothing here touches pallet's nftables table (docs/network.md).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from pallet.kernel import hookimpl
from pallet.kernel.drivers import Availability, EndpointInfo, JoinInfo, NetworkDriver
from pallet.kernel.errors import PalletError, UsageError
from pallet.kernel.fsutil import atomic_write_json

DEFAULT_PATHS = ("/usr/lib/cni", "/opt/cni/bin")
DEFAULT_CONFIG_DIR = "/etc/cni/net.d"
SUPPORTED_VERSIONS = ("0.3.0", "0.3.1", "0.4.0", "1.0.0")
PLUGIN_TIMEOUT = 60


def config_dir() -> Path:
    """Where conflists are looked up: ``PALLET_CNI_CONFIG_DIR`` (tests), else ``/etc/cni/net.d``."""
    return Path(os.environ.get("PALLET_CNI_CONFIG_DIR") or DEFAULT_CONFIG_DIR)


def plugin_paths(options: dict) -> list[str]:
    """``--opt path=DIR[:DIR]`` first, then ``PALLET_CNI_PATH``, then Debian's and upstream's defaults."""
    paths = []
    for text in (options.get("path", ""), os.environ.get("PALLET_CNI_PATH", "")):
        paths.extend(p for p in text.split(":") if p)
    return paths + [p for p in DEFAULT_PATHS if p not in paths]


def find_plugin(kind: str, paths: list[str]) -> str:
    for directory in paths:
        candidate = Path(directory) / kind
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    raise PalletError(f'failed to find CNI plugin "{kind}" in path {paths}')


def load_conflist(path: str) -> dict:
    """Read and check a conflist (or a single-plugin ``.conf``, wrapped into a list)."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise PalletError(f"CNI config {path} not found") from None
    except (OSError, ValueError) as exc:
        raise PalletError(f"CNI config {path}: {exc}") from None
    if not isinstance(data, dict):
        raise PalletError(f"CNI config {path}: not a JSON object")
    if "plugins" not in data and "type" in data:  # a .conf: one plugin
        data = {"cniVersion": data.get("cniVersion", "0.4.0"), "name": data.get("name", ""), "plugins": [data]}
    plugins = data.get("plugins")
    if not isinstance(plugins, list) or not plugins:
        raise PalletError(f"CNI config {path}: \"plugins\" must be a non-empty list")
    for i, plugin in enumerate(plugins):
        if not isinstance(plugin, dict) or not isinstance(plugin.get("type"), str):
            raise PalletError(f"CNI config {path}: plugins[{i}].type must be a string")
    if not isinstance(data.get("name"), str) or not data["name"]:
        raise PalletError(f"CNI config {path}: \"name\" must be a non-empty string")
    if data.get("cniVersion") not in SUPPORTED_VERSIONS:
        raise PalletError(f"CNI config {path}: cniVersion {data.get('cniVersion')!r} is not one of "
                         f"{', '.join(SUPPORTED_VERSIONS)}")
    return data


def discover() -> list[dict]:
    """The conflists in :func:`config_dir`, as ``{"name", "path"}``, sorted by file name (CNI's order)."""
    found, seen = [], set()
    directory = config_dir()
    if not directory.is_dir():
        return []
    for path in sorted(directory.iterdir()):
        if path.suffix not in (".conflist", ".conf", ".json"):
            continue
        try:
            data = load_conflist(str(path))
        except PalletError:
            continue
        if data["name"] not in seen:
            seen.add(data["name"])
            found.append({"name": data["name"], "path": str(path)})
    return found


class CniError(PalletError):
    """A plugin failed; the message is the plugin's own (its JSON error's ``msg`` and ``details``)."""


class CniNetwork(NetworkDriver):
    """Per endpoint, ``<home>/results/<network id>-<endpoint id>.json`` holds what DEL needs.

    That file is written *before* the first ADD (so a crash mid-ADD still leaves enough to run
    DEL) and updated with the final result after the last one.
    """

    description = "CNI plugins (bridge, host-local, portmap, firewall, tuning …) from a conflist"
    own_ipam = True
    discovers = True

    @classmethod
    def probe(cls, home=None, options=None):
        if not os.path.exists("/proc/self/ns/net"):
            return Availability.no("network namespaces are not supported by this kernel")
        return Availability.ok()

    def discover(self) -> list[dict]:
        """Every conflist of the config dir is a network of this driver, named by its ``name``."""
        return [{"name": item["name"], "options": {"config": item["path"]}} for item in discover()]

    # --- networks ---------------------------------------------------------------------------
    def create_network(self, network_id: str, options: dict, ipv4: list[dict]) -> dict:
        path = options.get("config")
        if not path:
            raise UsageError("a cni network needs --opt config=FILE.conflist")
        conflist = load_conflist(path)
        paths = plugin_paths(options)
        for plugin in conflist["plugins"]:
            find_plugin(plugin["type"], paths)  # refuse now rather than at the first container
        # The conflist is kept with the network: DEL must see the config ADD saw, even if the file changes.
        return {"config": str(path), "conflist": conflist, "paths": paths}

    def delete_network(self, network_id: str, data: dict) -> None:
        """DEL what a crash left attached, then take down the ``bridge`` plugin's bridge once it is empty.

        The bridge plugin never deletes its bridge (other conflists may share it); as Podman 4
        did, removing the network removes it, unless something is still enslaved to it.
        """
        from pallet.plugins.network import netlink

        for path in self._results().glob(f"{network_id}-*.json"):
            cached = json.loads(path.read_text())
            if cached.get("netns"):
                self._delete(cached, network_id)
            path.unlink(missing_ok=True)
        for plugin in (data.get("conflist") or {}).get("plugins", []):
            if plugin.get("type") == "bridge":
                bridge = plugin.get("bridge") or "cni0"
                ports = Path("/sys/class/net") / bridge / "brif"
                if ports.is_dir() and not any(ports.iterdir()):
                    netlink.delete_link(bridge)

    # --- endpoints --------------------------------------------------------------------------
    def create_endpoint(self, network_id, endpoint_id, data, info: EndpointInfo, options) -> EndpointInfo:
        from pallet.kernel.network import ports

        mappings = []
        if options.get("port_bindings"):
            with ports.host_lock():
                mappings = ports.allocate(options["port_bindings"], self._ports_in_use())
        runtime = {"portMappings": [{"hostPort": m["host_port"], "containerPort": m["container_port"],
                                     "protocol": m["proto"], "hostIP": m["host_ip"]} for m in mappings]}
        if options.get("mac_address"):
            runtime["mac"] = options["mac_address"]
        if options.get("ip"):
            runtime["ips"] = [options["ip"]]   # host-local takes an address with or without its prefix
        if options.get("aliases"):
            runtime["aliases"] = {data["conflist"]["name"]: list(options["aliases"])}
        cached = {"container_id": options.get("container_id", endpoint_id), "runtime": runtime,
                  "conflist": data["conflist"], "paths": data["paths"], "netns": "", "ifname": "",
                  "result": None, "ports": mappings}
        atomic_write_json(self._result_path(network_id, endpoint_id), cached)
        return EndpointInfo(address="", gateway="", mac_address=options.get("mac_address", ""),
                            extra={"ports": ports.as_bindings(mappings)})

    def delete_endpoint(self, network_id, endpoint_id, data) -> None:
        self._result_path(network_id, endpoint_id).unlink(missing_ok=True)

    def join(self, network_id, endpoint_id, data, sandbox_key, options) -> JoinInfo:
        path = self._result_path(network_id, endpoint_id)
        cached = json.loads(path.read_text())
        cached["netns"], cached["ifname"] = str(sandbox_key), options.get("interface") or "eth0"
        atomic_write_json(path, cached)
        result = None
        try:
            for plugin in cached["conflist"]["plugins"]:
                result = self._exec(plugin, "ADD", cached, result)
        except BaseException:
            # the spec: a failed ADD is followed by DEL of the whole list, given the result the plugins
            # that did succeed made (the firewall plugin finds its rules by the addresses in it)
            cached["result"] = result
            try:
                self._delete(cached, network_id)
            except PalletError:
                pass  # the ADD error is the one to report
            cached["netns"] = ""
            atomic_write_json(path, cached)
            raise
        cached["result"] = result
        atomic_write_json(path, cached)
        address, gateway, mac = _primary(result or {}, cached["ifname"])
        return JoinInfo(interface=cached["ifname"], gateway=gateway,
                        extra={"address": address, "mac_address": mac})

    def leave(self, network_id, endpoint_id, data, sandbox_key) -> None:
        path = self._result_path(network_id, endpoint_id)
        try:
            cached = json.loads(path.read_text())
        except FileNotFoundError:
            return  # DEL already done: idempotent
        if cached.get("netns"):
            self._delete(cached, network_id)
            cached["netns"], cached["result"] = "", None
            atomic_write_json(path, cached)

    def check(self, network_id: str, endpoint_id: str) -> None:
        """CNI CHECK of an attached endpoint: every plugin confirms what its ADD set up (or raises)."""
        cached = json.loads(self._result_path(network_id, endpoint_id).read_text())
        if cached["conflist"].get("cniVersion") in ("0.3.0", "0.3.1"):
            raise UsageError(f"CNI CHECK needs cniVersion 0.4.0 or later (the conflist says {cached['conflist']['cniVersion']})")
        for plugin in cached["conflist"]["plugins"]:
            self._exec(plugin, "CHECK", cached, cached["result"])

    # --- running plugins --------------------------------------------------------------------
    def _delete(self, cached: dict, network_id: str) -> None:
        """DEL in reverse order with the cached result; every plugin runs even if one fails."""
        errors = []
        for plugin in reversed(cached["conflist"]["plugins"]):
            try:
                self._exec(plugin, "DEL", cached, cached.get("result"))
            except PalletError as exc:
                errors.append(str(exc))
        if errors:
            raise CniError("; ".join(errors))

    def _exec(self, plugin: dict, command: str, cached: dict, prev: dict | None) -> dict | None:
        conflist = cached["conflist"]
        config = dict(plugin, name=conflist["name"], cniVersion=conflist["cniVersion"])
        if prev is not None:
            config["prevResult"] = prev
        wanted = {k for k, v in (plugin.get("capabilities") or {}).items() if v}
        runtime = {k: v for k, v in cached["runtime"].items() if k in wanted and v}
        if runtime:
            config["runtimeConfig"] = runtime
        netns = cached["netns"] if command != "DEL" or Path(cached["netns"] or "/nonexistent").exists() else ""
        env = dict(os.environ, CNI_COMMAND=command, CNI_CONTAINERID=cached["container_id"], CNI_NETNS=netns,
                   CNI_IFNAME=cached["ifname"] or "eth0", CNI_PATH=":".join(cached["paths"]))
        binary = find_plugin(plugin["type"], cached["paths"])
        try:
            proc = subprocess.run([binary], input=json.dumps(config).encode(), env=env, capture_output=True,
                                  timeout=PLUGIN_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise CniError(f"CNI plugin {plugin['type']} {command} timed out") from None
        if proc.returncode != 0:
            raise CniError(f"CNI plugin {plugin['type']} {command} failed: {_plugin_message(proc)}")
        if command != "ADD":
            return None
        try:
            return json.loads(proc.stdout or b"{}")
        except ValueError:
            raise CniError(f"CNI plugin {plugin['type']} ADD printed no JSON result") from None

    # --- state ------------------------------------------------------------------------------
    def _results(self) -> Path:
        return Path(self.home) / "results"

    def _result_path(self, network_id: str, endpoint_id: str) -> Path:
        return self._results() / f"{network_id}-{endpoint_id}.json"

    def _ports_in_use(self) -> set:
        from pallet.plugins.network import nft

        used = set()
        for path in self._results().glob("*.json"):
            for m in json.loads(path.read_text()).get("ports", []):
                used.add((m["proto"], m["host_ip"], m["host_port"]))
        return used | nft.published_ports()


def _plugin_message(proc: subprocess.CompletedProcess) -> str:
    """The plugin's JSON error (``msg: details``) as it wrote it, else its stderr."""
    try:
        error = json.loads(proc.stdout)
        message = error.get("msg") or ""
        if error.get("details"):
            message = f"{message}: {error['details']}" if message else error["details"]
        if message:
            return message
    except (ValueError, AttributeError):
        pass
    return (proc.stderr or proc.stdout).decode(errors="replace").strip() or f"exit status {proc.returncode}"


def _primary(result: dict, ifname: str) -> tuple[str, str, str]:
    """The first IPv4 address of the result (CIDR), its gateway, and the container interface's MAC."""
    interfaces = result.get("interfaces") or []
    for ip in result.get("ips") or []:
        if ":" in ip.get("address", ""):
            continue
        mac = ""
        index = ip.get("interface")
        if isinstance(index, int) and 0 <= index < len(interfaces):
            mac = interfaces[index].get("mac", "")
        return ip["address"], ip.get("gateway", ""), mac
    mac = next((i.get("mac", "") for i in interfaces if i.get("name") == ifname and i.get("sandbox")), "")
    return "", "", mac


@hookimpl
def pallet_register_network_drivers(register):
    register("cni", CniNetwork)
