"""The flags of ``run``/``create``, named and parsed as docker 28 names them, turned into a CreateRequest.

The request's ``host_config`` uses Docker's ``HostConfig`` field names and value shapes, so the
Engine API server can fill the same structure from a request body and share everything below.
"""

from __future__ import annotations

import os

import click

from pallet.kernel.cli.trust import trust_options
from pallet.kernel.errors import PalletError, UsageError

# -h is Docker's --hostname for run/create, so only --help shows help there.
RUN_SETTINGS = {"help_option_names": ["--help"], "allow_interspersed_args": False}
_TRUE, _FALSE = ("true", "1", "t", "yes"), ("false", "0", "f", "no")


ENGINE_ERROR = 125


class EngineCommand(click.Command):
    """A command whose own exit status must not look like the container's (run, create, start, exec, wait):
    pallet's failures exit 125 as Docker's do; 126/127 (the command could not be run) pass through."""

    def make_context(self, info_name, args, parent=None, **extra):
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.NoSuchOption as exc:
            raise PalletError(f"unknown flag: {exc.option_name}\nSee 'pallet {info_name} --help'.",
                              exit_code=ENGINE_ERROR) from None
        except click.UsageError as exc:
            raise PalletError(f"{exc.format_message()}\nSee 'pallet {info_name} --help'.",
                              exit_code=ENGINE_ERROR) from None
        except PalletError as exc:  # a bad --flag=value found while reading the command line
            exc.exit_code = ENGINE_ERROR if exc.exit_code in (1, 2) else exc.exit_code
            raise

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except PalletError as exc:
            if exc.exit_code in (1, 2):
                exc.exit_code = ENGINE_ERROR
            raise


class RunCommand(EngineCommand):
    """``run``/``create`` with Go's flag habits: ``--rm=false``, ``--sig-proxy=false``."""

    def parse_args(self, ctx, args):
        return super().parse_args(ctx, self._go_booleans(ctx, list(args)))

    def _go_booleans(self, ctx, args: list[str]) -> list[str]:
        flags, valued = {}, set()
        for param in self.get_params(ctx):
            if not isinstance(param, click.Option):
                continue
            for name in param.opts:
                if param.is_flag and not param.secondary_opts:
                    flags[name] = (name, None)
                elif param.is_flag:
                    flags[name] = (name, param.secondary_opts[0])
                else:
                    valued.add(name)
        out, i = [], 0
        while i < len(args):
            arg = args[i]
            if arg == "--" or not arg.startswith("-") or arg == "-":
                return out + args[i:]  # the image: the rest belongs to the container's command
            name, eq, value = arg.partition("=")
            if eq and name in flags:
                on, off = flags[name]
                if value.lower() in _TRUE:
                    out.append(on)
                elif value.lower() in _FALSE:
                    out += [off] if off else []
                else:
                    raise UsageError(f'invalid argument "{value}" for "{name}" flag: strconv.ParseBool: '
                                     f'parsing "{value}": invalid syntax')
            else:
                out.append(arg)
                if not eq and self._takes_value(arg, valued):
                    if i + 1 < len(args):
                        out.append(args[i + 1])
                    i += 1
            i += 1
        return out

    @staticmethod
    def _takes_value(arg: str, valued: set[str]) -> bool:
        if arg.startswith("--"):
            return arg in valued
        for position, char in enumerate(arg[1:], start=1):  # -it, -e X, -eX, -itp 80
            if f"-{char}" in valued:
                return position == len(arg) - 1
        return False


def _opt(*names, **kwargs):
    return click.option(*names, **kwargs)


def _many(*names, metavar="VALUE", help=""):
    return click.option(*names, multiple=True, metavar=metavar, help=help)


def create_options(func):
    """Every flag of docker 28's ``create``/``run`` (``-d``, ``--detach-keys`` and ``--sig-proxy`` are run's)."""
    options = [
        _opt("--name", default="", help="Assign a name to the container."),
        _many("-e", "--env", metavar="KEY[=VALUE]", help="Set environment variables (KEY alone: from your environment)."),
        _many("--env-file", metavar="FILE", help="Read in a file of environment variables."),
        _opt("-w", "--workdir", default="", help="Working directory inside the container."),
        _opt("-u", "--user", default="", help="Username or UID (format: <name|uid>[:<group|gid>])."),
        _many("--group-add", metavar="GROUP", help="Add additional groups to join."),
        _opt("-h", "--hostname", default="", help="Container host name (default: the id's first 12 chars)."),
        _opt("--domainname", default="", help="Container NIS domain name."),
        _opt("--entrypoint", default=None, help="Overwrite the default ENTRYPOINT of the image."),
        _opt("-i", "--interactive", is_flag=True, help="Keep STDIN open even if not attached."),
        _opt("-t", "--tty", is_flag=True, help="Allocate a pseudo-TTY."),
        _many("-a", "--attach", metavar="STREAM", help="Attach to STDIN, STDOUT or STDERR."),
        _opt("--init", is_flag=True, help="Run an init inside the container that forwards signals and reaps processes."),
        _opt("--cidfile", default="", metavar="FILE", help="Write the container ID to the file."),
        _many("-v", "--volume", metavar="SRC:DST[:OPTS]", help="Bind mount a volume (./rel is taken from here)."),
        click.option("--mount", "mounts", multiple=True, metavar="SPEC",
              help="Attach a filesystem mount (type=bind|volume|tmpfs,source=…,target=…[,readonly,…])."),
        _many("--tmpfs", metavar="PATH[:OPTS]", help="Mount a tmpfs directory."),
        _many("--secret", metavar="NAME[,target=FILE,uid=,gid=,mode=]",
              help="Give the container a secret (`pallet secret create`), read-only at /run/secrets/FILE."),
        _many("--volumes-from", metavar="CONTAINER[:ro|rw]", help="Mount volumes from the specified container(s)."),
        _opt("--volume-driver", default="", help="Optional volume driver for the container."),
        _many("-l", "--label", metavar="KEY=VALUE", help="Set metadata on a container."),
        _many("--label-file", metavar="FILE", help="Read in a line delimited file of labels."),
        _many("--annotation", metavar="KEY=VALUE", help="Add an annotation to the container (passed to the OCI runtime)."),
        _opt("--stop-signal", default=None, help="Signal to stop the container (default SIGTERM)."),
        _opt("--stop-timeout", type=int, default=None, help="Timeout (in seconds) to stop a container."),
        _many("--network", "--net", "network", metavar="NETWORK",
              help='Connect to a network: none, host, bridge, container:NAME or a network name, or Docker\'s '
                   'name=NET[,alias=A][,ip=IP][,ip6=IP][,mac-address=MAC][,link-local-ip=IP][,driver-opt=K=V]; '
                   'repeat it for more user networks. Default: [containers] default_network in the config, else '
                   '"bridge" when a plugin registers a bridge driver, else "none".'),
        _opt("--ip", default="", metavar="IPV4", help="IPv4 address on the (user-defined) network."),
        _opt("--ip6", default="", metavar="IPV6", help="IPv6 address (e.g. 2001:db8::33), on a network made with --ipv6."),
        _many("--link-local-ip", metavar="IP", help="Container IPv4/IPv6 link-local addresses (bridge networks)."),
        _opt("--mac-address", default="", metavar="MAC", help="Container MAC address (e.g. 92:d0:c6:0a:29:33)."),
        _many("--network-alias", metavar="ALIAS", help="Add a network-scoped alias for the container."),
        _many("--add-host", metavar="HOST:IP", help="Add a custom host-to-IP mapping (IP may be host-gateway)."),
        _many("--dns", metavar="IP", help="Set custom DNS servers."),
        _many("--dns-search", metavar="DOMAIN", help="Set custom DNS search domains."),
        _many("--dns-option", metavar="OPTION", help="Set DNS options."),
        _many("--link", metavar="NAME[:ALIAS]", help="Add link to another container (hosts entry and env vars)."),
        _many("-p", "--publish", metavar="[IP:][HOST:]CTR[/PROTO]", help="Publish a container's port(s) to the host."),
        _opt("-P", "--publish-all", is_flag=True, help="Publish all exposed ports to random ports."),
        _many("--expose", metavar="PORT[/PROTO]", help="Expose a port or a range of ports."),
        _opt("--pod", default="", metavar="POD", help="Join a pod's namespaces (pallet pod create)."),
        _opt("--pid", default="", help="PID namespace to use (host, container:NAME)."),
        _opt("--ipc", default="", help="IPC mode to use (private, shareable, host, none, container:NAME)."),
        _opt("--uts", default="", help="UTS namespace to use (host)."),
        _opt("--cgroupns", default="", help="Cgroup namespace to use (host|private)."),
        _opt("--userns", default="", metavar="host", help="User namespace: \"host\" opts out of userns_remap."),
        _opt("--cgroup-parent", default="", help="Optional parent cgroup for the container."),
        _many("--sysctl", metavar="KEY=VALUE", help="Sysctl options (namespaced ones)."),
        _many("--security-opt", metavar="OPT", help="Security options (seccomp=…, no-new-privileges …)."),
        _many("--cap-add", metavar="CAP", help="Add Linux capabilities."),
        _many("--cap-drop", metavar="CAP", help="Drop Linux capabilities."),
        _opt("--privileged", is_flag=True, help="Give extended privileges to this container."),
        _opt("--read-only", is_flag=True, help="Mount the container's root filesystem as read only."),
        _many("--device", metavar="HOST[:CTR][:rwm]", help="Add a host device to the container."),
        _many("--device-cgroup-rule", metavar="RULE", help="Add a rule to the cgroup allowed devices list."),
        _opt("--gpus", default=None, help="GPU devices to add to the container (no GPU driver here: refused)."),
        _opt("--runtime", default="pallet", help="Runtime to use (pallet, runc, crun)."),
        _opt("--isolation", default="", help="Container isolation technology (Linux: default only)."),
        _opt("--platform", default="", help="Set platform (os/arch): the image must match it."),
        _opt("-m", "--memory", default=None, help="Memory limit (e.g. 32m, 1g)."),
        _opt("--memory-swap", default=None, help="Memory plus swap limit; -1 for unlimited swap."),
        _opt("--memory-reservation", default=None, help="Memory soft limit."),
        _opt("--memory-swappiness", type=int, default=None, help="Tune container memory swappiness (0 to 100)."),
        _opt("--kernel-memory", default=None, help="Kernel memory limit (deprecated by Docker; see its warning)."),
        _opt("--oom-kill-disable", is_flag=True, help="Disable OOM Killer."),
        _opt("--oom-score-adj", type=int, default=None, help="Tune host's OOM preferences (-1000 to 1000)."),
        _opt("--shm-size", default=None, help="Size of /dev/shm (default 64m)."),
        _opt("--cpus", default=None, help="Number of CPUs."),
        _opt("-c", "--cpu-shares", type=int, default=None, help="CPU shares (relative weight)."),
        _opt("--cpu-period", type=int, default=None, help="Limit CPU CFS period (microseconds)."),
        _opt("--cpu-quota", type=int, default=None, help="Limit CPU CFS quota (microseconds)."),
        _opt("--cpu-rt-period", type=int, default=None, help="Limit CPU real-time period in microseconds."),
        _opt("--cpu-rt-runtime", type=int, default=None, help="Limit CPU real-time runtime in microseconds."),
        _opt("--cpu-count", type=int, default=None, help="CPU count (Windows only: discarded with a warning)."),
        _opt("--cpu-percent", type=int, default=None, help="CPU percent (Windows only: discarded with a warning)."),
        _opt("--cpuset-cpus", default=None, help="CPUs in which to allow execution (0-3, 0,1)."),
        _opt("--cpuset-mems", default=None, help="MEMs in which to allow execution (0-3, 0,1)."),
        _opt("--pids-limit", type=int, default=None, help="Tune container pids limit (-1 unlimited)."),
        _opt("--blkio-weight", type=int, default=None, help="Block IO weight, 10 to 1000."),
        _many("--blkio-weight-device", metavar="DEV:WEIGHT", help="Block IO weight (relative device weight)."),
        _many("--device-read-bps", metavar="DEV:RATE", help="Limit read rate (bytes per second) from a device."),
        _many("--device-write-bps", metavar="DEV:RATE", help="Limit write rate (bytes per second) to a device."),
        _many("--device-read-iops", metavar="DEV:RATE", help="Limit read rate (IO per second) from a device."),
        _many("--device-write-iops", metavar="DEV:RATE", help="Limit write rate (IO per second) to a device."),
        _opt("--io-maxbandwidth", default=None, help="Maximum IO bandwidth (Windows only: refused)."),
        _opt("--io-maxiops", type=int, default=None, help="Maximum IOps (Windows only: refused)."),
        _many("--ulimit", metavar="NAME=SOFT[:HARD]", help="Ulimit options (never above this host's hard limit)."),
        _many("--storage-opt", metavar="KEY=VALUE", help="Storage driver options for the container."),
        _opt("--restart", default="no", help="Restart policy (no, always, unless-stopped, on-failure[:N])."),
        _opt("--rm", "auto_remove", is_flag=True, help="Automatically remove the container when it exits."),
        _opt("--log-driver", default="", help="Logging driver for the container (json-file, local, none)."),
        _many("--log-opt", metavar="KEY=VALUE", help="Log driver options (max-size, max-file …)."),
        _opt("--health-cmd", default=None, help="Command to run to check health."),
        _opt("--health-interval", default=None, help="Time between running the check (ms|s|m|h)."),
        _opt("--health-timeout", default=None, help="Maximum time to allow one check to run (ms|s|m|h)."),
        _opt("--health-start-period", default=None, help="Start period before retries count (ms|s|m|h)."),
        _opt("--health-start-interval", default=None, help="Time between checks during the start period."),
        _opt("--health-retries", type=int, default=None, help="Consecutive failures needed to report unhealthy."),
        _opt("--no-healthcheck", is_flag=True, help="Disable any container-specified HEALTHCHECK."),
        _opt("--health-on-failure", type=click.Choice(["none", "kill", "restart", "stop"]), default="none",
             help="Action when the container turns unhealthy (none, kill, restart, stop)."),
        _opt("--pull", type=click.Choice(["missing", "always", "never"]), default="missing",
             show_default=True, help="Pull the image before running."),
        _opt("-q", "--quiet", is_flag=True, help="Suppress the pull output."),
        _opt("--disable-content-trust", is_flag=True,
             help="Accepted (Docker's default): no Notary here; a pull is verified by the trust policy."),
        _opt("--use-api-socket", is_flag=True, help="Bind mount the Engine API socket of `pallet serve` "
                                                    "(<run-root>/pallet.sock) at /var/run/docker.sock."),
    ]
    for option in reversed(options):
        func = option(func)
    return trust_options(func)


def run_only_options(func):
    for option in reversed([
        _opt("-d", "--detach", is_flag=True, help="Run container in background and print container ID."),
        _opt("--detach-keys", default=None, help="Override the key sequence for detaching (ctrl-p,ctrl-q)."),
        _opt("--sig-proxy/--no-sig-proxy", default=True, help="Proxy received signals to the process (default true)."),
    ]):
        func = option(func)
    return func


def _refuse_unsupported(opts) -> None:
    """Flags that cannot work on this host or engine: one line each, as the brief for run wants."""
    if opts["gpus"] is not None:
        raise PalletError('could not select device driver "" with capabilities: [[gpu]]')
    if opts["io_maxbandwidth"] or opts["io_maxiops"]:
        raise UsageError("Invalid QoS settings: linux does not support Maximum IO Bandwidth or Maximum IO IOps")
    if opts["isolation"] not in ("", "default"):
        raise UsageError(f"Invalid isolation: {opts['isolation']!r} - linux only supports 'default'")


def _warn(message: str) -> None:
    click.echo(f"WARNING: {message}", err=True)


def _resources(opts) -> dict:
    """HostConfig's Resources part."""
    from pallet.kernel import hostopts, runopts

    if opts["cpus"] and (opts["cpu_period"] or opts["cpu_quota"]):
        raise UsageError("Conflicting options: Nano CPUs and CPU Period/Quota cannot both be set")
    if opts["cpu_period"] is not None and opts["cpu_period"] and not 1000 <= opts["cpu_period"] <= 1000000:
        raise UsageError("CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)")
    if opts["cpu_quota"] is not None and 0 < opts["cpu_quota"] < 1000:
        raise UsageError("CPU cfs quota can not be less than 1ms (i.e. 1000)")
    swappiness = opts["memory_swappiness"]
    if swappiness is not None and swappiness != -1 and not 0 <= swappiness <= 100:
        raise UsageError(f"Invalid value: {swappiness}, valid memory swappiness range is 0-100")
    oom = opts["oom_score_adj"]
    if oom is not None and not -1000 <= oom <= 1000:
        raise UsageError(f"Invalid value {oom}, range for oom score adj is [-1000, 1000]")
    memory = runopts.parse_memory(opts["memory"]) or 0
    reservation = runopts.parse_memory(opts["memory_reservation"], "--memory-reservation") or 0
    if memory and reservation and reservation > memory:
        raise UsageError("Minimum memory limit can not be less than memory reservation limit, see usage")
    kernel_memory = runopts.parse_size(opts["kernel_memory"], "--kernel-memory") if opts["kernel_memory"] else 0
    if kernel_memory:
        # The kernel ignores memory.kmem.limit_in_bytes since 6.x (runc 1.2 no longer writes it): as Docker, warn.
        _warn("Specifying a kernel memory limit is deprecated and will be removed in a future release.")
        _warn("Your kernel does not support kernel memory limit capabilities or the cgroup is not mounted. "
              "Limitation discarded.")
    if opts["oom_kill_disable"] and not memory:
        _warn("Disabling the OOM killer on containers without setting a '-m/--memory' limit may be dangerous.")
    for flag in ("cpu_count", "cpu_percent"):
        if opts[flag]:
            _warn(f"linux does not support CPU {flag[4:]}. {flag[4:].title()} discarded.")
    if opts["cpu_rt_runtime"] and opts["cpu_rt_period"] and opts["cpu_rt_runtime"] > opts["cpu_rt_period"]:
        raise UsageError("cpu-rt-runtime cannot be higher than cpu-rt-period")
    pids = opts["pids_limit"]
    devices = [hostopts.parse_device(d) for d in opts["device"]]
    throttle = {key: [hostopts.parse_throttle_device(s, flag, sizes) for s in opts[name]]
                for key, name, flag, sizes in (
                    ("BlkioDeviceReadBps", "device_read_bps", "--device-read-bps", True),
                    ("BlkioDeviceWriteBps", "device_write_bps", "--device-write-bps", True),
                    ("BlkioDeviceReadIOps", "device_read_iops", "--device-read-iops", False),
                    ("BlkioDeviceWriteIOps", "device_write_iops", "--device-write-iops", False))}
    weight = runopts.parse_blkio_weight(opts["blkio_weight"]) or 0
    weight_devices = [hostopts.parse_weight_device(w) for w in opts["blkio_weight_device"]]
    if weight and not _blkio_file("weight"):
        from pallet.kernel.cgroups import WEIGHT_DISCARDED

        _warn(WEIGHT_DISCARDED)
        weight = 0
    if weight_devices and not _blkio_file("weight_device"):
        _warn("Your kernel does not support Block I/O weight_device or the cgroup is not mounted. "
              "Weight-device discarded.")
        weight_devices = []
    return {
        "Memory": memory,
        "MemorySwap": runopts.parse_memory_swap(opts["memory_swap"]) or 0,
        "MemoryReservation": reservation,
        "MemorySwappiness": swappiness if swappiness is not None else -1,
        "KernelMemory": kernel_memory,
        "OomKillDisable": opts["oom_kill_disable"],
        "NanoCpus": runopts.parse_cpus(opts["cpus"]) or 0,
        "CpuShares": opts["cpu_shares"] or 0,
        "CpuPeriod": opts["cpu_period"] or 0,
        "CpuQuota": opts["cpu_quota"] or 0,
        "CpuRealtimePeriod": opts["cpu_rt_period"] or 0,
        "CpuRealtimeRuntime": opts["cpu_rt_runtime"] or 0,
        "CpusetCpus": runopts.parse_cpuset(opts["cpuset_cpus"]) or "",
        "CpusetMems": runopts.parse_cpuset(opts["cpuset_mems"], "--cpuset-mems") or "",
        "PidsLimit": pids if pids and pids > 0 else None,
        "BlkioWeight": weight,
        "BlkioWeightDevice": weight_devices,
        **throttle,
        "Devices": devices,
        "DeviceCgroupRules": [hostopts.parse_device_cgroup_rule(r) for r in opts["device_cgroup_rule"]],
        "Ulimits": [runopts.parse_ulimit(u) for u in opts["ulimit"]],
        "CgroupParent": opts["cgroup_parent"],
    }


def _blkio_file(name: str) -> bool:
    """Whether this host's block-IO controller gives a container a weight file (``weight`` or ``weight_device``)."""
    from pallet.kernel.cgroups import blkio_weight_supported, hierarchies

    v1, v2_mount = hierarchies()
    return blkio_weight_supported(v1, v2_mount, name)


def build_request(image, command, opts, detach: bool = False):
    """The parsed request for ``create``/``run``: every value checked before anything is created."""
    from pallet.kernel import hostopts, policyopts, runopts
    from pallet.kernel.lifecycle import CreateRequest

    _refuse_unsupported(opts)
    mounts = [runopts.parse_volume(v) for v in opts["volume"]] + [runopts.parse_mount(m) for m in opts["mounts"]]
    for mount in mounts:
        if mount["Type"] == "bind" and not mount.get("CreateSource") and not os.path.exists(mount["Source"]):
            raise UsageError(f'invalid mount config for type "bind": bind source path does not exist: {mount["Source"]}')
        if mount.get("BindRecursive") == "readonly":
            raise UsageError("bind-recursive=readonly: recursively read-only mounts are not supported by pallet's "
                             "runtime (use bind-recursive=writable)")
    targets = [m["Target"] for m in mounts] + [runopts.parse_tmpfs(t)[0] for t in opts["tmpfs"]]
    duplicate = next((t for t in targets if targets.count(t) > 1), None)
    if duplicate:
        raise UsageError(f"Duplicate mount point: {duplicate}")
    if opts["workdir"] and not opts["workdir"].startswith("/"):
        raise UsageError(f"the working directory '{opts['workdir']}' is invalid, it needs to be an absolute path")
    if opts["stop_signal"] is not None:
        runopts.parse_signal(opts["stop_signal"])
    restart = policyopts.parse_restart(opts["restart"])
    if opts["auto_remove"] and restart["Name"] not in ("no", ""):
        raise UsageError("Conflicting options: --restart and --rm")
    attach = policyopts.parse_attach(opts["attach"])
    if attach and detach:
        raise UsageError("Conflicting options: -a and -d")
    namespaces = {key: hostopts.parse_namespace_mode(opts[name], flag) for key, name, flag in (
        ("PidMode", "pid", "--pid"), ("IpcMode", "ipc", "--ipc"), ("UTSMode", "uts", "--uts"),
        ("CgroupnsMode", "cgroupns", "--cgroupns"))}
    if (namespaces["UTSMode"] == "host" or namespaces["UTSMode"].startswith("container:")) and opts["hostname"]:
        raise UsageError("Conflicting options: hostname and the UTS mode")
    network, primary, extra_networks = networks_of(opts)
    if network.startswith("container:"):
        for flag, name in (("--add-host", "add_host"), ("--dns", "dns"), ("--dns-search", "dns_search"),
                           ("--dns-option", "dns_option"), ("-h, --hostname", "hostname"), ("--link", "link"),
                           ("--mac-address", "mac_address"), ("-p, --publish", "publish"), ("--expose", "expose")):
            if opts[name]:
                raise UsageError(f"Conflicting options: {flag} and the network mode")
    sysctls = dict(hostopts.parse_sysctl(s) for s in opts["sysctl"])
    hostopts.check_sysctls(sysctls, network, namespaces["IpcMode"], namespaces["UTSMode"])
    if opts["cidfile"] and os.path.exists(opts["cidfile"]):
        raise UsageError(f"Container ID file found, make sure the other container isn't running or delete "
                         f"{opts['cidfile']}")
    if network == "host" and (opts["publish"] or opts["publish_all"]):
        _warn("Published ports are discarded when using host network mode")
    shm = runopts.parse_size(opts["shm_size"], "--shm-size") if opts["shm_size"] else 0
    if opts["shm_size"] and shm <= 0:
        raise UsageError(f'invalid argument "{opts["shm_size"]}" for "--shm-size" flag: size must be positive')
    volumes_from = []
    for item in opts["volumes_from"]:
        name, _sep, mode = item.partition(":")
        if mode not in ("", "ro", "rw") or not name:
            raise UsageError(f"invalid mode for volumes-from: {item}")
        volumes_from.append(item)
    policyopts.parse_detach_keys(opts.get("detach_keys"))
    host_config = {
        "Binds": list(opts["volume"]),
        "Mounts": mounts,
        "Tmpfs": dict(runopts.parse_tmpfs(t) for t in opts["tmpfs"]),
        "VolumesFrom": volumes_from,
        "VolumeDriver": opts["volume_driver"],
        "AutoRemove": opts["auto_remove"],
        "Privileged": opts["privileged"],
        "ReadonlyRootfs": opts["read_only"],
        "CapAdd": list(opts["cap_add"]),
        "CapDrop": list(opts["cap_drop"]),
        "SecurityOpt": list(opts["security_opt"]),
        "UsernsMode": opts["userns"],
        "Runtime": opts["runtime"],
        "Isolation": opts["isolation"],
        **_resources(opts),
        "OomScoreAdj": opts["oom_score_adj"] or 0,
        "ShmSize": shm,
        **namespaces,
        "Sysctls": sysctls,
        "GroupAdd": list(opts["group_add"]),
        "ExtraHosts": [hostopts.parse_extra_host(h) for h in opts["add_host"]],
        "Dns": hostopts.parse_dns(opts["dns"]),
        "DnsSearch": hostopts.parse_dns_search(opts["dns_search"]),
        "DnsOptions": list(opts["dns_option"]),
        "Links": [hostopts.parse_link(link) for link in opts["link"]],
        "Init": opts["init"] or None,
        "Annotations": policyopts.parse_annotations(opts["annotation"]),
        "StorageOpt": policyopts.parse_storage_opts(opts["storage_opt"]),
        "RestartPolicy": restart,
        "HealthOnFailure": opts["health_on_failure"],
        "LogConfig": policyopts.parse_log_config(opts["log_driver"], opts["log_opt"]),
        "ContainerIDFile": opts["cidfile"],
        "StopSignal": opts["stop_signal"],
        "StopTimeout": opts["stop_timeout"],
        "IPv4Address": runopts.parse_ipv4(opts["ip"]) or primary.get("IPAMConfig", {}).get("IPv4Address", ""),
        "IPv6Address": runopts.parse_ipv6(opts["ip6"]) or primary.get("IPAMConfig", {}).get("IPv6Address", ""),
        "LinkLocalIPs": runopts.parse_link_local(opts["link_local_ip"])
                        or primary.get("IPAMConfig", {}).get("LinkLocalIPs", []),
        "MacAddress": runopts.parse_mac(opts["mac_address"]) or primary.get("MacAddress", ""),
        "NetworkAliases": list(opts["network_alias"]) or primary.get("Aliases", []),
        **({"EndpointDriverOpts": primary["DriverOpts"]} if primary.get("DriverOpts") else {}),
    }
    from pallet.kernel.spec import capped_ulimits

    for line in capped_ulimits(host_config["Ulimits"]):
        _warn(line)
    labels = {**policyopts.parse_label_files(opts["label_file"]), **runopts.parse_labels(opts["label"])}
    healthcheck = policyopts.parse_healthcheck(opts["health_cmd"], opts["health_interval"], opts["health_timeout"],
                                            opts["health_start_period"], opts["health_start_interval"],
                                            opts["health_retries"], opts["no_healthcheck"])
    return CreateRequest(
        image=image, command=list(command), name=opts["name"], entrypoint=opts["entrypoint"],
        env=runopts.parse_env(opts["env"], opts["env_file"]), workdir=opts["workdir"], user=opts["user"],
        hostname=opts["hostname"], domainname=opts["domainname"], tty=opts["tty"], stdin_open=opts["interactive"],
        attach=attach, labels=labels, network=network, port_specs=list(opts["publish"]),
        publish_all=opts["publish_all"], exposed=policyopts.parse_expose(opts["expose"]), pull=opts["pull"],
        quiet=opts["quiet"], platform=policyopts.parse_platform(opts["platform"]), healthcheck=healthcheck,
        host_config=host_config, extra_networks=extra_networks,
    )


PER_NETWORK = (("network_alias", "Aliases", "--network-alias", "per-network alias"),
               ("ip", "IPv4Address", "--ip", "per-network IPv4 address"),
               ("ip6", "IPv6Address", "--ip6", "per-network IPv6 address"),
               ("mac_address", "MacAddress", "--mac-address", "per-network MAC address"),
               ("link_local_ip", "LinkLocalIPs", "--link-local-ip", "per-network link-local IP addresses"))


def networks_of(opts) -> tuple[str, dict, dict]:
    """``--network`` (repeatable, Docker's advanced syntax too; the API gives ``extra_networks``): the primary
    network's name, its own settings, and the further networks' ``EndpointSettings`` (joined at start)."""
    from pallet.kernel import runopts

    values = opts["network"]
    values = [values] if isinstance(values, str) else list(values)
    specs = [runopts.parse_network_spec(v) for v in values if v]
    extra = dict(opts.get("extra_networks") or {})
    if not specs:
        return "", {}, extra
    name, primary = specs[0]
    if opts.get("primary_driver_opts"):
        primary = {**primary, "DriverOpts": {**opts["primary_driver_opts"], **primary.get("DriverOpts", {})}}
    for option, key, flag, what in PER_NETWORK:
        if opts[option] and (primary.get(key) or primary.get("IPAMConfig", {}).get(key)):
            raise UsageError(f"conflicting options: cannot specify both {flag} and {what}")
    seen = {name}
    for other, settings in specs[1:]:
        if other in seen:
            raise UsageError(f'network "{other}" is specified multiple times')
        seen.add(other)
        extra[other] = settings
    if extra:
        builtin = [n for n in [name, *extra] if n in ("bridge", "host", "none", "default") or n.startswith("container:")]
        if builtin and len(builtin) < len(extra) + 1:
            raise UsageError("conflicting options: cannot attach both user-defined and non-user-defined network-modes")
        if builtin:
            raise UsageError(f"Container cannot be connected to network endpoints: {', '.join(builtin)}")
    return name, primary, extra


API_SOCKET = "pallet.sock"   # where `pallet serve` listens by default, in the run root


def add_api_socket(engine, request) -> None:
    """--use-api-socket: bind the Engine API socket of ``pallet serve`` at /var/run/docker.sock, where the
    docker CLI and docker-py look (registry credentials are not copied in)."""
    from pathlib import Path

    source = Path(engine.run_root) / API_SOCKET
    if not source.is_socket():
        raise UsageError(f"--use-api-socket: no Engine API socket at {source} (start `pallet serve` first)")
    request.host_config["Mounts"].append({"Type": "bind", "Source": str(source), "Target": "/var/run/docker.sock",
                                          "ReadOnly": False, "Propagation": "rprivate"})


def write_cidfile(path: str, cid: str) -> None:
    """Docker's --cidfile: the id, written whole or not at all."""
    if path:
        from pathlib import Path

        from pallet.kernel.fsutil import atomic_write

        try:
            atomic_write(Path(os.path.abspath(path)), cid.encode())
        except OSError as exc:
            raise PalletError(f"failed to create the container ID file: {exc.strerror or exc}") from None
