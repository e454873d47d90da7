"""Networks and endpoints on disk, built and torn down through the network and IPAM drivers.

Layout under ``<root>/networks/``: ``<id>.json`` per network, ``endpoints/<network id>/<container
id>.json`` per attachment, ``.lock`` around every change. Records are written *before* the links
and rules they describe, so a crash at any point leaves a record that ``disconnect``/``remove``
can tear down (each step tolerates pieces that are already gone).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
from functools import cached_property
from pathlib import Path

from pallet.kernel import events
from pallet.kernel.errors import Conflict, Forbidden, NotFound, PalletError, UsageError
from pallet.kernel.fsutil import atomic_write_json, locked
from pallet.kernel.network.records import EndpointRecord, NetworkRecord, load, now

PREDEFINED = ("bridge", "host", "none")
DEFAULT_BRIDGE_DEVICE = "pallet0"
DISCOVERED_LABEL = "pallet.discovered"  # a network a driver found outside the store (a CNI conflist)
GATEWAY_REQUEST = {"RequestAddressType": "com.docker.network.gateway"}


IFNAME_OPTION = "com.docker.network.endpoint.ifname"
SYSCTLS_OPTION = "com.docker.network.endpoint.sysctls"
ENDPOINT_OPTIONS = (IFNAME_OPTION, SYSCTLS_OPTION)


def endpoint_sysctls(text: str) -> list[tuple[str, str]]:
    """Docker's ``com.docker.network.endpoint.sysctls`` value: ``net.X.conf.IFNAME.KEY=VALUE,…``, where
    IFNAME stands for the endpoint's interface (its name is known only once it joined)."""
    pairs = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, eq, value = item.partition("=")
        parts = key.split(".")
        if not eq or len(parts) < 5 or parts[0] != "net" or parts[2] != "conf" or parts[3] != "IFNAME":
            raise UsageError(f'invalid endpoint sysctl "{item}": expected net.<ipv4|ipv6|mpls>.conf.IFNAME.<key>=<value>')
        if parts[1] not in ("ipv4", "ipv6", "mpls") or any(not p or "/" in p for p in parts):
            raise UsageError(f'invalid endpoint sysctl "{item}": expected net.<ipv4|ipv6|mpls>.conf.IFNAME.<key>=<value>')
        pairs.append((key, value))
    return pairs


def apply_sysctls(sandbox: str, interface: str, sysctls: list[tuple[str, str]]) -> None:
    """Write each sysctl for ``interface`` inside the sandbox's network namespace (/proc/sys/net is per namespace)."""
    from pallet.kernel.sandbox import in_netns

    def write():
        for key, value in sysctls:
            parts = key.split(".")
            path = "/proc/sys/" + "/".join(parts[:3] + [interface] + parts[4:])
            try:
                with open(path, "w") as handle:
                    handle.write(value)
            except OSError as exc:
                raise PalletError(f"cannot set endpoint sysctl {key.replace('IFNAME', interface)}={value}: "
                                  f"{exc.strerror}") from None

    in_netns(sandbox, write)


class NetworkStore:
    def __init__(self, engine):
        self.engine = engine
        self.dir = Path(engine.root) / "networks"
        self.settings = engine.config.section("network")

    def lock(self):
        return locked(self.dir / ".lock")

    # --- records ------------------------------------------------------------------------
    def path(self, network_id: str) -> Path:
        return self.dir / f"{network_id}.json"

    def save(self, record: NetworkRecord) -> None:
        atomic_write_json(self.path(record.id), dataclasses.asdict(record))

    def all(self) -> list[NetworkRecord]:
        if self.cluster is not None:
            self.cluster.sync()
        records = self._discover(self.read_all())
        if not {r.name for r in records} >= set(PREDEFINED):
            with self.lock():
                records = self.read_all()
                have = {r.name for r in records}
                for name in PREDEFINED:
                    if name not in have:
                        record = self._predefined(name)
                        self.save(record)
                        records.append(record)
        return sorted(records, key=lambda r: (r.name not in PREDEFINED, r.name))

    def _discover(self, records: list[NetworkRecord]) -> list[NetworkRecord]:
        """Record the networks drivers find outside the store (CNI conflists); forget vanished, unused ones."""
        drivers = [name for name in self.engine.plugins.names("network")
                   if self.engine.plugins.driver("network", name).cls.discovers]
        if not drivers:
            return records
        found = {}
        for name in drivers:
            try:
                for item in self.driver(name).discover():
                    found.setdefault(item["name"], (name, item["options"]))
            except PalletError:
                continue  # not usable on this host: nothing to list
        stale = [r for r in records if r.labels.get(DISCOVERED_LABEL) and r.name not in found]
        fresh = [n for n in found if n not in {r.name for r in records} and n not in PREDEFINED]
        if not stale and not fresh:
            return records
        with self.lock():
            records = self.read_all()
            have = {r.name for r in records}
            for record in stale:
                if not self.endpoints(record.id) and not record.materialized:
                    self.path(record.id).unlink(missing_ok=True)
                    records = [r for r in records if r.id != record.id]
            for name in fresh:
                if name in have:
                    continue
                driver, options = found[name]
                record = NetworkRecord(id=os.urandom(32).hex(), name=name, driver=driver, created=now(),
                                       options=dict(options), labels={DISCOVERED_LABEL: "true"})
                self.save(record)
                records.append(record)
        return records

    def read_all(self) -> list[NetworkRecord]:
        if not self.dir.is_dir():
            return []
        return _load_present(NetworkRecord, self.dir.glob("*.json"))

    def _predefined(self, name: str) -> NetworkRecord:
        record = NetworkRecord(id=os.urandom(32).hex(), name=name, driver=name, created=now(), predefined=True,
                               attachable=False)
        if name == "bridge":
            record.options = {"com.docker.network.bridge.name": self.settings.get("bridge_name") or self.bridge_device(),
                              "com.docker.network.bridge.default_bridge": "true"}
            if self.settings.get("default_subnet"):
                record.ipam_config = [{"Subnet": self.settings["default_subnet"]}]
        return record

    def bridge_device(self) -> str:
        """``pallet0`` for the default root; other roots get their own device so they never share one."""
        from pallet.kernel.config import DEFAULT_ROOT

        if Path(self.engine.root) == DEFAULT_ROOT:
            return DEFAULT_BRIDGE_DEVICE
        return "pb-" + hashlib.sha256(str(Path(self.engine.root).resolve()).encode()).hexdigest()[:10]

    def get(self, ref: str) -> NetworkRecord:
        records = self.all()
        for match in (lambda r: r.id == ref or r.name == ref, lambda r: len(ref) >= 1 and r.id.startswith(ref)):
            found = [r for r in records if match(r)]
            if len(found) == 1:
                return found[0]
            if len(found) > 1:
                raise Conflict(f"network {ref} is ambiguous ({len(found)} matches found based on ID prefix)")
        raise NotFound(f"network {ref} not found")

    def endpoints(self, network_id: str | None = None) -> list[EndpointRecord]:
        base = self.dir / "endpoints"
        pattern = f"{network_id}/*.json" if network_id else "*/*.json"
        return _load_present(EndpointRecord, sorted(base.glob(pattern))) if base.is_dir() else []

    def _endpoint_path(self, network_id: str, container_id: str) -> Path:
        return self.dir / "endpoints" / network_id / f"{container_id}.json"

    # --- drivers ------------------------------------------------------------------------
    def driver(self, name: str):
        """Network driver ``name`` with the option keys :class:`pallet.kernel.drivers.NetworkDriver` lists."""
        options = {}
        if self.cluster_store:
            options["cluster-store"] = self.cluster_store
        if self.settings.get("advertise_address"):
            options["advertise-address"] = self.settings["advertise_address"]
        if self.settings.get("overlay_lease_ttl"):
            options["lease-ttl"] = str(self.settings["overlay_lease_ttl"])
        return self.engine.open_driver("network", name, options)

    def ipam(self, name: str):
        options = {"pools": self.settings.get("default_address_pools", "")}
        if self.cluster_store:
            options["cluster-store"] = self.cluster_store
        return self.engine.open_driver("ipam", name, options)

    @property
    def cluster_store(self) -> str:
        """--cluster-store, else the environment, the config, and last the cluster this root joined as a node."""
        from pallet.kernel.cluster.store import membership

        return (self.engine.cluster_store or os.environ.get("PALLET_CLUSTER_STORE")
                or self.settings.get("cluster_store", "") or (membership(self.engine) or {}).get("ClusterStore", ""))

    @cached_property
    def cluster(self):
        """The cluster store's view for global networks (:mod:`pallet.kernel.network.cluster`), or None."""
        if not self.cluster_store:
            return None
        from pallet.kernel.network.cluster import Cluster

        return Cluster(self, self.cluster_store)

    # --- networks -----------------------------------------------------------------------
    def create(self, name: str, driver: str = "bridge", subnet: str = "", gateway: str = "", ip_range: str = "",
               internal: bool = False, labels: dict | None = None, options: dict | None = None,
               ipam_driver: str = "default", ipam_options: dict | None = None,
               aux_addresses: dict | None = None, scope: str = "", config_only: bool = False,
               config_from: str = "", ipv6: bool = False, subnet6: str = "", gateway6: str = "",
               ip_range6: str = "") -> NetworkRecord:
        """``aux_addresses`` (Docker's ``--aux-address NAME=IP``) are reserved in the pool, never given to a container.

        ``ipv6`` (Docker's ``--ipv6``) adds an IPv6 pool: ``subnet6`` (else a /64 of the IPAM's ULA
        prefix), ``gateway6``, ``ip_range6``; the driver must take IPv6 (``NetworkDriver.ipv6``).

        ``config_only`` records the configuration (IPAM, options, labels) for networks created with
        ``config_from``, as Docker's ``--config-only``: it has driver ``null`` and is never built, so it
        reserves no pool. ``scope`` must be the driver's (pallet does not re-scope a driver's networks)."""
        if name in PREDEFINED:
            raise Conflict(f"network with name {name} already exists")
        if gateway and not subnet:
            raise UsageError("a gateway needs a --subnet")
        if ip_range and not subnet:
            raise UsageError("an --ip-range needs a --subnet")
        if aux_addresses and not subnet:
            raise UsageError("an --aux-address needs a --subnet")
        if (subnet6 or gateway6 or ip_range6) and not ipv6:
            raise UsageError("an IPv6 --subnet, --gateway or --ip-range needs --ipv6")
        if (gateway6 or ip_range6) and not subnet6:
            raise UsageError("an IPv6 gateway or ip-range needs an IPv6 --subnet")
        config6 = {k: v for k, v in (("Subnet", subnet6), ("Gateway", gateway6), ("IPRange", ip_range6)) if v}
        if config_only and config_from:
            raise Forbidden("a configuration network cannot depend on another configuration network")
        if config_only:
            if internal or scope:
                raise Forbidden("configuration network can only contain network specific fields. Network operator "
                                "fields like [ ingress | internal | attachable | scope ] are not supported.")
            record = self._create_config_only(name, subnet, gateway, ip_range, labels, options, ipam_driver,
                                              ipam_options, aux_addresses, ipv6, config6)
            return record
        if config_from:
            source = self._config_source(config_from)
            if subnet or ipv6 or ipam_driver != "default" or labels or ipam_options:
                raise Forbidden("user specified configurations are not supported if the network depends on a "
                                "configuration network")
            if options:
                raise Forbidden("network driver options are not supported if the network depends on a "
                                "configuration network")
            config = source.ipam_config[0] if source.ipam_config else {}
            subnet, gateway, ip_range = config.get("Subnet", ""), config.get("Gateway", ""), config.get("IPRange", "")
            aux_addresses, labels, options = config.get("AuxiliaryAddresses") or {}, source.labels, source.options
            ipam_driver, ipam_options = source.ipam_driver, source.ipam_options
            ipv6, config6 = source.enable_ipv6, dict(source.ipam_config6)
        network_driver = self.driver(driver)
        if not network_driver.needs_sandbox:
            raise Conflict(f'only one instance of "{driver}" network is allowed')
        if ipv6 and not network_driver.ipv6:
            raise UsageError(f"--ipv6: the {driver} driver assigns IPv4 addresses only")
        if scope and scope not in ("local", "swarm", "global"):
            raise UsageError(f'invalid scope "{scope}": expected local, swarm or global')
        if scope and {"swarm": "global"}.get(scope, scope) != network_driver.scope:
            raise UsageError(f'--scope {scope}: the {driver} driver\'s networks are {network_driver.scope}-scoped '
                             "(pallet does not re-scope a driver's networks)")
        if network_driver.scope == "global" and ipam_driver == "default":
            ipam_driver = "cluster"  # addresses must be unique across hosts
        record = NetworkRecord(id=os.urandom(32).hex(), name=name, driver=driver, scope=network_driver.scope,
                               created=now(), internal=internal, labels=dict(labels or {}),
                               options=dict(options or {}), ipam_driver=ipam_driver,
                               ipam_options=dict(ipam_options or {}),
                               ipam_config=[{"Subnet": subnet, "Gateway": gateway, "IPRange": ip_range,
                                             **({"AuxiliaryAddresses": dict(aux_addresses)} if aux_addresses else {})}]
                               if subnet else [], config_from=config_from and source.name, enable_ipv6=ipv6,
                               ipam_config6=config6)
        self.all()
        with self.lock():
            if any(r.name == name for r in self.read_all()):
                raise Conflict(f"network with name {name} already exists")
            if record.scope == "global":
                self.cluster.claim_name(record)
            try:
                self._materialize(record, network_driver)
            except BaseException:
                if record.scope == "global":
                    self.cluster.release_name(record)
                raise
        events.emit(self.engine, "network", "create", record.id, {"name": record.name, "type": record.driver})
        return record

    def _create_config_only(self, name, subnet, gateway, ip_range, labels, options, ipam_driver, ipam_options,
                            aux_addresses, ipv6, config6) -> NetworkRecord:
        import ipaddress

        for text, what in ((subnet, "subnet"), (ip_range, "ip-range"), (config6.get("Subnet"), "subnet"),
                           (config6.get("IPRange"), "ip-range")):
            if text:
                try:
                    ipaddress.ip_network(text)
                except ValueError as exc:
                    raise UsageError(f'invalid {what} "{text}": {exc}') from None
        record = NetworkRecord(id=os.urandom(32).hex(), name=name, driver="null", created=now(), config_only=True,
                               attachable=False, labels=dict(labels or {}), options=dict(options or {}),
                               ipam_driver=ipam_driver, ipam_options=dict(ipam_options or {}),
                               ipam_config=[{"Subnet": subnet, "Gateway": gateway, "IPRange": ip_range,
                                             **({"AuxiliaryAddresses": dict(aux_addresses)} if aux_addresses else {})}]
                               if subnet else [], enable_ipv6=ipv6, ipam_config6=dict(config6))
        self.all()
        with self.lock():
            if any(r.name == name for r in self.read_all()):
                raise Conflict(f"network with name {name} already exists")
            self.save(record)
        events.emit(self.engine, "network", "create", record.id, {"name": record.name, "type": record.driver})
        return record

    def _config_source(self, ref: str) -> NetworkRecord:
        try:
            source = self.get(ref)
        except NotFound:
            source = None
        if source is None or not source.config_only:
            raise NotFound(f'configuration network "{ref}" does not exist')
        return source

    def _materialize(self, record: NetworkRecord, network_driver) -> None:
        """Reserve the pool and gateway, then have the driver build the network. Store lock held."""
        from pallet.kernel.network.ports import host_lock

        if network_driver.own_ipam:
            self._materialize_own_ipam(record, network_driver)
            return
        ipam = self.ipam(record.ipam_driver)
        config = record.ipam_config[0] if record.ipam_config else {}
        config6_asked = dict(record.ipam_config6)
        reserved = not record.pools  # a global network adopted from the cluster has its pool already
        # Host-wide: choosing a subnet "not routed yet" and routing it must not interleave with another root.
        with host_lock():
            if reserved:
                pool_id, cidr = ipam.request_pool(config.get("Subnet", ""), config.get("IPRange", ""),
                                                  dict(record.ipam_options))
            else:
                pool_id, cidr = record.pools[0], config["Subnet"]
            try:
                if reserved:
                    gw = ipam.request_address(pool_id, config.get("Gateway", ""), GATEWAY_REQUEST)
                    record.pools = [pool_id]
                    for address in (config.get("AuxiliaryAddresses") or {}).values():
                        ipam.request_address(pool_id, address)   # released with the pool
                    record.ipam_config = [{"Subnet": cidr, "Gateway": gw.split("/")[0],
                                           **({"IPRange": config["IPRange"]} if config.get("IPRange") else {}),
                                           **({"AuxiliaryAddresses": config["AuxiliaryAddresses"]}
                                              if config.get("AuxiliaryAddresses") else {})}]
                    self.save(record)
                gw = record.ipam_config[0]["Gateway"]
                options = dict(record.options, internal="true" if record.internal else "false")
                if record.enable_ipv6:
                    if reserved or not record.pool6:
                        self._reserve_ipv6(record, ipam)
                    v6 = [{"pool": record.ipam_config6["Subnet"], "gateway": record.ipam_config6["Gateway"]}]
                    record.driver_data = network_driver.create_network(record.id, options,
                                                                       [{"pool": cidr, "gateway": gw}], ipv6=v6)
                else:
                    record.driver_data = network_driver.create_network(record.id, options,
                                                                       [{"pool": cidr, "gateway": gw}])
                if record.scope == "global":
                    self.cluster.join(record)
                self.save(record)
            except BaseException:
                with contextlib.suppress(Exception):
                    network_driver.delete_network(record.id, record.driver_data)
                record.driver_data = {}
                if reserved:
                    ipam.release_pool(pool_id)
                    record.pools, record.ipam_config = [], [config] if config else []
                    if record.pool6:
                        ipam.release_pool(record.pool6)
                        record.pool6, record.ipam_config6 = "", config6_asked
                if record.predefined or not reserved:
                    self.save(record)
                else:
                    self.path(record.id).unlink(missing_ok=True)
                raise

    def _reserve_ipv6(self, record: NetworkRecord, ipam) -> None:
        """The IPv6 pool and gateway of ``record`` (its asked-for subnet, else one the IPAM picks)."""
        asked = record.ipam_config6
        pool_id, cidr = ipam.request_pool(asked.get("Subnet", ""), asked.get("IPRange", ""),
                                          {**record.ipam_options, "v6": "true"})
        record.pool6 = pool_id
        gw = ipam.request_address(pool_id, asked.get("Gateway", ""), GATEWAY_REQUEST)
        record.ipam_config6 = {"Subnet": cidr, "Gateway": gw.split("/")[0],
                               **({"IPRange": asked["IPRange"]} if asked.get("IPRange") else {})}
        self.save(record)

    def _materialize_own_ipam(self, record: NetworkRecord, network_driver) -> None:
        """A driver that assigns addresses itself (CNI): no pool, no gateway reservation."""
        options = dict(record.options, internal="true" if record.internal else "false")
        record.driver_data = network_driver.create_network(record.id, options, [])
        try:
            self.save(record)
        except BaseException:
            with contextlib.suppress(Exception):
                network_driver.delete_network(record.id, record.driver_data)
            raise

    def remove(self, ref: str) -> NetworkRecord:
        record = self.get(ref)
        if record.predefined:
            raise PalletError(f"{record.name} is a pre-defined network and cannot be removed")
        if record.config_only and any(r.config_from == record.name for r in self.read_all()):
            raise Forbidden(f'configuration network "{record.name}" is in use')
        with self.lock():
            if any(Path(ep.sandbox).exists() for ep in self.endpoints(record.id)):
                raise Conflict(f"error while removing network: network {record.name} id {record.id} has active endpoints")
            for endpoint in self.endpoints(record.id):  # left by a crash: their sandboxes are gone
                self._detach(record, endpoint)
            self._teardown(record)
        events.emit(self.engine, "network", "destroy", record.id, {"name": record.name, "type": record.driver})
        return record

    def _teardown(self, record: NetworkRecord) -> None:
        from pallet.kernel.network import dns, services

        if record.config_only:
            self.path(record.id).unlink(missing_ok=True)
            return
        dns.stop(self, record)
        network_driver = self.driver(record.driver)
        if record.materialized:
            network_driver.delete_network(record.id, record.driver_data)
        if record.scope != "global" or self.cluster.leave(record, network_driver):
            ipam = self.ipam(record.ipam_driver)
            for pool_id in record.pools + ([record.pool6] if record.pool6 else []):
                ipam.release_pool(pool_id)
        with contextlib.suppress(OSError):
            (self.dir / "endpoints" / record.id).rmdir()
        (self.dir / "endpoints" / f"{record.id}.remote").unlink(missing_ok=True)
        services.withdraw(self.dir, record.id, [])
        self.path(record.id).unlink(missing_ok=True)

    def teardown_all(self) -> None:
        """Remove every network of this root, predefined ones' devices included (tests, ``system reset``)."""
        errors = []
        with self.lock():
            for record in self.read_all():
                try:
                    for endpoint in self.endpoints(record.id):
                        self._detach(record, endpoint)
                    self._teardown(record)
                except Exception as exc:  # keep going: leave as little behind as possible
                    errors.append(f"{record.name}: {exc}")
        if errors:
            raise PalletError("network teardown incomplete: " + "; ".join(errors))

    # --- endpoints ----------------------------------------------------------------------
    def connect(self, container, sandbox: str, network: str, aliases=(), ip: str = "", mac: str = "",
                port_bindings: dict | None = None, links=(), driver_opts: dict | None = None, ip6: str = "",
                link_local_ips=()) -> tuple[NetworkRecord, EndpointRecord]:
        """``links`` are Docker's ``CONTAINER:ALIAS`` of a user network: ALIAS resolves, for this container
        only, to CONTAINER's address on the network. ``driver_opts`` are Docker's endpoint options
        (:data:`ENDPOINT_OPTIONS`)."""
        from pallet.kernel.drivers import EndpointInfo

        driver_opts = dict(driver_opts or {})
        unknown = sorted(set(driver_opts) - set(ENDPOINT_OPTIONS))
        if unknown:
            raise UsageError(f"--driver-opt {unknown[0]}: pallet's network drivers take only "
                             + " and ".join(ENDPOINT_OPTIONS))
        ifname = driver_opts.get(IFNAME_OPTION, "")
        if ifname and (len(ifname) > 15 or "/" in ifname or not ifname.isprintable() or " " in ifname):
            raise UsageError(f'invalid interface name "{ifname}" (at most 15 characters, no "/" or space)')
        sysctls = endpoint_sysctls(driver_opts.get(SYSCTLS_OPTION, ""))
        record = self.get(network)
        if record.driver in ("host", "none"):
            raise PalletError(f"container cannot be connected to network {record.name} (driver {record.driver})")
        if record.config_only:
            raise Forbidden("cannot create endpoint on configuration-only network")
        if ip and record.predefined:
            raise UsageError("user specified IP address is supported on user defined networks only")
        if ip6 and not record.enable_ipv6:
            raise UsageError(f"an IPv6 address ({ip6}) needs a network created with --ipv6; {record.name} has none")
        if links and record.predefined:
            raise UsageError("links on a network connect are supported on user defined networks only (on the "
                             "default bridge, give --link to pallet run)")
        network_driver = self.driver(record.driver)
        if link_local_ips and not network_driver.link_local:
            raise UsageError(f"--link-local-ip: the {record.driver} driver assigns no link-local addresses")
        with self.lock():
            record = load(NetworkRecord, self.path(record.id))
            if self._endpoint_path(record.id, container.id).exists():
                raise Conflict(f"endpoint with name {container.name} already exists in network {record.name}")
            if not record.materialized:
                self._materialize(record, network_driver)
            address6 = ""
            if network_driver.own_ipam:
                address = ""  # the driver reports it from join
            else:
                address = self.ipam(record.ipam_driver).request_address(record.pools[0], ip)
                if record.pool6:
                    try:
                        address6 = self.ipam(record.ipam_driver).request_address(record.pool6, ip6)
                    except BaseException:
                        self.ipam(record.ipam_driver).release_address(record.pools[0], address)
                        raise
            # The container's interfaces are eth0, eth1 … in the order it joined networks.
            position = sum(1 for ep in self.endpoints() if ep.container_id == container.id)
            endpoint = EndpointRecord(id=os.urandom(32).hex(), network_id=record.id, container_id=container.id,
                                      container_name=container.name, sandbox=str(sandbox), address=address,
                                      aliases=[a for a in aliases if a], links=list(links), driver_opts=driver_opts,
                                      address6=address6, link_local_ips=list(link_local_ips),
                                      ipam_config={k: v for k, v in (("IPv4Address", ip), ("IPv6Address", ip6),
                                                                     ("LinkLocalIPs", list(link_local_ips))) if v})
            self._save_endpoint(endpoint)
            try:
                options = {"mac_address": mac, "port_bindings": port_bindings or {}, "container_id": container.id,
                           "container_name": container.name, "aliases": endpoint.aliases, "ip": ip}
                gateway = "" if record.internal or not record.ipam_config else record.ipam_config[0].get("Gateway", "")
                gateway6 = "" if record.internal else record.ipam_config6.get("Gateway", "")
                info = network_driver.create_endpoint(record.id, endpoint.id, record.driver_data,
                                                      EndpointInfo(address=address, gateway=gateway, mac_address=mac,
                                                                   address6=address6, gateway6=gateway6), options)
                endpoint.mac_address, endpoint.ports = info.mac_address, info.extra.get("ports", {})
                # What a driver without state of its own needs to configure the sandbox (libnetwork's JoinInfo).
                join_options = {"address": address, "mac_address": info.mac_address,
                                "interface": ifname or f"eth{position}", "interface_name": ifname,
                                "gateway": gateway if position == 0 else "", "address6": address6,
                                "gateway6": gateway6 if position == 0 else "", "link_local_ips": endpoint.link_local_ips}
                joined = network_driver.join(record.id, endpoint.id, record.driver_data, str(sandbox), join_options)
                endpoint.interface = joined.interface
                if sysctls:
                    apply_sysctls(str(sandbox), joined.interface, sysctls)
                endpoint.gateway, endpoint.gateway6 = joined.gateway, joined.gateway6
                if network_driver.own_ipam:
                    endpoint.address = joined.extra.get("address", "")
                    endpoint.mac_address = joined.extra.get("mac_address", "") or endpoint.mac_address
                self._save_endpoint(endpoint)
                if not record.predefined:
                    from pallet.kernel.network import dns, services

                    dns.ensure(self, record, endpoint)
                    services.apply_to(self.dir, record.id, endpoint.sandbox)
            except BaseException:
                self._detach(record, endpoint)
                raise
        events.emit(self.engine, "network", "connect", record.id,
                    {"container": container.id, "name": record.name, "type": record.driver})
        return record, endpoint

    def _save_endpoint(self, endpoint: EndpointRecord) -> None:
        atomic_write_json(self._endpoint_path(endpoint.network_id, endpoint.container_id), dataclasses.asdict(endpoint))

    def disconnect(self, container_id: str, network: str | None = None) -> list[str]:
        """Detach the container from ``network`` (or every network); names of the networks left."""
        left = []
        with self.lock():
            for record in self.read_all():
                if network and network not in (record.name, record.id):
                    continue
                path = self._endpoint_path(record.id, container_id)
                if path.exists():
                    self._detach(record, load(EndpointRecord, path))
                    left.append(record.name)
                    events.emit(self.engine, "network", "disconnect", record.id,
                                {"container": container_id, "name": record.name, "type": record.driver})
                    if (record.predefined and record.materialized and not self.endpoints(record.id)
                            and not self.settings.get("keep_default_bridge", True)):
                        self._release_default_bridge(record)
        return left

    def _release_default_bridge(self, record: NetworkRecord) -> None:
        """The last container left the implicit ``bridge`` network: take its device, rules and pool down.

        Only with ``[network] keep_default_bridge = false`` (as Podman's netavark does: nothing left on
        the host while no container uses the default network); the default keeps it up, as Docker
        keeps docker0, which saves creating it for each container. It comes back on the next connect.
        """
        self.driver(record.driver).delete_network(record.id, record.driver_data)
        ipam = self.ipam(record.ipam_driver)
        for pool_id in record.pools:
            ipam.release_pool(pool_id)
        fresh = self._predefined(record.name)
        record.driver_data, record.pools, record.ipam_config = {}, [], fresh.ipam_config
        self.save(record)

    def _detach(self, record: NetworkRecord, endpoint: EndpointRecord) -> None:
        """Every step tolerates what is already gone, so this also cleans up after a crash."""
        network_driver = self.driver(record.driver)
        network_driver.leave(record.id, endpoint.id, record.driver_data, endpoint.sandbox)
        network_driver.delete_endpoint(record.id, endpoint.id, record.driver_data)
        if record.pools and endpoint.address:
            self.ipam(record.ipam_driver).release_address(record.pools[0], endpoint.address)
        if record.pool6 and endpoint.address6:
            self.ipam(record.ipam_driver).release_address(record.pool6, endpoint.address6)
        self._endpoint_path(record.id, endpoint.container_id).unlink(missing_ok=True)

    # --- views --------------------------------------------------------------------------
    def inspect(self, record: NetworkRecord) -> dict:
        containers = {
            ep.container_id: {"Name": ep.container_name, "EndpointID": ep.id, "MacAddress": ep.mac_address,
                              "IPv4Address": ep.address, "IPv6Address": ep.address6}
            for ep in self.endpoints(record.id)
        }
        return {
            "Name": record.name, "Id": record.id, "Created": record.created, "Scope": record.scope,
            "Driver": record.driver, "EnableIPv4": True, "EnableIPv6": record.enable_ipv6,
            "IPAM": {"Driver": record.ipam_driver, "Options": record.ipam_options,
                     "Config": [{k: v for k, v in c.items() if v}
                                for c in record.ipam_config + ([record.ipam_config6] if record.ipam_config6 else [])]},
            "Internal": record.internal, "Attachable": record.attachable, "Ingress": False,
            "ConfigFrom": {"Network": record.config_from}, "ConfigOnly": record.config_only, "Containers": containers,
            "Options": {k: v for k, v in record.options.items()}, "Labels": record.labels,
        }


def _load_present(cls, paths) -> list:
    """The records of ``paths`` that still exist: a concurrent ``network rm`` (or disconnect) may remove one
    between the listing and the read (the soak test's four workers caught an internal error there)."""
    records = []
    for path in paths:
        try:
            records.append(load(cls, path))
        except FileNotFoundError:
            continue
    return records
