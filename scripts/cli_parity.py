"""Write docs/cli.md: docker 28's flags of each command beside pallet's, marked same / differs / not supported.

Run from the checkout: ``python3 scripts/cli_parity.py > docs/cli.md``. It reads ``docker CMD --help``
(the docker CLI on this machine kind) and pallet's own click commands; NOTES say how a flag differs.
"""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import click  # noqa: E402

from pallet.kernel.cli import COMMANDS  # noqa: E402

FLAG = re.compile(r"^\s+(?:-(\w), )?--([a-z0-9-]+)")
COMMANDS_COMPARED = ["run", "create", "start", "attach", "update", "stop", "restart", "kill", "rm", "ps", "logs", "exec", "wait",
                     "inspect", "top", "stats", "cp", "diff", "export", "commit", "port", "rename", "pause",
                     "unpause", "pull", "push", "images", "rmi", "tag", "save", "load", "import", "history",
                     "login", "logout", "info", "version", "events",
                     "network connect", "network create", "network disconnect", "network inspect", "network ls",
                     "network prune", "network rm",
                     "volume create", "volume inspect", "volume ls", "volume prune", "volume rm", "volume update",
                     "system df", "system events", "system info", "system prune",
                     "completion bash", "completion fish", "completion powershell", "completion zsh"]

_RUN = {
    "--gpus": "not supported: no GPU device driver on this engine (Docker's own error)",
    "--io-maxbandwidth": "not supported: Windows only; refused as Docker's daemon refuses it on Linux",
    "--io-maxiops": "not supported: Windows only; refused as Docker's daemon refuses it on Linux",
    "--cpu-count": "differs: Windows only; discarded with Docker's warning",
    "--cpu-percent": "differs: Windows only; discarded with Docker's warning",
    "--ip6": "same: on a network created with `--ipv6` (bridge driver)",
    "--link-local-ip": "same: added to the container's interface (IPv4 /16, IPv6 /64; bridge driver)",
    "--use-api-socket": "differs: binds `pallet serve`'s socket at /var/run/docker.sock; credentials are not copied",
    "--isolation": "differs: only `default` (as on Linux Docker)",
    "--uts": "differs: also `container:NAME` (podman's), which pod members use",
    "--kernel-memory": "differs: discarded with Docker's warnings (the kernel ignores kmem limits)",
    "--detach-keys": "differs: detaches from `run -it` (the container keeps running, `pallet attach` comes back); "
                     "a run without `-t` has no terminal to read the keys from and cannot be detached from",
    "--restart": "same: the container's monitor restarts it with Docker's back-off; `system boot` after a reboot",
    "--log-driver": "differs: json-file, local (written as json-file) and none",
    "--log-opt": "differs: validated and recorded (json-file's options)",
    "--storage-opt": "differs: passed to the storage driver (size on btrfs, zfs, devicemapper)",
    "--disable-content-trust": "differs: accepted (Docker's default); there is no Notary: an image run pulls is "
                               "verified by the trust policy (`docs/trust.md`)",
    "--ipc": "same: container:NAME needs a `--ipc shareable` donor, as in Docker",
    "--cgroupns": "differs: the default is private also on cgroup v1 hosts",
    "--mount": "differs: bind-recursive=readonly is refused (the runtime has no recursive read-only bind)",
    "--blkio-weight": "same: discarded with Docker's warning where the kernel has no BFQ weight",
    "--blkio-weight-device": "same: discarded with Docker's warning where the kernel has no BFQ weight",
    "--quiet": "same: run's pull prints no progress either way",
    "--platform": "differs: checked against the local image; a pull asks the registry for it",
    "--runtime": "differs: pallet (default), runc, crun",
    "--add-host": "same: host-gateway is the network's gateway, or `[network] host_gateway_ip`",
    "--dns": "differs: on networks with the embedded DNS, 127.0.0.11 stays the only nameserver",
    "--health-cmd": "same: probed by the container's monitor; `--health-on-failure` (podman's) acts on unhealthy",
    "--no-healthcheck": "same: recorded as Docker's `{\"Test\": [\"NONE\"]}`",
    "--ulimit": "differs: a limit above this host's hard limit is capped to it, with a warning (no CAP_SYS_RESOURCE)",
    "--sig-proxy": "same (also `--no-sig-proxy`)",
    "--network": "same: repeatable for user networks, with Docker's `name=…,alias=…,ip=…,ip6=…,mac-address=…,"
                 "link-local-ip=…,driver-opt=…`; a `gw-priority` other than 0 is refused in one line",
}
for _name in ("--health-retries", "--health-start-interval", "--health-start-period", "--health-timeout"):
    _RUN[_name] = "same: Docker's defaults (30s, 30s, 3 retries, 5s start interval)"
_RUN["--health-interval"] = "differs: an explicit 0 is refused (Docker takes it as the default 30s)"
_TRUST = {"--disable-content-trust": "differs: accepted, as Docker's default `true`; `=false` (Notary) is refused: "
                                    "pallet verifies by its trust policy instead (`docs/trust.md`)"}
_CLUSTER_VOLUME = "not supported: cluster (CSI) volumes are swarm's; pallet's volume drivers have no such options"
_SWARM_NETWORK = "not supported: swarm networks; multi-host networks are the `overlay` driver's (`docs/network.md`)"
NOTES = {
    "run": _RUN, "create": _RUN,
    "start": {"--checkpoint": "not supported: no checkpoint/restore (CRIU) here, refused in one line",
              "--checkpoint-dir": "not supported: no checkpoint/restore (CRIU) here, refused in one line",
              "--detach-keys": "same for a -t container started with -a -i"},
    "exec": {"--detach-keys": "differs: validated; an exec session cannot be detached from (a warning says so)"},
    "rm": {"--link": "same: the link leaves the parent's record (its next start has no hosts entry or variables)"},
    "pull": {**_TRUST, "--platform": "same: Docker's `no matching manifest` error for a platform the index lacks"},
    "push": {**_TRUST, "--platform": "differs: pallet keeps one platform per image, so the image is pushed as it is "
                                     "when it is of that platform, else Docker's error (also through `pallet serve`, "
                                     "API 1.46+)"},
    "images": {"--tree": "same: the platforms of the index an image came from; those not pulled show 0B (also "
                         "docker's own `--tree` through `pallet serve`: `manifests=1`, API 1.47)"},
    "rmi": {"--platform": "differs: the image is removed only when it is of that platform (one platform per image)"},
    "save": {"--platform": "same: an image of another platform is Docker's `no suitable export target` error"},
    "load": {"--platform": "same: other platforms in the archive are skipped; an OCI index gives that platform"},
    "history": {"--platform": "same: an image of another platform is Docker's error"},
    "import": {"--platform": "same: the image's config gets that OS, architecture and variant"},
    "network create": {"--attachable": "same: accepted; every network is attachable",
                       "--ingress": "not supported: pallet's routing mesh joins each service's own overlay network "
                                    "(`docs/network.md`); there is no ingress network to create (refused in one line)",
                       "--scope": "differs: only the driver's own scope (`local`, `global`/`swarm` for overlay); "
                                  "another is refused in one line",
                       "--aux-address": "same: reserved through the IPAM driver (any driver's request_address)",
                       "--config-from": "same: the configuration network's IPAM, options and labels; Docker's refusals "
                                        "of own settings, wording and 403s",
                       "--config-only": "same: driver `null`, nothing built; `cannot create endpoint on "
                                        "configuration-only network`; removal refused while a network uses it",
                       "--ipv4": "differs: IPv4 is always on; `--ipv4=false` is refused in one line",
                       "--ipv6": "differs: bridge driver (others refuse it in one line); without an IPv6 `--subnet` "
                                 "a /64 of a ULA /48 of the root's own; NAT66 out; `-p` publishes on IPv4 only",
                       "--subnet": "differs: one IPv4 and (with `--ipv6`) one IPv6 subnet",
                       "--gateway": "same: each gateway goes with the subnet of its family",
                       "--ip-range": "same: each range goes with the subnet of its family"},
    "network connect": {"--link": "same: on a user-defined network ALIAS resolves to the container for the connected "
                                  "container only (the embedded DNS asks whose query it is)",
                        "--driver-opt": "differs: `com.docker.network.endpoint.ifname` and "
                                        "`com.docker.network.endpoint.sysctls` (IFNAME for the interface); other keys "
                                        "are refused, never ignored",
                        "--ip6": "same: on a network created with `--ipv6`",
                        "--link-local-ip": "same: added to the container's interface (bridge driver)",
                        "--gw-priority": "differs: 0 (the default) only; another is refused in one line: a "
                                         "container's default gateway is its first network's"},
    "network inspect": {"--verbose": "not supported: its extra detail is swarm's (service and task endpoints)"},
    "volume create": {name: _CLUSTER_VOLUME for name in (
        "--availability", "--group", "--limit-bytes", "--required-bytes", "--scope", "--secret", "--sharing",
        "--topology-preferred", "--topology-required", "--type")},
    "volume ls": {"--cluster": _CLUSTER_VOLUME},
    "volume update": {"--availability": "differs: accepted; every pallet volume is local, so the command is Docker's "
                                        "`can only update cluster volumes` (`PUT /volumes/NAME` its 503)"},
    "system prune": {"--filter": "same: `label=KEY[=VALUE]` and `until=TIME` (not with `--volumes`, as Docker's); "
                                 "the build cache has no labels, so a label filter keeps it"},
    "completion bash": {"--no-descriptions": "not supported: click's bash script shows none anyway"},
    "completion fish": {"--no-descriptions": "not supported: click's fish script always shows the commands' help"},
    "completion zsh": {"--no-descriptions": "not supported: click's zsh script always shows the commands' help"},
}
# Commands pallet has not, with the reason; a command found here gets no flag table.
MISSING = {
    "completion powershell": "not supported: click's shell completion writes bash, zsh and fish scripts",
}
# Prose after a command's table.
AFTER = {
    "cp": "`-` as the source reads a tar from stdin, as the destination writes one to stdout. Reading from\n"
          "a container goes through its bind mounts (`/etc/hostname`, volumes); a symlink at the\n"
          "destination is followed inside the container's root.",
    "completion bash": "pallet's completion takes the shell as an argument (`pallet completion bash`), as the\n"
                       "subcommand Docker has; names of containers, images, networks and volumes complete.",
}
EPILOGUE = """
## `engine` (pallet only)

`pallet engine start|stop|status [--format json]`: the run root's resident engine, which the
`pallet` command hands every command to when it runs (see `docs/perf.md`). `PALLET_NO_ENGINE=1`
makes a command run directly even with an engine up."""


def docker_flags(command: str) -> list[str]:
    text = subprocess.run(["docker", *command.split(), "--help"], capture_output=True, text=True).stdout
    flags = []
    for line in text.splitlines():
        match = FLAG.match(line)
        if match and match.group(2) != "help":
            short, long = match.groups()
            flags.append(f"-{short}, --{long}" if short else f"--{long}")
    return flags


def pallet_command(command: str):
    """pallet's click command for docker's ``command`` (``"network create"``), or None. A word past a command
    that has no subcommands is its argument (``completion bash``)."""
    first, *rest = command.split()
    if first not in COMMANDS:
        return None
    module, attr, _help = COMMANDS[first]
    cmd = getattr(importlib.import_module(module), attr)
    for word in rest:
        if not isinstance(cmd, click.Group):
            break
        cmd = cmd.get_command(None, word)
        if cmd is None:
            return None
    return cmd


def pallet_flags(command: str) -> set[str] | None:
    cmd = pallet_command(command)
    if cmd is None:
        return None
    return {name for p in cmd.params for name in getattr(p, "opts", []) + getattr(p, "secondary_opts", [])}


def main() -> None:
    out = ["# Docker CLI parity", "",
           "Generated by `scripts/cli_parity.py` from docker 28's `--help` and pallet's commands; "
           "tests/containers/test_run_flag_parity.py fails when a flag of docker's `run` or `create` is missing, "
           "when a row says `not supported` without its reason, or when this page is not the script's output.", ""]
    totals = {}
    for command in COMMANDS_COMPARED:
        flags = docker_flags(command)
        ours = None if command in MISSING else pallet_flags(command)
        out += [f"## `{command}`", ""]
        if ours is None:
            out += [MISSING.get(command, "not supported: pallet has no such command yet"), ""]
            continue
        out += ["| docker flag | pallet |", "|---|---|"]
        supported = 0
        for flag in flags:
            long = flag.split(", ")[-1]
            note = NOTES.get(command, {}).get(long)
            if long not in ours:
                note = note or "not supported yet"
            else:
                supported += not (note or "").startswith("not supported")
                note = note or "same"
            out.append(f"| `{flag}` | {note} |")
        totals[command] = (supported, len(flags))
        out.append("")
        if command in AFTER:
            out += [AFTER[command], ""]
    out.insert(4, "Supported flags: " + ", ".join(f"{c} {s}/{n}" for c, (s, n) in totals.items()) + ".\n")
    print("\n".join(out) + EPILOGUE)


if __name__ == "__main__":
    main()
