"""Docker's container-create JSON (``Config``/``HostConfig``/``NetworkingConfig``) as pallet's run options.

The body is turned into the very option values ``pallet create`` parses from its flags, and handed
to the same ``build_request``, so the API and the CLI check and default everything alike.
"""

from __future__ import annotations

from pallet.kernel.api.errors import ApiError

# HostConfig fields that carry no meaning for pallet and are accepted as they are (Docker's defaults).
HARMLESS = {"ConsoleSize", "LogConfig", "CgroupnsMode", "Isolation", "AutoRemove", "ContainerIDFile"}
# Fields pallet cannot honour: refused with a clear 400 rather than silently dropped.
UNSUPPORTED = {"DeviceRequests": "GPU device requests", "Devices": "devices"}


def default_options(image: str) -> dict:
    from pallet.kernel.cli.container import create

    return dict(create.make_context("create", [image]).params)


def _strings(value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ApiError(400, f"json: cannot unmarshal {type(value).__name__} into a list of strings")
    return value


def _port_specs(bindings: dict) -> list[str]:
    specs = []
    for port, hosts in (bindings or {}).items():
        for host in hosts or [{}]:
            host_ip, host_port = (host or {}).get("HostIp") or "", (host or {}).get("HostPort") or ""
            specs.append(f"{host_ip}:{host_port}:{port}" if host_ip else f"{host_port}:{port}" if host_port else port)
    return specs


def _mount_spec(mount: dict) -> str:
    parts = [f"type={mount.get('Type') or 'volume'}"]
    if mount.get("Source"):
        parts.append(f"source={mount['Source']}")
    if not mount.get("Target"):
        raise ApiError(400, "invalid mount config: Target must not be empty")
    parts.append(f"target={mount['Target']}")
    if mount.get("ReadOnly"):
        parts.append("readonly")
    return ",".join(parts)


def _volumes(body: dict, host: dict) -> list[str]:
    """``-v`` values: the binds, and each ``Config.Volumes`` path no bind covers (an anonymous volume)."""
    binds = _strings(host.get("Binds"))
    targets = {bind.split(":")[1] if ":" in bind else bind for bind in binds}
    return binds + [path for path in body.get("Volumes") or {} if path not in targets]


def create_options(body: dict, name: str) -> dict:
    """The CLI's ``create`` option values for an API create body."""
    if not isinstance(body, dict):
        raise ApiError(400, "invalid JSON: the body must be an object")
    image = body.get("Image")
    if not image or not isinstance(image, str):
        raise ApiError(400, "No image was specified")
    host = body.get("HostConfig") or {}
    for key, what in UNSUPPORTED.items():
        if host.get(key):
            raise ApiError(400, f"HostConfig.{key}: {what} are not supported by pallet")
    opts = default_options(image)
    opts.update(
        name=name, env=tuple(_strings(body.get("Env"))), tty=bool(body.get("Tty")),
        interactive=bool(body.get("OpenStdin")), user=body.get("User") or "", workdir=body.get("WorkingDir") or "",
        hostname=body.get("Hostname") or "", domainname=body.get("Domainname") or "",
        label=tuple(f"{k}={v}" for k, v in (body.get("Labels") or {}).items()),
        expose=tuple(body.get("ExposedPorts") or {}), stop_signal=body.get("StopSignal") or None,
        stop_timeout=body.get("StopTimeout"), mac_address=body.get("MacAddress") or "",
        volume=tuple(_volumes(body, host)), mounts=tuple(_mount_spec(m) for m in host.get("Mounts") or []),
        auto_remove=bool(host.get("AutoRemove")), privileged=bool(host.get("Privileged")),
        read_only=bool(host.get("ReadonlyRootfs")), cap_add=tuple(_strings(host.get("CapAdd"))),
        cap_drop=tuple(_strings(host.get("CapDrop"))), security_opt=tuple(_strings(host.get("SecurityOpt"))),
        network="" if host.get("NetworkMode") in (None, "", "default") else host["NetworkMode"],
        publish=tuple(_port_specs(host.get("PortBindings"))), publish_all=bool(host.get("PublishAllPorts")),
        dns=tuple(_strings(host.get("Dns"))), dns_search=tuple(_strings(host.get("DnsSearch"))),
        dns_option=tuple(_strings(host.get("DnsOptions"))), add_host=tuple(_strings(host.get("ExtraHosts"))),
        tmpfs=tuple(f"{k}:{v}" if v else k for k, v in (host.get("Tmpfs") or {}).items()),
        init=bool(host.get("Init")), volumes_from=tuple(_strings(host.get("VolumesFrom"))),
        group_add=tuple(_strings(host.get("GroupAdd"))), link=tuple(_strings(host.get("Links"))),
        sysctl=tuple(f"{k}={v}" for k, v in (host.get("Sysctls") or {}).items()),
        pid=host.get("PidMode") or "", ipc=host.get("IpcMode") or "", uts=host.get("UTSMode") or "",
        userns=host.get("UsernsMode") or "", cgroup_parent=host.get("CgroupParent") or "",
        volume_driver=host.get("VolumeDriver") or "", pull="never", quiet=True,
    )
    if host.get("Runtime"):
        opts["runtime"] = host["Runtime"]
    restart = host.get("RestartPolicy") or {}
    if restart.get("Name"):
        count = restart.get("MaximumRetryCount") or 0
        opts["restart"] = restart["Name"] + (f":{count}" if count and restart["Name"] == "on-failure" else "")
    log = host.get("LogConfig") or {}
    if log.get("Type"):
        opts["log_driver"] = log["Type"]
        opts["log_opt"] = tuple(f"{k}={v}" for k, v in (log.get("Config") or {}).items())
    for key, option in (("Memory", "memory"), ("MemoryReservation", "memory_reservation"),
                        ("MemorySwap", "memory_swap"), ("ShmSize", "shm_size")):
        if host.get(key):
            opts[option] = str(host[key])
    if host.get("NanoCpus"):
        opts["cpus"] = str(host["NanoCpus"] / 1e9)
    for key, option in (("CpuShares", "cpu_shares"), ("PidsLimit", "pids_limit"), ("CpuQuota", "cpu_quota"),
                        ("CpuPeriod", "cpu_period"), ("OomScoreAdj", "oom_score_adj")):
        if host.get(key):
            opts[option] = host[key]
    if host.get("CpusetCpus"):
        opts["cpuset_cpus"] = host["CpusetCpus"]
    opts["ulimit"] = tuple(f"{u['Name']}={u['Soft']}:{u['Hard']}" for u in host.get("Ulimits") or [])
    endpoints = (body.get("NetworkingConfig") or {}).get("EndpointsConfig") or {}
    mode = opts["network"] if isinstance(opts["network"], str) else ""
    # The primary is HostConfig.NetworkMode's entry (else the first); Docker 1.44+ creates on the others too.
    primary = mode if mode in endpoints else next(iter(endpoints), "")
    for network, endpoint in endpoints.items():
        endpoint = endpoint or {}
        ipam = endpoint.get("IPAMConfig") or {}
        if network != primary:
            opts.setdefault("extra_networks", {})[network] = {
                key: value for key, value in (("Aliases", list(_strings(endpoint.get("Aliases")))),
                                              ("IPAMConfig", {k: ipam[k] for k in ("IPv4Address", "IPv6Address",
                                                                                    "LinkLocalIPs") if ipam.get(k)}),
                                              ("MacAddress", endpoint.get("MacAddress") or ""),
                                              ("DriverOpts", dict(endpoint.get("DriverOpts") or {}))) if value}
            continue
        if not mode and network != "default":
            opts["network"] = network
        opts["network_alias"] = tuple(_strings(endpoint.get("Aliases")))
        opts["ip"] = ipam.get("IPv4Address") or ""
        opts["ip6"] = ipam.get("IPv6Address") or ""
        opts["link_local_ip"] = tuple(_strings(ipam.get("LinkLocalIPs")))
        if endpoint.get("DriverOpts"):
            opts["primary_driver_opts"] = dict(endpoint["DriverOpts"])
    attach = [s for s in ("stdin", "stdout", "stderr") if body.get(f"Attach{s.title()}")]
    opts["attach"] = tuple(attach) if attach and attach != ["stdout", "stderr"] else ()
    return opts


def create_request(body: dict, name: str):
    """The kernel's ``CreateRequest`` for an API create body (``Entrypoint`` and ``Healthcheck`` as given)."""
    from pallet.kernel.cli.container_flags import build_request

    opts = create_options(body, name)
    command = _strings(body.get("Cmd"))
    entrypoint = body.get("Entrypoint")
    request = build_request(opts["image"], command, opts, detach=not opts["attach"])
    if entrypoint is not None:
        entrypoint = _strings(entrypoint)
        request.entrypoint = entrypoint[0] if entrypoint else ""
        request.command = entrypoint[1:] + command
    if body.get("Healthcheck"):
        request.healthcheck = body["Healthcheck"]
    size = (body.get("HostConfig") or {}).get("ConsoleSize")
    if isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size):
        request.host_config["ConsoleSize"] = size  # [height, width]: the pty's size from its start (API 1.42+)
    return request
