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

from pallet.kernel.cli import COMMANDS  # noqa: E402

FLAG = re.compile(r"^\s+(?:-(\w), )?--([a-z0-9-]+)")
COMMANDS_COMPARED = ["run", "create", "start", "attach", "update", "stop", "restart", "kill", "rm", "ps", "logs", "exec", "wait",
                     "inspect", "top", "stats", "cp", "diff", "export", "commit", "port", "rename", "pause",
                     "unpause", "pull", "push", "images", "rmi", "tag", "save", "load", "import", "history",
                     "login", "logout", "info", "version"]

_RUN = {
    "--gpus": "not supported: no GPU device driver on this engine (Docker's own error)",
    "--io-maxbandwidth": "not supported: Windows only; refused as Docker's daemon refuses it on Linux",
    "--io-maxiops": "not supported: Windows only; refused as Docker's daemon refuses it on Linux",
    "--cpu-count": "differs: Windows only; discarded with Docker's warning",
    "--cpu-percent": "differs: Windows only; discarded with Docker's warning",
    "--ip6": "not supported: pallet's network drivers assign IPv4 addresses only",
    "--link-local-ip": "not supported: pallet's network drivers assign no link-local addresses",
    "--use-api-socket": "differs: binds `pallet serve`'s socket at /var/run/docker.sock; credentials are not copied",
    "--isolation": "differs: only `default` (as on Linux Docker)",
    "--uts": "differs: also `container:NAME` (podman's), which pod members use",
    "--kernel-memory": "differs: discarded with Docker's warnings (the kernel ignores kmem limits)",
    "--detach-keys": "differs: validated; detaching from an attached run is not implemented (a warning says so)",
    "--restart": "same: the container's monitor restarts it with Docker's back-off; `system boot` after a reboot",
    "--log-driver": "differs: json-file, local (written as json-file) and none",
    "--log-opt": "differs: validated and recorded (json-file's options)",
    "--storage-opt": "differs: passed to the storage driver (size on btrfs, zfs, devicemapper)",
    "--disable-content-trust": "same: accepted, no effect (as Docker without DOCKER_CONTENT_TRUST)",
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
}
for _name in ("--health-retries", "--health-start-interval", "--health-start-period", "--health-timeout"):
    _RUN[_name] = "same: Docker's defaults (30s, 30s, 3 retries, 5s start interval)"
_RUN["--health-interval"] = "differs: an explicit 0 is refused (Docker takes it as the default 30s)"
NOTES = {
    "run": _RUN, "create": _RUN,
    "start": {"--checkpoint": "not supported: no checkpoint/restore (CRIU) here, refused in one line",
              "--checkpoint-dir": "not supported: no checkpoint/restore (CRIU) here, refused in one line",
              "--detach-keys": "same for a -t container started with -a -i"},
    "exec": {"--detach-keys": "differs: validated; an exec session cannot be detached from (a warning says so)"},
    "rm": {"--link": "not supported yet: legacy links are removed with the container that holds them"},
}


def docker_flags(command: str) -> list[str]:
    text = subprocess.run(["docker", command, "--help"], capture_output=True, text=True).stdout
    flags = []
    for line in text.splitlines():
        match = FLAG.match(line)
        if match and match.group(2) != "help":
            short, long = match.groups()
            flags.append(f"-{short}, --{long}" if short else f"--{long}")
    return flags


def pallet_flags(command: str) -> set[str] | None:
    if command not in COMMANDS:
        return None
    module, attr, _help = COMMANDS[command]
    cmd = getattr(importlib.import_module(module), attr)
    return {name for p in cmd.params for name in getattr(p, "opts", []) + getattr(p, "secondary_opts", [])}


def main() -> None:
    out = ["# Docker CLI parity", "",
           "Generated by `scripts/cli_parity.py` from docker 28's `--help` and pallet's commands; "
           "tests/containers/test_run_flag_parity.py fails when a flag of docker's `run` or `create` is missing.", ""]
    totals = {}
    for command in COMMANDS_COMPARED:
        flags = docker_flags(command)
        ours = pallet_flags(command)
        out += [f"## `{command}`", ""]
        if ours is None:
            out += ["not supported: pallet has no such command yet", ""]
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
    out.insert(4, "Supported flags: " + ", ".join(f"{c} {s}/{n}" for c, (s, n) in totals.items()) + ".\n")
    print("\n".join(out))


if __name__ == "__main__":
    main()
